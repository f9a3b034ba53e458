# Messages, warnings and errors go through these helpers: one place for the "sceval:"
# prefix and the verbosity switch (options(sceval.verbose = FALSE) silences messages).

.msg <- function(...) {
    if (isTRUE(getOption("sceval.verbose", TRUE))) {
        message("sceval: ", ..., appendLF = TRUE)
    }
    invisible(NULL)
}

.warn <- function(...) {
    warning("sceval: ", ..., call. = FALSE)
}

.stop <- function(...) {
    stop("sceval: ", ..., call. = FALSE)
}

# A comma-separated, quoted list for messages ("(none)" when empty).
.enum <- function(x) {
    if (length(x) == 0L) {
        return("(none)")
    }
    paste0("'", x, "'", collapse = ", ")
}

# Call a Python function and turn its exception into an R error whose message is the
# Python one ("DataContractError: ... Fix: ..."), without reticulate's traceback.
.py_call <- function(fun, ...) {
    tryCatch(fun(...), error = function(e) {
        .stop(.py_error_text(conditionMessage(e)))
    })
}

.py_error_text <- function(text) {
    text <- sub("\n+Detailed traceback:.*$", "", text)
    text <- sub("^Error in py_call_impl\\(.*?\\) ?:\\s*", "", text)
    trimws(sub("^sceval: ", "", text))
}
