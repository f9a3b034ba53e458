#' Which Python sceval uses
#'
#' Resolution order: the `SCEVAL_PYTHON` environment variable, then
#' `options(sceval.python = )`, then the `.venv` of the source tree the package was
#' installed from by `make`, then reticulate's own choice.
#'
#' @return A list with `path` (character or `NA`) and `source` (where it came from).
#' @keywords internal
sceval_python <- function() {
    env <- Sys.getenv("SCEVAL_PYTHON", unset = "")
    if (nzchar(env)) {
        return(list(path = env, source = "SCEVAL_PYTHON"))
    }
    opt <- getOption("sceval.python")
    if (!is.null(opt) && nzchar(opt)) {
        return(list(path = opt, source = "options(sceval.python)"))
    }
    rec <- system.file("sceval_python.txt", package = "sceval")
    if (nzchar(rec)) {
        path <- trimws(readLines(rec, n = 1L, warn = FALSE))
        if (length(path) == 1L && file.exists(path)) {
            return(list(path = path, source = "make (repo .venv)"))
        }
    }
    list(path = NA_character_, source = "reticulate default")
}

.fix_hint <- paste(
    "Fix: run `make setup` in the sceval source tree, or point sceval at a Python",
    "with the module installed: Sys.setenv(SCEVAL_PYTHON = '/path/to/python') or",
    "options(sceval.python = '/path/to/python') before the first sceval call",
    "(pip install -e /path/to/sceval)."
)

# When reticulate already runs another Python, say so: it cannot be switched in a session.
.python_in_use_hint <- function(py) {
    if (is.na(py$path) || !reticulate::py_available(initialize = FALSE)) {
        return("")
    }
    used <- reticulate::py_config()$python
    if (identical(normalizePath(used, mustWork = FALSE),
        normalizePath(py$path, mustWork = FALSE))) {
        return("")
    }
    paste0(" reticulate already runs ", used, " (not ", py$path, " from ", py$source,
        "): restart R and set it before anything starts Python.")
}

#' The sceval Python module (imported on first use)
#' @keywords internal
.sceval <- function() {
    if (!is.null(.sceval_env$module)) {
        return(.sceval_env$module)
    }
    py <- sceval_python()
    if (!is.na(py$path)) {
        if (!file.exists(py$path)) {
            stop("sceval: the Python named by ", py$source, " does not exist: ",
                py$path, ". ", .fix_hint, call. = FALSE)
        }
        if (!reticulate::py_available(initialize = FALSE)) {
            reticulate::use_python(py$path, required = TRUE)
        }
    }
    mod <- tryCatch(.quiet_poetry(reticulate::import("sceval", convert = FALSE)),
        error = function(e) {
            stop("sceval: the Python module 'sceval' cannot be imported (",
                .py_error_text(conditionMessage(e)), ").", .python_in_use_hint(py), " ",
                .fix_hint, call. = FALSE)
        })
    .sceval_env$module <- mod
    mod
}

# reticulate 1.28 warns about any pyproject.toml in the working directory (it looks
# for a poetry project); sceval's own source tree has one, so silence that warning only.
.quiet_poetry <- function(expr) {
    withCallingHandlers(expr, warning = function(w) {
        if (grepl("pyproject.toml", conditionMessage(w), fixed = TRUE)) {
            invokeRestart("muffleWarning")
        }
    })
}

# A submodule of sceval (e.g. "interop"), imported after the package itself.
.sceval_module <- function(name) {
    key <- paste0("module_", name)
    if (is.null(.sceval_env[[key]])) {
        .sceval()
        .sceval_env[[key]] <- reticulate::import(paste0("sceval.", name), convert = FALSE)
    }
    .sceval_env[[key]]
}

.interop <- function() .sceval_module("interop")

#' Report the Python configuration of sceval
#'
#' @return A list with the Python path and its source, the sceval Python version
#'   (or `NA`) and whether the module imports, with the error if it does not.
#' @examples
#' cfg <- sceval_config()
#' cfg$module_ok
#' @export
sceval_config <- function() {
    py <- sceval_python()
    res <- tryCatch({
        mod <- .sceval()
        list(ok = TRUE, version = reticulate::py_to_r(mod$`__version__`), error = NA_character_)
    }, error = function(e) list(ok = FALSE, version = NA_character_, error = conditionMessage(e)))
    list(
        python = if (res$ok) reticulate::py_config()$python else py$path,
        python_source = py$source,
        sceval_version = res$version,
        module_ok = res$ok,
        error = res$error
    )
}

#' Is the sceval Python module usable?
#'
#' `TRUE` when the Python that sceval resolves (see [sceval_config()]) imports the
#' `sceval` module. Never errors; use it to guard examples and scripts.
#'
#' @return `TRUE` or `FALSE`.
#' @examples
#' sceval_available()
#' @export
sceval_available <- function() {
    isTRUE(tryCatch({
        .sceval()
        TRUE
    }, error = function(e) FALSE))
}
