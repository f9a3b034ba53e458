#' Benchmark models and your own embeddings on a SingleCellExperiment or Seurat object
#'
#' Converts `x` with [as_anndata()], runs the sceval Python benchmark (models x tasks x
#' seeds) and returns the long results table as a base `data.frame`.
#'
#' @param x A `SingleCellExperiment`, `Seurat` object (or AnnData in Python).
#' @param models Model keys (see [list_models()]), e.g. `c("pca", "harmony")`;
#'   `NULL` runs the default set (every baseline and control), `character(0)` none
#'   (only `embeddings` are scored).
#' @param tasks Task keys (see [list_tasks()]), e.g. `"integration"`; `NULL` runs
#'   every task the given `batch` / `label` columns allow.
#' @param batch,label Names of the `colData()` (Seurat: `meta.data`) columns holding
#'   each cell's batch and cell-type label.
#' @param seeds Integer seeds; each repeats every random step (splits, PCA, models).
#' @param assay The matrix the models read (see [as_anndata()]); raw counts preferred.
#' @param embeddings Names of `reducedDims()` (SingleCellExperiment) or reductions
#'   (Seurat) computed in R, e.g. a Seurat or Harmony integration. Each is scored as a
#'   model of kind `"external"` under its own name; a name equal to a model key is an
#'   error.
#' @param dataset Name of the dataset in the results (default: the expression passed
#'   as `x`).
#' @param ... Passed to Python `sceval.run_benchmark()`: e.g.
#'   `model_params = list(scvi = list(max_epochs = 50))`, `task_params`,
#'   `device = "cpu"`, `counts_layer`, `gene_id_column`.
#'
#' @return A `data.frame` with one row per (dataset, task, model, seed, metric) and
#'   exactly the columns of the Python results schema, with these types:
#'   `dataset`, `task`, `model`, `model_kind` (character), `seed` (integer), `metric`
#'   (character), `value` (double), `higher_is_better` (logical), `status`, `message`
#'   (character), `runtime_s` (double), `sceval_version` (character). A model that
#'   cannot run gives rows with `status` `"skipped"` or `"failed"` and the reason in
#'   `message`, never an error.
#' @seealso [score_embedding()] for embeddings only, [embed_cells()] to add a model's
#'   embedding to the object.
#' @examples
#' if (sceval_available() && requireNamespace("scuttle", quietly = TRUE)) {
#'     sce <- scuttle::mockSCE(ncells = 100, ngenes = 200)
#'     res <- run_benchmark(sce, models = c("pca", "labels"), tasks = "annotation",
#'         label = "Treatment")
#'     head(res[, c("model", "metric", "value")])
#' }
#' @export
run_benchmark <- function(x, models = NULL, tasks = NULL, batch = NULL, label = NULL,
    seeds = 0L, assay = "counts", embeddings = NULL, dataset = NULL, ...) {
    if (is.null(dataset)) {
        dataset <- paste(deparse(substitute(x), width.cutoff = 60L), collapse = "")
    }
    .check_keys(models, "models")
    .check_keys(tasks, "tasks")
    .check_seeds(seeds)
    .check_columns(x, c(batch = batch, label = label))
    adata <- as_anndata(x, assay = assay, reductions = .embedding_names(embeddings))
    res <- .py_call(.interop()$benchmark, adata,
        models = .py_keys(models),
        tasks = .py_keys(tasks),
        embeddings = .py_keys(if (length(embeddings)) paste0("X_", embeddings)),
        seeds = reticulate::np_array(as.integer(seeds)),
        batch_key = batch, label_key = label, dataset = dataset, ...)
    .frame_from_python(res)
}

.check_keys <- function(x, what) {
    if (!is.null(x) && (!is.character(x) || anyNA(x))) {
        .stop(what, " must be a character vector of keys (or NULL); got ", class(x)[1L], ".")
    }
}

.check_seeds <- function(seeds) {
    ok <- is.numeric(seeds) && length(seeds) > 0L && !anyNA(seeds) &&
        all(seeds >= 0) && all(seeds == round(seeds))
    if (!ok) {
        .stop("seeds must be non-negative whole numbers, e.g. seeds = 0:2.")
    }
}

.embedding_names <- function(embeddings) {
    if (is.null(embeddings)) {
        return(character(0))
    }
    if (!is.character(embeddings) || anyNA(embeddings) || !all(nzchar(embeddings))) {
        .stop("embeddings must name reducedDims (SingleCellExperiment) or reductions ",
            "(Seurat), e.g. embeddings = \"harmony\".")
    }
    embeddings
}

# A character vector for Python: always a list (length-1 vectors would become str).
.py_keys <- function(x) {
    if (is.null(x)) {
        return(NULL)
    }
    reticulate::r_to_py(as.list(as.character(x)))
}

# Named columns (batch, label) must exist before the object is converted.
.check_columns <- function(x, cols) {
    if (length(cols) == 0L) {
        return(invisible(NULL))
    }
    avail <- .cell_columns(x)
    if (is.null(avail)) {
        return(invisible(NULL))
    }
    where <- if (methods::is(x, "Seurat")) "x[[]] (meta.data)" else "colData(x)"
    for (arg in names(cols)) {
        col <- cols[[arg]]
        if (!is.character(col) || length(col) != 1L || !col %in% avail) {
            .stop(arg, " = ", .enum(as.character(col)), " is not a column of ", where,
                "; available: ", .enum(avail), ". Fix: name the column that holds the ",
                if (arg == "batch") "batch" else "cell-type label", " of each cell.")
        }
    }
    invisible(NULL)
}

.cell_columns <- function(x) {
    if (methods::is(x, "Seurat")) {
        return(colnames(x[[]]))
    }
    if (methods::is(x, "SummarizedExperiment")) {
        return(colnames(SummarizedExperiment::colData(x)))
    }
    NULL
}

# sceval.interop.frame_to_r pieces -> base data.frame with exact column types.
.frame_from_python <- function(res) {
    force(res) # py_to_r() would start reticulate's default Python before sceval's
    res <- reticulate::py_to_r(res)
    cols <- lapply(as.character(unlist(res$names)), function(nm) {
        v <- as.vector(res$values[[nm]])
        v <- switch(res$types[[nm]],
            character = as.character(v), integer = as.integer(v),
            double = as.double(v), logical = as.logical(v))
        v[as.logical(as.vector(res$na[[nm]]))] <- NA
        v
    })
    names(cols) <- as.character(unlist(res$names))
    as.data.frame(cols, stringsAsFactors = FALSE, check.names = FALSE,
        optional = TRUE)
}
