"""sceval.benchmark.analysis: seed statistics, rank stability, sensitivity, scaled scores
and the overall ranking, checked on small hand-worked tables and on a real
run_benchmark table."""

from __future__ import annotations

import functools
import hashlib
import json
from itertools import combinations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from sceval.benchmark import analysis as A
from sceval.benchmark.results import summarize, to_frame

KIND = {"shuffled": "control", "unintegrated": "control", "labels": "control"}
HIB = {"mse": False}


def table(rows: list[tuple], grid: bool = False) -> pd.DataFrame:
    """Results table from ``(task, model, params, seed, metric, value)`` tuples
    (``params`` a dict); ``grid=True`` adds the grid columns of the output-folder
    contract (cell hash, canonical params JSON, peak_mem_mb, n_cells, subsample)."""
    recs = []
    for task, model, params, seed, metric, value, *extra in rows:
        runtime = extra[0] if extra else 1.0
        rec = {
            "dataset": "sim",
            "task": task,
            "model": model,
            "model_kind": KIND.get(model, "baseline"),
            "seed": seed,
            "metric": metric,
            "value": value,
            "higher_is_better": HIB.get(metric, True),
            "status": "ok",
            "message": "",
            "runtime_s": runtime,
            "sceval_version": "0.1.0",
        }
        recs.append((rec, params, extra))
    df = to_frame([r for r, _, _ in recs])
    if grid:
        pjson = [json.dumps(p, sort_keys=True) for _, p, _ in recs]
        key = [
            f"{r['dataset']}|{r['task']}|{r['model']}|{r['seed']}|{p}"
            for (r, _, _), p in zip(recs, pjson, strict=True)
        ]
        df["cell"] = [hashlib.sha256(k.encode()).hexdigest()[:16] for k in key]
        df["params"] = pjson
        df["peak_mem_mb"] = [e[1] if len(e) > 1 else 100.0 for _, _, e in recs]
        df["n_cells"] = 200
        df["subsample"] = ""
    return df


def grid_table(seeds: tuple[int, ...] = (0, 1, 2)) -> pd.DataFrame:
    """A synthetic grid results table in the contract's layout: two tasks, three
    controls, a baseline and a fine-tuned model over a 2 x 2 hyperparameter grid."""
    rng = np.random.default_rng(0)
    base = {
        ("integration", "nmi"): {"shuffled": 0.1, "unintegrated": 0.6, "labels": 1.0, "pca": 0.7},
        ("integration", "ilisi"): {"shuffled": 0.9, "unintegrated": 0.2, "labels": 0.8, "pca": 0.5},
        ("integration", "total"): {"shuffled": 0.4, "unintegrated": 0.4, "labels": 0.9, "pca": 0.6},
        ("annotation", "knn_accuracy"): {
            "shuffled": 0.25,
            "unintegrated": 0.8,
            "labels": 1.0,
            "pca": 0.85,
        },
    }
    rows = []
    for (task, metric), vals in base.items():
        for seed in seeds:
            for model, v in vals.items():
                rt = {"pca": 2.0}.get(model, 0.5)
                rows.append((task, model, {}, seed, metric, v + rng.normal(0, 0.02), rt, 150.0))
            for lr in (0.001, 0.01):
                for ep in (1, 3):
                    p = {"annotation.finetune_lr": lr, "annotation.finetune_epochs": ep}
                    v = 0.6 + 10 * lr + 0.05 * ep + rng.normal(0, 0.02)
                    rows.append((task, "scgpt", p, seed, metric, v, 5.0 * ep, 900.0))
    df = table(rows, grid=True)
    df.loc[df["model"] == "scgpt", "model_kind"] = "foundation"
    return df


@functools.lru_cache(maxsize=1)
def real_table() -> pd.DataFrame:
    """A run_benchmark table on tiny simulated data with two seeds (shared with
    test_report)."""
    import sceval
    import sceval.testing

    return sceval.run_benchmark(
        sceval.testing.small_dataset(200, 100),
        models=["pca", "unintegrated", "shuffled", "labels", "harmony"],
        tasks=["integration", "annotation"],
        seeds=[0, 1],
        batch_key="batch",
        label_key="cell_type",
    )


# --- seed_summary ---------------------------------------------------------------------


def test_seed_summary_t_interval_matches_scipy():
    vals = [1.0, 2.0, 3.0, 4.0]
    df = table([("integration", "pca", {}, s, "nmi", v) for s, v in enumerate(vals)])
    out = A.seed_summary(df)
    row = out.iloc[0]
    assert row["n"] == 4 and row["mean"] == pytest.approx(2.5)
    assert row["sd"] == pytest.approx(np.sqrt(5 / 3))  # sum sq dev 5, ddof 1
    lo, hi = stats.t.interval(0.95, 3, loc=2.5, scale=np.sqrt(5 / 3) / 2)
    assert (row["ci_low"], row["ci_high"]) == (pytest.approx(lo), pytest.approx(hi))
    assert row["params"] == "{}"
    lo90, _ = stats.t.interval(0.9, 3, loc=2.5, scale=np.sqrt(5 / 3) / 2)
    assert A.seed_summary(df, level=0.9)["ci_low"].iloc[0] == pytest.approx(lo90)


def test_seed_summary_per_params_and_only_ok_rows():
    rows = [("annotation", "scgpt", {"lr": 0.1}, s, "knn_accuracy", v) for s, v in [(0, 0.5)]]
    rows += [("annotation", "scgpt", {"lr": 0.01}, s, "knn_accuracy", v) for s, v in [(0, 0.7)]]
    rows += [("annotation", "scgpt", {"lr": 0.01}, 1, "knn_accuracy", 0.9)]
    df = table(rows, grid=True)
    df.loc[2, "status"] = "failed"  # the lr=0.01 seed-1 row does not count
    out = A.seed_summary(df).set_index("params")
    assert out.loc['{"lr": 0.1}', "mean"] == pytest.approx(0.5)
    assert out.loc['{"lr": 0.01}', "n"] == 1
    assert out.loc['{"lr": 0.01}', "mean"] == pytest.approx(0.7)
    assert np.isnan(out.loc['{"lr": 0.01}', "sd"]) and np.isnan(out.loc['{"lr": 0.01}', "ci_low"])


def test_seed_summary_reuses_summarize_on_a_plain_table():
    df = real_table()
    mine = A.seed_summary(df).drop(columns="params")
    pd.testing.assert_frame_equal(mine, summarize(df), check_dtype=False)


def test_seed_summary_errors():
    with pytest.raises(ValueError, match=r"level must be in \(0, 1\)"):
        A.seed_summary(table([("integration", "pca", {}, 0, "nmi", 1.0)]), level=95)
    with pytest.raises(ValueError, match=r"lacks the columns \['status'"):
        A.seed_summary(table([("integration", "pca", {}, 0, "nmi", 1.0)]).drop(columns="status"))
    with pytest.raises(TypeError, match="Expected a results table"):
        A.seed_summary([1, 2])


# --- rank stability -------------------------------------------------------------------

RANK_VALUES = {
    0: {"a": 3, "b": 2, "c": 1},
    1: {"a": 3, "b": 1, "c": 2},
    2: {"a": 1, "b": 2, "c": 3},
}


def _rank_rows(metric: str = "nmi") -> list[tuple]:
    return [
        ("integration", m, {}, s, metric, float(v))
        for s, vals in RANK_VALUES.items()
        for m, v in vals.items()
    ]


def test_rank_stability_by_hand_and_scipy():
    # seeds 0 vs 1: one discordant pair of 3 -> 1/3; 0 vs 2 reversed -> -1; 1 vs 2 -> -1/3
    out = A.rank_stability(table(_rank_rows())).iloc[0]
    assert out["tau_mean"] == pytest.approx((1 / 3 - 1 - 1 / 3) / 3)
    assert out["tau_min"] == pytest.approx(-1.0)
    assert (out["n_seeds"], out["n_models"], out["n_pairs"], out["reason"]) == (3, 3, 3, "")
    ref = [
        stats.kendalltau(list(RANK_VALUES[a].values()), list(RANK_VALUES[b].values())).statistic
        for a, b in combinations(RANK_VALUES, 2)
    ]
    assert out["tau_mean"] == pytest.approx(np.mean(ref))


def test_seed_ranks_respect_direction_and_ties():
    ranks = A.seed_ranks(table(_rank_rows("mse")))  # lower is better
    r0 = ranks[ranks["seed"] == 0].set_index("model")["rank"]
    assert r0.to_dict() == {"a": 3.0, "b": 2.0, "c": 1.0}
    rows = [("integration", m, {}, 0, "nmi", v) for m, v in [("a", 1.0), ("b", 1.0), ("c", 0.0)]]
    rows += [("integration", m, {}, 1, "nmi", v) for m, v in [("a", 2.0), ("b", 1.0), ("c", 0.0)]]
    df = table(rows)
    r = A.seed_ranks(df)
    assert r[r["seed"] == 0].set_index("model")["rank"].to_dict() == {"a": 1.5, "b": 1.5, "c": 3}
    tau = A.rank_stability(df)["tau_mean"].iloc[0]
    assert tau == pytest.approx(stats.kendalltau([1, 1, 0], [2, 1, 0]).statistic)  # tau-b


def test_rank_stability_nan_with_reasons_and_controls_left_out():
    one_seed = table([("integration", m, {}, 0, "nmi", v) for m, v in [("a", 1.0), ("b", 0.0)]])
    out = A.rank_stability(one_seed).iloc[0]
    assert np.isnan(out["tau_mean"]) and out["reason"] == "fewer than 2 seeds (1)"
    one_model = table(
        [("integration", m, {}, s, "nmi", 1.0) for s in (0, 1) for m in ("a", "labels")]
    )
    out = A.rank_stability(one_model).iloc[0]
    assert np.isnan(out["tau_mean"]) and out["reason"] == "fewer than 2 models (1)"
    assert A.rank_stability(one_model, include_controls=True)["n_models"].iloc[0] == 2
    tied = table([("integration", m, {}, s, "nmi", 0.5) for s in (0, 1) for m in ("a", "b")])
    out = A.rank_stability(tied).iloc[0]
    assert np.isnan(out["tau_mean"]) and "all ranks tied" in out["reason"]


def test_rank_stability_metric_filter_and_error():
    df = table(_rank_rows("nmi") + _rank_rows("ari"))
    assert A.rank_stability(df, metric="ari")["metric"].tolist() == ["ari"]
    with pytest.raises(ValueError, match=r"Metric\(s\) \['nope'\] are not in the results"):
        A.rank_stability(df, metric="nope")


# --- sensitivity ----------------------------------------------------------------------


def _sens_rows(metric: str) -> list[tuple]:
    means = {0.001: 0.6, 0.01: 0.8, 0.1: 0.5}
    return [
        ("annotation", "scgpt", {"annotation.finetune_lr": lr}, s, metric, m + d)
        for lr, m in means.items()
        for s, d in [(0, -0.05), (1, 0.05)]
    ] + [("annotation", "pca", {}, s, metric, 0.7) for s in (0, 1)]


def test_sensitivity_by_hand():
    out = A.sensitivity(table(_sens_rows("knn_accuracy"), grid=True))
    assert out["model"].tolist() == ["scgpt"]  # pca has one setting only
    row = out.iloc[0]
    assert row["n_settings"] == 3
    assert row["range"] == pytest.approx(0.3)
    assert row["sd"] == pytest.approx(np.std([0.6, 0.8, 0.5], ddof=1))
    assert json.loads(row["best_params"]) == {"annotation.finetune_lr": 0.01}
    assert json.loads(row["worst_params"]) == {"annotation.finetune_lr": 0.1}
    assert (row["best_mean"], row["worst_mean"]) == (pytest.approx(0.8), pytest.approx(0.5))
    low = A.sensitivity(table(_sens_rows("mse"), grid=True)).iloc[0]  # lower is better
    assert json.loads(low["best_params"]) == {"annotation.finetune_lr": 0.1}


def test_sensitivity_curves():
    cur = A.sensitivity_curves(table(_sens_rows("knn_accuracy"), grid=True))
    assert cur["param"].unique().tolist() == ["annotation.finetune_lr"]
    assert cur["x"].tolist() == [0.001, 0.01, 0.1]
    np.testing.assert_allclose(cur["mean"], [0.6, 0.8, 0.5])
    np.testing.assert_allclose(cur["sd"], np.sqrt(2 * 0.05**2))
    grid = A.sensitivity_curves(grid_table())
    lr = grid[(grid["param"] == "annotation.finetune_lr") & (grid["metric"] == "nmi")]
    assert sorted(lr["others"].unique()) == [
        '{"annotation.finetune_epochs": 1}',
        '{"annotation.finetune_epochs": 3}',
    ]
    assert (lr["n"] == 3).all()


def test_sensitivity_without_grid_is_empty():
    df = real_table()
    assert A.sensitivity(df).empty and "best_params" in A.sensitivity(df).columns
    assert A.sensitivity_curves(df).empty


# --- scaled scores and overall ranking ------------------------------------------------

SCALE_ROWS = [
    # nmi (bio): 0 = shuffled (worst negative), 1 = labels
    *[("integration", m, {}, 0, "nmi", v) for m, v in
      [("shuffled", 0.2), ("unintegrated", 0.6), ("labels", 1.0), ("pca", 0.8)]],
    # ilisi (batch): 0 = unintegrated, 1 = shuffled (the best control)
    *[("integration", m, {}, 0, "ilisi", v) for m, v in
      [("shuffled", 0.9), ("unintegrated", 0.1), ("labels", 0.7), ("pca", 0.5)]],
    # total (aggregate): left out of the task score
    *[("integration", m, {}, 0, "total", v) for m, v in
      [("shuffled", 0.0), ("unintegrated", 0.5), ("labels", 1.0), ("pca", 0.0)]],
    # knn_accuracy: 0 = shuffled, 1 = labels
    *[("annotation", m, {}, 0, "knn_accuracy", v) for m, v in
      [("shuffled", 0.25), ("unintegrated", 0.8), ("labels", 1.0), ("pca", 0.85)]],
]  # fmt: skip


def test_scaled_scores_by_hand():
    out = A.scaled_scores(table(SCALE_ROWS)).set_index(["metric", "model"])
    assert out.loc[("nmi", "pca"), "scaled"] == pytest.approx(0.75)
    assert out.loc[("nmi", "shuffled"), "scaled"] == pytest.approx(0.0)
    assert out.loc[("nmi", "labels"), "scaled"] == pytest.approx(1.0)
    assert out.loc[("nmi", "pca"), "scale_note"] == "controls: 0=shuffled, 1=labels"
    assert out.loc[("nmi", "pca"), "category"] == "bio"
    assert out.loc[("ilisi", "pca"), "scaled"] == pytest.approx(0.5)
    assert out.loc[("ilisi", "pca"), "scale_note"] == "controls: 0=unintegrated, 1=shuffled"
    assert out.loc[("knn_accuracy", "pca"), "scaled"] == pytest.approx(0.8)


def test_scaled_scores_lower_is_better():
    rows = [("imputation", m, {}, 0, "mse", v) for m, v in
            [("shuffled", 4.0), ("unintegrated", 3.0), ("labels", 1.0), ("pca", 2.0)]]  # fmt: skip
    out = A.scaled_scores(table(rows)).set_index("model")
    assert out.loc["pca", "scaled"] == pytest.approx(2 / 3)  # (2 - 4) / (1 - 4)
    assert (out.loc["pca", "zero"], out.loc["pca", "one"]) == (4.0, 1.0)


def test_scaled_scores_per_setting_controls():
    # a task-level grid: the controls run at each setting are that setting's reference
    a, b = {"annotation.finetune_lr": 0.1}, {"annotation.finetune_lr": 0.01}
    rows = [("annotation", m, p, 0, "knn_accuracy", v) for m, p, v in [
        ("shuffled", a, 0.0), ("labels", a, 1.0), ("scgpt", a, 0.5),
        ("shuffled", b, 0.2), ("labels", b, 0.6), ("scgpt", b, 0.4),
        ("pca", {}, 0.5),
    ]]  # fmt: skip
    out = A.scaled_scores(table(rows, grid=True)).set_index(["model", "params"])
    assert out.loc[("scgpt", json.dumps(a)), "scaled"] == pytest.approx(0.5)
    assert out.loc[("scgpt", json.dumps(b)), "scaled"] == pytest.approx(0.5)
    assert out.loc[("labels", json.dumps(b)), "scaled"] == pytest.approx(1.0)
    # pca has no setting of its own: the controls' means over their settings
    assert out.loc[("pca", "{}"), "scaled"] == pytest.approx((0.5 - 0.1) / (0.8 - 0.1))


def test_scaled_scores_min_max_without_controls():
    rows = [("integration", m, {}, 0, "nmi", v) for m, v in [("a", 0.2), ("b", 0.6), ("c", 1.0)]]
    out = A.scaled_scores(table(rows)).set_index("model")
    np.testing.assert_allclose(out["scaled"], [0.0, 0.5, 1.0])
    assert out["scale_note"].str.startswith("min-max over models: no negative control").all()
    rows = [("annotation", m, {}, 0, "mse", v) for m, v in [("a", 2.0), ("b", 1.0)]]
    out = A.scaled_scores(table(rows)).set_index("model")
    assert out.loc["b", "scaled"] == 1.0 and out.loc["a", "scaled"] == 0.0
    same = table([("integration", m, {}, 0, "nmi", 0.5) for m in ("a", "b")])
    out = A.scaled_scores(same)
    assert out["scaled"].isna().all() and "all models equal" in out["scale_note"].iloc[0]
    # a control pair that does not improve on the zero: min-max with the reason
    rows = [("integration", m, {}, 0, "nmi", v) for m, v in [("shuffled", 0.5), ("a", 0.9)]]
    note = A.scaled_scores(table(rows))["scale_note"].iloc[0]
    assert note.startswith("min-max over models: no control scores better")


def test_overall_ranking_by_hand_with_usability():
    rows = [(*r, 10.0 if r[0] == "integration" else 2.0) for r in SCALE_ROWS]
    rows = [(*r, 100.0 if r[0] == "integration" else 300.0) for r in rows]
    out = A.overall_ranking(table(rows, grid=True)).set_index("model")
    # pca: integration = mean(bio 0.75, batch 0.5) = 0.625; annotation 0.8
    assert out.loc["pca", "score_integration"] == pytest.approx(0.625)
    assert out.loc["pca", "score_annotation"] == pytest.approx(0.8)
    assert out.loc["pca", "overall"] == pytest.approx(0.7125)
    # shuffled: integration mean(0, 1) = 0.5, annotation 0 -> 0.25; labels: (mean(1, .75) + 1)/2
    assert out.loc["shuffled", "overall"] == pytest.approx(0.25)
    assert out.loc["labels", "overall"] == pytest.approx((0.875 + 1) / 2)
    assert out.index.tolist()[0] == "labels" and out.loc["pca", "rank"] == 2
    assert out.loc["pca", "runtime_s_per_cell"] == pytest.approx(6.0)
    assert out.loc["pca", "peak_mem_mb_per_cell"] == pytest.approx(200.0)
    assert out.loc["pca", "n_grid_cells"] == 2
    plain = A.overall_ranking(table(SCALE_ROWS)).set_index("model")
    assert plain.loc["pca", "overall"] == pytest.approx(0.7125)
    assert plain["peak_mem_mb_per_cell"].isna().all()


def test_overall_ranking_clips_scaled_scores():
    # ilisi controls 0.50 / 0.52: pca at 0.30 scales to -10, clipped to 0 by default
    rows = [("integration", m, {}, 0, "ilisi", v) for m, v in
            [("unintegrated", 0.50), ("shuffled", 0.52), ("pca", 0.30)]]  # fmt: skip
    rows += [("integration", m, {}, 0, "nmi", v) for m, v in
             [("unintegrated", 0.5), ("shuffled", 0.0), ("labels", 1.0), ("pca", 0.8)]]  # fmt: skip
    df = table(rows)
    assert A.scaled_scores(df).set_index(["metric", "model"]).loc[
        ("ilisi", "pca"), "scaled"
    ] == pytest.approx(-10.0)
    clipped = A.overall_ranking(df).set_index("model")
    assert clipped.loc["pca", "overall"] == pytest.approx((0.0 + 0.8) / 2)
    raw = A.overall_ranking(df, clip=False).set_index("model")
    assert raw.loc["pca", "overall"] == pytest.approx((-10.0 + 0.8) / 2)


def test_grid_table_end_to_end():
    df = grid_table()
    rank = A.overall_ranking(df)
    assert len(rank) == 4 + 4  # 4 single-setting models + 4 scgpt settings
    assert "scgpt finetune_epochs=1,finetune_lr=0.01" in set(rank["label"])
    sc = rank[rank["model"] == "scgpt"]
    assert (sc["runtime_s_per_cell"].sort_values().to_numpy() == [5, 5, 15, 15]).all()
    assert (sc["peak_mem_mb_per_cell"] == 900).all()
    sens = A.sensitivity(df)
    assert set(sens["n_settings"]) == {4}
    stab = A.rank_stability(df)
    assert (stab["n_seeds"] == 3).all() and (stab["n_models"] == 5).all()


def test_on_a_real_run_benchmark_table():
    df = real_table()
    summ = A.seed_summary(df)
    assert (summ["n"] == 2).all()
    sc = A.scaled_scores(df).set_index(["task", "metric", "model"])
    assert sc.loc[("integration", "nmi", "labels"), "scaled"] == pytest.approx(1.0)
    assert sc.loc[("integration", "nmi", "shuffled"), "scaled"] == pytest.approx(0.0)
    assert sc.loc[("annotation", "knn_accuracy", "shuffled"), "scaled"] == pytest.approx(0.0)
    rank = A.overall_ranking(df)
    assert set(rank["model"]) == {"pca", "unintegrated", "shuffled", "labels", "harmony"}
    assert rank["runtime_s_per_cell"].gt(0).all() and rank["peak_mem_mb_per_cell"].isna().all()
    assert (rank["n_tasks"] == 2).all()
    stab = A.rank_stability(df)
    assert (stab["n_seeds"] == 2).all() and (stab["n_models"] == 2).all()


def test_model_label():
    assert A.model_label("pca", "{}") == "pca"
    label = A.model_label("scgpt", '{"annotation.finetune_lr": 0.001, "epochs": 2}')
    assert label == "scgpt finetune_lr=0.001,epochs=2"
