expect_results_schema <- function(res) {
    expect_s3_class(res, "data.frame")
    expect_identical(colnames(res), names(result_columns()))
    types <- c(string = "character", int64 = "integer", float64 = "double",
        boolean = "logical")
    expect_identical(vapply(res, typeof, character(1)),
        stats::setNames(types[result_columns()], names(result_columns())))
}

test_that("run_benchmark on a simulated SingleCellExperiment", {
    skip_if_no_python()
    skip_if_no_bioc()
    sce <- sim_sce()
    res <- run_benchmark(sce, models = fast_models, tasks = c("integration", "annotation"),
        batch = "batch", label = "cell_type", seeds = 0:1)
    expect_results_schema(res)
    expect_setequal(unique(res$model), fast_models)
    expect_setequal(unique(res$task), c("integration", "annotation"))
    expect_setequal(unique(res$seed), 0:1)
    expect_true(all(res$status == "ok"))
    expect_identical(unique(res$dataset), "sce")
    acc <- res[res$metric == "knn_accuracy" & res$seed == 0L, ]
    expect_gt(acc$value[acc$model == "labels"], 0.95)
    kinds <- unique(res[, c("model", "model_kind")])
    expect_identical(kinds$model_kind[kinds$model == "labels"], "control")
    expect_identical(kinds$model_kind[kinds$model == "pca"], "baseline")
})

test_that("run_benchmark on a Seurat object (pbmc_small)", {
    skip_if_no_python()
    skip_if_not_installed("SeuratObject")
    data("pbmc_small", package = "SeuratObject", envir = environment())
    res <- run_benchmark(pbmc_small, models = fast_models,
        tasks = c("integration", "annotation"), batch = "groups", label = "RNA_snn_res.1",
        dataset = "pbmc_small")
    expect_results_schema(res)
    expect_setequal(unique(res$model), fast_models)
    expect_true(all(res$status %in% c("ok", "not_applicable")))
    expect_true(any(res$status == "ok" & res$task == "integration"))
    expect_identical(unique(res$dataset), "pbmc_small")
})

test_that("an R-made embedding is scored as an external model", {
    skip_if_no_python()
    skip_if_no_bioc()
    sce <- scuttle::logNormCounts(sim_sce())
    pcs <- stats::prcomp(t(as.matrix(SingleCellExperiment::logcounts(sce))), rank. = 10)$x
    SingleCellExperiment::reducedDim(sce, "r_pca") <- pcs
    res <- run_benchmark(sce, models = "labels", tasks = "annotation", label = "cell_type",
        embeddings = "r_pca")
    expect_results_schema(res)
    ext <- res[res$model == "r_pca", ]
    expect_true(nrow(ext) > 0L)
    expect_true(all(ext$model_kind == "external"))
    expect_true(all(ext$status == "ok"))
    expect_gt(ext$value[ext$metric == "knn_accuracy"], 0.5)
})

test_that("... reaches Python: model_params change the model", {
    skip_if_no_python()
    skip_if_no_bioc()
    sce <- sim_sce()
    run <- function(...) {
        res <- run_benchmark(sce, models = "pca", tasks = "annotation", label = "cell_type", ...)
        res$value[res$metric == "logreg_f1_macro"]
    }
    expect_false(isTRUE(all.equal(run(), run(model_params = list(pca = list(n_comps = 1))))))
})

test_that("a model that cannot run gives 'skipped' rows, not an error", {
    skip_if_no_python()
    skip_if_no_bioc()
    sce <- sim_sce()
    sce$one <- "b"
    res <- run_benchmark(sce, models = c("harmony", "labels"), tasks = "annotation",
        batch = "one", label = "cell_type")
    expect_true(all(res$status[res$model == "harmony"] == "skipped"))
    expect_match(res$message[res$model == "harmony"][1], "needs >= 2 batches")
    expect_true(all(res$status[res$model == "labels"] == "ok"))
})

test_that("bad inputs to run_benchmark give errors that name the fix", {
    skip_if_no_python()
    skip_if_no_bioc()
    sce <- sim_sce(60L, 40L)
    expect_error(run_benchmark(sce, models = "pca", label = "celltype"),
        "label = 'celltype' is not a column of colData\\(x\\); available: 'batch', 'cell_type'")
    expect_error(run_benchmark(sce, models = "pca", batch = "batch", label = "cell_type",
        assay = "logcounts"), "assay 'logcounts' not found; available assays: 'counts'")
    expect_error(run_benchmark(sce, models = "pca", label = "cell_type", embeddings = "harmony"),
        "reduced dimension\\(s\\) 'harmony' not found")
    expect_error(run_benchmark(sce, models = "pcaa", label = "cell_type"),
        "Unknown model 'pcaa'. Did you mean 'pca'\\?")
    expect_error(run_benchmark(sce, models = "pca", label = "cell_type", seeds = -1),
        "seeds must be non-negative whole numbers")
    expect_error(run_benchmark(sce, models = "pca", tasks = "integration", label = "cell_type"),
        "task 'integration' needs batch_key")
    expect_error(run_benchmark(sce[, 0], models = "pca"), "the object has 0 cells")
    SingleCellExperiment::reducedDim(sce, "pca") <- matrix(0, ncol(sce), 2)
    expect_error(run_benchmark(sce, models = "pca", label = "cell_type", embeddings = "pca"),
        "embedding name\\(s\\) \\['pca'\\] are also model keys")
    na_sce <- sce
    na_sce$cell_type[1] <- NA
    expect_error(run_benchmark(na_sce, models = "pca", label = "cell_type"),
        "has 1 missing values; every cell needs a cell-type label")
})

test_that("R baselines (rpy2) called from R are skipped with the R-side fix", {
    skip_if_no_python()
    skip_if_no_bioc()
    skip_if_not(reticulate::py_module_available("rpy2"), "rpy2 not installed")
    sceval:::.sceval_module("r") # registers the R baselines
    res <- run_benchmark(sim_sce(60L, 40L), models = c("singler", "labels"),
        tasks = "annotation", label = "cell_type")
    expect_true(all(res$status[res$model == "singler"] == "skipped"))
    expect_match(res$message[res$model == "singler"][1],
        "runs inside R \\(reticulate\\).*embeddings =")
    expect_true(all(res$status[res$model == "labels"] == "ok"))
})
