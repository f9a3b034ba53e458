test_that("foundation models run from R on a tiny official-layout checkpoint", {
    skip_if_no_python()
    skip_if_no_bioc()
    sce <- sim_sce(n_cells = 200L, n_genes = 150L)
    ad <- as_anndata(sce)
    ck <- reticulate::py_to_r(sceval:::.sceval_module("testing")$tiny_checkpoint(
        "scgpt", file.path(tempdir(), "tiny_scgpt"), ad))
    ck <- as.character(ck)
    res <- run_benchmark(sce, models = c("scgpt", "scgpt.random"), tasks = "annotation",
        batch = "batch", label = "cell_type",
        model_params = list(scgpt = list(checkpoint = ck),
            scgpt.random = list(checkpoint = ck)))
    expect_setequal(unique(res$model), c("scgpt", "scgpt.random"))
    expect_true(all(res$status == "ok"))
    expect_equal(unique(res$model_kind[res$model == "scgpt"]), "foundation")
    expect_true(all(grepl("gene coverage: 150/150", res$message)))
})

test_that("a foundation model without its checkpoint is a skipped row", {
    skip_if_no_python()
    skip_if_no_bioc()
    # Python reads its own copy of the environment: set SCEVAL_HOME there
    env <- reticulate::import("os", convert = FALSE)$environ
    old <- reticulate::py_to_r(env$get("SCEVAL_HOME", ""))
    on.exit(env$`__setitem__`("SCEVAL_HOME", old))
    env$`__setitem__`("SCEVAL_HOME", file.path(tempdir(), "empty_home"))
    sce <- sim_sce(n_cells = 120L, n_genes = 100L)
    res <- run_benchmark(sce, models = c("geneformer", "pca"), tasks = "annotation",
        batch = "batch", label = "cell_type")
    expect_true(all(res$status[res$model == "geneformer"] == "skipped"))
    expect_true(all(grepl("sceval fetch", res$message[res$model == "geneformer"])))
    expect_true(all(res$status[res$model == "pca"] == "ok"))
})

test_that("every foundation architecture runs from R on a tiny checkpoint", {
    skip_if_no_python()
    skip_if_no_bioc()
    testing <- sceval:::.sceval_module("testing")
    archs <- setdiff(unlist(reticulate::py_to_r(testing$tiny_checkpoint_archs())),
        c("scgpt", "geneformer"))
    expect_true(length(archs) >= 1L)
    sce <- sim_sce(n_cells = 150L, n_genes = 120L)
    py_ad <- testing$small_dataset(n_cells = 150L, n_genes = 120L)
    for (arch in archs) {
        ck <- as.character(reticulate::py_to_r(testing$tiny_checkpoint(
            arch, file.path(tempdir(), paste0("tiny_", arch)), py_ad)))
        keys <- c(arch, paste0(arch, ".random"))
        params <- stats::setNames(rep(list(list(checkpoint = ck)), 2L), keys)
        res <- run_benchmark(sce, models = keys, tasks = c("integration", "annotation"),
            batch = "batch", label = "cell_type", model_params = params)
        expect_setequal(unique(res$model), keys)
        bad <- unique(res$message[res$status != "ok"])
        expect_true(all(res$status == "ok"), info = paste(arch, paste(bad, collapse = "; ")))
    }
})
