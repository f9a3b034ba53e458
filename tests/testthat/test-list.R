test_that("list_models() and list_tasks() return data.frames", {
    skip_if_no_python()
    models <- list_models()
    expect_s3_class(models, "data.frame")
    expect_identical(colnames(models), c("model", "kind", "input", "requirements",
        "available", "install", "description", "license", "citation"))
    expect_true(all(c("pca", "harmony", "unintegrated", "labels") %in% models$model))
    scevals <- c("scgpt", "geneformer", "uce", "cellfm", "scfoundation", "scimilarity",
        "tgpt", "scbert", "celllm", "cellplm", "genecompass")
    expect_true(all(c(scevals, paste0(scevals, ".random")) %in% models$model))
    expect_true(all(nzchar(models$license[models$kind == "foundation"])))
    expect_type(models$available, "logical")
    expect_true(all(models$kind %in% c("foundation", "baseline", "control")))

    tasks <- list_tasks()
    expect_s3_class(tasks, "data.frame")
    expect_identical(colnames(tasks), c("task", "requirements", "metrics", "description"))
    expect_true(all(c("integration", "annotation") %in% tasks$task))
})
