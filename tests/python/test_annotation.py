from __future__ import annotations

import numpy as np
import pytest

import sceval
from sceval._errors import DataContractError
from sceval.tasks.annotation import split_cells


def test_stratified_split_is_seeded_and_stratified():
    labels = np.array(["a"] * 50 + ["b"] * 30 + ["c"] * 20)
    tr1, te1, _ = split_cells(labels, seed=0)
    _, te2, _ = split_cells(labels, seed=0)
    _, te3, _ = split_cells(labels, seed=1)
    np.testing.assert_array_equal(te1, te2)
    assert not np.array_equal(te1, te3)
    assert len(te1) == 20 and len(np.intersect1d(tr1, te1)) == 0
    assert len(tr1) + len(te1) == 100
    counts = {k: int((labels[te1] == k).sum()) for k in "abc"}
    assert counts == {"a": 10, "b": 6, "c": 4}


def test_singleton_labels_stay_in_training():
    labels = np.array(["a"] * 20 + ["b"] * 20 + ["solo"])
    tr, te, note = split_cells(labels, seed=0)
    assert 40 in tr and 40 not in te
    assert "solo" in note


def test_reference_query_split_column():
    labels = np.array(["a", "b"] * 10)
    split = np.array(["reference"] * 14 + ["Query"] * 6)
    tr, te, note = split_cells(labels, seed=0, split=split)
    np.testing.assert_array_equal(tr, np.arange(14))
    np.testing.assert_array_equal(te, np.arange(14, 20))
    assert "reference -> query" in note
    with pytest.raises(DataContractError, match=r"must mark every cell as reference or query"):
        split_cells(labels, seed=0, split=np.array(["ref"] * 10 + ["other"] * 10))


def test_reference_query_benchmark_uses_batches(small_copy):
    """Train on batch_1+2, predict batch_3 (a reference -> query transfer)."""
    small_copy.obs["role"] = np.where(small_copy.obs["batch"] == "batch_3", "query", "reference")
    res = sceval.run_benchmark(
        small_copy,
        models=["labels", "shuffled"],
        tasks=["annotation"],
        label_key="cell_type",
        task_params={"annotation": {"split_key": "role"}},
    )
    ok = res[res["status"] == "ok"].pivot_table(index="model", columns="metric", values="value")
    assert ok.loc["labels", "knn_accuracy"] == 1.0
    assert ok.loc["shuffled", "knn_accuracy"] < 0.6
    assert res["message"].str.contains("reference -> query").all()
