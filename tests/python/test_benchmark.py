from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import sceval
from sceval._errors import DataContractError, UnknownNameError
from sceval.benchmark.results import RESULT_COLUMNS, read_results, summarize, write_results

KEYS = {"batch_key": "batch", "label_key": "cell_type"}


@pytest.fixture(scope="module")
def res(small):
    adata = small.copy()
    adata.obsm["X_mine"] = np.random.default_rng(0).normal(size=(adata.n_obs, 5))
    return sceval.run_benchmark(
        adata,
        models=["pca", "harmony", "unintegrated", "labels"],
        tasks=["integration", "annotation"],
        seeds=[0, 1],
        embeddings=["X_mine"],
        dataset="small",
        **KEYS,
    )


def test_schema(res):
    assert list(res.columns) == list(RESULT_COLUMNS)
    assert set(res["status"]) <= {"ok", "not_applicable", "skipped", "failed"}
    assert set(res["model"]) == {"pca", "harmony", "unintegrated", "labels", "mine"}
    assert set(res.loc[res["model"] == "mine", "model_kind"]) == {"external"}
    assert set(res["seed"]) == {0, 1}
    assert (res["sceval_version"] == sceval.__version__).all()
    # one row per (dataset, task, model, seed, metric)
    assert not res.duplicated(["dataset", "task", "model", "seed", "metric"]).any()
    ok = res[res["status"] == "ok"]
    assert ok["value"].notna().all() and (ok["runtime_s"] >= 0).all()
    integ = ok[ok["task"] == "integration"]
    assert {"nmi", "ari", "ilisi", "kbet", "total"} <= set(integ["metric"])


def test_embeddings_written_to_obsm(small):
    adata = small.copy()
    sceval.run_benchmark(adata, models=["pca"], tasks=["annotation"], label_key="cell_type")
    assert adata.obsm["X_pca"].shape[0] == adata.n_obs


def test_seeds_reproduce(small):
    kw = dict(models=["pca", "harmony"], tasks=["annotation"], seeds=[3], **KEYS)
    a = sceval.run_benchmark(small.copy(), **kw)
    b = sceval.run_benchmark(small.copy(), **kw)
    pd.testing.assert_series_equal(a["value"], b["value"])


def test_summarize(res):
    s = summarize(res)
    row = s[(s["model"] == "pca") & (s["metric"] == "knn_accuracy")].iloc[0]
    vals = res[(res["model"] == "pca") & (res["metric"] == "knn_accuracy")]["value"].to_numpy()
    assert row["n"] == 2
    assert row["mean"] == pytest.approx(vals.mean())
    assert row["sd"] == pytest.approx(vals.std(ddof=1))
    half = 12.706204736 * vals.std(ddof=1) / np.sqrt(2)  # t(0.975, df=1)
    assert row["ci_low"] == pytest.approx(vals.mean() - half)
    assert row["ci_high"] == pytest.approx(vals.mean() + half)


def test_write_and_read_atomic(res, tmp_path):
    written = write_results(res, tmp_path / "out")
    assert {p.name for p in written.values()} == {
        "results.csv",
        "results.parquet",
        "results.meta.json",
    }
    assert not list((tmp_path / "out").glob(".*tmp"))  # no temp files left behind
    for f in ("results.csv", "results.parquet"):
        back = read_results(tmp_path / "out" / f)
        assert len(back) == len(res)
        np.testing.assert_allclose(back["value"], res["value"])


def test_atomic_write_keeps_old_file_on_error(tmp_path):
    from sceval.benchmark.results import atomic_write

    target = tmp_path / "x.txt"
    target.write_text("old")

    def boom(fh):
        fh.write("half")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        atomic_write(target, boom)
    assert target.read_text() == "old"
    assert list(tmp_path.iterdir()) == [target]


def test_skipped_model_rows_and_others_still_run():
    import scanpy as sc

    pb = sc.datasets.pbmc68k_reduced()
    res = sceval.run_benchmark(
        pb,
        models=["scvi", "pca"],
        tasks=["annotation"],
        label_key="bulk_labels",
        batch_key="phase",
    )
    scvi = res[res["model"] == "scvi"]
    assert set(scvi["status"]) == {"skipped"}
    assert scvi["message"].str.contains("needs raw counts").all()
    assert set(res.loc[res["model"] == "pca", "status"]) == {"ok"}


def test_failed_model_is_a_row_not_a_crash(small, monkeypatch):
    from sceval.models.baselines.pca import PCAModel

    def broken(self, adata, ctx):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(PCAModel, "embed_cells", broken)
    res = sceval.run_benchmark(
        small.copy(), models=["pca", "labels"], tasks=["annotation"], label_key="cell_type"
    )
    pca = res[res["model"] == "pca"]
    assert set(pca["status"]) == {"failed"}
    assert pca["message"].str.contains("RuntimeError: out of memory").all()
    assert set(res.loc[res["model"] == "labels", "status"]) == {"ok"}


def test_one_batch_gives_not_applicable_batch_metrics(small_copy):
    small_copy.obs["one"] = "b1"
    res = sceval.run_benchmark(
        small_copy,
        models=["pca", "harmony"],
        tasks=["integration"],
        batch_key="one",
        label_key="cell_type",
    )
    pca = res[res["model"] == "pca"].set_index("metric")
    assert pca.loc["ilisi", "status"] == "not_applicable"
    assert "batch" in pca.loc["ilisi", "message"]
    assert pca.loc["nmi", "status"] == "ok"
    assert set(res.loc[res["model"] == "harmony", "status"]) == {"skipped"}


def test_one_label_and_singleton_label(small_copy):
    small_copy.obs["one"] = "t"
    res = sceval.run_benchmark(
        small_copy,
        models=["pca"],
        tasks=["annotation", "integration"],
        batch_key="batch",
        label_key="one",
    )
    ann = res[res["task"] == "annotation"]
    assert set(ann["status"]) == {"not_applicable"}
    integ = res[res["task"] == "integration"].set_index("metric")
    assert integ.loc["nmi", "status"] == "not_applicable"
    # a label with a single cell: runs, that label stays in training
    lab = small_copy.obs["cell_type"].astype(str).to_numpy().copy()
    lab[0] = "rare"
    small_copy.obs["lab"] = lab
    res = sceval.run_benchmark(
        small_copy,
        models=["pca"],
        tasks=["annotation", "integration"],
        batch_key="batch",
        label_key="lab",
    )
    assert set(res["status"]) <= {"ok", "not_applicable"}
    assert (res["status"] == "ok").any()


def test_bad_names_and_keys(small):
    with pytest.raises(UnknownNameError, match=r"Unknown model 'harmny'.*Did you mean 'harmony'"):
        sceval.run_benchmark(small, models=["harmny"], **KEYS)
    with pytest.raises(UnknownNameError, match=r"Unknown task 'integraton'"):
        sceval.run_benchmark(small, tasks=["integraton"], **KEYS)
    with pytest.raises(DataContractError, match=r"task 'integration' needs batch_key"):
        sceval.run_benchmark(small, tasks=["integration"], label_key="cell_type")
    with pytest.raises(DataContractError, match=r"batch_key='nope' is not a column"):
        sceval.run_benchmark(small, batch_key="nope", label_key="cell_type")
    with pytest.raises(ValueError, match=r"Seeds must be non-negative integers"):
        sceval.run_benchmark(small, seeds=[-1], **KEYS)
