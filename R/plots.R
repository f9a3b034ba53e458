# ggplot2 figures of a results data.frame (the one run_benchmark() or read_results()
# returns): the same figures as the HTML report of `sceval report`. Scores scaled
# between the controls, the overall ranking, usability and sensitivity curves come from
# the Python core (sceval.benchmark.analysis), so R and the report show the same numbers;
# only the drawing is done here.

utils::globalVariables(c("label", "column", "score", "raw", "xmin", "xmax", "ypos",
    "mean", "sd", "value", "x", "runtime", "line", "fill", "text", "metric", "model_kind",
    "group", "task"))

#' Plot the scIB-style summary table of a benchmark
#'
#' One row per model (best overall first) and one column per metric, grouped by task
#' and metric category: circles coloured and sized by the metric's mean over seeds
#' scaled between the negative control (0) and the positive control (1), with the raw
#' mean printed below; bars for the aggregate metrics, each task's score and the
#' overall score. The scaling and the scores are those of the HTML report (Python
#' `sceval.benchmark.analysis.scaled_scores()` and `overall_ranking()`): 0 = the worse
#' of the negative controls `shuffled` and `unintegrated`, 1 = the best control
#' (`labels`, or `shuffled` for batch mixing); without controls, min-max over models.
#' Task and overall scores average the scaled scores clipped to \[0, 1\].
#'
#' @param results A results `data.frame` from [run_benchmark()] or [read_results()]
#'   (columns `dataset`, `task`, `model`, `seed`, `metric`, `value` at least; a grid
#'   run's `params` column makes each hyperparameter setting a row of its own).
#' @param dataset The dataset to show; may be left `NULL` when there is only one.
#'
#' @return A `ggplot` object.
#' @seealso [plot_seeds()], [plot_sensitivity()], [plot_runtime()].
#' @examples
#' if (sceval_available() && requireNamespace("ggplot2", quietly = TRUE)) {
#'     res <- expand.grid(model = c("pca", "shuffled", "labels"), seed = 0:1,
#'         metric = c("nmi", "ilisi"), stringsAsFactors = FALSE)
#'     res <- cbind(dataset = "d", task = "integration", res)
#'     res$value <- runif(nrow(res))
#'     plot_summary(res)
#' }
#' @export
plot_summary <- function(results, dataset = NULL) {
    .need_ggplot()
    .check_results(results, "plot_summary", .plot_cols)
    results <- .pick_dataset(results, dataset)
    scaled <- .py_analysis("scaled_scores", results)
    rank <- .py_analysis("overall_ranking", results)
    if (nrow(rank) == 0L) {
        .stop("plot_summary(): no result has status 'ok'; nothing to plot.")
    }
    key <- function(d) paste(d$model, d$params, sep = "\r")
    scaled$label <- rank$label[match(key(scaled), key(rank))]
    cat_order <- c("bio", "batch", "classification", "other", "aggregate")
    cells <- list()
    for (task in unique(scaled$task)) {
        st <- scaled[scaled$task == task, , drop = FALSE]
        pos <- match(st$category, cat_order, nomatch = 4L)
        for (met in unique(st$metric[order(pos)])) {
            sm <- st[st$metric == met, , drop = FALSE]
            agg <- sm$category[1L] == "aggregate"
            cells[[length(cells) + 1L]] <- data.frame(label = sm$label, column = met,
                group = paste0(task, "\n", sm$category[1L]), bar = agg,
                score = if (agg) sm$mean else sm$scaled, raw = sm$mean,
                stringsAsFactors = FALSE)
        }
    }
    score_cols <- grep("^score_", names(rank), value = TRUE)
    for (col in c(score_cols, "overall")) {
        cells[[length(cells) + 1L]] <- data.frame(label = rank$label,
            column = sub("^score_", "", col), group = "scores", bar = TRUE,
            score = rank[[col]], raw = rank[[col]], stringsAsFactors = FALSE)
    }
    cells <- do.call(rbind, cells)
    cells <- cells[!is.na(cells$label), , drop = FALSE]
    groups <- unique(cells$group)
    cells$column_id <- paste(cells$group, cells$column, sep = "\r")
    ids <- unique(cells$column_id)
    cells$idx <- stats::ave(match(cells$column_id, ids), cells$group,
        FUN = function(i) match(i, unique(i)))
    cells$group <- factor(cells$group, levels = groups)
    cells$column <- factor(cells$column, levels = unique(cells$column))
    cells$label <- factor(cells$label, levels = rev(rank$label))
    cells$fill <- pmin(pmax(cells$score, 0), 1)
    cells$text <- ifelse(is.na(cells$raw), "", sprintf("%.2f", cells$raw))
    circles <- cells[!cells$bar & !is.na(cells$fill), , drop = FALSE]
    bars <- cells[cells$bar & !is.na(cells$fill), , drop = FALSE]
    bars$xmin <- bars$idx - 0.45
    bars$xmax <- bars$xmin + 0.9 * pmax(bars$fill, 0.02)
    bars$ypos <- as.numeric(bars$label)
    gg <- ggplot2::ggplot(cells, ggplot2::aes(x = column, y = label)) +
        ggplot2::geom_blank() +
        ggplot2::geom_rect(data = bars, ggplot2::aes(xmin = xmin, xmax = xmax,
            ymin = ypos - 0.35, ymax = ypos + 0.35, fill = fill), inherit.aes = FALSE) +
        ggplot2::geom_text(data = bars, ggplot2::aes(label = text), size = 2.3) +
        ggplot2::geom_point(data = circles, ggplot2::aes(size = fill, colour = fill)) +
        ggplot2::geom_text(data = circles, ggplot2::aes(label = text), size = 1.8,
            nudge_y = -0.38) +
        ggplot2::scale_colour_viridis_c(aesthetics = c("colour", "fill"), limits = c(0, 1),
            name = "scaled score\n(0 = negative,\n1 = positive control)") +
        ggplot2::scale_size_continuous(range = c(1, 6), limits = c(0, 1), guide = "none") +
        ggplot2::scale_x_discrete(position = "top") +
        ggplot2::facet_grid(cols = ggplot2::vars(group), scales = "free_x",
            space = "free_x", switch = "x") +
        ggplot2::labs(x = NULL, y = NULL, title = unique(results$dataset)) +
        ggplot2::theme_minimal(base_size = 9) +
        ggplot2::theme(panel.grid = ggplot2::element_blank(),
            axis.text.x.top = ggplot2::element_text(angle = 60, hjust = 0, vjust = 0),
            strip.placement = "outside",
            strip.text = ggplot2::element_text(face = "italic", size = 7))
    gg
}

#' Plot the spread of each metric over seeds
#'
#' For one dataset and task: a panel per metric, each model's value in every seed
#' (grey dots) and its mean +- sd over seeds (coloured by model kind). Rows with a
#' status other than `"ok"` are left out. Needs no Python.
#'
#' @inheritParams plot_summary
#' @param task The task to show; may be left `NULL` when there is only one.
#' @param metrics Metric keys to show (default: all of the task's metrics).
#'
#' @return A `ggplot` object.
#' @examples
#' if (requireNamespace("ggplot2", quietly = TRUE)) {
#'     res <- expand.grid(model = c("pca", "harmony"), seed = 0:2,
#'         metric = c("nmi", "ilisi"), stringsAsFactors = FALSE)
#'     res <- cbind(dataset = "d", task = "integration", res)
#'     res$value <- runif(nrow(res))
#'     plot_seeds(res)
#' }
#' @export
plot_seeds <- function(results, task = NULL, metrics = NULL, dataset = NULL) {
    .need_ggplot()
    .check_results(results, "plot_seeds", .plot_cols)
    res <- .ok_rows(.complete_results(results))
    dataset <- .pick_one(dataset, unique(res$dataset), "dataset", "plot_seeds")
    res <- res[res$dataset == dataset, , drop = FALSE]
    task <- .pick_one(task, unique(res$task), "task", "plot_seeds")
    res <- res[res$task == task, , drop = FALSE]
    if (!is.null(metrics)) {
        unknown <- setdiff(metrics, res$metric)
        if (length(unknown)) {
            .stop("plot_seeds(): metric(s) ", .enum(unknown), " are not in the ", task,
                " results; available: ", .enum(unique(res$metric)), ".")
        }
        res <- res[res$metric %in% metrics, , drop = FALSE]
    }
    res$label <- factor(.model_labels(res$model, res$params))
    res$metric <- factor(res$metric, levels = unique(res$metric))
    grp <- list(label = res$label, metric = res$metric, model_kind = res$model_kind)
    summ <- stats::aggregate(res["value"], grp, function(v) c(mean = mean(v),
        sd = if (length(v) > 1L) stats::sd(v) else 0))
    summ <- data.frame(summ[c("label", "metric", "model_kind")], mean = summ$value[, "mean"],
        sd = summ$value[, "sd"])
    ggplot2::ggplot(res, ggplot2::aes(x = label, y = value)) +
        ggplot2::geom_point(colour = "grey40", alpha = 0.6, size = 1,
            position = ggplot2::position_jitter(width = 0.12, height = 0, seed = 1L)) +
        ggplot2::geom_pointrange(data = summ, ggplot2::aes(y = mean, ymin = mean - sd,
            ymax = mean + sd, colour = model_kind),
            position = ggplot2::position_nudge(x = 0.25), size = 0.3) +
        ggplot2::facet_wrap(ggplot2::vars(metric), scales = "free_y") +
        ggplot2::labs(x = NULL, y = "value", colour = "model kind",
            title = paste0(dataset, " / ", task, ": seeds (grey) and mean \u00b1 sd")) +
        ggplot2::theme_bw(base_size = 9) +
        ggplot2::theme(axis.text.x = ggplot2::element_text(angle = 60, hjust = 1))
}

#' Plot metrics against a fine-tuning hyperparameter
#'
#' Sensitivity curves of a grid run: for one hyperparameter, each metric's mean over
#' seeds (+- sd) against the hyperparameter's value, one line per model, combination
#' of the other hyperparameters and (when there are several) dataset. The curve data
#' come from Python
#' `sceval.benchmark.analysis.sensitivity_curves()`.
#'
#' @inheritParams plot_summary
#' @param param The hyperparameter (a key of the `params` JSON, e.g.
#'   `"annotation.finetune_lr"`); may be left `NULL` when the grid has only one.
#' @param task Restrict to one task (default: every task, one panel per task and metric).
#'
#' @return A `ggplot` object.
#' @examples
#' if (sceval_available() && requireNamespace("ggplot2", quietly = TRUE)) {
#'     res <- expand.grid(lr = c(1e-4, 1e-3, 1e-2), seed = 0:1)
#'     res <- data.frame(dataset = "d", task = "annotation", model = "scgpt",
#'         seed = res$seed, metric = "knn_accuracy", value = runif(nrow(res)),
#'         params = sprintf('{"annotation.finetune_lr":%g}', res$lr))
#'     plot_sensitivity(res)
#' }
#' @export
plot_sensitivity <- function(results, param = NULL, task = NULL) {
    .need_ggplot()
    .check_results(results, "plot_sensitivity", c(.plot_cols, "params"))
    if (!is.null(task)) {
        task <- .pick_one(task, unique(results$task), "task", "plot_sensitivity")
        results <- results[results$task == task, , drop = FALSE]
    }
    curves <- .py_analysis("sensitivity_curves", results)
    if (nrow(curves) == 0L) {
        .stop("plot_sensitivity(): no hyperparameter grid in results: no model was run ",
            "with two or more settings of the 'params' column (a grid run's config ",
            "names them, e.g. annotation.finetune_lr: [1e-4, 1e-3]).")
    }
    param <- .pick_one(param, unique(curves$param), "param", "plot_sensitivity")
    cur <- curves[curves$param == param, , drop = FALSE]
    cur$line <- ifelse(cur$others == "{}", cur$model,
        .model_labels(cur$model, cur$others))
    if (length(unique(cur$dataset)) > 1L) {
        cur$line <- paste0(cur$line, " (", cur$dataset, ")")
    }
    cur$sd[is.na(cur$sd)] <- 0
    numeric <- !anyNA(cur$x)
    if (!numeric) {
        cur$x <- factor(cur$param_value, levels = unique(cur$param_value))
    }
    gg <- ggplot2::ggplot(cur, ggplot2::aes(x = x, y = mean, colour = line, group = line)) +
        ggplot2::geom_line() +
        ggplot2::geom_point(size = 1.2) +
        ggplot2::geom_errorbar(ggplot2::aes(ymin = mean - sd, ymax = mean + sd),
            width = 0) +
        ggplot2::facet_wrap(ggplot2::vars(task, metric), scales = "free_y") +
        ggplot2::labs(x = param, y = "mean over seeds (\u00b1 sd)", colour = NULL) +
        ggplot2::theme_bw(base_size = 9) +
        ggplot2::theme(legend.position = "bottom")
    if (numeric && all(cur$x > 0) && max(cur$x) / min(cur$x) >= 10) {
        gg <- gg + ggplot2::scale_x_log10()
    }
    gg
}

#' Plot score against runtime
#'
#' Each model (and hyperparameter setting): its score against its mean wall time per
#' grid cell (log scale), coloured by model kind. The score is the overall score of
#' [plot_summary()] or, with `task`, that task's score (Python
#' `sceval.benchmark.analysis.overall_ranking()` and `usability()`).
#'
#' @inheritParams plot_summary
#' @param task Plot this task's score against its runtime (default: the overall score
#'   against the runtime over all tasks).
#'
#' @return A `ggplot` object.
#' @examples
#' if (sceval_available() && requireNamespace("ggplot2", quietly = TRUE)) {
#'     res <- expand.grid(model = c("pca", "shuffled", "labels"), seed = 0:1,
#'         metric = "nmi", stringsAsFactors = FALSE)
#'     res <- cbind(dataset = "d", task = "integration", res)
#'     res$value <- runif(nrow(res))
#'     res$runtime_s <- runif(nrow(res), 1, 10)
#'     plot_runtime(res)
#' }
#' @export
plot_runtime <- function(results, task = NULL) {
    .need_ggplot()
    .check_results(results, "plot_runtime", c(.plot_cols, "runtime_s"))
    rank <- .py_analysis("overall_ranking", results)
    if (nrow(rank) == 0L) {
        .stop("plot_runtime(): no result has status 'ok'; nothing to plot.")
    }
    if (is.null(task)) {
        rank$score <- rank$overall
        rank$runtime <- rank$runtime_s_per_cell
        what <- "overall"
    } else {
        task <- .pick_one(task, sub("^score_", "", grep("^score_", names(rank), value = TRUE)),
            "task", "plot_runtime")
        use <- .py_analysis("usability", results, per_task = TRUE)
        use <- use[use$task == task, , drop = FALSE]
        key <- function(d) paste(d$model, d$model_kind, d$params, sep = "\r")
        rank$score <- rank[[paste0("score_", task)]]
        rank$runtime <- use$runtime_s_per_cell[match(key(rank), key(use))]
        what <- task
    }
    pts <- rank[!is.na(rank$score) & !is.na(rank$runtime), , drop = FALSE]
    if (nrow(pts) == 0L) {
        .stop("plot_runtime(): no model has both a score and a runtime_s; check that ",
            "the runtime_s column holds the cells' wall times.")
    }
    gg <- ggplot2::ggplot(pts, ggplot2::aes(x = runtime, y = score, colour = model_kind)) +
        ggplot2::geom_point(size = 2) +
        ggplot2::geom_text(ggplot2::aes(label = label), size = 2.5, hjust = -0.1,
            vjust = -0.3, show.legend = FALSE) +
        ggplot2::labs(x = "mean runtime per grid cell (s)", y = paste(what, "score"),
            colour = "model kind") +
        ggplot2::coord_cartesian(clip = "off") +
        ggplot2::theme_bw(base_size = 9)
    room <- ggplot2::expansion(mult = c(0.05, 0.35))
    gg <- gg + if (all(pts$runtime > 0)) {
        ggplot2::scale_x_log10(expand = room)
    } else {
        ggplot2::scale_x_continuous(expand = room)
    }
    gg
}

# --- helpers ------------------------------------------------------------------------

.plot_cols <- c("dataset", "task", "model", "seed", "metric", "value")
.controls <- c("shuffled", "unintegrated", "labels")

.need_ggplot <- function() {
    if (!requireNamespace("ggplot2", quietly = TRUE)) {
        .stop("package 'ggplot2' is needed for the plots but is not installed. Fix: ",
            "install.packages('ggplot2') (Debian: apt-get install r-cran-ggplot2).")
    }
}

.check_results <- function(results, fun, need) {
    if (!is.data.frame(results)) {
        .stop(fun, "(): results must be a data.frame from run_benchmark() or ",
            "read_results(); got ", class(results)[1L], ".")
    }
    missing <- setdiff(need, names(results))
    if (length(missing)) {
        .stop(fun, "(): results lacks the column(s) ", .enum(missing), "; expected a ",
            "data.frame from run_benchmark() or read_results() with the columns ",
            .enum(need), " at least.")
    }
    if (nrow(results) == 0L) {
        .stop(fun, "(): results has no rows.")
    }
    invisible(NULL)
}

# Fill the optional result columns so hand-made tables work too.
.complete_results <- function(results) {
    n <- nrow(results)
    if (!"model_kind" %in% names(results)) {
        results$model_kind <- ifelse(results$model %in% .controls, "control", "model")
    }
    defaults <- list(higher_is_better = NA, status = "ok", message = "",
        runtime_s = NA_real_, sceval_version = "", params = "{}")
    for (nm in names(defaults)) {
        if (!nm %in% names(results)) {
            results[[nm]] <- rep(defaults[[nm]], n)
        }
    }
    results$params[is.na(results$params) | results$params == ""] <- "{}"
    for (nm in c("dataset", "task", "model", "model_kind", "metric", "status", "message")) {
        results[[nm]] <- as.character(results[[nm]])
    }
    results$seed <- as.integer(results$seed)
    results$value <- as.double(results$value)
    results$higher_is_better <- as.logical(results$higher_is_better)
    results
}

.ok_rows <- function(results) {
    results[results$status == "ok" & !is.na(results$value), , drop = FALSE]
}

.pick_dataset <- function(results, dataset) {
    ds <- unique(as.character(results$dataset))
    dataset <- .pick_one(dataset, ds, "dataset", "plot_summary")
    results[results$dataset == dataset, , drop = FALSE]
}

# One value out of `avail`: the given one (checked) or the only one.
.pick_one <- function(x, avail, what, fun) {
    if (is.null(x)) {
        if (length(avail) == 1L) {
            return(avail)
        }
        .stop(fun, "(): results hold ", length(avail), " values of ", what, " (",
            .enum(avail), "); choose one with ", what, " = .")
    }
    if (!is.character(x) || length(x) != 1L || !x %in% avail) {
        .stop(fun, "(): ", what, " = ", .enum(as.character(x)), " is not in the results; ",
            "available: ", .enum(avail), ".")
    }
    x
}

# "scgpt" or "scgpt finetune_lr=0.001" from model and params JSON (as the report does).
.model_labels <- function(model, params) {
    p <- gsub('[{}" ]', "", params)
    p <- gsub("(^|,)[^,:]*\\.([^.,:]*):", "\\1\\2=", p)
    p <- gsub(":", "=", p, fixed = TRUE)
    ifelse(nzchar(p), paste(model, p), model)
}

# Call sceval.benchmark.analysis.<fun>(results, ...) and return a data.frame.
.py_analysis <- function(fun, results, ...) {
    results <- .complete_results(results)
    n <- nrow(results)
    analysis <- .sceval_module("benchmark.analysis")
    interop <- .interop()
    df <- .py_call(interop$frame_from_r, .columns_for_python(results, n, "results"),
        as.list(as.character(seq_len(n))), "results")
    res <- .py_call(analysis[[fun]], df, ...)
    .frame_from_python(interop$frame_to_r(res))
}
