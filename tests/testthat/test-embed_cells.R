test_that("embed_cells adds a reducedDim to a SingleCellExperiment", {
    skip_if_no_python()
    skip_if_no_bioc()
    sce <- sim_sce()
    out <- embed_cells(sce, "pca", name = "sceval_pca", params = list(n_comps = 6))
    emb <- SingleCellExperiment::reducedDim(out, "sceval_pca")
    expect_identical(dim(emb), c(ncol(sce), 6L))
    expect_identical(rownames(emb), colnames(sce))
    expect_true(all(is.finite(emb)))
    again <- SingleCellExperiment::reducedDim(embed_cells(sce, "pca",
        params = list(n_comps = 6)), "pca")
    expect_equal(unname(again), unname(emb), tolerance = 1e-5)
    # and it can be scored back
    res <- score_embedding(out, "sceval_pca", tasks = "annotation", label = "cell_type")
    expect_true(all(res$status == "ok"))
})

test_that("embed_cells adds a reduction to a Seurat object", {
    skip_if_no_python()
    skip_if_not_installed("SeuratObject")
    data("pbmc_small", package = "SeuratObject", envir = environment())
    out <- embed_cells(pbmc_small, "harmony", name = "harmony_py", batch = "groups")
    expect_true("harmony_py" %in% SeuratObject::Reductions(out))
    emb <- SeuratObject::Embeddings(out, "harmony_py")
    expect_identical(rownames(emb), colnames(pbmc_small))
    expect_identical(SeuratObject::Key(out[["harmony_py"]]), "harmonypy_")
})

test_that("embed_cells errors say why", {
    skip_if_no_python()
    skip_if_no_bioc()
    sce <- sim_sce(60L, 40L)
    sce$one <- "b"
    expect_error(embed_cells(sce, "harmony", batch = "one"), "needs >= 2 batches")
    expect_error(embed_cells(sce, c("pca", "harmony")), "model must be one model key")
    expect_error(embed_cells(sce, "pca", params = list(1)), "params must be a named list")
    expect_error(embed_cells(sce, "nope"), "Unknown model 'nope'")
})
