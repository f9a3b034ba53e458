#' Read the results of a benchmark run
#'
#' Reads the results table that `sceval run` (or [run_benchmark()] with a config)
#' wrote into an output folder: `results.csv` with base R, or, when the folder holds
#' only `results.parquet` or the finished grid cells (`cells/*.parquet`), through the
#' sceval Python module.
#'
#' @param outdir The output folder, or the path of a `results.csv` file.
#'
#' @return A `data.frame` with one row per (dataset, task, model, seed, metric,
#'   hyperparameter setting): the columns of [run_benchmark()] (`dataset`, `task`,
#'   `model`, `model_kind`, `metric`, `status`, `message`, `sceval_version`
#'   character; `seed` integer; `value`, `runtime_s` double; `higher_is_better`
#'   logical) plus, for a grid run, `cell`, `params` (JSON text of the
#'   hyperparameters, `"{}"` when none), `subsample` (character), `peak_mem_mb`
#'   (double) and `n_cells` (integer). Ready for [plot_summary()], [plot_seeds()],
#'   [plot_sensitivity()] and [plot_runtime()].
#' @seealso `sceval report OUTDIR` (command line) for the HTML report of the same folder.
#' @examples
#' out <- tempfile()
#' dir.create(out)
#' utils::write.csv(data.frame(dataset = "d", task = "integration", model = "pca",
#'     model_kind = "baseline", seed = 0L, metric = "nmi", value = 0.8,
#'     higher_is_better = TRUE, status = "ok", message = "", runtime_s = 1.5,
#'     sceval_version = "0.1.0"), file.path(out, "results.csv"), row.names = FALSE)
#' res <- read_results(out)
#' str(res)
#' @export
read_results <- function(outdir) {
    if (!is.character(outdir) || length(outdir) != 1L || is.na(outdir)) {
        .stop("outdir must be one path (a folder written by `sceval run`, or a ",
            "results.csv file); got ", class(outdir)[1L], " of length ", length(outdir), ".")
    }
    csv <- if (dir.exists(outdir)) file.path(outdir, "results.csv") else outdir
    if (!file.exists(outdir)) {
        .stop("output folder '", outdir, "' does not exist. Fix: pass the folder that ",
            "`sceval run --out` (or the config's output folder) wrote.")
    }
    if (file.exists(csv) && !dir.exists(csv)) {
        return(.read_results_csv(csv))
    }
    has_py_files <- file.exists(file.path(outdir, "results.parquet")) ||
        length(Sys.glob(file.path(outdir, "cells", "*.parquet"))) > 0L
    if (!has_py_files) {
        .stop("no results in '", outdir, "': expected results.csv, results.parquet or ",
            "cells/*.parquet. Fix: run `sceval run ... --out ", outdir, "` first.")
    }
    report <- .sceval_module("benchmark.report")
    res <- .py_call(report$load_results, outdir)
    .frame_from_python(.interop()$frame_to_r(reticulate::py_get_item(res, 0L)))
}

# Column -> R type of the results table (run_benchmark() columns, then grid columns).
.result_types <- c(
    dataset = "character", task = "character", model = "character",
    model_kind = "character", seed = "integer", metric = "character", value = "numeric",
    higher_is_better = "logical", status = "character", message = "character",
    runtime_s = "numeric", sceval_version = "character",
    cell = "character", params = "character", peak_mem_mb = "numeric",
    n_cells = "integer", subsample = "character"
)

.read_results_csv <- function(path) {
    header <- names(utils::read.csv(path, nrows = 1L, check.names = FALSE))
    core <- names(.result_types)[seq_len(12L)]
    missing <- setdiff(core, header)
    if (length(missing)) {
        .stop("'", path, "' is not an sceval results table: the column(s) ",
            .enum(missing), " are missing.")
    }
    classes <- .result_types[intersect(names(.result_types), header)]
    df <- utils::read.csv(path, colClasses = classes, na.strings = "",
        check.names = FALSE, stringsAsFactors = FALSE)
    # pandas writes a missing string as an empty field: keep it "" like Python does
    for (col in names(classes)[classes == "character"]) {
        df[[col]][is.na(df[[col]])] <- ""
    }
    if ("params" %in% names(df)) {
        df$params[df$params == ""] <- "{}"
    }
    df
}
