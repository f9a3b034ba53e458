"""``sceval report OUTDIR``: figures and a self-contained HTML report of a benchmark run.

The report reads the output folder of ``sceval run`` (``results.parquet``, else
``results.csv``, else the finished cells ``cells/*.parquet``; and ``run.json`` when
present) and writes ``figures/*.png`` and ``report.html``. The HTML embeds its figures
as base64 ``data:`` URIs and has no external CSS, JavaScript or links, so the one file
can be mailed or archived. Every text that comes from the data is HTML-escaped. Files
are written atomically (temp file + rename).

Sections: an scIB-style summary table figure per dataset (metrics coloured by their
score scaled between the controls, task scores and the overall score as bars), the
overall ranking with the usability columns (runtime and peak memory per grid cell),
per-task plots of the seed spread, hyperparameter sensitivity curves (grid runs only),
runtime vs score, rank stability across seeds, the models that did not run, and the
run record.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import json
import math
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sceval import __version__
from sceval.benchmark import analysis as A
from sceval.benchmark.results import atomic_write

__all__ = ["load_results", "load_run_record", "write_report"]

#: Facets drawn per figure (a task with more metrics shows its first ones, in order).
MAX_FACETS = 12
_CATEGORY_ORDER = ["bio", "batch", "classification", "other", "aggregate"]
_KIND_COLORS = {
    "control": "#7f7f7f",
    "baseline": "#1f77b4",
    "foundation": "#d62728",
    "external": "#2ca02c",
}


# --- input -----------------------------------------------------------------------------


def _read_table(path: Path) -> pd.DataFrame:
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    string_cols = ["dataset", "task", "model", "model_kind", "metric", "status", "message"]
    string_cols += ["sceval_version", "cell", "params", "subsample"]
    # strings stay as written ("" is an empty message, "NA" a name); numbers and flags
    # written as "" by pandas are missing
    missing = ["", "NA", "nan", "NaN", "<NA>"]
    numeric = ["seed", "value", "higher_is_better", "runtime_s", "peak_mem_mb", "n_cells"]
    return pd.read_csv(path, dtype=dict.fromkeys(string_cols, str), keep_default_na=False,
                       na_values=dict.fromkeys(numeric, missing))  # fmt: skip


def load_results(outdir: str | Path) -> tuple[pd.DataFrame, str]:
    """Read the results of an output folder.

    Parameters
    ----------
    outdir
        The folder written by ``sceval run`` (or by :func:`write_results`).

    Returns
    -------
    tuple
        The results table (checked and typed by :func:`sceval.benchmark.analysis.prepare`)
        and the name of what it was read from (``"results.parquet"``, ``"results.csv"`` or
        ``"cells/*.parquet (N files)"``).

    Raises
    ------
    FileNotFoundError
        When the folder does not exist or holds no results.
    ValueError
        When the results are not an sceval results table or have no rows.
    """
    out = Path(outdir)
    if not out.is_dir():
        msg = (
            f"Output folder {str(out)!r} does not exist (or is not a folder). Fix: pass the "
            "folder that `sceval run --out` (or the config's output folder) wrote."
        )
        raise FileNotFoundError(msg)
    cells = sorted((out / "cells").glob("*.parquet")) if (out / "cells").is_dir() else []
    if (out / "results.parquet").is_file():
        df, source = _read_table(out / "results.parquet"), "results.parquet"
    elif (out / "results.csv").is_file():
        df, source = _read_table(out / "results.csv"), "results.csv"
    elif cells:
        df = pd.concat([pd.read_parquet(p) for p in cells], ignore_index=True)
        source = f"cells/*.parquet ({len(cells)} files)"
    else:
        msg = (
            f"No results in {str(out)!r}: expected results.parquet, results.csv or "
            "cells/*.parquet. Fix: run `sceval run ... --out "
            f"{out}` first (finished grid cells are written to {out / 'cells'})."
        )
        raise FileNotFoundError(msg)
    try:
        df = A.prepare(df)
    except ValueError as err:
        msg = f"{source} in {str(out)!r} is not an sceval results table: {err}"
        raise ValueError(msg) from None
    if df.empty:
        msg = (
            f"{source} in {str(out)!r} has no rows. Fix: rerun `sceval run` into this "
            "folder; it writes one row per dataset, task, model, seed and metric."
        )
        raise ValueError(msg)
    return df, source


def load_run_record(outdir: str | Path) -> tuple[dict[str, Any] | None, str]:
    """``run.json`` of an output folder: (record, note); ``None`` with a note if absent
    or unreadable (the report then says so instead of failing)."""
    path = Path(outdir) / "run.json"
    if not path.is_file():
        return None, "No run.json in the output folder (a plain run_benchmark table)."
    try:
        rec = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        return None, f"run.json could not be read: {err}"
    if not isinstance(rec, dict):
        return None, f"run.json holds a {type(rec).__name__}, expected an object."
    return rec, ""


# --- figures ---------------------------------------------------------------------------


def _new_figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(max(width, 3.0), max(height, 2.0)), dpi=100, layout="constrained")


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()


def _ordered_metrics(sub: pd.DataFrame) -> list[str]:
    metrics = list(dict.fromkeys(sub["metric"]))
    cat = {m: A.metric_category(m) for m in metrics}
    order = {c: i for i, c in enumerate(_CATEGORY_ORDER)}
    return sorted(metrics, key=lambda m: order.get(cat[m], len(order) - 1))


def _labels(frame: pd.DataFrame) -> list[str]:
    return [A.model_label(m, p) for m, p in zip(frame["model"], frame["params"], strict=True)]


def _summary_figure(df: pd.DataFrame, dataset: str) -> bytes | None:
    """scIB-style table: rows = models (best first), circles = metrics coloured and sized
    by the scaled score (raw mean printed), bars = aggregate metrics, task scores and
    the overall score."""
    import matplotlib as mpl
    from matplotlib.patches import Rectangle

    sub = df[df["dataset"] == dataset]
    scaled = A.scaled_scores(sub)
    rank = A.overall_ranking(sub)
    if scaled.empty or rank.empty:
        return None
    labels = rank["label"].tolist()
    row_of = {lab: i for i, lab in enumerate(labels)}
    scaled = scaled.assign(label=_labels(scaled))

    def column(group: str, name: str, bar: bool, lab: Any, score: Any, raw: Any) -> dict:
        cells = dict(zip(lab, zip(score, raw, strict=True), strict=True))
        return {"group": group, "name": name, "bar": bar, "cells": cells}

    cols: list[dict[str, Any]] = []
    for task in dict.fromkeys(scaled["task"]):
        st = scaled[scaled["task"] == task]
        for met in _ordered_metrics(st):
            sm = st[st["metric"] == met]
            cat = str(sm["category"].iloc[0])
            agg = cat == "aggregate"  # a score itself: its raw mean as a bar
            score = sm["mean"] if agg else sm["scaled"]
            cols.append(column(f"{task}: {cat}", met, agg, sm["label"], score, sm["mean"]))
    for task in [c[len("score_") :] for c in rank.columns if c.startswith("score_")]:
        vals = rank[f"score_{task}"]
        cols.append(column("scores", task, True, rank["label"], vals, vals))
    cols.append(column("scores", "overall", True, rank["label"], rank["overall"], rank["overall"]))
    nrow, ncol = len(labels), len(cols)
    cmap = mpl.colormaps["viridis"]
    fig = _new_figure(max(6.0, 1.8 + 0.55 * ncol), 2.4 + 0.42 * nrow)
    ax = fig.add_subplot()
    for j, col in enumerate(cols):
        for lab, (score, raw) in col["cells"].items():
            if lab not in row_of or score is None or not np.isfinite(score):
                continue
            y = nrow - 1 - row_of[lab]
            c = float(np.clip(score, 0.0, 1.0))
            if col["bar"]:
                ax.add_patch(Rectangle((j - 0.45, y - 0.32), 0.9 * max(c, 0.02), 0.64,
                                       color=cmap(c)))  # fmt: skip
                ax.text(j, y, f"{raw:.2f}", ha="center", va="center", fontsize=6.5)
            else:
                ax.scatter([j], [y + 0.08], s=30 + 170 * c, color=cmap(c), linewidths=0)
                ax.text(j, y - 0.22, f"{raw:.2f}", ha="center", va="top", fontsize=5.5)
    ax.set_xlim(-0.6, ncol - 0.4)
    ax.set_ylim(-0.7, nrow - 0.4)
    ax.set_yticks(range(nrow), labels[::-1], fontsize=8)
    ax.set_xticks(range(ncol), [c["name"] for c in cols], rotation=60, ha="left", fontsize=7)
    ax.xaxis.tick_top()
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    groups = [c["group"] for c in cols]
    start = 0
    for j in range(1, ncol + 1):
        if j == ncol or groups[j] != groups[start]:
            if start > 0:
                ax.axvline(start - 0.5, color="#cccccc", lw=0.8)
            ax.text((start + j - 1) / 2, -0.75, groups[start].replace(": ", "\n"), ha="center",
                    va="top", fontsize=6.5 if j - start > 1 else 5.5, style="italic")  # fmt: skip
            start = j
    sm = mpl.cm.ScalarMappable(norm=mpl.colors.Normalize(0, 1), cmap=cmap)
    bar = fig.colorbar(sm, ax=ax, location="bottom", shrink=0.3, aspect=30, pad=0.08)
    bar.set_label("scaled score: 0 = negative control, 1 = positive control", fontsize=7)
    bar.ax.tick_params(labelsize=6)
    ax.set_title(str(dataset), fontsize=9)
    return _png(fig)


def _seed_figure(df: pd.DataFrame, dataset: str, task: str, order: list[str]) -> bytes | None:
    """Per metric: each model's seed values (dots) and mean +- sd, on one dataset."""
    keep = (df["dataset"] == dataset) & (df["task"] == task) & (df["status"] == "ok")
    sub = df[keep].dropna(subset=["value"])
    if sub.empty:
        return None
    sub = sub.assign(label=_labels(sub))
    labels = [lab for lab in order if lab in set(sub["label"])]
    labels += sorted(set(sub["label"]) - set(labels))
    metrics = _ordered_metrics(sub)[:MAX_FACETS]
    ncol = min(4, len(metrics))
    nrow = math.ceil(len(metrics) / ncol)
    fig = _new_figure(ncol * (1.2 + 0.32 * len(labels)), nrow * 2.9)
    axes = fig.subplots(nrow, ncol, squeeze=False)
    rng = np.random.default_rng(0)
    kinds = sub.drop_duplicates("label").set_index("label")["model_kind"]
    for k, ax in enumerate(axes.flat):
        if k >= len(metrics):
            ax.set_visible(False)
            continue
        sm = sub[sub["metric"] == metrics[k]]
        for i, lab in enumerate(labels):
            v = sm.loc[sm["label"] == lab, "value"].to_numpy(dtype=float)
            if v.size == 0:
                continue
            color = _KIND_COLORS.get(str(kinds.get(lab, "")), "#9467bd")
            ax.scatter(i + rng.uniform(-0.15, 0.15, v.size), v, s=9, color="#444444",
                       alpha=0.6, zorder=2, linewidths=0)  # fmt: skip
            sd = float(np.std(v, ddof=1)) if v.size > 1 else 0.0
            ax.errorbar(i + 0.25, v.mean(), yerr=sd, fmt="o", color=color, ms=4, capsize=2,
                        zorder=3)  # fmt: skip
        ax.set_title(metrics[k], fontsize=8)
        ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right", fontsize=6)
        ax.tick_params(axis="y", labelsize=7)
        ax.grid(axis="y", color="#eeeeee")
    fig.suptitle(
        f"{dataset} / {task}: seeds (grey dots) and mean ± sd (coloured by model kind)",
        fontsize=9,
    )
    return _png(fig)


def _sensitivity_figure(curves: pd.DataFrame, task: str, param: str) -> bytes | None:
    """Metric mean (+- sd over seeds) against one hyperparameter, one line per dataset,
    model and combination of the other hyperparameters."""
    sub = curves[(curves["task"] == task) & (curves["param"] == param)]
    if sub.empty:
        return None
    metrics = _ordered_metrics(sub)[:MAX_FACETS]
    numeric = bool(sub["x"].notna().all())
    cats = list(dict.fromkeys(sub["param_value"]))
    log = numeric and bool((sub["x"] > 0).all()) and sub["x"].max() / sub["x"].min() >= 10
    ncol = min(4, len(metrics))
    nrow = math.ceil(len(metrics) / ncol)
    fig = _new_figure(ncol * 3.2, nrow * 2.6 + 0.6)
    axes = fig.subplots(nrow, ncol, squeeze=False)
    handles: dict[str, Any] = {}
    for k, ax in enumerate(axes.flat):
        if k >= len(metrics):
            ax.set_visible(False)
            continue
        sm = sub[sub["metric"] == metrics[k]]
        several = sub["dataset"].nunique() > 1
        for (ds, model, others), line in sm.groupby(["dataset", "model", "others"], sort=False):
            x = line["x"].to_numpy() if numeric else line["param_value"].map(cats.index)
            name = str(model) if others == "{}" else A.model_label(str(model), str(others))
            name = f"{name} ({ds})" if several else name
            h = ax.errorbar(x, line["mean"], yerr=line["sd"].fillna(0.0), marker="o", ms=3,
                            capsize=2, lw=1)  # fmt: skip
            handles.setdefault(name, h)
        if log:
            ax.set_xscale("log")
        if not numeric:
            ax.set_xticks(range(len(cats)), cats, rotation=45, fontsize=7)
        ax.set_title(metrics[k], fontsize=8)
        ax.set_xlabel(param, fontsize=7)
        ax.tick_params(labelsize=7)
        ax.grid(color="#eeeeee")
    fig.legend(list(handles.values()), list(handles), loc="outside lower center",
               fontsize=7, ncol=min(4, len(handles)))  # fmt: skip
    return _png(fig)


def _runtime_figure(df: pd.DataFrame, rank: pd.DataFrame) -> bytes | None:
    """Score against mean runtime per grid cell: one panel per task and one overall."""
    use_task = A.usability(df, per_task=True)
    tasks = [c[len("score_") :] for c in rank.columns if c.startswith("score_")]
    panels = [(t, f"score_{t}") for t in tasks] + [(None, "overall")]
    fig = _new_figure(3.4 * len(panels), 3.2)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    drawn = False
    for ax, (task, col) in zip(axes, panels, strict=True):
        if task is None:
            x = rank["runtime_s_per_cell"]
        else:
            ut = use_task[use_task["task"] == task]
            x = rank.merge(ut, on=["model", "model_kind", "params"], how="left",
                           suffixes=("_all", ""))["runtime_s_per_cell"]  # fmt: skip
        x = pd.to_numeric(x, errors="coerce").to_numpy(dtype=float)
        y = pd.to_numeric(rank[col], errors="coerce").to_numpy(dtype=float)
        ok = np.isfinite(x) & np.isfinite(y)
        colors = [_KIND_COLORS.get(str(k), "#9467bd") for k in rank["model_kind"]]
        ax.scatter(x[ok], y[ok], c=[c for c, o in zip(colors, ok, strict=True) if o], s=18)
        for xi, yi, lab, o in zip(x, y, rank["label"], ok, strict=True):
            if o:
                ax.annotate(str(lab), (xi, yi), fontsize=6, xytext=(3, 2),
                            textcoords="offset points")  # fmt: skip
        drawn = drawn or bool(ok.any())
        ax.margins(x=0.25, y=0.08)
        if ok.any() and (x[ok] > 0).all():
            ax.set_xscale("log")
        ax.set_xlabel("mean runtime per grid cell (s)", fontsize=7)
        ax.set_ylabel(col.replace("score_", "") + " score", fontsize=7)
        ax.set_title(task or "overall", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(color="#eeeeee")
    return _png(fig) if drawn else None


# --- HTML ------------------------------------------------------------------------------

_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;
max-width:1200px;color:#222;padding:0 1em}
h1{font-size:1.6em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.8em}
table{border-collapse:collapse;font-size:.82em;margin:.6em 0}
th,td{border:1px solid #ddd;padding:.25em .5em;text-align:right}
th{background:#f4f4f4}td.t{text-align:left}
img{max-width:100%;height:auto;border:1px solid #eee}
.note{color:#666;font-size:.9em}pre{background:#f8f8f8;padding:1em;overflow-x:auto;
font-size:.8em}nav a{margin-right:1em}details{margin:.5em 0}
"""

_INT_COLS = {"n", "n_seeds", "n_models", "n_pairs", "n_settings", "n_tasks", "n_grid_cells"}
_INT_COLS |= {"rank", "seed", "n_cells"}


def _fmt(value: Any, col: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return "NA"
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)) or (
        col in _INT_COLS and isinstance(value, (float, np.floating)) and float(value).is_integer()
    ):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        if col.startswith("peak_mem"):
            return f"{value:.1f}"
        return f"{value:.3f}"
    return str(value)


def _table(df: pd.DataFrame, columns: Sequence[str] | None = None) -> str:
    """An HTML table; every cell's text is escaped."""
    cols = list(columns or df.columns)
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in cols)
    body = []
    for rec in df[cols].itertuples(index=False, name=None):
        cells = []
        for c, v in zip(cols, rec, strict=True):
            text = html.escape(_fmt(v, c))
            cls = ' class="t"' if isinstance(v, str) else ""
            cells.append(f"<td{cls}>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<p><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"></p>'


def _p(text: str, cls: str = "note") -> str:
    return f'<p class="{cls}">{html.escape(text)}</p>'


def _slug(name: str, taken: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "x"
    slug, i = base, 2
    while slug in taken:
        slug, i = f"{base}_{i}", i + 1
    taken.add(slug)
    return slug


def _seed_table(summ: pd.DataFrame, dataset: str, task: str, order: list[str]) -> str:
    """Models x metrics, ``mean ± sd`` over seeds, on one dataset."""
    keep = (summ["dataset"] == dataset) & (summ["task"] == task) & (summ["status"] == "ok")
    st = summ[keep]
    if st.empty:
        return _p("No successful results for this task.")
    st = st.assign(label=_labels(st))
    st["txt"] = [
        f"{m:.3f}" + (f" ± {s:.3f}" if pd.notna(s) else "")
        for m, s in zip(st["mean"], st["sd"], strict=True)
    ]
    wide = st.pivot_table(index="label", columns="metric", values="txt", aggfunc="first")
    wide = wide.reindex(columns=_ordered_metrics(st))
    rows = [lab for lab in order if lab in wide.index]
    rows += [lab for lab in wide.index if lab not in rows]
    wide = wide.reindex(rows).fillna("NA").reset_index().rename(columns={"label": "model"})
    return _table(wide)


def _problems(df: pd.DataFrame) -> pd.DataFrame:
    bad = df[df["status"] != "ok"]
    if bad.empty:
        return bad
    cols = ["dataset", "task", "model", "params", "status", "message"]
    out = bad.groupby(cols, sort=False).agg(rows=("metric", "size"), seeds=("seed", "nunique"))
    return out.reset_index()


def _render(
    df: pd.DataFrame,
    source: str,
    record: dict[str, Any] | None,
    record_note: str,
    figures: dict[str, bytes],
    fig_names: dict[str, str],
    seed_figs: dict[tuple[str, str], str],
    config_text: str | None,
    title: str,
    notes: list[str],
) -> str:
    summ = A.seed_summary(df)
    rank = A.overall_ranking(df)
    order = rank["label"].tolist()
    scaled = A.scaled_scores(df)
    stab = A.rank_stability(df)
    sens = A.sensitivity(df)
    ok = df[df["status"] == "ok"]
    head = {
        "results": f"{source}: {len(df)} rows, {int((df['status'] == 'ok').sum())} ok",
        "datasets": ", ".join(dict.fromkeys(df["dataset"])),
        "tasks": ", ".join(dict.fromkeys(df["task"])),
        "models": ", ".join(dict.fromkeys(_labels(df.drop_duplicates(["model", "params"])))),
        "seeds": ", ".join(str(s) for s in sorted(set(df["seed"].tolist()))),
        "sceval": ", ".join(dict.fromkeys(df["sceval_version"])) or __version__,
        "report written": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        + f" by sceval {__version__}",
    }
    out: list[str] = []
    sections = [("summary", "Summary"), ("ranking", "Overall ranking"), ("tasks", "Tasks")]
    sections += [("sensitivity", "Sensitivity"), ("runtime", "Runtime vs score")]
    sections += [("stability", "Rank stability"), ("problems", "Did not run")]
    sections += [("record", "Run record")]
    out.append("<nav>" + "".join(f'<a href="#{k}">{html.escape(v)}</a>' for k, v in sections))
    out.append("</nav><table>")
    out += [
        f'<tr><th>{html.escape(k)}</th><td class="t">{html.escape(v)}</td></tr>'
        for k, v in head.items()
    ]
    out.append("</table>")
    out += [_p(n) for n in notes]

    out.append('<h2 id="summary">Summary</h2>')
    out.append(
        _p(
            "Each metric's mean over seeds is scaled per dataset, task and metric between "
            "the controls: 0 = the worse negative control (shuffled or unintegrated), 1 = "
            "the best control (labels, or shuffled for batch mixing); see the scaled-score "
            "table for the reference used. Task score = mean over metric categories of "
            "the mean scaled score, each clipped to [0, 1] (aggregate metrics left out); "
            "overall = mean over tasks."
        )
    )
    summary_keys = [k for k in figures if k.startswith("summary")]
    for k in summary_keys:
        out.append(_img(figures[k], fig_names[k]))
    if not summary_keys:
        out.append(_p("No summary figure (no model produced a result, or figures were off)."))

    out.append('<h2 id="ranking">Overall ranking</h2>')
    if rank.empty:
        out.append(_p("No model produced a result."))
    else:
        cols = ["rank", "label", "model_kind"]
        cols += [c for c in rank.columns if c.startswith("score_")]
        cols += ["overall", "n_tasks", "runtime_s_per_cell", "peak_mem_mb_per_cell"]
        shown = rank.drop(columns="model").rename(columns={"label": "model"})
        out.append(_table(shown, [*cols[:1], "model", *cols[2:]]))
        out.append(
            _p(
                "runtime_s_per_cell / peak_mem_mb_per_cell: mean wall time and peak "
                "resident memory per grid cell (NA: the run did not record memory)."
            )
        )
    with_sc = scaled.assign(model=_labels(scaled)).drop(columns=["params", "model_kind"])
    out.append("<details><summary>Scaled scores (all metrics)</summary>")
    out.append(_table(with_sc) + "</details>")

    out.append('<h2 id="tasks">Tasks</h2>')
    for task in dict.fromkeys(df["task"]):
        out.append(f"<h3>{html.escape(str(task))}</h3>")
        n_met = ok.loc[ok["task"] == task, "metric"].nunique()
        if n_met > MAX_FACETS and seed_figs:
            out.append(_p(f"The figures show the first {MAX_FACETS} of {n_met} metrics."))
        for ds in dict.fromkeys(df.loc[df["task"] == task, "dataset"]):
            out.append(f"<h4>{html.escape(str(ds))}</h4>")
            key = seed_figs.get((str(ds), str(task)))
            if key is not None:
                out.append(_img(figures[key], fig_names[key]))
            out.append(_seed_table(summ, str(ds), str(task), order))
    detail = summ.assign(model=_labels(summ)).drop(columns=["params"])
    out.append("<details><summary>Mean, sd and 95% t-interval over seeds (all rows)</summary>")
    out.append(_table(detail) + "</details>")

    out.append('<h2 id="sensitivity">Sensitivity to hyperparameters</h2>')
    if sens.empty:
        out.append(
            _p(
                "No hyperparameter grid in these results (no model was run with two or "
                "more settings of the `params` column), so there are no sensitivity curves."
            )
        )
    else:
        for k in [k for k in figures if k.startswith("sensitivity")]:
            out.append(f"<h4>{html.escape(fig_names[k])}</h4>" + _img(figures[k], fig_names[k]))
        out.append(
            _p(
                "range / sd: spread of the per-setting means over seeds; best/worst: the "
                "settings with the best and worst mean."
            )
        )
        out.append(_table(sens))

    out.append('<h2 id="runtime">Runtime vs score</h2>')
    if "runtime" in figures:
        out.append(_img(figures["runtime"], fig_names["runtime"]))
    else:
        out.append(_p("No runtime figure (no runtime recorded, or figures were off)."))

    out.append('<h2 id="stability">Rank stability across seeds</h2>')
    out.append(
        _p(
            "Mean pairwise Kendall tau-b between the seeds' rankings of the models "
            "(controls left out): 1 = every seed ranks the models the same."
        )
    )
    out.append(_table(stab) if not stab.empty else _p("No ranks: no successful results."))

    out.append('<h2 id="problems">Models and metrics that did not run</h2>')
    prob = _problems(df)
    out.append(_table(prob) if not prob.empty else _p("Every result has status ok."))

    out.append('<h2 id="record">Run record</h2>')
    if record is None:
        out.append(_p(record_note))
    else:
        text = json.dumps(record, indent=2, sort_keys=False, default=str)
        out.append(f"<pre>{html.escape(text)}</pre>")
    if config_text is not None:
        out.append("<details><summary>config.yaml</summary>")
        out.append(f"<pre>{html.escape(config_text)}</pre></details>")

    body = "\n".join(out)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head>\n"
        f"<body><h1>{html.escape(title)}</h1>\n{body}\n</body></html>\n"
    )


def write_report(outdir: str | Path, title: str | None = None, figures: bool = True) -> Path:
    """Write ``figures/*.png`` and a self-contained ``report.html`` into ``outdir``.

    Parameters
    ----------
    outdir
        An output folder of ``sceval run`` (see :func:`load_results` for what is read).
    title
        Title of the report (default: ``"sceval report: <folder name>"``).
    figures
        Draw the figures (default). ``False`` writes the tables and the run record only,
        which is much faster on large grids, and leaves ``figures/`` untouched.

    Returns
    -------
    pathlib.Path
        The path of ``report.html``.

    Raises
    ------
    FileNotFoundError
        When the folder does not exist or holds no results.
    ValueError
        When the results are not an sceval results table or have no rows.
    """
    out = Path(outdir)
    df, source = load_results(out)
    record, record_note = load_run_record(out)
    config_path = out / "config.yaml"
    config_text = config_path.read_text(encoding="utf-8") if config_path.is_file() else None
    notes: list[str] = []
    n_files = len(list((out / "cells").glob("*.parquet"))) if (out / "cells").is_dir() else 0
    n_cells = df.loc[df["cell"].str.len() > 0, "cell"].nunique()
    if n_files > n_cells and not source.startswith("cells/"):
        notes.append(
            f"cells/ holds {n_files} finished cells but {source} only {n_cells}: the run "
            "was interrupted or is still going. Rerun `sceval run` with the same config to "
            "finish it and rewrite the results."
        )

    draw = figures
    figures: dict[str, bytes] = {}  # file stem -> PNG
    names: dict[str, str] = {}  # file stem -> caption
    seed_figs: dict[tuple[str, str], str] = {}  # (dataset, task) -> file stem
    taken: set[str] = set()

    def add(stem: str, make: Callable[[], bytes | None], name: str) -> str | None:
        png = make()
        if png is None:
            return None
        stem = _slug(stem, taken)
        figures[stem], names[stem] = png, name
        return stem

    ok = df[df["status"] == "ok"].dropna(subset=["value"])
    if draw and not ok.empty:
        rank = A.overall_ranking(df)
        order = rank["label"].tolist()
        for ds in dict.fromkeys(ok["dataset"]):
            add(f"summary_{ds}", lambda d=ds: _summary_figure(df, str(d)), f"summary: {ds}")
        for ds, task in dict.fromkeys(zip(ok["dataset"], ok["task"], strict=True)):
            stem = add(f"seeds_{ds}_{task}",
                       lambda d=ds, t=task: _seed_figure(df, str(d), str(t), order),
                       f"seed spread: {ds} / {task}")  # fmt: skip
            if stem:
                seed_figs[(str(ds), str(task))] = stem
        curves = A.sensitivity_curves(df)
        for (task, param), _ in curves.groupby(["task", "param"], sort=False):
            add(f"sensitivity_{task}_{param}",
                lambda t=task, p=param: _sensitivity_figure(curves, str(t), str(p)),
                f"{task}: metrics vs {param}")  # fmt: skip
        add("runtime", lambda: _runtime_figure(df, rank), "score vs runtime per grid cell")

    title = title or f"sceval report: {out.resolve().name}"
    page = _render(
        df, source, record, record_note, figures, names, seed_figs, config_text, title, notes
    )

    fig_dir = out / "figures"
    written = set()
    for key, png in figures.items():
        path = _write(fig_dir / f"{key}.png", png)
        written.add(path.name)
    if draw and fig_dir.is_dir():  # figures of an earlier report that this one no longer draws
        for stale in fig_dir.glob("*.png"):
            if stale.name not in written:
                stale.unlink(missing_ok=True)
    return _write(out / "report.html", page.encode("utf-8"))


def _write(path: Path, data: bytes) -> Path:
    """Atomically write ``data``, readable by others (a temp file is created 0600)."""

    def write(fh: Any) -> None:
        if hasattr(os, "fchmod"):
            os.fchmod(fh.fileno(), 0o644)
        fh.write(data)

    return atomic_write(path, write, mode="wb")
