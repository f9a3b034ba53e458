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
