# Speed and memory of sceval::as_anndata() on a large sparse SingleCellExperiment.
#
# Usage (from the repository root, after `make rpkg` or `R CMD INSTALL .`):
#
#     Rscript benchmarks/r_conversion.R [n_cells] [n_genes] [density]
#
# Defaults: 50,000 cells x 20,000 genes, 5% non-zero (50 M stored counts, ~600 MB as a
# dgCMatrix). Prints the wall time of the conversion and the peak extra resident memory
# of the process (R and the embedded Python together, reset just before the
# conversion), each as a ratio to its target (10 s; 2 x the dgCMatrix size) and the
# time also as a ratio to a reference: Matrix::t() of the same matrix in R, the cost
# of one pass over the data. Linux only (reads /proc/self/status).

suppressPackageStartupMessages({
    library(sceval)
    library(SingleCellExperiment)
})

args <- commandArgs(trailingOnly = TRUE)
n_cells <- if (length(args) >= 1L) as.integer(args[[1L]]) else 50000L
n_genes <- if (length(args) >= 2L) as.integer(args[[2L]]) else 20000L
density <- if (length(args) >= 3L) as.numeric(args[[3L]]) else 0.05

status_kb <- function(field) {
    line <- grep(paste0("^", field, ":"), readLines("/proc/self/status"), value = TRUE)
    as.numeric(gsub("[^0-9]", "", line))
}

reset_peak <- function() {
    ok <- tryCatch({
        writeLines("5", "/proc/self/clear_refs")
        TRUE
    }, error = function(e) FALSE, warning = function(w) FALSE)
    if (!ok) {
        stop("cannot reset the peak RSS (/proc/self/clear_refs); run on Linux")
    }
}

# Counts with exactly round(density * n_genes) genes per cell: one random gene in each
# of that many equal gene blocks, so rows are sorted and unique without sorting.
simulate_counts <- function(n_cells, n_genes, density) {
    per_cell <- max(1L, round(density * n_genes))
    block <- n_genes %/% per_cell
    starts <- (seq_len(per_cell) - 1L) * block
    nnz <- as.numeric(per_cell) * n_cells
    i <- rep.int(starts, n_cells) + sample.int(block, nnz, replace = TRUE) - 1L
    m <- new("dgCMatrix", i = as.integer(i),
        p = as.integer(seq(0, nnz, by = per_cell)),
        x = as.double(stats::rpois(nnz, 1.5) + 1),
        Dim = c(n_genes, n_cells),
        Dimnames = list(sprintf("gene%05d", seq_len(n_genes)),
            sprintf("cell%06d", seq_len(n_cells))))
    m
}

set.seed(0)
t_sim <- system.time(counts <- simulate_counts(n_cells, n_genes, density))[["elapsed"]]
sce <- SingleCellExperiment(list(counts = counts))
sce$batch <- factor(sample(c("a", "b", "c"), n_cells, replace = TRUE))
sce$cell_type <- factor(sample(sprintf("type_%d", 1:8), n_cells, replace = TRUE))
mat_mb <- as.numeric(utils::object.size(counts)) / 2^20
cat(sprintf("matrix: %d genes x %d cells, %.1f M non-zeros (%.1f%%), dgCMatrix %.0f MB (made in %.1f s)\n",
    n_genes, n_cells, length(counts@x) / 1e6, 100 * length(counts@x) / (n_genes * n_cells),
    mat_mb, t_sim))

# Start Python and import everything once, so neither is timed.
invisible(as_anndata(sce[seq_len(50), seq_len(20)]))
invisible(gc(full = TRUE))

t_ref <- system.time(tt <- Matrix::t(counts))[["elapsed"]]
rm(tt)
invisible(gc(full = TRUE))

rss0 <- status_kb("VmRSS")
reset_peak()
t_conv <- system.time(ad <- as_anndata(sce))[["elapsed"]]
peak_mb <- (status_kb("VmHWM") - rss0) / 1024

sp <- reticulate::import("scipy.sparse", convert = FALSE)
stopifnot(reticulate::py_to_r(sp$isspmatrix_csr(ad$X)))
stopifnot(identical(unlist(reticulate::py_to_r(ad$shape)), c(n_cells, n_genes)))
stopifnot(reticulate::py_to_r(ad$X$nnz) == length(counts@x))

cat(sprintf("as_anndata: %.2f s wall (target 10 s: ratio %.2f; Matrix::t() in R %.2f s: ratio %.2f)\n",
    t_conv, t_conv / 10, t_ref, t_conv / t_ref))
cat(sprintf("peak extra memory: %.0f MB = %.2f x the dgCMatrix (target < 2)\n",
    peak_mb, peak_mb / mat_mb))
cat(sprintf("X: %s (cells x genes), sparse CSR\n",
    paste(unlist(reticulate::py_to_r(ad$shape)), collapse = " x ")))
