#' Benchmark models and your own embeddings on a SingleCellExperiment or Seurat object
#'
#' Converts `x` with [as_anndata()], runs the sceval Python benchmark (models x tasks x
#' seeds) and returns the long results table as a base `data.frame`.
#'
#' With `config = "bench.yaml"` it runs a benchmark grid instead (datasets x models x
#' tasks x seeds x hyperparameters, as `sceval run --config` does, through the same
#' Python engine): every finished cell is saved in `out/cells/`, a rerun skips finished
#' cells, embeddings are cached in `out/cache/`, and `out/run.json` records the run.
#' The config format is described in `sceval.benchmark.config`; an example ships in
#' `system.file("examples", "grid_simulated.yaml", package = "sceval")`.
#'
#' @param x A `SingleCellExperiment`, `Seurat` object (or AnnData in Python); leave it
#'   out when `config` is given.
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
#' @param config Path of a YAML benchmark config, or the same structure as a named list
#'   (e.g. `list(datasets = list(list(simulate = list(n_cells = 500))), models =
#'   c("pca", "labels"), tasks = "annotation", seeds = 0:1)`); when given, the grid it
#'   describes is run and `x`, `models`, `tasks`, `batch`, `label`, `seeds`, `embeddings` and
#'   `dataset` must be left at their defaults (the config names them).
#' @param out With `config`: the output folder (default: the config's `out`, else
#'   `"sceval-out"`).
#' @param executor With `config`: `"inline"` (this R session's Python), `"processes"`
#'   (a local process pool) or `"dask"` (a Dask cluster at `address`, or a local one of
#'   `workers` processes); default the config's executor.
#' @param workers,address With `config`: pool size / number of local Dask workers, and
#'   the scheduler address of a running Dask cluster (`"tcp://host:8786"`).
#' @param resume With `config`: skip cells already finished in `out` (`FALSE` runs
#'   every cell again).
#'
#' @return A `data.frame` with one row per (dataset, task, model, seed, metric) and
#'   exactly the columns of the Python results schema, with these types:
#'   `dataset`, `task`, `model`, `model_kind` (character), `seed` (integer), `metric`
#'   (character), `value` (double), `higher_is_better` (logical), `status`, `message`
#'   (character), `runtime_s` (double), `sceval_version` (character). A model that
#'   cannot run gives rows with `status` `"skipped"` or `"failed"` and the reason in
#'   `message`, never an error. With `config`, also the grid columns `cell` (the
#'   cell's hash), `params` (its hyperparameters as JSON), `peak_mem_mb`, `n_cells`
#'   (integer) and `subsample`.
#' @seealso [score_embedding()] for embeddings only, [embed_cells()] to add a model's
#'   embedding to the object.
#' @examples
#' if (sceval_available() && requireNamespace("scuttle", quietly = TRUE)) {
#'     sce <- scuttle::mockSCE(ncells = 100, ngenes = 200)
#'     res <- run_benchmark(sce, models = c("pca", "labels"), tasks = "annotation",
#'         label = "Treatment")
#'     head(res[, c("model", "metric", "value")])
#' }
#' \donttest{
#' if (sceval_available()) {
#'     cfg <- system.file("examples", "grid_simulated.yaml", package = "sceval")
#'     res <- run_benchmark(config = cfg, out = file.path(tempdir(), "grid"))
#'     table(res$model, res$task)
#' }
#' }
#' @export
run_benchmark <- function(x, models = NULL, tasks = NULL, batch = NULL, label = NULL,
    seeds = 0L, assay = "counts", embeddings = NULL, dataset = NULL, ..., config = NULL,
    out = NULL, executor = NULL, workers = NULL, address = NULL, resume = TRUE) {
    if (!is.null(config)) {
        given <- c(x = !missing(x), models = !is.null(models), tasks = !is.null(tasks),
            batch = !is.null(batch), label = !is.null(label), seeds = !missing(seeds),
            embeddings = !is.null(embeddings), dataset = !is.null(dataset))
        if (any(given)) {
            .stop("with config = ..., the config names the datasets, models, tasks and ",
                "seeds; drop ", paste(names(given)[given], collapse = ", "), ".")
        }
        return(.run_config(config, out = out, executor = executor, workers = workers,
            address = address, resume = resume, ...))
    }
    if (missing(x)) {
        .stop("give the data as x (a SingleCellExperiment or Seurat object), or a ",
            "benchmark config as config = \"bench.yaml\".")
    }
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

.run_config <- function(config, out, executor, workers, address, resume, ...) {
    if (is.list(config)) {
        if (is.null(names(config)) || !all(nzchar(names(config)))) {
            .stop("a config given as a list must be named like the YAML file: ",
                "list(datasets = ..., models = ..., tasks = ..., seeds = ...).")
        }
    } else if (!is.character(config) || length(config) != 1L || is.na(config)) {
        .stop("config must be the path of a YAML benchmark config, e.g. \"bench.yaml\", ",
            "or the same structure as a named list.")
    } else if (!file.exists(config)) {
        .stop("config file '", config, "' does not exist; expected a YAML benchmark config ",
            "(see system.file(\"examples\", package = \"sceval\")).")
    }
    if (!is.null(executor)) {
        executor <- match.arg(executor, c("inline", "processes", "dask"))
    }
    if (!is.null(workers) && (!is.numeric(workers) || length(workers) != 1L || workers < 1)) {
        .stop("workers must be one whole number >= 1.")
    }
    if (is.character(config)) {
        config <- normalizePath(config)
    }
    res <- .py_call(.sceval_module("benchmark.runner")$run_grid_for_r,
        config, out = if (!is.null(out)) path.expand(out),
        executor = executor, workers = if (!is.null(workers)) as.integer(workers),
        address = address, resume = isTRUE(resume), ...)
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
