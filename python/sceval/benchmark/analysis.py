"""Stability, sensitivity and scaled scores: pure functions on the results table.

Every function takes the long results table (one row per dataset, task, model, seed,
metric; see :data:`~sceval.benchmark.results.RESULT_COLUMNS`), either a plain
:func:`~sceval.benchmark.runner.run_benchmark` table or a grid table with the extra
columns ``cell``, ``params`` (canonical JSON of the cell's hyperparameters, ``"{}"``
when none), ``peak_mem_mb``, ``n_cells`` and ``subsample``. Only rows with
``status == "ok"`` count towards numbers; a model is identified by ``(model,
params)``, so each hyperparameter setting of a model is a contender of its own.

Scaling between controls (:func:`scaled_scores`) follows the Open Problems control
design (Luecken et al., Nat. Biotechnol. 2025): per (dataset, task, metric),

* **0** is the *worst* mean among the negative controls present, ``shuffled`` (rows
  permuted: destroys all cell-level structure; the zero of biological conservation and
  of annotation, where a classifier on it is at chance) and ``unintegrated`` (no batch
  correction: the zero of the batch-correction metrics, where ``shuffled`` mixes
  batches perfectly);
* **1** is the *best* mean among all controls present: ``labels`` (one-hot true labels,
  the upper bound of biology and annotation) or, for batch mixing, ``shuffled``.

"Worst" and "best" respect ``higher_is_better``. :func:`scaled_scores` does not clip
(a model may beat a control: > 1, or fall below it: < 0); :func:`overall_ranking`
clips to [0, 1] before averaging, so that a metric whose controls lie close together
cannot outweigh the others. Without a usable pair of controls (none
present, or the best control no better than the zero) the metric is min-max scaled
over the models instead, and the ``scale_note`` column says so.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd

from sceval.benchmark.results import RESULT_COLUMNS, summarize

__all__ = [
    "GRID_COLUMNS",
    "NEGATIVE_CONTROLS",
    "POSITIVE_CONTROLS",
    "metric_category",
    "model_label",
    "overall_ranking",
    "prepare",
    "rank_stability",
    "scaled_scores",
    "seed_ranks",
    "seed_summary",
    "sensitivity",
    "sensitivity_curves",
    "usability",
]

#: Columns a grid run adds to every row (absent from a plain ``run_benchmark`` table).
GRID_COLUMNS: dict[str, str] = {
    "cell": "string",
    "params": "string",
    "peak_mem_mb": "float64",
    "n_cells": "Int64",
    "subsample": "string",
}

#: Controls that define the zero of a scaled score (the worse of those present).
NEGATIVE_CONTROLS = ("shuffled", "unintegrated")
#: Controls that may define the one of a scaled score (the best control present).
POSITIVE_CONTROLS = ("labels", "shuffled", "unintegrated")

_KEY = ["dataset", "task", "model", "model_kind", "params"]


def prepare(results: pd.DataFrame) -> pd.DataFrame:
    """Check and normalize a results table (plain or grid) for analysis.

    Parameters
    ----------
    results
        A results table with at least the :data:`RESULT_COLUMNS`.

    Returns
    -------
    pandas.DataFrame
        A copy with the result columns typed as in the schema, ``params`` filled with
        ``"{}"`` where absent or empty, and the other grid columns present (NA when the
        table is a plain ``run_benchmark`` table).

    Raises
    ------
    ValueError
        When result columns are missing.
    """
    if not isinstance(results, pd.DataFrame):
        msg = (
            f"Expected a results table (pandas.DataFrame), got {type(results).__name__}. "
            "Pass the table returned by sceval.run_benchmark() or read from results.parquet."
        )
        raise TypeError(msg)
    missing = [c for c in RESULT_COLUMNS if c not in results.columns]
    if missing:
        msg = (
            f"The results table lacks the columns {missing}; expected the sceval results "
            f"schema {list(RESULT_COLUMNS)}. Pass a table from sceval.run_benchmark() or "
            "an OUTDIR/results.parquet written by `sceval run`."
        )
        raise ValueError(msg)
    df = results.copy()
    for col, dtype in RESULT_COLUMNS.items():
        if dtype == "string":
            df[col] = df[col].astype("string").fillna("")
        elif dtype == "boolean":
            df[col] = df[col].astype("boolean")
        elif dtype == "int64":
            df[col] = pd.to_numeric(df[col]).astype("int64")
        else:
            df[col] = pd.to_numeric(df[col], errors="coerce").astype("float64")
    for col, dtype in GRID_COLUMNS.items():
        if col not in df.columns:
            df[col] = pd.NA
        if dtype == "string":
            df[col] = df[col].astype("string").fillna("")
        elif dtype == "Int64":
            df[col] = pd.to_numeric(df[col], errors="coerce").astype("Int64")
        else:
            df[col] = pd.to_numeric(df[col], errors="coerce").astype("float64")
    df["params"] = df["params"].where(df["params"].str.strip() != "", "{}")
    return df.reset_index(drop=True)


def model_label(model: str, params: str) -> str:
    """A readable name of a contender: ``"pca"`` or ``"scgpt lr=0.001"``."""
    if not params or params == "{}":
        return str(model)
    try:
        parsed = json.loads(params)
    except (TypeError, ValueError):
        return f"{model} {params}"
    if not isinstance(parsed, dict):
        return f"{model} {params}"
    parts = [f"{k.rsplit('.', 1)[-1]}={_fmt_value(v)}" for k, v in parsed.items()]
    return f"{model} " + ",".join(parts)


def _fmt_value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, str):
        return v
    return json.dumps(v)


def metric_category(metric: str) -> str:
    """The category of a metric key (``"bio"``, ``"batch"``, ...; ``"other"`` if unknown)."""
    import sceval.tasks  # noqa: F401  (task modules register their metrics)
    from sceval.metrics._specs import METRICS

    return METRICS.get(metric).category if metric in METRICS else "other"


def seed_summary(results: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """Mean, sd and a t-based confidence interval over seeds, per hyperparameter setting.

    The statistics come from :func:`sceval.benchmark.results.summarize`, applied to each
    ``params`` setting.

    Parameters
    ----------
    results
        A results table (plain or grid).
    level
        Confidence level of the interval (default 0.95).

    Returns
    -------
    pandas.DataFrame
        One row per (dataset, task, model, model_kind, params, metric): ``n`` (seeds with
        status ok), ``mean``, ``sd`` (ddof=1), ``ci_low``, ``ci_high`` (mean -+
        t_{n-1, (1+level)/2} sd / sqrt(n); NA for n < 2), ``higher_is_better``,
        ``status`` and ``message``.
    """
    if not 0 < level < 1:
        msg = f"level must be in (0, 1), e.g. 0.95; got {level!r}."
        raise ValueError(msg)
    df = prepare(results)
    parts = []
    for params, grp in df.groupby("params", sort=False):
        summ = summarize(grp, level=level)
        summ.insert(4, "params", params)
        parts.append(summ)
    if not parts:
        empty = summarize(df, level=level)
        empty.insert(4, "params", pd.Series(dtype="string"))
        return empty
    return pd.concat(parts, ignore_index=True)


def _directions(df: pd.DataFrame) -> pd.Series:
    """Per metric: True when higher is better (unknown -> True)."""
    hib = df.groupby("metric", sort=False)["higher_is_better"].first()
    return hib.fillna(True).astype(bool)


def _select_metrics(df: pd.DataFrame, metric: str | Sequence[str] | None) -> pd.DataFrame:
    if metric is None:
        return df
    wanted = [metric] if isinstance(metric, str) else list(metric)
    unknown = [m for m in wanted if m not in set(df["metric"])]
    if unknown:
        avail = sorted(set(df["metric"]))
        msg = f"Metric(s) {unknown} are not in the results; available: {avail}."
        raise ValueError(msg)
    return df[df["metric"].isin(wanted)]


def seed_ranks(
    results: pd.DataFrame,
    metric: str | Sequence[str] | None = None,
    include_controls: bool = False,
) -> pd.DataFrame:
    """Rank the models within each seed, per (dataset, task, metric).

    Parameters
    ----------
    results
        A results table.
    metric
        Restrict to these metric keys (default: all).
    include_controls
        Rank the controls (``model_kind == "control"``) too. They are left out by
        default: their ranks are stable by design and would inflate rank stability.

    Returns
    -------
    pandas.DataFrame
        Columns dataset, task, metric, seed, model, model_kind, params, value and
        ``rank`` (1 = best, respecting ``higher_is_better``; ties share their mean rank).
    """
    full = prepare(results)
    hib = _directions(full)
    df = _select_metrics(full, metric)
    df = df[df["status"] == "ok"].dropna(subset=["value"])
    if not include_controls:
        df = df[df["model_kind"] != "control"]
    cols = ["dataset", "task", "metric", "seed", "model", "model_kind", "params", "value"]
    if df.empty:
        return pd.DataFrame(columns=[*cols, "rank"])
    # one value per contender and seed (several rows only if a cell was repeated)
    df = df.groupby(cols[:-1], sort=False, as_index=False)["value"].mean()
    asc = ~df["metric"].map(hib).astype(bool)
    signed = np.where(asc, df["value"], -df["value"])
    df["rank"] = (
        df.assign(_s=signed)
        .groupby(["dataset", "task", "metric", "seed"], sort=False)["_s"]
        .rank(method="average", ascending=True)
    )
    return df[[*cols, "rank"]].reset_index(drop=True)


def rank_stability(
    results: pd.DataFrame,
    metric: str | Sequence[str] | None = None,
    include_controls: bool = False,
) -> pd.DataFrame:
    """How stable the ranking of models is across seeds (mean pairwise Kendall tau).

    For every pair of seeds, Kendall's tau-b (:func:`scipy.stats.kendalltau`, which
    handles ties) is computed between the models' ranks over the models present in both
    seeds; the pairs' taus are averaged. 1 means every seed ranks the models the same.

    Parameters
    ----------
    results
        A results table.
    metric
        Restrict to these metric keys (default: all).
    include_controls
        Include the controls in the ranking (default False, see :func:`seed_ranks`).

    Returns
    -------
    pandas.DataFrame
        One row per (dataset, task, metric): ``n_seeds``, ``n_models``, ``n_pairs``
        (seed pairs with a defined tau), ``tau_mean``, ``tau_min`` and ``reason`` (why
        tau is NaN: fewer than 2 seeds, fewer than 2 models, or ranks that are all tied
        within a seed; empty when defined).
    """
    from scipy import stats

    ranks = seed_ranks(results, metric=metric, include_controls=include_controls)
    cols = ["dataset", "task", "metric", "n_seeds", "n_models", "n_pairs", "tau_mean"]
    cols += ["tau_min", "reason"]
    rows = []
    for (ds, task, met), grp in ranks.groupby(["dataset", "task", "metric"], sort=False):
        ident = grp["model"] + "\x00" + grp["params"]
        table = grp.assign(_id=ident).pivot_table(
            index="_id", columns="seed", values="rank", aggfunc="first"
        )
        seeds = list(table.columns)
        n_models = int(table.shape[0])
        taus: list[float] = []
        reason = ""
        if len(seeds) < 2:
            reason = f"fewer than 2 seeds ({len(seeds)})"
        elif n_models < 2:
            reason = f"fewer than 2 models ({n_models})"
        else:
            for a, b in combinations(seeds, 2):
                pair = table[[a, b]].dropna()
                if len(pair) < 2:
                    continue
                tau = stats.kendalltau(pair[a], pair[b]).statistic
                if np.isfinite(tau):
                    taus.append(float(tau))
            if not taus:
                reason = "no seed pair with 2+ shared, untied models (all ranks tied)"
        rows.append(
            {
                "dataset": ds,
                "task": task,
                "metric": met,
                "n_seeds": len(seeds),
                "n_models": n_models,
                "n_pairs": len(taus),
                "tau_mean": float(np.mean(taus)) if taus else np.nan,
                "tau_min": float(np.min(taus)) if taus else np.nan,
                "reason": reason,
            }
        )
    return pd.DataFrame(rows, columns=cols)


def _varied(summ: pd.DataFrame) -> pd.DataFrame:
    """Seed-summary rows of (dataset, task, model, metric) groups with 2+ settings."""
    ok = summ[(summ["status"] == "ok") & summ["mean"].notna()]
    keys = ["dataset", "task", "model", "metric"]
    n = ok.groupby(keys, sort=False)["params"].transform("nunique")
    return ok[n >= 2]


def sensitivity(results: pd.DataFrame) -> pd.DataFrame:
    """The spread of each metric over the hyperparameter grid.

    Parameters
    ----------
    results
        A grid results table (``params`` with 2+ settings per model); a table without
        a grid gives an empty frame.

    Returns
    -------
    pandas.DataFrame
        One row per (dataset, task, model, model_kind, metric) run with 2+ settings:
        ``n_settings``, ``range`` (max - min of the per-setting means over seeds),
        ``sd`` (sd of those means, ddof=1), ``best_params`` / ``best_mean`` and
        ``worst_params`` / ``worst_mean`` (respecting ``higher_is_better``).
        See :func:`sensitivity_curves` for the per-setting curve data.
    """
    summ = _varied(seed_summary(results))
    cols = ["dataset", "task", "model", "model_kind", "metric", "n_settings", "range", "sd"]
    cols += ["best_params", "best_mean", "worst_params", "worst_mean", "higher_is_better"]
    rows = []
    keys = ["dataset", "task", "model", "model_kind", "metric"]
    for key, grp in summ.groupby(keys, sort=False):
        hib = grp["higher_is_better"].iloc[0]
        higher = True if pd.isna(hib) else bool(hib)
        means = grp["mean"].astype(float).to_numpy()
        best = int(np.argmax(means) if higher else np.argmin(means))
        worst = int(np.argmin(means) if higher else np.argmax(means))
        rows.append(
            dict(
                zip(keys, key, strict=True),
                n_settings=len(grp),
                range=float(means.max() - means.min()),
                sd=float(np.std(means, ddof=1)),
                best_params=grp["params"].iloc[best],
                best_mean=float(means[best]),
                worst_params=grp["params"].iloc[worst],
                worst_mean=float(means[worst]),
                higher_is_better=hib,
            )
        )
    return pd.DataFrame(rows, columns=cols)


def sensitivity_curves(results: pd.DataFrame) -> pd.DataFrame:
    """Curve data for plotting a metric against each hyperparameter.

    Parameters
    ----------
    results
        A grid results table.

    Returns
    -------
    pandas.DataFrame
        One row per (dataset, task, model, metric, setting, hyperparameter name) of the
        models run with 2+ settings: ``param`` (the name, e.g.
        ``"annotation.finetune_lr"``), ``param_value`` (its JSON text), ``x`` (the value
        as a float; NaN when not numeric), ``others`` (JSON of the setting's other
        hyperparameters, to draw one line per combination), ``params`` (the whole
        setting), ``n``, ``mean``, ``sd``, ``ci_low``, ``ci_high``.
    """
    summ = _varied(seed_summary(results))
    base = ["dataset", "task", "model", "model_kind", "metric"]
    cols = [*base, "param", "param_value", "x", "others", "params"]
    cols += ["n", "mean", "sd", "ci_low", "ci_high", "higher_is_better"]
    rows = []
    for rec in summ.to_dict("records"):
        try:
            setting = json.loads(rec["params"])
        except (TypeError, ValueError):
            setting = {}
        if not isinstance(setting, dict):
            continue
        for name, value in setting.items():
            others = {k: v for k, v in setting.items() if k != name}
            is_num = isinstance(value, (int, float)) and not isinstance(value, bool)
            rows.append(
                {
                    **{k: rec[k] for k in base},
                    "param": name,
                    "param_value": json.dumps(value),
                    "x": float(value) if is_num else np.nan,
                    "others": json.dumps(others, sort_keys=True),
                    "params": rec["params"],
                    **{k: rec[k] for k in ("n", "mean", "sd", "ci_low", "ci_high")},
                    "higher_is_better": rec["higher_is_better"],
                }
            )
    out = pd.DataFrame(rows, columns=cols)
    return out.sort_values([*base, "param", "others", "x", "param_value"], kind="stable")


def _reference(ctrl: pd.Series, means: pd.Series, higher: bool) -> tuple[float, float, str]:
    """The means that scale to 0 and 1 (see the module docstring) and a note."""
    sign = 1.0 if higher else -1.0
    neg = ctrl.reindex([c for c in NEGATIVE_CONTROLS if c in ctrl.index])
    pos = ctrl.reindex([c for c in POSITIVE_CONTROLS if c in ctrl.index])
    if neg.empty:
        note = "min-max over models: no negative control (shuffled, unintegrated) run"
    else:
        zero_name, one_name = (neg * sign).idxmin(), (pos * sign).idxmax()
        zero, one = float(neg[zero_name]), float(pos[one_name])
        if sign * (one - zero) > 0:
            return zero, one, f"controls: 0={zero_name}, 1={one_name}"
        note = (
            f"min-max over models: no control scores better than the negative control {zero_name}"
        )
    zero = float(means.min() if higher else means.max())
    one = float(means.max() if higher else means.min())
    if one == zero:
        note += " (all models equal: scaled is NaN)"
    return zero, one, note


def scaled_scores(results: pd.DataFrame) -> pd.DataFrame:
    """Each model's mean over seeds scaled between the negative and positive controls.

    See the module docstring for which control is 0 and which is 1; ``scaled = (mean -
    zero) / (one - zero)``, so 0 = the negative control, 1 = the positive control and
    the direction of the metric is respected. When the controls themselves were run at
    several hyperparameter settings (a task-level grid), each setting is scaled by the
    controls of the same setting; other rows use each control's mean over its settings.

    Parameters
    ----------
    results
        A results table.

    Returns
    -------
    pandas.DataFrame
        One row per (dataset, task, model, model_kind, params, metric) with a mean:
        ``category`` (see :func:`metric_category`), ``n``, ``mean``, ``scaled``,
        ``zero`` and ``one`` (the means that map to 0 and 1) and ``scale_note``
        (``"controls: 0=shuffled, 1=labels"``, or why min-max over models was used).
    """
    summ = seed_summary(results)
    summ = summ[(summ["status"] == "ok") & summ["mean"].notna()].copy()
    cols = [*_KEY, "metric", "category", "higher_is_better", "n", "mean", "scaled"]
    cols += ["zero", "one", "scale_note"]
    if summ.empty:
        return pd.DataFrame(columns=cols)
    parts = []
    for (_, _, met), grp in summ.groupby(["dataset", "task", "metric"], sort=False):
        hib = grp["higher_is_better"].iloc[0]
        higher = True if pd.isna(hib) else bool(hib)
        controls = grp[grp["model_kind"] == "control"]
        ctrl_all = controls.groupby("model")["mean"].mean()
        for params, sub in grp.groupby("params", sort=False):
            # a control run at this hyperparameter setting (a task-level grid) is the
            # reference of this setting; otherwise its mean over its settings
            ctrl = ctrl_all.copy()
            ctrl.update(controls[controls["params"] == params].groupby("model")["mean"].mean())
            zero, one, note = _reference(ctrl, grp["mean"].astype(float), higher)
            if pd.isna(hib):
                note += "; direction unknown, assumed higher is better"
            span = one - zero
            sub = sub.copy()
            sub["scaled"] = (sub["mean"] - zero) / span if span != 0 else np.nan
            sub["zero"], sub["one"], sub["scale_note"] = zero, one, note
            sub["category"] = metric_category(str(met))
            parts.append(sub)
    out = pd.concat(parts, ignore_index=True)
    return out[cols].reset_index(drop=True)


def usability(results: pd.DataFrame, per_task: bool = False) -> pd.DataFrame:
    """Mean wall time and peak memory per grid cell of each model setting.

    Parameters
    ----------
    results
        A results table. A grid cell is one ``cell`` hash; in a plain ``run_benchmark``
        table (no ``cell`` column) it is one (dataset, task, seed) run of a model.
    per_task
        One row per task as well (default: over all tasks).

    Returns
    -------
    pandas.DataFrame
        Per (``task``,) model, model_kind, params: ``runtime_s_per_cell`` (mean of the
        cells' ``runtime_s``), ``peak_mem_mb_per_cell`` (NaN without the grid column
        ``peak_mem_mb``) and ``n_grid_cells``.
    """
    df = prepare(results)
    has_cell = len(df) > 0 and bool(df["cell"].str.len().gt(0).all())
    cell_key = ["cell"] if has_cell else ["dataset", "task", "seed"]
    ident = [*(["task"] if per_task else []), "model", "model_kind", "params"]
    group = list(dict.fromkeys([*cell_key, *ident]))
    per_cell = df.groupby(group, sort=False).agg(
        runtime_s=("runtime_s", "max"), peak_mem_mb=("peak_mem_mb", "max")
    )
    use = (
        per_cell.reset_index()
        .groupby(ident, sort=False)
        .agg(
            runtime_s_per_cell=("runtime_s", "mean"),
            peak_mem_mb_per_cell=("peak_mem_mb", "mean"),
            n_grid_cells=("runtime_s", "size"),
        )
    )
    return use.reset_index()


def overall_ranking(results: pd.DataFrame, clip: bool = True) -> pd.DataFrame:
    """Rank models by their scaled scores averaged within tasks, then across tasks.

    Within a (dataset, task), a model's task score is the mean over metric categories
    (``bio``, ``batch``, ``classification``, ...) of the mean scaled score of that
    category's metrics, so a category with many metrics does not outweigh one with
    few; aggregate metrics (``total``, ``bio_conservation``, ``batch_correction``) are
    left out because they re-weight the others (they are used only for a task that
    reports nothing else). Task scores are averaged over datasets, then ``overall`` is
    the mean over tasks.

    Parameters
    ----------
    results
        A results table.
    clip
        Clip each scaled score to [0, 1] before averaging (default), as Open Problems
        does: a metric whose controls lie close together scales to large values, and
        one such metric would otherwise outweigh the others. ``False`` averages the
        raw scaled scores.

    Returns
    -------
    pandas.DataFrame
        One row per (model, model_kind, params), best first: ``label``, one
        ``score_<task>`` column per task, ``overall``, ``rank`` (1 = best; NaN overall
        is ranked last), ``n_tasks`` (tasks with a score), and the usability columns
        ``runtime_s_per_cell`` (mean wall time of the model's grid cells; in a plain
        ``run_benchmark`` table, of its (dataset, task, seed) runs), ``peak_mem_mb_per_cell``
        (NaN when the grid column ``peak_mem_mb`` is absent) and ``n_grid_cells``.
    """
    df = prepare(results)
    scaled = scaled_scores(df)
    ident = ["model", "model_kind", "params"]
    base_cols = [*ident, "label", "overall", "rank", "n_tasks"]
    use_cols = ["runtime_s_per_cell", "peak_mem_mb_per_cell", "n_grid_cells"]
    if scaled.empty:
        return pd.DataFrame(columns=base_cols + use_cols)
    not_agg = scaled["category"] != "aggregate"
    only_agg = ~not_agg.groupby([scaled["dataset"], scaled["task"]]).transform("any")
    use = scaled[not_agg | only_agg]
    if clip:
        use = use.assign(scaled=use["scaled"].clip(0.0, 1.0))
    per_cat = use.groupby(["dataset", "task", *ident, "category"], sort=False)["scaled"].mean()
    per_task_ds = per_cat.groupby(["dataset", "task", *ident], sort=False).mean()
    per_task = per_task_ds.groupby(["task", *ident], sort=False).mean().reset_index()
    wide = per_task.set_index([*ident, "task"])["scaled"].unstack("task")
    tasks = list(dict.fromkeys(per_task["task"]))
    wide = wide.reindex(columns=tasks)
    wide.columns = [f"score_{t}" for t in tasks]
    wide = wide.reset_index()
    score_cols = [f"score_{t}" for t in tasks]
    wide["overall"] = wide[score_cols].mean(axis=1, skipna=True)
    wide["n_tasks"] = wide[score_cols].notna().sum(axis=1).astype(int)
    wide["label"] = [model_label(m, p) for m, p in zip(wide["model"], wide["params"], strict=True)]
    wide = wide.merge(usability(df), on=ident, how="left")
    wide = wide.sort_values("overall", ascending=False, na_position="last", kind="stable")
    wide["rank"] = wide["overall"].rank(ascending=False, method="min")
    cols = [*ident, "label", *score_cols, "overall", "rank", "n_tasks", *use_cols]
    return wide[cols].reset_index(drop=True)
