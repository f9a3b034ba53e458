from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from sceval._errors import DataContractError
from sceval.data import get_lognorm, read_h5ad, validate
from sceval.data.contract import detect_matrix_kind


def _adata(x, genes=None, obs=None):
    n, g = x.shape
    genes = genes or [f"GENE{i}" for i in range(g)]
    obs = obs if obs is not None else pd.DataFrame(index=[f"c{i}" for i in range(n)])
    return ad.AnnData(X=x, obs=obs, var=pd.DataFrame(index=genes))


def test_detects_counts_in_layer(small):
    rep = validate(small, batch_key="batch", label_key="cell_type")
    assert rep.counts_location == "layers/counts"
    assert rep.x_kind == "counts"
    assert rep.gene_id_type == "symbol"
    assert (rep.n_batches, rep.n_labels) == (3, 4)


def test_detects_lognorm_and_scaled():
    rng = np.random.default_rng(0)
    counts = rng.poisson(1.0, size=(50, 30)).astype(np.float32)
    assert detect_matrix_kind(counts) == "counts"
    assert detect_matrix_kind(sp.csr_matrix(counts)) == "counts"
    logn = np.log1p(counts / counts.sum(1, keepdims=True).clip(1) * 1e4)
    assert detect_matrix_kind(logn) == "lognorm"
    scaled = (logn - logn.mean(0)) / (logn.std(0) + 1e-8)
    assert detect_matrix_kind(scaled) == "scaled"


def test_pbmc68k_reduced_scaled_x_lognorm_raw():
    import scanpy as sc

    pb = sc.datasets.pbmc68k_reduced()
    rep = validate(pb, label_key="bulk_labels")
    assert rep.x_kind == "scaled"
    assert rep.counts_location is None
    assert rep.lognorm_location == "raw"
    assert any("no raw counts" in n for n in rep.notes)
    x = get_lognorm(pb, rep)
    assert x.shape == pb.shape and x.min() >= 0


def test_lognorm_from_counts_is_log1p_cp10k(small):
    rep = validate(small)
    x = get_lognorm(small, rep).toarray()
    c = small.layers["counts"].toarray()
    ref = np.log1p(c / c.sum(1, keepdims=True) * 1e4)
    np.testing.assert_allclose(x, ref, rtol=1e-5, atol=1e-5)


def test_scaled_x_named_as_counts_is_refused():
    rng = np.random.default_rng(1)
    a = _adata(rng.normal(size=(20, 10)).astype(np.float32))
    with pytest.raises(DataContractError, match=r"X was named as raw counts but holds negative"):
        validate(a, counts_layer="X")


def test_lognorm_layer_named_as_counts_is_refused():
    a = _adata(np.ones((10, 5), dtype=np.float32))
    a.layers["counts"] = np.full((10, 5), 0.5, dtype=np.float32)
    with pytest.raises(DataContractError, match=r"non-integer values.*Expected non-negative"):
        validate(a, counts_layer="counts")


def test_missing_counts_layer_lists_layers():
    a = _adata(np.ones((10, 5), dtype=np.float32))
    with pytest.raises(DataContractError, match=r"counts_layer='umi' not found; available layers"):
        validate(a, counts_layer="umi")


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_values(bad):
    x = np.ones((10, 5), dtype=np.float32)
    x[2, 3] = bad
    with pytest.raises(DataContractError, match=r"1 NaN or infinite values"):
        validate(_adata(x))


def test_empty_anndata():
    with pytest.raises(DataContractError, match=r"empty \(0 cells x 5 genes\)"):
        validate(_adata(np.zeros((0, 5), dtype=np.float32)))


def test_missing_batch_and_label_keys(small):
    with pytest.raises(DataContractError, match=r"batch_key='btch' is not a column.*'batch'"):
        validate(small, batch_key="btch")
    with pytest.raises(DataContractError, match=r"label_key='celltype' is not a column"):
        validate(small, label_key="celltype")


def test_missing_label_values(small_copy):
    small_copy.obs["lab"] = small_copy.obs["cell_type"].astype(object)
    small_copy.obs.iloc[0, small_copy.obs.columns.get_loc("lab")] = None
    with pytest.raises(DataContractError, match=r"has 1 missing values"):
        validate(small_copy, label_key="lab")


def test_one_batch_and_one_label_are_noted(small_copy):
    small_copy.obs["one"] = "b1"
    rep = validate(small_copy, batch_key="one", label_key="one")
    assert rep.n_batches == 1 and rep.n_labels == 1
    assert any("only one batch" in n for n in rep.notes)
    assert any("only one label" in n for n in rep.notes)


def test_duplicated_gene_names():
    a = _adata(np.ones((5, 3), dtype=np.float32), genes=["A", "B", "A"])
    with pytest.raises(DataContractError, match=r"1 duplicated gene names.*var_names_make_unique"):
        validate(a)


def test_ensembl_where_symbols_expected():
    genes = ["ENSG00000141510", "ENSG00000198851", "ENSG00000111640"]
    a = _adata(np.ones((5, 3), dtype=np.float32), genes=genes)
    assert validate(a).gene_id_type == "ensembl"
    with pytest.raises(DataContractError, match=r"Expected symbol gene IDs.*harmonize_genes"):
        validate(a, require_gene_ids="symbol")


def test_missing_gene_id_column():
    a = _adata(np.ones((5, 3), dtype=np.float32))
    with pytest.raises(DataContractError, match=r"gene_id_column='symbol' is not a column"):
        validate(a, gene_id_column="symbol")


def test_not_an_anndata():
    with pytest.raises(
        DataContractError, match=r"Expected an anndata.AnnData object, found ndarray"
    ):
        validate(np.ones((3, 3)))


def test_unreadable_h5ad(tmp_path):
    with pytest.raises(DataContractError, match=r"does not exist"):
        read_h5ad(tmp_path / "missing.h5ad")
    junk = tmp_path / "junk.h5ad"
    junk.write_text("not an h5 file")
    with pytest.raises(DataContractError, match=r"Could not read .* as h5ad"):
        read_h5ad(junk)
    with pytest.raises(DataContractError, match=r"is a folder"):
        read_h5ad(tmp_path)
