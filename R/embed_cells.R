#' Embed cells with a sceval model and store the result in the object
#'
#' Runs one model (a foundation model, a baseline or a control, see [list_models()])
#' on `x` and adds its cells x d embedding as `reducedDim(x, name)`
#' (SingleCellExperiment) or as the reduction `x[[name]]` (Seurat), so it can be
#' plotted, clustered or passed back to [run_benchmark()] via `embeddings =`.
#'
#' @inheritParams run_benchmark
#' @param model One model key, e.g. `"pca"`, `"harmony"`, `"scvi"`.
#' @param name Name of the new reduced dimension (default: `model`).
#' @param seed Seed of every random step.
#' @param params Named list of model parameters, e.g. `list(n_comps = 20L)`.
#' @param ... Passed to Python `sceval.interop.embed()`: `counts_layer`,
#'   `gene_id_column`, `device`.
#'
#' @return `x` with the new reduced dimension (rows named after the cells, columns
#'   `<name>_1`, `<name>_2`, ...). A model that cannot run on `x` (missing checkpoint,
#'   no raw counts, one batch only, ...) is an error that says why and how to fix it.
#' @examples
#' if (sceval_available() && requireNamespace("scuttle", quietly = TRUE)) {
#'     sce <- scuttle::mockSCE(ncells = 100, ngenes = 200)
#'     sce <- embed_cells(sce, "pca", params = list(n_comps = 10L))
#'     dim(SingleCellExperiment::reducedDim(sce, "pca"))
#' }
#' @export
embed_cells <- function(x, model, name = model, batch = NULL, label = NULL, seed = 0L,
    assay = "counts", params = NULL, ...) {
    if (!is.character(model) || length(model) != 1L || !nzchar(model)) {
        .stop("model must be one model key, e.g. \"pca\"; see list_models().")
    }
    if (!is.character(name) || length(name) != 1L || !nzchar(name)) {
        .stop("name must be one non-empty string.")
    }
    .check_seeds(seed)
    .check_columns(x, c(batch = batch, label = label))
    adata <- as_anndata(x, assay = assay, reductions = character(0))
    emb <- .py_call(.interop()$embed, adata, model,
        seed = as.integer(seed), batch_key = batch, label_key = label,
        params = .py_params(params), ...)
    emb <- reticulate::py_to_r(emb)
    dimnames(emb) <- list(colnames(x), paste0(name, "_", seq_len(ncol(emb))))
    .store_embedding(x, emb, name)
}

.py_params <- function(params) {
    if (is.null(params)) {
        return(NULL)
    }
    if (!is.list(params) || (length(params) && is.null(names(params)))) {
        .stop("params must be a named list, e.g. list(n_comps = 20L).")
    }
    reticulate::r_to_py(params)
}

.store_embedding <- function(x, emb, name) {
    if (methods::is(x, "Seurat")) {
        key <- paste0(gsub("[^A-Za-z0-9]", "", name), "_")
        if (key == "_") {
            key <- "sceval_"
        }
        colnames(emb) <- paste0(key, seq_len(ncol(emb)))
        x[[name]] <- SeuratObject::CreateDimReducObject(embeddings = emb, key = key,
            assay = SeuratObject::DefaultAssay(x))
        return(x)
    }
    if (methods::is(x, "SingleCellExperiment")) {
        SingleCellExperiment::reducedDim(x, name) <- emb
        return(x)
    }
    .stop("embed_cells() stores the embedding in a SingleCellExperiment or Seurat object; ",
        "got ", class(x)[1L], ". Use as_anndata() and Python directly for other objects.")
}
