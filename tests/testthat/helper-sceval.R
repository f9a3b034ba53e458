# Shared fixtures for the sceval tests. Tests that need Python call skip_if_no_python().

skip_if_no_python <- function() {
    if (!sceval_available()) {
        testthat::skip(paste("sceval Python module not available:",
            sceval_config()$error))
    }
}

skip_if_no_bioc <- function() {
    for (pkg in c("SingleCellExperiment", "SummarizedExperiment", "scuttle")) {
        testthat::skip_if_not_installed(pkg)
    }
}

# A small SingleCellExperiment simulated by the Python simulator (sceval.testing):
# raw counts, 3 batches, cell types as factors with their Python levels.
sim_sce <- function(n_cells = 300L, n_genes = 200L) {
    ad <- sceval:::.sceval_module("testing")$small_dataset(n_cells = as.integer(n_cells),
        n_genes = as.integer(n_genes))
    counts <- reticulate::py_to_r(ad$layers$get("counts")$T$tocsc())
    dimnames(counts) <- list(
        reticulate::py_to_r(ad$var_names$tolist()),
        reticulate::py_to_r(ad$obs_names$tolist()))
    cd <- S4Vectors::DataFrame(row.names = colnames(counts))
    for (col in c("batch", "cell_type")) {
        lev <- reticulate::py_to_r(ad$obs[[col]]$cat$categories$tolist())
        cd[[col]] <- factor(reticulate::py_to_r(ad$obs[[col]]$astype("str")$tolist()),
            levels = unlist(lev))
    }
    SingleCellExperiment::SingleCellExperiment(list(counts = counts), colData = cd)
}

# The Python AnnData as numpy / pandas pieces, for comparisons.
py_dense <- function(m) {
    sp <- reticulate::import("scipy.sparse", convert = FALSE)
    if (reticulate::py_to_r(sp$issparse(m))) {
        m <- m$toarray()
    }
    reticulate::py_to_r(m)
}

py_names <- function(index) unlist(reticulate::py_to_r(index$tolist()))

result_columns <- function() {
    cols <- reticulate::import("sceval.benchmark.results", convert = FALSE)$RESULT_COLUMNS
    unlist(reticulate::py_to_r(cols))
}

fast_models <- c("pca", "unintegrated", "labels")
