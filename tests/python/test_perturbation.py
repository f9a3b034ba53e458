"""Perturbation task: metrics (hand-worked), simulator truth, splits, baselines, bad inputs."""

from __future__ import annotations

import numpy as np
import pytest

import sceval
import sceval.tasks.perturbation as pt
from sceval._errors import DataContractError, ModelSkippedError, NotApplicableError
from sceval.data.simulate_perturbation import (
    check_perturbation,
    condition_name,
    parse_condition,
    read_perturbation_h5ad,
    simulate_perturbation,
)
from sceval.metrics import METRICS
from sceval.metrics.perturbation import (
    mean_scores,
    mse,
    pearson,
    perturbation_scores,
    top_de_genes,
)

SIM = {
    "n_control": 300,
    "perturbations": 8,
    "n_genes": 200,
    "n_combos": 12,
    "cells_per_condition": 50,
    "n_programs": 5,
    "program_size": 20,
}


@pytest.fixture(scope="module")
def screen():
    return simulate_perturbation(**SIM, seed=1)


# ---------------------------------------------------------------- metrics


def test_metrics_hand_worked():
    assert mse([1, 2, 3], [1, 2, 5]) == pytest.approx(4 / 3)
    assert pearson([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)
    assert pearson([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert pearson([1, 1, 1], [1, 2, 3]) == 0.0  # constant: no association
    np.testing.assert_array_equal(top_de_genes([0, 5, -3, 1], [0, 0, 0, 0], n=2), [1, 2])
    # ties keep gene order
    np.testing.assert_array_equal(top_de_genes([1, -1, 1], [0, 0, 0], n=2), [0, 1])
    with pytest.raises(ValueError, match="same length"):
        mse([1, 2], [1, 2, 3])


def test_perturbation_scores_hand_worked():
    ctrl = np.zeros(3)
    true = np.array([[1.0, 2.0, 3.0]])
    pred = np.array([[1.0, 2.0, 4.0]])
    s = perturbation_scores(pred, true, ctrl, n_de=2)  # DE genes: 2 then 1
    assert s["mse"][0] == pytest.approx(1 / 3)
    assert s["mse_de20"][0] == pytest.approx(0.5)  # (4-3)^2 and (2-2)^2
    # x = [1,2,4] centred [-4/3,-1/3,5/3], y centred [-1,0,1]: 3 / (sqrt(42)/3 * sqrt(2))
    assert s["pearson_delta"][0] == pytest.approx(9 / np.sqrt(84))
    assert s["pearson_delta_de20"][0] == pytest.approx(1.0)  # two points
    # the control-mean prediction has zero change: pearson_delta = 0
    s0 = perturbation_scores(np.zeros((1, 3)), true, ctrl, n_de=2)
    assert s0["pearson_delta"][0] == 0.0
    assert mean_scores({"a": np.array([1.0, np.nan, 3.0])})["a"] == pytest.approx(2.0)
    assert np.isnan(mean_scores({"a": np.array([np.nan])})["a"])
    assert METRICS.get("mse").higher_is_better is False
    assert METRICS.get("pearson_delta_de20").higher_is_better is True


# ---------------------------------------------------------------- data


def test_condition_convention():
    assert parse_condition("ctrl") == ()
    assert parse_condition("A+ctrl") == ("A",)
    assert parse_condition("ctrl+A") == ("A",)
    assert parse_condition("B+A") == ("A", "B")
    assert condition_name(["B", "A"]) == "A+B"
    assert condition_name(["A"]) == "A+ctrl"
    assert condition_name([], "NT") == "NT"


def test_simulator_truth(screen):
    a = screen
    info = a.uns["perturbation"]
    conds = info["conditions"]
    assert set(a.obs["condition"].astype(str)) == {"ctrl", *conds}
    s = check_perturbation(a)
    assert len(s.singles) == SIM["perturbations"]
    assert len(s.combos) == SIM["n_combos"]
    lfc = a.varm["perturbation_lfc"]
    assert lfc.shape == (SIM["n_genes"], len(conds))
    col = {c: i for i, c in enumerate(conds)}
    # additive in log space (interaction=0)
    for c in s.combos:
        ga, gb = parse_condition(c)
        expect = lfc[:, col[f"{ga}+ctrl"]] + lfc[:, col[f"{gb}+ctrl"]]
        np.testing.assert_allclose(lfc[:, col[c]], expect, atol=1e-5)
    assert not np.any(a.varm["interaction_lfc"])
    # the knocked-down gene itself drops in the counts
    x = a.layers["counts"]
    tot = np.asarray(x.sum(axis=1)).ravel()
    ctrl = a.obs["condition"].astype(str).to_numpy() == "ctrl"
    for g, r in info["regulators"].items():
        j = list(a.var_names).index(g)
        cells = a.obs["condition"].astype(str).to_numpy() == f"{g}+ctrl"
        frac_p = x[cells, j].sum() / tot[cells].sum()
        frac_c = x[ctrl, j].sum() / tot[ctrl].sum()
        assert (frac_p < frac_c) == (r["direction"] == "down")
    # same seed, same object; interaction adds a non-additive part
    b = simulate_perturbation(**SIM, seed=1)
    assert (a.X != b.X).nnz == 0
    c = simulate_perturbation(**{**SIM, "n_control": 20, "cells_per_condition": 5}, interaction=1.0)
    assert np.abs(c.varm["interaction_lfc"]).max() > 0


def test_reader_roundtrip_and_errors(screen, tmp_path):
    p = tmp_path / "screen.h5ad"
    screen.write_h5ad(p)
    a = read_perturbation_h5ad(p)
    assert a.uns["perturbation"]["n_combos"] == SIM["n_combos"]
    with pytest.raises(DataContractError, match="no control cells"):
        read_perturbation_h5ad(p, control="NT")
    with pytest.raises(DataContractError, match="not a column"):
        read_perturbation_h5ad(p, condition_key="guide")
    bad = screen[:400].copy()
    cats = [*bad.obs["condition"].cat.categories, "NOTAGENE+ctrl"]
    bad.obs["condition"] = bad.obs["condition"].cat.set_categories(cats)
    bad.obs.iloc[-1, bad.obs.columns.get_loc("condition")] = "NOTAGENE+ctrl"
    with pytest.raises(DataContractError, match=r"not among the measured genes.*NOTAGENE"):
        check_perturbation(bad)


# ---------------------------------------------------------------- splits


def test_splits_seeded_and_disjoint(screen):
    s = check_perturbation(screen)
    tr, te, _ = pt.split_conditions(s.singles, s.combos, "single", 0.25, seed=3)
    assert (tr, te) == pt.split_conditions(s.singles, s.combos, "single", 0.25, seed=3)[:2]
    assert te and set(te) <= set(s.singles) and not set(tr) & set(te)
    held = {g for c in te for g in parse_condition(c)}
    assert all(not held & set(parse_condition(c)) for c in tr)
    tr, te, _ = pt.split_conditions(s.singles, s.combos, "combo", 0.25, seed=3)
    assert set(te) <= set(s.combos) and set(s.singles) <= set(tr)
    assert not set(tr) & set(te)
    with pytest.raises(NotApplicableError, match="needs >= 2 single"):
        pt.split_conditions(s.singles[:1], [], "single")
    with pytest.raises(NotApplicableError, match="unmeasured single"):
        pt.split_conditions([], s.combos, "combo")
    with pytest.raises(ValueError, match="split must be one of"):
        pt.split_conditions(s.singles, s.combos, "dose")


# ---------------------------------------------------------------- benchmark


def test_additive_beats_mean_on_combos(screen):
    res = sceval.run_benchmark(
        screen,
        models=["mean", "additive", "linear", "pca"],
        tasks=["perturbation"],
        task_params={"perturbation": {"split": "combo", "test_fraction": 0.5}},
    )
    assert set(res["status"]) == {"ok"}
    v = res.set_index(["model", "metric"])["value"]
    assert v["additive", "mse"] < v["mean", "mse"]
    assert v["additive", "mse_de20"] < v["mean", "mse_de20"]
    assert v["additive", "pearson_delta"] > 0.8 > v["mean", "pearson_delta"]
    assert v["linear", "pearson_delta"] > v["mean", "pearson_delta"]
    assert res["higher_is_better"][res["metric"] == "mse"].eq(False).all()


def test_bad_inputs_give_rows(screen):
    # a model that neither predicts nor embeds genes: not_applicable
    res = sceval.run_benchmark(screen, models=["shuffled"], tasks=["perturbation"])
    assert set(res["status"]) == {"not_applicable"}
    assert res["message"].str.contains("gene embeddings").all()
    # no control cells: a failed row naming the fix
    res = sceval.run_benchmark(
        screen,
        models=["mean"],
        tasks=["perturbation"],
        task_params={"perturbation": {"control": "NT"}},
    )
    assert set(res["status"]) == {"failed"}
    assert res["message"].str.contains("no control cells").all()
    # combos whose singles were never measured: not_applicable for split="combo"
    only = screen[screen.obs["n_perturbed"].to_numpy() != 1].copy()
    res = sceval.run_benchmark(
        only,
        models=["additive"],
        tasks=["perturbation"],
        task_params={"perturbation": {"split": "combo"}},
    )
    assert set(res["status"]) == {"not_applicable"}
    assert res["message"].str.contains("unmeasured single").all()
    # perturbation baselines do not embed cells
    with pytest.raises(ModelSkippedError, match="perturbation baseline"):
        pt.MeanBaseline().embed_cells(screen, None)


def test_foundation_path_uses_gene_embeddings(screen):
    """A model with embed_genes gets the ridge head; unknown genes fall back to control."""
    from sceval.models.base import EmbedContext, Model, ModelInfo

    rng = np.random.default_rng(0)
    vocab = {g: rng.normal(size=8) for g in screen.var_names[:150]}

    class Fake(Model):
        info = ModelInfo(key="fake_fm", kind="foundation")

        def embed_cells(self, adata, ctx):
            raise NotImplementedError

        def embed_genes(self, genes, ctx):
            found = np.array([g in vocab for g in genes])
            return np.stack([vocab[g] for g in genes if g in vocab]), found

    ctx = EmbedContext(report=sceval.data.validate(screen), seed=0)
    task = pt.PerturbationTask(split="combo", test_fraction=0.5)
    out = task.run(screen, Fake(), ctx, lambda: None)
    assert [r.metric for r in out] == list(task.metric_keys())
    assert all(r.status == "ok" and np.isfinite(r.value) for r in out)
    assert "ridge head on gene embeddings" in out[0].message
    assert ctx.cache["perturbation_scores"][("fake_fm", 0)].shape[1] == 6


def test_tiny_scgpt_gene_embeddings_and_cli(screen, tmp_path):
    """The foundation-model predictor with a real (tiny, official-layout) scGPT
    checkpoint, run from the CLI with the task's data keys as --param."""
    import pandas as pd
    from click.testing import CliRunner

    from sceval.cli import cli
    from sceval.testing import tiny_checkpoint

    ck = tiny_checkpoint("scgpt", tmp_path / "ck", screen)
    path = tmp_path / "screen.h5ad"
    screen.write_h5ad(path)
    out = tmp_path / "out"
    r = CliRunner().invoke(
        cli,
        [
            "run",
            str(path),
            "--models",
            "mean,additive,scgpt",
            "--tasks",
            "perturbation",
            "--param",
            "perturbation.perturbation_key=condition",
            "--param",
            "perturbation.split=combo",
            "--checkpoint",
            f"scgpt={ck}",
            "--out",
            str(out),
            "-q",
        ],
        catch_exceptions=False,
    )
    assert r.exit_code == 0, r.output
    res = pd.read_csv(out / "results.csv")
    assert set(res["status"]) == {"ok"}, res[["model", "status", "message"]].drop_duplicates()
    v = res.set_index(["model", "metric"])["value"]
    assert v["additive", "mse"] < v["mean", "mse"]
    assert np.isfinite(v["scgpt", "pearson_delta"])
