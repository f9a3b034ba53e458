#' Convert a SingleCellExperiment or Seurat object to AnnData
#'
#' Hands an R single-cell object to Python as an `anndata.AnnData` object, the input
#' every sceval function works on. The R side only takes the object apart; the Python
#' side (`sceval.interop.anndata_from_r`) assembles it.
#'
#' * **Matrix**: the assay named by `assay` becomes `X` (cells x genes). Sparse
#'   matrices stay sparse: the genes x cells `dgCMatrix` crosses as a scipy CSC matrix
#'   and is transposed in Python to CSR without copying. Other sparse classes are
#'   coerced to `dgCMatrix`; a `DelayedArray` assay (e.g. HDF5-backed) is realised into
#'   an in-memory `dgCMatrix`, read block by block. Dense matrices cross as numpy arrays.
#'   Non-numeric assays are an error.
#' * **Cells**: `colData()` (SingleCellExperiment) or `meta.data` (Seurat) becomes
#'   `obs`. Factors become pandas categoricals with the same levels in the same order,
#'   unused levels included (ordered factors stay ordered); `NA` stays missing.
#'   Columns that are not atomic vectors (nested `DataFrame`s, lists) are dropped with
#'   a message.
#' * **Genes**: `rowData()` (or the Seurat assay's meta features) becomes `var`.
#' * **Reduced dimensions**: each `reducedDim()` (or Seurat reduction) becomes
#'   `obsm["X_<name>"]`, the name kept as given (`"PCA"` -> `"X_PCA"`).
#' * **Names**: cell and gene names are kept exactly as given. Note that Seurat itself
#'   rewrites underscores in feature names to dashes when the object is created
#'   (`"HLA_A"` becomes `"HLA-A"`), so gene names from a Seurat object are the rewritten
#'   ones.
#'
#' @param x A `SingleCellExperiment` (or any `SummarizedExperiment`), a `Seurat`
#'   object, or an AnnData object already in Python (returned unchanged).
#' @param assay Which matrix becomes `X`: an assay name (`"counts"`, `"logcounts"`, ...)
#'   for a SingleCellExperiment; for Seurat the slot (v4: `"counts"`, `"data"`,
#'   `"scale.data"`) or layer (v5) of the Seurat assay `seurat_assay`.
#' @param layers Further assays (slots / layers for Seurat) copied into `layers`, e.g.
#'   `"logcounts"` (default none).
#' @param reductions Names of the reduced dimensions to copy into `obsm`; `NULL` (the
#'   default) copies all of them, `character(0)` none.
#' @param seurat_assay For Seurat objects, the assay to read (default
#'   `DefaultAssay(x)`). A Seurat v5 assay whose layers are split by sample (e.g.
#'   `counts.1`, `counts.2`) must be joined first with `JoinLayers()`.
#' @param ... Passed to methods.
#'
#' @return A Python `anndata.AnnData` object (a reticulate reference, not converted).
#' @seealso [run_benchmark()], which calls this for you.
#' @examples
#' if (sceval_available() && requireNamespace("scuttle", quietly = TRUE)) {
#'     sce <- scuttle::mockSCE(ncells = 50, ngenes = 100)
#'     adata <- as_anndata(sce)
#'     adata
#' }
#' @export
as_anndata <- function(x, assay = "counts", ...) {
    UseMethod("as_anndata")
}

#' @rdname as_anndata
#' @export
as_anndata.default <- function(x, assay = "counts", ...) {
    .stop("as_anndata() converts a SingleCellExperiment (or SummarizedExperiment) or a ",
        "Seurat object; got an object of class ", .enum(class(x)), ".")
}

#' @rdname as_anndata
#' @export
as_anndata.python.builtin.object <- function(x, assay = "counts", ...) {
    ad <- reticulate::import("anndata", convert = FALSE)
    if (!isTRUE(reticulate::import_builtins()$isinstance(x, ad$AnnData))) {
        .stop("as_anndata() got a Python object that is not an anndata.AnnData.")
    }
    x
}

#' @rdname as_anndata
#' @export
as_anndata.SummarizedExperiment <- function(x, assay = "counts", layers = NULL,
    reductions = NULL, ...) {
    .need_package("SummarizedExperiment")
    .check_dims(nrow(x), ncol(x))
    mats <- lapply(stats::setNames(nm = unique(c(assay, layers))), function(a) {
        .get_assay(x, a)
    })
    rd <- if (methods::is(x, "SingleCellExperiment")) .sce_reductions(x, reductions) else list()
    .build_anndata(mats, obs = SummarizedExperiment::colData(x),
        var = SummarizedExperiment::rowData(x), obsm = rd,
        cells = colnames(x), genes = rownames(x))
}

#' @rdname as_anndata
#' @export
as_anndata.Seurat <- function(x, assay = "counts", layers = NULL, reductions = NULL,
    seurat_assay = NULL, ...) {
    .need_package("SeuratObject")
    sa <- .seurat_assay_name(x, seurat_assay)
    mats <- lapply(stats::setNames(nm = unique(c(assay, layers))), function(a) {
        .seurat_matrix(x, sa, a)
    })
    genes <- rownames(mats[[1L]])
    .check_dims(length(genes), ncol(mats[[1L]]))
    feat <- .seurat_features(x[[sa]], genes)
    .build_anndata(mats, obs = x[[]], var = feat, obsm = .seurat_reductions(x, reductions),
        cells = colnames(mats[[1L]]), genes = genes)
}

# Python AnnData from R pieces: the first matrix is X, the others layers.
.build_anndata <- function(mats, obs, var, obsm, cells, genes) {
    interop <- .interop() # starts the right Python before anything is converted
    n_cells <- ncol(mats[[1L]])
    if (is.null(cells)) {
        .msg("the object has no cell names; cells are named 0..", n_cells - 1L)
    }
    if (is.null(genes)) {
        .msg("the object has no gene names; genes are named 0..", nrow(mats[[1L]]) - 1L)
    }
    py_mats <- lapply(names(mats), function(nm) .matrix_for_python(mats[[nm]], nm))
    names(py_mats) <- names(mats)
    .py_call(interop$anndata_from_r,
        matrix = py_mats[[1L]],
        obs = .columns_for_python(obs, n_cells, "cell"),
        var = .columns_for_python(var, nrow(mats[[1L]]), "gene"),
        obsm = .py_dict(lapply(obsm, .numeric_for_python)),
        obs_names = if (is.null(cells)) NULL else reticulate::np_array(as.character(cells)),
        var_names = if (is.null(genes)) NULL else reticulate::np_array(as.character(genes)),
        layers = .py_dict(py_mats[-1L])
    )
}

.check_dims <- function(n_genes, n_cells) {
    if (n_cells == 0L || n_genes == 0L) {
        .stop("the object has ", n_cells, " cells and ", n_genes, " genes; expected at ",
            "least one of each. Fix: check the filtering that produced it.")
    }
}

.need_package <- function(pkg) {
    if (!requireNamespace(pkg, quietly = TRUE)) {
        .stop("package '", pkg, "' is needed here but is not installed. Fix: ",
            "BiocManager::install('", pkg, "') (Debian: apt-get install r-bioc-",
            tolower(pkg), " / r-cran-", tolower(pkg), ").")
    }
}

.get_assay <- function(x, assay) {
    avail <- SummarizedExperiment::assayNames(x)
    if (!is.character(assay) || length(assay) != 1L || !assay %in% avail) {
        .stop("assay ", .enum(as.character(assay)), " not found; available assays: ",
            .enum(avail), ". Fix: pass assay = one of them (raw counts preferred).")
    }
    SummarizedExperiment::assay(x, assay, withDimnames = FALSE)
}

.sce_reductions <- function(x, reductions) {
    avail <- SingleCellExperiment::reducedDimNames(x)
    keep <- .pick_reductions(avail, reductions, "reducedDimNames(x)")
    out <- lapply(keep, function(nm) SingleCellExperiment::reducedDim(x, nm, withDimnames = FALSE))
    stats::setNames(out, sprintf("X_%s", keep))
}

.pick_reductions <- function(avail, wanted, where) {
    if (is.null(wanted)) {
        return(avail)
    }
    missing <- setdiff(wanted, avail)
    if (length(missing)) {
        .stop("reduced dimension(s) ", .enum(missing), " not found; ", where, ": ",
            .enum(avail), ".")
    }
    wanted
}

# ---- Seurat -------------------------------------------------------------------------

.seurat_assay_name <- function(x, seurat_assay) {
    avail <- names(x@assays)
    sa <- if (is.null(seurat_assay)) SeuratObject::DefaultAssay(x) else seurat_assay
    if (!is.character(sa) || length(sa) != 1L || !sa %in% avail) {
        .stop("Seurat assay ", .enum(as.character(sa)), " not found; available: ",
            .enum(avail), ". Fix: pass seurat_assay = one of them.")
    }
    sa
}

.is_assay5 <- function(a) {
    inherits(a, "Assay5") || "Assay5" %in% methods::is(a)
}

.seurat_matrix <- function(x, sa, slot) {
    a <- x@assays[[sa]]
    if (.is_assay5(a)) {
        return(.seurat5_layer(x, a, sa, slot))
    }
    slots <- c("counts", "data", "scale.data")
    if (!is.character(slot) || length(slot) != 1L || !slot %in% slots) {
        .stop("assay ", .enum(as.character(slot)), " is not a slot of Seurat assay '", sa,
            "'; for Seurat objects assay = one of ", .enum(slots), ".")
    }
    m <- SeuratObject::GetAssayData(x, slot = slot, assay = sa)
    if (nrow(m) == 0L || ncol(m) == 0L) {
        if (ncol(x) == 0L) {
            .check_dims(nrow(x), 0L)
        }
        .stop("slot '", slot, "' of Seurat assay '", sa, "' is empty. Fix: pass assay = a ",
            "filled slot (e.g. \"counts\").")
    }
    m
}

# Seurat v5 (Assay5): matrices live in layers; split layers ("counts.1", ...) must be
# joined first.
.seurat5_layer <- function(x, a, sa, layer) {
    avail <- names(attr(a, "layers"))
    if (!layer %in% avail) {
        split <- grep(paste0("^", layer, "\\."), avail, value = TRUE)
        if (length(split)) {
            .stop("Seurat v5 assay '", sa, "' has its '", layer, "' layer split into ",
                .enum(split), ". Fix: join them first: x[['", sa, "']] <- ",
                "JoinLayers(x[['", sa, "']]).")
        }
        .stop("layer '", layer, "' not found in Seurat v5 assay '", sa, "'; layers: ",
            .enum(avail), ".")
    }
    if (utils::packageVersion("SeuratObject") < "5.0.0") {
        .stop("this is a Seurat v5 object but SeuratObject ",
            as.character(utils::packageVersion("SeuratObject")), " is installed. ",
            "Fix: install SeuratObject >= 5, or convert the object to v4 assays.")
    }
    get_layer <- getExportedValue("SeuratObject", "LayerData")
    get_layer(x, assay = sa, layer = layer)
}

.seurat_features <- function(a, genes) {
    feat <- tryCatch(a[[]], error = function(e) NULL)
    if (is.null(feat) || ncol(feat) == 0L || is.null(rownames(feat))) {
        return(NULL)
    }
    feat[match(genes, rownames(feat)), , drop = FALSE]
}

.seurat_reductions <- function(x, reductions) {
    avail <- names(x@reductions)
    keep <- .pick_reductions(avail, reductions, "Reductions(x)")
    out <- lapply(keep, function(nm) {
        emb <- SeuratObject::Embeddings(x[[nm]])
        if (!identical(rownames(emb), colnames(x))) {
            idx <- match(colnames(x), rownames(emb))
            if (anyNA(idx)) {
                .stop("reduction '", nm, "' does not cover every cell of the object.")
            }
            emb <- emb[idx, , drop = FALSE]
        }
        emb
    })
    stats::setNames(out, sprintf("X_%s", keep))
}

# ---- pieces for Python ----------------------------------------------------------------

# A genes x cells matrix as scipy CSC (sparse) or numpy (dense), never densified.
.matrix_for_python <- function(m, what) {
    if (inherits(m, "DelayedArray")) {
        .msg("assay '", what, "' is a ", class(m)[1L], "; reading it block by block into ",
            "an in-memory sparse matrix")
        m <- methods::as(m, "dgCMatrix")
    }
    if (methods::is(m, "sparseMatrix")) {
        return(reticulate::r_to_py(.as_dgc(m, what)))
    }
    if (is.data.frame(m)) {
        m <- as.matrix(m)
    }
    if (!is.matrix(m) || !is.numeric(m)) {
        .stop("assay '", what, "' must hold numbers (counts); it is a ",
            if (is.matrix(m)) paste(typeof(m), "matrix") else class(m)[1L], ". Fix: pass ",
            "assay = the name of a numeric assay.")
    }
    .numeric_for_python(m)
}

.as_dgc <- function(m, what) {
    if (methods::is(m, "dgCMatrix")) {
        return(m)
    }
    if (!methods::is(m, "dMatrix") && !methods::is(m, "iMatrix")) {
        .stop("assay '", what, "' must hold numbers (counts); it is a ", class(m)[1L],
            ". Fix: pass assay = the name of a numeric assay.")
    }
    m <- methods::as(m, "CsparseMatrix")
    methods::as(methods::as(m, "generalMatrix"), "dMatrix")
}

# Dense numeric matrix -> numpy; integer NA becomes NaN (not -2^31).
.numeric_for_python <- function(m) {
    m <- as.matrix(m)
    if (!is.double(m) && anyNA(m)) {
        storage.mode(m) <- "double"
    }
    dimnames(m) <- NULL
    reticulate::np_array(m)
}

.py_dict <- function(x) {
    if (length(x) == 0L) {
        return(NULL)
    }
    reticulate::py_dict(names(x), unname(x), convert = FALSE)
}

# colData / meta.data / rowData -> dict of column specs for sceval.interop.column_from_r.
.columns_for_python <- function(df, n, what) {
    if (is.null(df) || ncol(df) == 0L) {
        return(NULL)
    }
    specs <- lapply(names(df), function(nm) .column_spec(df[[nm]], n))
    names(specs) <- names(df)
    dropped <- names(df)[vapply(specs, is.null, logical(1))]
    if (length(dropped)) {
        .msg("dropped ", what, " column(s) that are not plain vectors: ", .enum(dropped))
    }
    .py_dict(specs[!vapply(specs, is.null, logical(1))])
}

.column_spec <- function(col, n) {
    if (methods::is(col, "Rle")) {
        col <- as.vector(col)
    }
    if (inherits(col, c("Date", "POSIXt", "difftime"))) {
        col <- as.character(col)
    }
    if (!is.atomic(col) || !is.null(dim(col)) || length(col) != n) {
        return(NULL)
    }
    na <- reticulate::np_array(is.na(col))
    if (is.factor(col)) {
        return(list(type = "factor", values = reticulate::np_array(as.integer(col) - 1L),
            na = na, levels = reticulate::np_array(levels(col)), ordered = is.ordered(col)))
    }
    is_type <- c(character = is.character(col), logical = is.logical(col),
        integer = is.integer(col), double = is.double(col))
    if (!any(is_type)) {
        return(NULL) # complex, raw
    }
    type <- names(is_type)[is_type][1L]
    if (type == "character") {
        col[is.na(col)] <- ""
    }
    list(type = type, values = reticulate::np_array(col), na = na)
}
