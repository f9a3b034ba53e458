#' sceval: benchmark single-cell foundation models from R
#'
#' A thin R layer over the sceval Python core: [as_anndata()] converts a
#' SingleCellExperiment or Seurat object, [run_benchmark()] and [score_embedding()]
#' score models and R-made embeddings, [embed_cells()] adds a model's embedding to the
#' object, [list_models()] / [list_tasks()] show what is available, and
#' [sceval_config()] says which Python is used.
#'
#' @keywords internal
#' @importClassesFrom Matrix dgCMatrix
"_PACKAGE"
