from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import sceval
import sceval.tasks.simulation as sim
from sceval._errors import ModelSkippedError, NotApplicableError
from sceval.data.simulate import simulate
from sceval.metrics import METRICS
from sceval.metrics.expression import (
    correlation_matrix_distance,
    knn_two_sample_auc,
    mixing_ilisi,
    mmd_rbf,
    moment_agreement,
)
from sceval.models.base import MODELS, ModelInfo, get_model


class _ShuffledGenes(sim._Generator):
    """A deliberately wrong generator: Poisson with the gene means permuted."""

    info = ModelInfo(key="_test_wrong_sim", kind="control", input="counts")

    def generate(self, adata_train: Any, labels: Any, n_per_type: dict, ctx: Any) -> Any:
        rng = np.random.default_rng(0)
        mean = np.asarray(adata_train.X.mean(axis=0)).ravel()
        mean = rng.permutation(mean)
        n = sum(n_per_type.values())
        return sp.csr_matrix(rng.poisson(mean, size=(n, mean.size)).astype(np.float32))


@pytest.fixture(scope="module")
def wrong_sim():
    """Register the deliberately wrong generator for this module only."""
    MODELS.register("_test_wrong_sim", _ShuffledGenes)
    yield "_test_wrong_sim"
    MODELS.unregister("_test_wrong_sim")


@pytest.fixture(scope="module")
def data():
    return simulate(800, 200, n_cell_types=3, n_batches=1, seed=5)


# --- metrics on hand-worked examples ---------------------------------------------------


def test_correlation_matrix_distance_hand_example():
    real = np.array([[0, 0], [1, 1], [2, 2]], dtype=float)  # r = 1
    gen = np.array([[0, 2], [1, 1], [2, 0]], dtype=float)  # r = -1
    assert correlation_matrix_distance(real, gen) == pytest.approx(2.0)
    assert correlation_matrix_distance(real, real) == pytest.approx(0.0)
    # a constant gene correlates 0: |1 - 0| = 1
    assert correlation_matrix_distance(real, np.c_[gen[:, 0], np.ones(3)]) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="same columns"):
        correlation_matrix_distance(real, np.ones((3, 3)))


def test_moment_agreement_hand_example():
    real = np.array([[0, 2, 6], [2, 4, 8]], dtype=float)  # means 1, 3, 7 -> log1p ln2, ln4, ln8
    r_mean, r_var = moment_agreement(real, real[::-1])
    assert r_mean == pytest.approx(1.0)
    r_mean, r_var = moment_agreement(real, real[:, ::-1])
    assert r_mean == pytest.approx(-1.0)  # equally spaced logs, reversed
    assert np.isnan(r_var)  # every variance is 2: constant across genes


def test_mmd_hand_example():
    # one point each at distance 1: median heuristic sigma = 1 -> 2 - 2 exp(-1/2)
    assert mmd_rbf([[0.0]], [[1.0]]) == pytest.approx(2 - 2 * np.exp(-0.5))
    assert mmd_rbf([[0.0]], [[1.0]], bandwidth=2.0) == pytest.approx(2 - 2 * np.exp(-1 / 8))
    x = np.random.default_rng(0).normal(size=(50, 3))
    assert mmd_rbf(x, x) == pytest.approx(0.0, abs=1e-12)


def test_knn_auc_separated_and_identical():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(200, 2))
    assert knn_two_sample_auc(a, a + 100) == pytest.approx(1.0)
    b = rng.normal(size=(200, 2))
    assert abs(knn_two_sample_auc(a, b) - 0.5) < 0.1
    with pytest.raises(NotApplicableError, match=">= 5 cells"):
        knn_two_sample_auc(a[:3], b)


def test_mixing_ilisi_separated_vs_mixed():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(100, 2))
    g = np.array(["t"] * 100)
    sep, per = mixing_ilisi(a, a + 100, g, g)
    assert sep == pytest.approx(0.0, abs=1e-6) and set(per) == {"t"}
    mixed, _ = mixing_ilisi(a, rng.normal(size=(100, 2)), g, g)
    assert mixed > 0.7
    with pytest.raises(NotApplicableError, match="no group"):
        mixing_ilisi(a, a, g, np.array(["u"] * 100))


def test_metric_keys_registered_with_direction():
    for key in sim.SIMULATION_KEYS:
        assert key in METRICS
    assert METRICS.get("sim_c2st").higher_is_better is False
    assert METRICS.get("sim_mmd").higher_is_better is False
    assert METRICS.get("sim_ilisi").higher_is_better is True


# --- generators ---------------------------------------------------------------------------


def test_fit_nb_recovers_dispersion():
    rng = np.random.default_rng(0)
    mu, phi = np.array([5.0, 20.0]), 0.5
    x = rng.poisson(rng.gamma(1 / phi, mu * phi, size=(4000, 2)))
    x = np.c_[x, np.full(4000, 100_000)]  # a dominant constant gene fixes the libraries
    fit = sim.fit_nb(x)
    assert fit.phi[:2] == pytest.approx([phi, phi], rel=0.25)
    assert fit.pi[:2] == pytest.approx([0, 0], abs=0.05)


def test_generators_make_no_embedding(data):
    for key in ("nb_sim", "copula_sim", "resample"):
        with pytest.raises(ModelSkippedError, match="is a simulation baseline"):
            get_model(key).embed_cells(data, None)
    assert get_model("nb_sim").info.kind == "baseline"
    assert get_model("copula_sim").info.kind == "baseline"


def test_resample_beats_nb_beats_wrong(data, wrong_sim):
    df = sceval.run_benchmark(
        data,
        models=["resample", "nb_sim", "copula_sim", "_test_wrong_sim", "pca"],
        tasks=["simulation"],
        label_key="cell_type",
    )
    ok = df[df.status == "ok"]
    v = ok.set_index(["model", "metric"])["value"]
    assert v["resample", "sim_c2st"] < v["nb_sim", "sim_c2st"] < v["_test_wrong_sim", "sim_c2st"]
    assert v["resample", "sim_c2st"] < 0.15
    assert v["nb_sim", "sim_mean_corr"] > v["_test_wrong_sim", "sim_mean_corr"]
    assert v["nb_sim", "sim_mmd"] < v["_test_wrong_sim", "sim_mmd"]
    assert v["nb_sim", "sim_ilisi"] > v["_test_wrong_sim", "sim_ilisi"]
    assert v["copula_sim", "sim_c2st"] < v["_test_wrong_sim", "sim_c2st"]
    assert len(ok[ok.model == "copula_sim"]) == len(sim.SIMULATION_KEYS)
    pca = df[df.model == "pca"]
    assert set(pca.status) == {"not_applicable"}
    assert pca.message.str.contains("no generate").all()


def test_small_type_skipped_with_note(data):
    ad = data.copy()
    lab = ad.obs["cell_type"].astype(str).to_numpy()
    lab[np.flatnonzero(lab == "type_1")[:12]] = "rare"
    ad.obs["cell_type"] = pd.Categorical(lab)
    df = sceval.run_benchmark(ad, models=["nb_sim"], tasks=["simulation"], label_key="cell_type")
    assert set(df.status) == {"ok"}
    assert df.message.str.contains("rare: 12 cells").all()


def test_all_types_too_small_not_applicable(data):
    ad = data[:60].copy()
    ad.obs["cell_type"] = pd.Categorical(np.repeat([f"t{i}" for i in range(4)], 15))
    df = sceval.run_benchmark(ad, models=["nb_sim"], tasks=["simulation"], label_key="cell_type")
    assert set(df.status) == {"not_applicable"}
    assert df.message.str.contains("no cell type has enough cells").all()


def test_needs_labels_and_bad_fraction(data):
    with pytest.raises(ValueError, match="needs label_key"):
        sceval.run_benchmark(data, models=["nb_sim"], tasks=["simulation"])
    with pytest.raises(ValueError, match=r"test_fraction in \(0, 1\)"):
        sceval.run_benchmark(
            data,
            models=["nb_sim"],
            tasks=["simulation"],
            label_key="cell_type",
            task_params={"simulation": {"test_fraction": 1.0}},
        )


def test_groups_are_type_by_batch_with_batch_key():
    ad = simulate(600, 150, n_cell_types=2, n_batches=2, batch_strength=2.0, seed=2)
    kw = {"models": ["nb_sim"], "tasks": ["simulation"], "label_key": "cell_type"}
    by = sceval.run_benchmark(ad, batch_key="batch", **kw).set_index("metric")
    plain = sceval.run_benchmark(ad, **kw).set_index("metric")
    assert by.message.str.contains("groups: cell type | batch").all()
    # a per-type generator that ignores a strong batch effect is easier to detect
    assert by.loc["sim_c2st", "value"] < plain.loc["sim_c2st", "value"]
