#' Models and tasks sceval knows
#'
#' `list_models()` lists every registered model: foundation models, baselines and
#' controls, with what each needs and whether it can run with the Python packages
#' installed here. `list_tasks()` lists the tasks and their metrics.
#'
#' @return A `data.frame`. `list_models()`: `model`, `kind`, `input`, `requirements`,
#'   `available` (logical), `install` (the command that makes it available),
#'   `description`, `citation`. `list_tasks()`: `task`, `requirements`, `metrics`,
#'   `description`.
#' @examples
#' if (sceval_available()) {
#'     list_models()[, c("model", "kind", "available")]
#'     list_tasks()[, c("task", "requirements")]
#' }
#' @export
list_models <- function() {
    interop <- .interop()
    .frame_from_python(interop$frame_to_r(.py_call(.sceval()$list_models)))
}

#' @rdname list_models
#' @export
list_tasks <- function() {
    interop <- .interop()
    .frame_from_python(interop$frame_to_r(.py_call(.sceval()$list_tasks)))
}
