# plot_summary(), plot_seeds(), plot_sensitivity(), plot_runtime() and read_results()
# on small synthetic results data.frames shaped like run_benchmark()'s (+ grid columns).

synthetic_results <- function(grid = FALSE, seeds = 0:2) {
    means <- list(
        integration = list(
            nmi = c(shuffled = 0.1, unintegrated = 0.6, labels = 1.0, pca = 0.7),
            ilisi = c(shuffled = 0.9, unintegrated = 0.2, labels = 0.8, pca = 0.5),
            total = c(shuffled = 0.4, unintegrated = 0.4, labels = 0.9, pca = 0.6)),
        annotation = list(
            knn_accuracy = c(shuffled = 0.25, unintegrated = 0.8, labels = 1.0, pca = 0.85)))
    set.seed(1)
    rows <- list()
    for (task in names(means)) {
        for (metric in names(means[[task]])) {
            m <- means[[task]][[metric]]
            for (seed in seeds) {
                rows[[length(rows) + 1L]] <- data.frame(task = task, model = names(m),
                    params = "{}", seed = seed, metric = metric,
                    value = m + stats::rnorm(length(m), sd = 0.02),
                    runtime_s = ifelse(names(m) == "pca", 2, 0.5), peak_mem_mb = 150)
                if (grid) {
                    for (lr in c(0.001, 0.01)) {
                        rows[[length(rows) + 1L]] <- data.frame(task = task, model = "scgpt",
                            params = sprintf('{"annotation.finetune_lr":%g}', lr),
                            seed = seed, metric = metric,
                            value = 0.6 + 10 * lr + stats::rnorm(1, sd = 0.02),
                            runtime_s = 5, peak_mem_mb = 900)
                    }
                }
            }
        }
    }
    res <- do.call(rbind, rows)
    kinds <- c(shuffled = "control", unintegrated = "control", labels = "control",
        pca = "baseline", scgpt = "foundation")
    out <- data.frame(dataset = "sim", task = res$task, model = res$model,
        model_kind = unname(kinds[res$model]), seed = as.integer(res$seed),
        metric = res$metric, value = res$value, higher_is_better = TRUE, status = "ok",
        message = "", runtime_s = res$runtime_s, sceval_version = "0.1.0",
        stringsAsFactors = FALSE)
    if (grid) {
        out$cell <- as.character(as.integer(factor(paste(res$task, res$model, res$params,
            res$seed))))
        out$params <- res$params
        out$peak_mem_mb <- res$peak_mem_mb
        out$n_cells <- 200L
        out$subsample <- ""
    }
    rownames(out) <- NULL
    out
}

builds <- function(p) {
    expect_s3_class(p, "ggplot")
    b <- ggplot2::ggplot_build(p)
    expect_true(length(b$data) >= 1L && nrow(b$data[[1L]]) > 0L)
    invisible(b)
}

test_that("plot_seeds draws every seed and the mean +- sd, without Python", {
    testthat::skip_if_not_installed("ggplot2")
    res <- synthetic_results()
    b <- builds(plot_seeds(res, task = "integration"))
    expect_equal(nrow(b$data[[1L]]), sum(res$task == "integration")) # one dot per row
    expect_equal(nrow(b$data[[2L]]), 4L * 3L) # models x metrics
    b <- builds(plot_seeds(res[res$task == "annotation", ], metrics = "knn_accuracy"))
    pca <- res$value[res$model == "pca" & res$metric == "knn_accuracy"]
    expect_equal(sort(b$data[[2L]]$y), sort(tapply(res$value[res$metric == "knn_accuracy"],
        res$model[res$metric == "knn_accuracy"], mean)), ignore_attr = TRUE)
    expect_true(any(abs(b$data[[2L]]$ymax - b$data[[2L]]$y - stats::sd(pca)) < 1e-12))
    g <- synthetic_results(grid = TRUE)
    p <- plot_seeds(g, task = "annotation")
    expect_true("scgpt finetune_lr=0.001" %in% levels(p$data$label))
    # failed rows are left out; minimal hand-made tables work
    res$status[1L] <- "failed"
    expect_equal(nrow(builds(plot_seeds(res, task = "integration"))$data[[1L]]),
        sum(res$task == "integration") - 1L)
    mini <- data.frame(dataset = "d", task = "t", model = c("a", "b"), seed = 0L,
        metric = "m", value = c(0.1, 0.2))
    builds(plot_seeds(mini))
    # one dataset at a time
    two <- rbind(mini, transform(mini, dataset = "e", value = c(5, 6)))
    expect_error(plot_seeds(two), regexp = "2 values of dataset \\('d', 'e'\\)")
    b <- builds(plot_seeds(two, dataset = "e"))
    expect_equal(sort(b$data[[1L]]$y), c(5, 6))
})

test_that("plot_seeds validates its input", {
    testthat::skip_if_not_installed("ggplot2")
    res <- synthetic_results()
    expect_error(plot_seeds(res[, setdiff(names(res), c("value", "seed"))]),
        regexp = "plot_seeds\\(\\): results lacks the column\\(s\\) 'seed', 'value'")
    expect_error(plot_seeds(list(a = 1)), regexp = "must be a data.frame .* got list")
    expect_error(plot_seeds(res), regexp = "2 values of task .*choose one with task =")
    expect_error(plot_seeds(res, task = "nope"),
        regexp = "task = 'nope' is not in the results; available: 'integration'")
    expect_error(plot_seeds(res, task = "annotation", metrics = "nmi"),
        regexp = "metric\\(s\\) 'nmi' are not in the annotation results")
    expect_error(plot_seeds(res[0, ]), regexp = "results has no rows")
})

test_that("plot_summary draws the scaled scores of the Python analysis", {
    testthat::skip_if_not_installed("ggplot2")
    skip_if_no_python()
    res <- synthetic_results()
    p <- plot_summary(res)
    b <- builds(p)
    cells <- p$data
    # pca on nmi: (0.7 - 0.1) / (1.0 - 0.1) up to the seed noise
    nmi <- cells$score[cells$column == "nmi" & cells$label == "pca"]
    expect_equal(nmi, 2 / 3, tolerance = 0.05)
    expect_setequal(as.character(unique(cells$column)),
        c("nmi", "ilisi", "total", "knn_accuracy", "integration", "annotation", "overall"))
    expect_equal(levels(cells$label)[4L], "labels") # best overall on top
    g <- synthetic_results(grid = TRUE)
    p <- plot_summary(g, dataset = "sim")
    builds(p)
    expect_true("scgpt finetune_lr=0.01" %in% levels(p$data$label))
})

test_that("plot_summary validates its input", {
    testthat::skip_if_not_installed("ggplot2")
    res <- synthetic_results()
    expect_error(plot_summary(res[, setdiff(names(res), "metric")]),
        regexp = "plot_summary\\(\\): results lacks the column\\(s\\) 'metric'")
    two <- rbind(res, transform(res, dataset = "other"))
    expect_error(plot_summary(two), regexp = "2 values of dataset \\('sim', 'other'\\)")
    expect_error(plot_summary(res, dataset = "x"), regexp = "dataset = 'x' is not in")
})

test_that("plot_sensitivity draws the grid curves", {
    testthat::skip_if_not_installed("ggplot2")
    skip_if_no_python()
    g <- synthetic_results(grid = TRUE)
    p <- plot_sensitivity(g, task = "annotation")
    b <- builds(p)
    expect_equal(sort(unique(b$plot$data$x)), c(0.001, 0.01))
    expect_equal(nrow(p$data), 2L) # knn_accuracy at two learning rates
    m <- tapply(g$value[g$model == "scgpt" & g$metric == "knn_accuracy"],
        g$params[g$model == "scgpt" & g$metric == "knn_accuracy"], mean)
    expect_equal(sort(p$data$mean), sort(unname(as.numeric(m))))
    builds(plot_sensitivity(g, param = "annotation.finetune_lr"))
    two <- rbind(g, transform(g, dataset = "other"))
    p <- plot_sensitivity(two, task = "annotation")
    expect_setequal(unique(p$data$line), c("scgpt (sim)", "scgpt (other)"))
})

test_that("plot_sensitivity validates its input", {
    testthat::skip_if_not_installed("ggplot2")
    res <- synthetic_results()
    expect_error(plot_sensitivity(res),
        regexp = "plot_sensitivity\\(\\): results lacks the column\\(s\\) 'params'")
    skip_if_no_python()
    res$params <- "{}"
    expect_error(plot_sensitivity(res), regexp = "no hyperparameter grid in results")
    g <- synthetic_results(grid = TRUE)
    expect_error(plot_sensitivity(g, param = "lr"),
        regexp = "param = 'lr' is not in the results; available: 'annotation.finetune_lr'")
})

test_that("plot_runtime draws score against runtime per grid cell", {
    testthat::skip_if_not_installed("ggplot2")
    skip_if_no_python()
    g <- synthetic_results(grid = TRUE)
    p <- plot_runtime(g)
    builds(p)
    expect_equal(p$data$runtime[p$data$model == "pca"], 2)
    expect_equal(unique(p$data$runtime[p$data$model == "scgpt"]), 5)
    p <- plot_runtime(g, task = "annotation")
    builds(p)
    expect_equal(p$data$score[p$data$label == "labels"], 1, tolerance = 1e-9)
    expect_error(plot_runtime(g, task = "nope"), regexp = "task = 'nope' is not in")
    expect_error(plot_runtime(g[, setdiff(names(g), "runtime_s")]),
        regexp = "lacks the column\\(s\\) 'runtime_s'")
})

test_that("read_results reads results.csv with the right column types", {
    out <- tempfile()
    dir.create(out)
    g <- synthetic_results(grid = TRUE)
    g$message[1L] <- "a, \"quoted\" message"
    g$value[2L] <- NA
    g$dataset <- "NA" # a dataset named NA stays a string
    utils::write.csv(g, file.path(out, "results.csv"), row.names = FALSE, na = "")
    back <- read_results(out)
    expect_equal(back, g, ignore_attr = TRUE)
    expect_type(back$seed, "integer")
    expect_type(back$n_cells, "integer")
    expect_type(back$higher_is_better, "logical")
    expect_type(back$cell, "character")
    expect_identical(back$dataset[1L], "NA")
    expect_identical(read_results(file.path(out, "results.csv")), back)
    expect_error(read_results(file.path(out, "nope")), regexp = "does not exist")
    expect_error(read_results(1), regexp = "outdir must be one path")
    empty <- tempfile()
    dir.create(empty)
    expect_error(read_results(empty), regexp = "no results in .*Fix: run `sceval run")
    utils::write.csv(data.frame(a = 1), file.path(empty, "results.csv"))
    expect_error(read_results(empty), regexp = "not an sceval results table: the column")
})

test_that("read_results reads parquet and grid cells through Python", {
    skip_if_no_python()
    out <- tempfile()
    dir.create(file.path(out, "cells"), recursive = TRUE)
    g <- synthetic_results(grid = TRUE)
    pd <- reticulate::import("pandas", convert = FALSE)
    df <- sceval:::.interop()$frame_from_r(sceval:::.columns_for_python(g, nrow(g), "r"),
        as.list(as.character(seq_len(nrow(g)))), "r")
    df$to_parquet(file.path(out, "cells", "all.parquet"), index = FALSE)
    back <- read_results(out)
    expect_equal(nrow(back), nrow(g))
    expect_equal(back$value, g$value)
    expect_type(back$seed, "integer")
    expect_identical(back$params, g$params)
    builds(plot_seeds(back, task = "integration"))
})
