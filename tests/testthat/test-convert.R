mock_sce <- function() {
    set.seed(1)
    sce <- scuttle::mockSCE(ncells = 40, ngenes = 60)
    SummarizedExperiment::assay(sce, "counts") <-
        methods::as(SummarizedExperiment::assay(sce, "counts"), "dgCMatrix")
    sce$grp <- factor(rep(c("b", "a"), 20), levels = c("b", "a", "unused"))
    sce$ord <- factor(rep(c("lo", "hi"), 20), levels = c("lo", "hi"), ordered = TRUE)
    sce$int_na <- c(NA, seq_len(39))
    sce$lgl_na <- c(TRUE, NA, rep(FALSE, 38))
    sce$chr_na <- c(NA, rep("x", 39))
    sce$dbl_na <- c(NaN, NA, seq_len(38) / 2)
    SummarizedExperiment::rowData(sce)$symbol <- paste0("SYM", seq_len(60))
    SingleCellExperiment::reducedDim(sce, "PCA") <- matrix(seq_len(80) / 3, 40, 2)
    sce
}

test_that("a SingleCellExperiment round-trips: values, dims, names, factors, NA", {
    skip_if_no_python()
    skip_if_no_bioc()
    sce <- mock_sce()
    ad <- as_anndata(sce)
    sp <- reticulate::import("scipy.sparse", convert = FALSE)
    expect_identical(unlist(reticulate::py_to_r(ad$shape)), c(40L, 60L))
    expect_true(reticulate::py_to_r(sp$isspmatrix_csr(ad$X)))
    expect_equal(py_dense(ad$X), t(as.matrix(SummarizedExperiment::assay(sce, "counts"))),
        ignore_attr = TRUE)
    expect_identical(py_names(ad$obs_names), colnames(sce))
    expect_identical(py_names(ad$var_names), rownames(sce))

    obs <- ad$obs
    expect_identical(unlist(reticulate::py_to_r(obs$grp$cat$categories$tolist())),
        c("b", "a", "unused"))
    expect_identical(unlist(reticulate::py_to_r(obs$grp$astype("str")$tolist()))[1:2],
        c("b", "a"))
    expect_true(reticulate::py_to_r(obs$ord$cat$ordered))
    expect_identical(unlist(reticulate::py_to_r(obs$int_na$isna()$tolist()))[1:2], c(TRUE, FALSE))
    expect_identical(reticulate::py_to_r(obs$int_na$dtype$name), "Int32")
    expect_equal(reticulate::py_to_r(obs$lgl_na$isna()$sum()), 1)
    expect_equal(reticulate::py_to_r(obs$chr_na$isna()$sum()), 1)
    expect_equal(reticulate::py_to_r(obs$dbl_na$isna()$sum()), 2)
    expect_identical(reticulate::py_to_r(obs$Treatment$dtype$name), "object")
    expect_identical(reticulate::py_to_r(ad$var$symbol$iloc[0]), "SYM1")

    expect_identical(unlist(reticulate::import_builtins()$list(ad$obsm$keys())), "X_PCA")
    expect_equal(reticulate::py_to_r(ad$obsm$get("X_PCA")),
        SingleCellExperiment::reducedDim(sce, "PCA"), ignore_attr = TRUE)
})

test_that("layers, dense assays and the choice of reductions", {
    skip_if_no_python()
    skip_if_no_bioc()
    sce <- scuttle::logNormCounts(mock_sce())
    SummarizedExperiment::assay(sce, "dense") <-
        as.matrix(SummarizedExperiment::assay(sce, "counts"))
    ad <- as_anndata(sce, assay = "dense", layers = "logcounts", reductions = character(0))
    np <- reticulate::import("numpy", convert = FALSE)
    expect_true(reticulate::import_builtins()$isinstance(ad$X, np$ndarray))
    expect_equal(py_dense(ad$layers$get("logcounts")),
        t(as.matrix(SingleCellExperiment::logcounts(sce))), ignore_attr = TRUE,
        tolerance = 1e-12)
    expect_identical(reticulate::import_builtins()$len(ad$obsm), 0L)
    expect_error(as_anndata(sce, reductions = "UMAP"),
        "reduced dimension\\(s\\) 'UMAP' not found; reducedDimNames\\(x\\): 'PCA'")
})

test_that("simulated data from the Python simulator survive R and back", {
    skip_if_no_python()
    skip_if_no_bioc()
    sce <- sim_sce(120L, 80L)
    ad <- as_anndata(sce)
    orig <- sceval:::.sceval_module("testing")$small_dataset(n_cells = 120L, n_genes = 80L)
    expect_equal(py_dense(ad$X), py_dense(orig$X), ignore_attr = TRUE)
    expect_identical(py_names(ad$var_names), py_names(orig$var_names))
    expect_identical(unlist(reticulate::py_to_r(ad$obs$cell_type$cat$categories$tolist())),
        unlist(reticulate::py_to_r(orig$obs$cell_type$cat$categories$tolist())))
})

test_that("a Seurat object converts: counts, meta.data factors, reductions, gene names", {
    skip_if_no_python()
    skip_if_not_installed("SeuratObject")
    data("pbmc_small", package = "SeuratObject", envir = environment())
    ad <- as_anndata(pbmc_small)
    counts <- SeuratObject::GetAssayData(pbmc_small, slot = "counts")
    expect_identical(unlist(reticulate::py_to_r(ad$shape)), rev(dim(counts)))
    expect_equal(py_dense(ad$X), t(as.matrix(counts)), ignore_attr = TRUE)
    expect_identical(py_names(ad$obs_names), colnames(pbmc_small))
    expect_identical(py_names(ad$var_names), rownames(pbmc_small))
    res <- pbmc_small$RNA_snn_res.1
    expect_identical(unlist(reticulate::py_to_r(ad$obs[["RNA_snn_res.1"]]$cat$categories$tolist())),
        levels(res))
    keys <- sort(unlist(reticulate::import_builtins()$list(ad$obsm$keys())))
    expect_identical(keys, c("X_pca", "X_tsne"))
    expect_equal(reticulate::py_to_r(ad$obsm$get("X_pca")),
        SeuratObject::Embeddings(pbmc_small, "pca"), ignore_attr = TRUE)

    data_slot <- as_anndata(pbmc_small, assay = "data", reductions = character(0))
    expect_equal(py_dense(data_slot$X),
        t(as.matrix(SeuratObject::GetAssayData(pbmc_small, slot = "data"))), ignore_attr = TRUE)
})

test_that("Seurat rewrites '_' in gene names to '-'; sceval keeps what Seurat stored", {
    skip_if_no_python()
    skip_if_not_installed("SeuratObject")
    m <- Matrix::Matrix(matrix(c(1, 0, 2, 3, 0, 1), 2, 3,
        dimnames = list(c("HLA_A", "CD3E"), paste0("c", 1:3))), sparse = TRUE)
    so <- suppressWarnings(SeuratObject::CreateSeuratObject(m))
    expect_identical(py_names(as_anndata(so)$var_names), c("HLA-A", "CD3E"))
})

test_that("a DelayedArray assay is read block-wise into a sparse matrix", {
    skip_if_no_python()
    skip_if_no_bioc()
    skip_if_not_installed("DelayedArray")
    sce <- mock_sce()
    counts <- SummarizedExperiment::assay(sce, "counts")
    SummarizedExperiment::assay(sce, "counts", withDimnames = FALSE) <-
        DelayedArray::DelayedArray(counts)
    expect_message(ad <- as_anndata(sce), "DelayedMatrix; reading it block by block")
    expect_true(reticulate::import("scipy.sparse")$issparse(ad$X))
    expect_equal(py_dense(ad$X), t(as.matrix(counts)), ignore_attr = TRUE)
})

test_that("bad inputs give errors that name the fix", {
    skip_if_no_python()
    skip_if_no_bioc()
    sce <- mock_sce()
    expect_error(as_anndata(sce, assay = "raw"),
        "assay 'raw' not found; available assays: 'counts'")
    chr <- sce
    SummarizedExperiment::assay(chr, "labels") <-
        matrix("a", nrow(sce), ncol(sce), dimnames = dimnames(sce))
    expect_error(as_anndata(chr, assay = "labels"),
        "assay 'labels' must hold numbers \\(counts\\); it is a character matrix")
    expect_error(as_anndata(sce[, 0]), "the object has 0 cells and 60 genes")
    expect_error(as_anndata(sce[0, ]), "the object has 40 cells and 0 genes")
    expect_error(as_anndata(list(1)), "as_anndata\\(\\) converts a SingleCellExperiment.*class 'list'")
    expect_error(as_anndata(reticulate::r_to_py(1)), "not an anndata.AnnData")
})

test_that("Seurat errors: unknown slot, unknown assay, v5 split layers", {
    skip_if_no_python()
    skip_if_not_installed("SeuratObject")
    data("pbmc_small", package = "SeuratObject", envir = environment())
    expect_error(as_anndata(pbmc_small, assay = "logcounts"),
        "'logcounts' is not a slot of Seurat assay 'RNA'")
    expect_error(as_anndata(pbmc_small, seurat_assay = "ADT"),
        "Seurat assay 'ADT' not found; available: 'RNA'")
    # A Seurat v5 assay whose counts are split by sample (built by hand: SeuratObject 4
    # cannot make one).
    v5 <- pbmc_small
    fake <- structure(list(), class = structure("Assay5", package = "SeuratObject"))
    attr(fake, "layers") <- list(counts.1 = NULL, counts.2 = NULL)
    v5@assays$RNA <- fake
    expect_error(as_anndata(v5),
        "split into 'counts.1', 'counts.2'. Fix: join them first: .*JoinLayers")
})

test_that("columns that are not plain vectors are dropped with a message", {
    skip_if_no_python()
    skip_if_no_bioc()
    sce <- mock_sce()
    sce$nested <- S4Vectors::DataFrame(a = seq_len(ncol(sce)), b = rev(seq_len(ncol(sce))))
    expect_message(ad <- as_anndata(sce, reductions = character(0)),
        "dropped cell column\\(s\\) that are not plain vectors: 'nested'")
    cols <- unlist(reticulate::py_to_r(ad$obs$columns$tolist()))
    expect_false("nested" %in% cols)
    expect_true("grp" %in% cols)
})

test_that("an AnnData passes through unchanged", {
    skip_if_no_python()
    ad <- sceval:::.sceval_module("testing")$small_dataset(n_cells = 30L, n_genes = 40L)
    expect_identical(as_anndata(ad), ad)
})
