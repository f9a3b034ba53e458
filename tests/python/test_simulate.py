from __future__ import annotations

import numpy as np
import pytest

from sceval.data import simulate


def test_seeded_and_reproducible():
    a = simulate(n_cells=200, n_genes=100, seed=3)
    b = simulate(n_cells=200, n_genes=100, seed=3)
    c = simulate(n_cells=200, n_genes=100, seed=4)
    assert (a.X != b.X).nnz == 0
    assert (a.X != c.X).nnz > 0
    assert a.obs["batch"].equals(b.obs["batch"])


def test_structure_and_ground_truth():
    a = simulate(n_cells=300, n_genes=200, n_cell_types=5, n_batches=2, seed=0)
    x = a.X.toarray()
    assert np.all(x >= 0) and np.all(x == np.round(x))
    assert list(a.obs["cell_type"].cat.categories) == [f"type_{i}" for i in range(1, 6)]
    assert set(a.obs["batch"]) == {"batch_1", "batch_2"}
    assert a.var["ensembl_id"].str.startswith("ENSG").all()
    assert a.var_names.is_unique
    truth = a.uns["sceval"]["simulation"]
    assert set(truth["programs"]) == set(a.obs["cell_type"].cat.categories)
    assert a.varm["program_lfc"].shape == (200, 5)
    assert a.varm["batch_lfc"].shape == (200, 2)
    # library-size variation: totals vary a lot between cells
    totals = x.sum(1)
    assert totals.std() / totals.mean() > 0.2


def test_programs_raise_expression_in_their_type():
    a = simulate(n_cells=600, n_genes=300, n_cell_types=3, n_batches=1, seed=1)
    x = a.X.toarray()
    x = x / x.sum(1, keepdims=True)
    for t, prog in a.uns["sceval"]["simulation"]["programs"].items():
        up = [g for g, v in zip(prog["genes"], prog["lfc"], strict=True) if v > 1]
        cols = a.var_names.get_indexer(up)
        inside = x[(a.obs["cell_type"] == t).to_numpy()][:, cols].mean()
        outside = x[(a.obs["cell_type"] != t).to_numpy()][:, cols].mean()
        assert inside > 1.5 * outside


def test_batch_strength_zero_means_no_batch_effect():
    a = simulate(n_cells=100, n_genes=50, batch_strength=0.0, seed=0)
    assert np.all(a.varm["batch_lfc"] == 0)


def test_dropout_adds_zeros():
    lo = simulate(n_cells=200, n_genes=100, dropout=0.0, seed=0)
    hi = simulate(n_cells=200, n_genes=100, dropout=0.9, seed=0)
    assert hi.X.nnz < lo.X.nnz


def test_mouse_genes():
    a = simulate(n_cells=50, n_genes=40, species="mouse", seed=0)
    assert a.var["ensembl_id"].str.startswith("ENSMUSG").all()


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"n_cells": 5}, "n_cells must be >= 10"),
        ({"batch_strength": -1.0}, "batch_strength must be >= 0"),
        ({"dropout": 1.0}, r"dropout must be in \[0, 1\)"),
    ],
)
def test_bad_arguments(kw, match):
    with pytest.raises(ValueError, match=match):
        simulate(**kw)
