#' Score embeddings computed in R
#'
#' Scores one or more `reducedDims()` (SingleCellExperiment) or reductions (Seurat)
#' with sceval tasks, without running any model. The same as
#' `run_benchmark(x, models = character(0), embeddings = embedding, ...)`.
#'
#' @inheritParams run_benchmark
#' @param embedding Names of the reduced dimensions to score (each becomes a model of
#'   kind `"external"` in the results).
#' @param tasks Task keys (see [list_tasks()]); `NULL` runs every task the given
#'   `batch` / `label` columns allow.
#' @param ... Passed to [run_benchmark()] (e.g. `seeds`, `assay`, `task_params`).
#'
#' @return The results `data.frame` of [run_benchmark()].
#' @examples
#' if (sceval_available() && requireNamespace("scuttle", quietly = TRUE)) {
#'     sce <- scuttle::mockSCE(ncells = 100, ngenes = 200)
#'     sce <- scuttle::logNormCounts(sce)
#'     pcs <- stats::prcomp(t(as.matrix(SingleCellExperiment::logcounts(sce))), rank. = 10)
#'     SingleCellExperiment::reducedDim(sce, "my_pca") <- pcs$x
#'     res <- score_embedding(sce, "my_pca", tasks = "annotation", label = "Treatment")
#'     res[res$metric == "knn_accuracy", c("model", "value")]
#' }
#' @export
score_embedding <- function(x, embedding, tasks = NULL, batch = NULL, label = NULL,
    dataset = NULL, ...) {
    if (missing(embedding) || length(embedding) == 0L) {
        .stop("name at least one embedding to score, e.g. embedding = \"harmony\".")
    }
    if (is.null(dataset)) {
        dataset <- paste(deparse(substitute(x), width.cutoff = 60L), collapse = "")
    }
    run_benchmark(x, models = character(0), tasks = tasks, batch = batch, label = label,
        embeddings = embedding, dataset = dataset, ...)
}
