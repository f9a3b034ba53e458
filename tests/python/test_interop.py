"""sceval.interop: the Python half of the R conversion (no R needed here)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from sceval import interop
from sceval._errors import DataContractError, ModelSkippedError
from sceval.benchmark.results import RESULT_COLUMNS


def _spec(kind, values, na=None, **kw):
    out = {"type": kind, "values": values}
    if na is not None:
        out["na"] = np.asarray(na, dtype=bool)
    out.update(kw)
    return out


# ---- columns ---------------------------------------------------------------------------


def test_factor_keeps_levels_order_and_unused_levels():
    spec = _spec(
        "factor",
        np.array([1, 0, -2147483648, 1], dtype=np.int32),  # R NA code as reticulate sends it
        na=[False, False, True, False],
        levels=np.array(["b", "a", "unused"], dtype=object),
        ordered=False,
    )
    col = interop.column_from_r(spec, 4)
    assert isinstance(col, pd.Categorical)
    assert list(col.categories) == ["b", "a", "unused"]
    assert list(col.astype(object)[[0, 1, 3]]) == ["a", "b", "a"]
    assert pd.isna(col[2])
    assert not col.ordered


def test_ordered_factor_and_single_level_scalar():
    col = interop.column_from_r(_spec("factor", 0, levels="only", ordered=True), 1)
    assert col.ordered
    assert list(col.categories) == ["only"]
    assert col[0] == "only"


@pytest.mark.parametrize(
    ("kind", "values", "dtype"),
    [
        ("integer", np.array([1, -2147483648, 3], dtype=np.int32), "Int32"),
        ("logical", np.array([True, True, False]), "boolean"),
    ],
)
def test_missing_values_survive(kind, values, dtype):
    col = interop.column_from_r(_spec(kind, values, na=[False, True, False]), 3)
    assert str(col.dtype) == dtype
    assert pd.isna(col[1])
    assert col[0] == values[0] and col[2] == values[2]


def test_plain_columns_without_missing_values():
    assert interop.column_from_r(_spec("integer", np.arange(3, dtype=np.int32)), 3).dtype == (
        np.int32
    )
    assert interop.column_from_r(_spec("logical", np.array([True, False])), 2).dtype == bool
    d = interop.column_from_r(_spec("double", np.array([1.5, 0.0]), na=[False, True]), 2)
    assert d[0] == 1.5 and np.isnan(d[1])
    s = interop.column_from_r(
        _spec("character", np.array(["x", "", "z"], dtype=object), na=[False, True, False]), 3
    )
    assert list(s) == ["x", None, "z"]


def test_column_errors():
    with pytest.raises(ValueError, match="unknown R column type 'complex'"):
        interop.column_from_r(_spec("complex", [1]), 1)
    with pytest.raises(ValueError, match=r"has 2 values .* expected 3"):
        interop.column_from_r(_spec("double", [1.0, 2.0]), 3, "obs.x")


# ---- AnnData ---------------------------------------------------------------------------


def _genes_by_cells(n_genes=30, n_cells=20, seed=0):
    rng = np.random.default_rng(seed)
    dense = rng.poisson(0.3, size=(n_genes, n_cells)).astype(np.float64)
    return sp.csc_matrix(dense), dense


def test_sparse_matrix_is_transposed_without_copy():
    m, dense = _genes_by_cells()
    adata = interop.anndata_from_r(
        m,
        obs_names=np.array([f"c{i}" for i in range(20)], dtype=object),
        var_names=np.array([f"g{i}" for i in range(30)], dtype=object),
    )
    assert adata.shape == (20, 30)
    assert sp.issparse(adata.X) and adata.X.format == "csr"
    assert np.shares_memory(adata.X.data, m.data)
    np.testing.assert_array_equal(adata.X.toarray(), dense.T)
    assert list(adata.obs_names[:2]) == ["c0", "c1"]
    assert list(adata.var_names[-1:]) == ["g29"]


def test_dense_obs_var_obsm_layers():
    _, dense = _genes_by_cells()
    f = np.asfortranarray(dense)  # reticulate hands R matrices over in Fortran order
    obs = {"grp": _spec("factor", np.arange(20) % 2, levels=["u", "v", "w"], ordered=False)}
    var = {"sym": _spec("character", np.array([f"S{i}" for i in range(30)], dtype=object))}
    emb = np.arange(40, dtype=np.float64).reshape(20, 2)
    adata = interop.anndata_from_r(
        f,
        obs=obs,
        var=var,
        obsm={"X_PCA": emb},
        layers={"logcounts": np.log1p(f)},
        obs_names=[f"c{i}" for i in range(20)],
        var_names=[f"g{i}" for i in range(30)],
    )
    np.testing.assert_array_equal(adata.X, dense.T)
    assert np.shares_memory(adata.X, f)
    assert list(adata.obs["grp"].cat.categories) == ["u", "v", "w"]
    assert adata.var["sym"].iloc[3] == "S3"
    np.testing.assert_array_equal(adata.obsm["X_PCA"], emb)
    np.testing.assert_allclose(adata.layers["logcounts"], np.log1p(dense.T))


def test_single_cell_and_default_names():
    m = sp.csc_matrix(np.array([[1.0], [0.0], [2.0]]))
    adata = interop.anndata_from_r(m, obs_names="only_cell")
    assert adata.shape == (1, 3)
    assert list(adata.obs_names) == ["only_cell"]
    assert list(adata.var_names) == ["0", "1", "2"]


def test_anndata_errors():
    m, _ = _genes_by_cells()
    with pytest.raises(DataContractError, match="got 3 cell names"):
        interop.anndata_from_r(m, obs_names=["a", "b", "c"])
    with pytest.raises(DataContractError, match="must be numeric"):
        interop.anndata_from_r(np.array([["a", "b"], ["c", "d"]]))
    with pytest.raises(DataContractError, match="has 3 rows; expected 20"):
        interop.anndata_from_r(m, obsm={"X_bad": np.zeros((3, 2))})


# ---- tables back to R ------------------------------------------------------------------


def test_frame_to_r_results_schema(small):
    res = interop.benchmark(
        small.copy(),
        models=["labels"],
        tasks=["annotation"],
        label_key="cell_type",
        seeds=[0, 1],
    )
    assert res["names"] == list(RESULT_COLUMNS)
    expect = {"string": "character", "int64": "integer", "float64": "double"}
    expect["boolean"] = "logical"
    assert res["types"] == {c: expect[t] for c, t in RESULT_COLUMNS.items()}
    assert res["values"]["seed"].dtype == np.int32
    assert set(res["values"]["seed"]) == {0, 1}
    assert res["values"]["model"].dtype.kind == "U"
    assert not res["na"]["value"].any()


def test_frame_to_r_missing_values_and_empty():
    df = pd.DataFrame(
        {
            "s": pd.array(["a", None], dtype="string"),
            "b": pd.array([True, None], dtype="boolean"),
            "i": pd.array([1, None], dtype="Int64"),
            "f": [np.nan, 2.0],
            "big": [2**40, 1],
        }
    )
    out = interop.frame_to_r(df)
    assert out["types"] == {
        "s": "character",
        "b": "logical",
        "i": "integer",
        "f": "double",
        "big": "double",
    }
    assert list(out["values"]["s"]) == ["a", ""]
    for col in ("s", "b", "i"):
        assert list(out["na"][col]) == [False, True]
    assert list(out["na"]["f"]) == [True, False]
    empty = interop.frame_to_r(df.iloc[:0])
    assert all(v.size == 0 for v in empty["values"].values())


# ---- entry points ----------------------------------------------------------------------


def test_score_embeddings_only_scores_external(small_copy):
    rng = np.random.default_rng(0)
    small_copy.obsm["X_mine"] = rng.normal(size=(small_copy.n_obs, 5))
    res = interop.score_embeddings(
        small_copy, ["X_mine"], tasks=["annotation"], label_key="cell_type"
    )
    assert set(res["values"]["model"]) == {"mine"}
    assert set(res["values"]["model_kind"]) == {"external"}
    assert set(res["values"]["status"]) == {"ok"}


def test_embedding_name_clash_and_empty():
    with pytest.raises(ValueError, match="also model keys"):
        interop.benchmark(None, models=["pca"], embeddings=["X_pca"])
    with pytest.raises(ValueError, match="embeddings is empty"):
        interop.score_embeddings(None, [])


def test_whole_floats_from_r_become_ints():
    got = interop._whole_to_int({"scvi": {"max_epochs": 50.0, "lr": 0.5, "layers": [2.0]}})
    assert got == {"scvi": {"max_epochs": 50, "lr": 0.5, "layers": [2]}}
    assert isinstance(got["scvi"]["max_epochs"], int)


def test_embed_runs_one_model_and_reports_skips(small_copy):
    emb = interop.embed(small_copy, "pca", params={"n_comps": 7.0}, batch_key="batch")
    assert emb.shape == (small_copy.n_obs, 7) and emb.dtype == np.float32
    small_copy.obs["one"] = "b"
    with pytest.raises(ModelSkippedError, match="needs >= 2 batches"):
        interop.embed(small_copy, "harmony", batch_key="one")
