test_that("score_embedding scores only the named reduced dimensions", {
    skip_if_no_python()
    skip_if_no_bioc()
    sce <- scuttle::logNormCounts(sim_sce())
    pcs <- stats::prcomp(t(as.matrix(SingleCellExperiment::logcounts(sce))), rank. = 8)$x
    SingleCellExperiment::reducedDim(sce, "mine") <- pcs
    SingleCellExperiment::reducedDim(sce, "noise") <- matrix(stats::rnorm(ncol(sce) * 4),
        ncol(sce), 4)
    res <- score_embedding(sce, c("mine", "noise"), tasks = c("integration", "annotation"),
        batch = "batch", label = "cell_type")
    expect_setequal(unique(res$model), c("mine", "noise"))
    expect_true(all(res$model_kind == "external"))
    expect_true(all(res$status == "ok"))
    nmi <- stats::setNames(res$value[res$metric == "nmi"], res$model[res$metric == "nmi"])
    expect_gt(nmi[["mine"]], nmi[["noise"]])
    expect_identical(unique(res$dataset), "sce")
    expect_error(score_embedding(sce, character(0)), "name at least one embedding")
})

test_that("score_embedding works on Seurat reductions", {
    skip_if_no_python()
    skip_if_not_installed("SeuratObject")
    data("pbmc_small", package = "SeuratObject", envir = environment())
    res <- score_embedding(pbmc_small, "pca", tasks = "annotation", label = "RNA_snn_res.1")
    expect_identical(unique(res$model), "pca")
    expect_true(all(res$status == "ok"))
})
