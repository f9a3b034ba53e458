from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import sceval
import sceval.tasks.imputation as imp
from sceval._errors import ModelSkippedError, NotApplicableError
from sceval.data.simulate import simulate
from sceval.metrics import METRICS
from sceval.metrics.expression import heldout_correlation, rmse
from sceval.models.base import get_model
from sceval.tasks.base import get_task


@pytest.fixture(scope="module")
def dropout_data():
    return simulate(500, 150, n_cell_types=4, n_batches=1, dropout=0.9, seed=3)


# --- metrics on hand-worked examples ---------------------------------------------------


def test_heldout_pearson_is_per_gene_mean():
    truth = [1, 2, 3, 1, 2, 3]
    pred = [2, 4, 6, 3, 2, 1]
    gene = [0, 0, 0, 1, 1, 1]
    # gene 0: r = 1, gene 1: r = -1 -> mean 0
    assert heldout_correlation(truth, pred, gene) == pytest.approx(0.0)
    assert heldout_correlation(truth[:3], pred[:3], gene[:3]) == pytest.approx(1.0)


def test_heldout_spearman_sees_monotone_prediction():
    truth, pred, gene = [1, 2, 3, 4], [1, 4, 9, 100], [5, 5, 5, 5]
    assert heldout_correlation(truth, pred, gene, "spearman") == pytest.approx(1.0)
    assert heldout_correlation(truth, pred, gene, "pearson") < 0.95


def test_heldout_constant_prediction_scores_zero_constant_truth_skipped():
    # gene 0: constant prediction -> 0; gene 1: constant truth -> left out
    truth = [1, 2, 3, 4, 4, 4]
    pred = [0, 0, 0, 1, 2, 3]
    assert heldout_correlation(truth, pred, [0, 0, 0, 1, 1, 1]) == 0.0
    with pytest.raises(NotApplicableError, match="no gene has >= 3"):
        heldout_correlation([4, 4, 4], [1, 2, 3], [1, 1, 1])
    with pytest.raises(NotApplicableError, match="no gene has >= 5"):
        heldout_correlation([1, 2, 3], [1, 2, 3], [0, 0, 0], min_values=5)


def test_heldout_bad_inputs():
    with pytest.raises(ValueError, match="one length"):
        heldout_correlation([1, 2], [1, 2, 3], [0, 0])
    with pytest.raises(ValueError, match="method"):
        heldout_correlation([1, 2, 3], [1, 2, 3], [0, 0, 0], "kendall")


def test_rmse_hand_example():
    assert rmse([0, 0], [3, 4]) == pytest.approx(np.sqrt(12.5))
    with pytest.raises(ValueError, match="one length"):
        rmse([1], [1, 2])


def test_metric_keys_registered_with_direction():
    for key in imp.IMPUTATION_KEYS:
        assert key in METRICS
    assert METRICS.get("impute_rmse").higher_is_better is False
    assert METRICS.get("impute_pearson").higher_is_better is True


# --- masking -------------------------------------------------------------------------------


def test_mask_entries_seeded_and_only_nonzero():
    c = sp.csr_matrix(np.array([[1, 0, 3, 4], [0, 2, 0, 6], [7, 8, 9, 0]], dtype=float))
    a = imp.mask_counts(c, 0.5, "entries", seed=0)
    b = imp.mask_counts(c, 0.5, "entries", seed=0)
    np.testing.assert_array_equal(a.rows, b.rows)
    assert a.rows.size == 4  # half of the 8 non-zero entries
    assert np.all(c.toarray()[a.rows, a.cols] > 0)
    assert np.all(a.masked.toarray()[a.rows, a.cols] == 0)
    # unmasked entries unchanged
    keep = c.toarray().copy()
    keep[a.rows, a.cols] = 0
    np.testing.assert_array_equal(a.masked.toarray(), keep)
    # truth is the log-normalized original value (original library size)
    tot = c.toarray().sum(axis=1)
    expected = np.log1p(c.toarray()[a.rows, a.cols] / tot[a.rows] * 1e4)
    np.testing.assert_allclose(a.truth, expected, rtol=1e-6)


def test_mask_genes_zeroes_whole_columns():
    c = sp.csr_matrix(np.arange(1, 41, dtype=float).reshape(4, 10))
    m = imp.mask_counts(c, 0.2, "genes", seed=1)
    held = np.unique(m.cols)
    assert held.size == 2 and m.rows.size == 8
    assert np.all(m.masked.toarray()[:, held] == 0)
    assert m.mask.sum() == 8


@pytest.mark.parametrize("frac", [0, 1, 1.5, -0.1, "x"])
def test_bad_mask_fraction(frac):
    with pytest.raises(ValueError, match=r"mask_fraction in \(0, 1\)"):
        get_task("imputation", mask_fraction=frac)


def test_bad_mode():
    with pytest.raises(ValueError, match="mode in"):
        get_task("imputation", mode="cells")


# --- baselines and the task ----------------------------------------------------------------


def test_baselines_make_no_embedding(dropout_data):
    for key in ("identity", "knn_smooth", "scvi_impute"):
        m = get_model(key)
        assert m.info.kind == "baseline"
        with pytest.raises(ModelSkippedError, match="is an imputation baseline"):
            m.embed_cells(dropout_data, None)


def test_knn_smooth_beats_identity_through_run_benchmark(dropout_data):
    df = sceval.run_benchmark(
        dropout_data,
        models=["identity", "knn_smooth", "pca"],
        tasks=["imputation"],
        label_key="cell_type",
        task_params={"imputation": {"mask_fraction": 0.2}},
    )
    ok = df[df.status == "ok"]
    val = ok.set_index(["model", "metric"])["value"]
    assert val["identity", "impute_pearson"] == 0.0
    assert val["knn_smooth", "impute_pearson"] > val["identity", "impute_pearson"] + 0.05
    assert val["knn_smooth", "impute_spearman"] > 0.05
    assert val["knn_smooth", "impute_rmse"] < val["identity", "impute_rmse"]
    for key in ("impute_nmi", "impute_ari", "impute_silhouette_label"):
        assert 0 <= val["knn_smooth", key] <= 1
    pca = df[df.model == "pca"]
    assert set(pca.status) == {"not_applicable"}
    assert pca.message.str.contains("no impute").all()
    assert bool(df[df.metric == "impute_rmse"].higher_is_better.iloc[0]) is False


def test_without_labels_bio_not_applicable(dropout_data):
    df = sceval.run_benchmark(dropout_data, models=["identity"], tasks=["imputation"])
    bio = df[df.metric.isin(["impute_nmi", "impute_ari", "impute_silhouette_label"])]
    assert set(bio.status) == {"not_applicable"}
    assert bio.message.str.contains("label_key").all()
    assert set(df[df.metric == "impute_rmse"].status) == {"ok"}


def test_genes_mode_identity_scores_zero(dropout_data):
    df = sceval.run_benchmark(
        dropout_data,
        models=["identity"],
        tasks=["imputation"],
        task_params={"imputation": {"mode": "genes", "mask_fraction": 0.1}},
    )
    val = df.set_index("metric")["value"]
    assert val["impute_pearson"] == 0.0
    assert "genes: " in df.message.iloc[0]


def test_scvi_impute_runs(dropout_data):
    pytest.importorskip("scvi")
    df = sceval.run_benchmark(
        dropout_data,
        models=["scvi_impute"],
        tasks=["imputation"],
        model_params={"scvi_impute": {"max_epochs": 2}},
    )
    row = df.set_index("metric").loc["impute_rmse"]
    assert row.status == "ok" and np.isfinite(row.value)


def test_scgpt_imputes_through_its_expression_decoder(tmp_path):
    """scGPT (tiny official-layout checkpoint) imputes via masked value prediction:
    the rows are ok, deterministic per seed, and values stay on the log-normalized
    scale of the cell's observed entries."""
    from sceval.data import simulate
    from sceval.testing import tiny_checkpoint

    adata = simulate(n_cells=150, n_genes=120, n_batches=1, n_cell_types=3, seed=2)
    ck = str(tiny_checkpoint("scgpt", tmp_path / "ck", adata))
    kw = dict(
        models=["scgpt", "scgpt.random", "identity"],
        tasks=["imputation"],
        label_key="cell_type",
        model_params={"scgpt": {"checkpoint": ck}, "scgpt.random": {"checkpoint": ck}},
        task_params={"imputation": {"mask_fraction": 0.2}},
    )
    a = sceval.run_benchmark(adata.copy(), **kw)
    b = sceval.run_benchmark(adata.copy(), **kw)
    sc = a[a["model"] == "scgpt"].set_index("metric")
    assert (sc["status"] == "ok").all(), sc["message"].unique()
    np.testing.assert_allclose(a["value"].to_numpy(), b["value"].to_numpy(), equal_nan=True)
    ident = a[a["model"] == "identity"].set_index("metric")
    # identity leaves held-out entries at log1p(0) = 0: its RMSE is the largest possible
    assert sc.loc["impute_rmse", "value"] < ident.loc["impute_rmse", "value"]
