# Package state: the imported Python module, resolved lazily on first use.
.sceval_env <- new.env(parent = emptyenv())

.onLoad <- function(libname, pkgname) {
    # reticulate 1.28 cannot convert a scipy sparse matrix back to R without a dim()
    # method for its Python class; register one (harmless on newer reticulate).
    registerS3method("dim", "scipy.sparse._matrix.spmatrix", .scipy_sparse_dim,
        envir = asNamespace(pkgname))
    registerS3method("dim", "scipy.sparse._base._spbase", .scipy_sparse_dim,
        envir = asNamespace(pkgname))
    invisible(NULL)
}

.scipy_sparse_dim <- function(x) {
    as.integer(unlist(reticulate::py_to_r(x$shape)))
}
