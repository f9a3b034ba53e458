test_that("sceval_config reports the Python, the version and the import status", {
    skip_if_no_python()
    cfg <- sceval_config()
    expect_true(cfg$module_ok)
    expect_true(file.exists(cfg$python))
    expect_match(cfg$sceval_version, "^[0-9]+\\.[0-9]+")
    expect_true(cfg$python_source %in% c("SCEVAL_PYTHON", "options(sceval.python)",
        "make (repo .venv)", "reticulate default"))
    expect_true(is.na(cfg$error))
    expect_true(sceval_available())
})

test_that("SCEVAL_PYTHON wins over the option and the make record", {
    old <- Sys.getenv("SCEVAL_PYTHON", unset = NA)
    on.exit(if (is.na(old)) Sys.unsetenv("SCEVAL_PYTHON") else Sys.setenv(SCEVAL_PYTHON = old))
    withr_opts <- options(sceval.python = "/from/option/python")
    on.exit(options(withr_opts), add = TRUE)
    Sys.setenv(SCEVAL_PYTHON = "/from/env/python")
    expect_identical(sceval:::sceval_python(),
        list(path = "/from/env/python", source = "SCEVAL_PYTHON"))
    Sys.unsetenv("SCEVAL_PYTHON")
    expect_identical(sceval:::sceval_python()$source, "options(sceval.python)")
})

# A fresh R process: library(sceval) must work without Python, and the first call must
# say what to set.
run_fresh_r <- function(code, python) {
    rscript <- file.path(R.home("bin"), "Rscript")
    out <- suppressWarnings(system2(rscript, c("--vanilla", "-e", shQuote(code)),
        stdout = TRUE, stderr = TRUE, env = paste0("SCEVAL_PYTHON=", python)))
    paste(out, collapse = "\n")
}

test_that("a missing Python gives an error that says what to set, after a clean load", {
    code <- paste(
        "library(sceval)",
        "cat('LOADED', sceval_available(), '\\n')",
        "cfg <- sceval_config(); cat('MODULE_OK', cfg$module_ok, '\\n')",
        "res <- tryCatch(list_models(), error = function(e) conditionMessage(e))",
        "cat('ERROR:', res, '\\n')",
        sep = "; ")
    out <- run_fresh_r(code, "/nonexistent/bin/python")
    expect_match(out, "LOADED FALSE", fixed = TRUE)
    expect_match(out, "MODULE_OK FALSE", fixed = TRUE)
    expect_match(out, "the Python named by SCEVAL_PYTHON does not exist: /nonexistent/bin/python",
        fixed = TRUE)
    expect_match(out, "Sys.setenv(SCEVAL_PYTHON = '/path/to/python')", fixed = TRUE)
    expect_match(out, "make setup", fixed = TRUE)
})

test_that("a Python without the sceval module names the fix", {
    lacks_sceval <- function(py) {
        nzchar(py) && file.exists(py) && system2(py, c("-c", shQuote("import sceval")),
            stdout = FALSE, stderr = FALSE) != 0L
    }
    candidates <- c("/usr/bin/python3", Sys.which("python3"))
    py <- Filter(lacks_sceval, candidates)
    skip_if(length(py) == 0L, "no Python without sceval to try")
    py <- py[[1L]]
    out <- run_fresh_r(paste("library(sceval)",
        "tryCatch(list_tasks(), error = function(e) cat('ERROR:', conditionMessage(e)))",
        sep = "; "), py)
    expect_match(out, "the Python module 'sceval' cannot be imported", fixed = TRUE)
    expect_match(out, "pip install -e /path/to/sceval", fixed = TRUE)
})

# run_benchmark(config = ...): the grid runner from R, through the same Python engine.
read_json_py <- function(path) {
    json <- reticulate::import("json")
    json$loads(paste(readLines(path, warn = FALSE), collapse = "\n"))
}

grid_yaml <- function(dir) {
    path <- file.path(dir, "bench.yaml")
    writeLines(c(
        "seeds: [0, 1]",
        "device: cpu",
        "datasets:",
        "  - name: sim",
        "    simulate: {n_cells: 150, n_genes: 80, n_batches: 2, n_cell_types: 3, seed: 0}",
        "models:",
        "  - key: pca",
        "    grid: {n_comps: [5, 10]}",
        "  - labels",
        "tasks:",
        "  - key: annotation",
        "    params: {test_size: 0.3}"
    ), path)
    path
}

test_that("run_benchmark(config =) runs the grid and returns the typed results table", {
    skip_if_no_python()
    dir <- tempfile("grid")
    dir.create(dir)
    cfg <- grid_yaml(dir)
    out <- file.path(dir, "out")
    res <- run_benchmark(config = cfg, out = out)
    expect_s3_class(res, "data.frame")
    cols <- names(result_columns())
    expect_identical(names(res)[seq_along(cols)], cols)
    expect_true(all(c("cell", "params", "peak_mem_mb", "n_cells", "subsample") %in% names(res)))
    expect_type(res$seed, "integer")
    expect_type(res$n_cells, "integer")
    expect_type(res$peak_mem_mb, "double")
    expect_true(all(res$status == "ok"))
    expect_setequal(unique(res$model), c("pca", "labels"))
    expect_length(unique(res$cell), 6L)
    expect_setequal(unique(res$params),
        c("{\"pca.n_comps\":5}", "{\"pca.n_comps\":10}", "{}"))
    expect_true(file.exists(file.path(out, "run.json")))
    expect_length(list.files(file.path(out, "cells"), pattern = "parquet$"), 6L)
    # the same table as the Python engine's results file, and a rerun resumes
    again <- run_benchmark(config = cfg, out = out)
    expect_identical(again$value, res$value)
    expect_identical(again$cell, res$cell)
    run <- read_json_py(file.path(out, "run.json"))
    expect_identical(as.integer(run$cells_run), 0L)
})

test_that("run_benchmark(config =) reports config errors with the line", {
    skip_if_no_python()
    dir <- tempfile("grid")
    dir.create(dir)
    bad <- file.path(dir, "bad.yaml")
    writeLines(c("datasets: [{simulate: {n_cells: 100}}]", "models: [pcaa]",
        "tasks: [annotation]"), bad)
    expect_error(run_benchmark(config = bad),
        "bad.yaml line 2: models[0].key: unknown model 'pcaa'; did you mean 'pca'?",
        fixed = TRUE)
    expect_error(run_benchmark(config = file.path(dir, "none.yaml")), "does not exist",
        fixed = TRUE)
    expect_error(run_benchmark(config = bad, models = "pca"),
        "the config names the datasets, models, tasks and seeds; drop models", fixed = TRUE)
    expect_error(run_benchmark(), "or a benchmark config as config", fixed = TRUE)
})

test_that("run_benchmark(config =) takes the same structure as a named list", {
    skip_if_no_python()
    out <- tempfile("grid")
    cfg <- list(
        datasets = list(list(name = "sim", simulate = list(n_cells = 120, n_genes = 60,
            n_batches = 2, n_cell_types = 3))),
        models = c("pca", "labels"),
        tasks = "annotation",
        seeds = 0:1,
        device = "cpu")
    res <- run_benchmark(config = cfg, out = out)
    expect_setequal(unique(res$model), c("pca", "labels"))
    expect_setequal(unique(res$seed), 0:1)
    expect_true(all(res$status == "ok"))
    expect_length(unique(res$cell), 4L)
    expect_error(run_benchmark(config = list(1, 2)), "must be named like the YAML file",
        fixed = TRUE)
})
