"""sceval.r: rpy2 bridge (read .rds, write SingleCellExperiment) and the R baselines."""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from sceval import r as sr
from sceval._errors import DataContractError, MissingDependencyError, ModelSkippedError
from sceval.data import validate
from sceval.models import MODELS, EmbedContext, get_model

R_MODELS = ("seurat_cca", "seurat_rpca", "singler", "combat_sva")


def test_import_is_lazy_and_models_are_registered():
    for key in R_MODELS:
        assert key in MODELS
        info = MODELS.get(key).info
        assert info.kind == "baseline"
        assert "rpy2==3.5.17" in info.install


def test_missing_rpy2_names_the_install_command(monkeypatch):
    monkeypatch.setattr(sr, "_STATE", {})
    monkeypatch.setitem(sys.modules, "rpy2", None)
    monkeypatch.setitem(sys.modules, "rpy2.robjects", None)
    with pytest.raises(MissingDependencyError, match=r"pip install rpy2==3\.5\.17 anndata2ri=="):
        sr.read_rds(__file__)
    assert not sr.r_available()


# ---- everything below needs rpy2 and R ---------------------------------------------------

needs_r = pytest.mark.skipif(
    importlib.util.find_spec("rpy2") is None, reason=f"rpy2 not installed: {sr.INSTALL}"
)


def _ctx(adata, **kw):
    kw = {"batch_key": "batch", "label_key": "cell_type", **kw}
    return EmbedContext(report=validate(adata, **kw), **kw)


def _r(code):
    return sr._r().r(code)


@needs_r
def test_models_skip_when_r_or_package_is_missing(small, monkeypatch):
    model = get_model("singler")
    monkeypatch.setattr(model, "r_packages", ("NoSuchRPackage42",))
    with pytest.raises(ModelSkippedError, match=r"needs the R package\(s\) \['NoSuchRPackage42'\]"):
        model.check(small, _ctx(small))

    def no_r():
        raise MissingDependencyError("rpy2 is installed but cannot start R")

    monkeypatch.setattr(sr, "_r", no_r)
    with pytest.raises(ModelSkippedError, match=r"model 'combat_sva': rpy2 .* cannot start R"):
        get_model("combat_sva").check(small, _ctx(small))


def test_inside_r_is_refused_not_crashed(small, monkeypatch):
    """Under reticulate (module rpycall present) rpy2 would crash R: refuse cleanly."""
    monkeypatch.setitem(sys.modules, "rpycall", object())
    with pytest.raises(ModelSkippedError, match=r"model 'singler': this Python runs inside R"):
        get_model("singler").check(small, _ctx(small))
    with pytest.raises(sr.InsideRError, match="embeddings ="):
        sr.to_sce(small)


@needs_r
def test_combat_seq_skips_without_counts(small):
    lognorm = small.copy()
    lognorm.X = sp.csr_matrix(np.log1p(small.X.toarray()))
    del lognorm.layers["counts"]
    with pytest.raises(ModelSkippedError, match=r"method='seq'.*needs raw counts"):
        get_model("combat_sva").check(lognorm, _ctx(lognorm))


@needs_r
def test_read_rds_sce(tmp_path):
    path = tmp_path / "sce.rds"
    _r(
        f"""
        set.seed(1)
        counts <- Matrix::rsparsematrix(50, 30, 0.2, rand.x = function(n) rpois(n, 5) + 1)
        dimnames(counts) <- list(paste0("G_", 1:50), paste0("cell", 1:30))
        sce <- SingleCellExperiment::SingleCellExperiment(
            assays = list(logcounts = log1p(counts), counts = counts))
        sce$grp <- factor(rep(c("b", "a"), 15), levels = c("b", "a", "unused"))
        sce$n <- c(NA, 2:30)
        SummarizedExperiment::rowData(sce)$symbol <- paste0("S", 1:50)
        SingleCellExperiment::reducedDim(sce, "PCA") <- matrix(seq_len(60) / 7, 30, 2)
        saveRDS(sce, "{path}")
        """
    )
    adata = sr.read_rds(path)
    assert adata.shape == (30, 50)
    assert sp.issparse(adata.X)
    counts = np.asarray(_r("as.matrix(counts)"))
    np.testing.assert_array_equal(adata.X.toarray(), counts.T)
    np.testing.assert_allclose(adata.layers["logcounts"].toarray(), np.log1p(counts.T))
    assert list(adata.obs_names[:2]) == ["cell1", "cell2"]
    assert adata.var_names[0] == "G_1"
    assert list(adata.obs["grp"].cat.categories) == ["b", "a", "unused"]
    assert pd.isna(adata.obs["n"].iloc[0]) and adata.obs["n"].iloc[1] == 2
    assert adata.var["symbol"].iloc[0] == "S1"
    np.testing.assert_allclose(adata.obsm["X_PCA"][:, 0], np.arange(1, 31) / 7)
    # another assay as X
    assert sr.read_rds(path, assay="logcounts").X.max() < 5


@needs_r
def test_read_rds_seurat(tmp_path):
    path = tmp_path / "pbmc.rds"
    _r(f'data("pbmc_small", package = "SeuratObject"); saveRDS(pbmc_small, "{path}")')
    adata = sr.read_rds(path)
    assert adata.shape == (80, 230)
    assert sp.issparse(adata.X)
    ref = np.asarray(_r("as.matrix(SeuratObject::GetAssayData(pbmc_small, slot = 'counts'))"))
    np.testing.assert_array_equal(adata.X.toarray(), ref.T)
    assert set(adata.obsm.keys()) == {"X_pca", "X_tsne"}
    assert list(adata.obs["groups"].unique()) == ["g2", "g1"]
    levels = list(_r("levels(pbmc_small$RNA_snn_res.1)"))
    assert list(adata.obs["RNA_snn_res.1"].cat.categories) == levels


@needs_r
def test_read_rds_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="is not a file"):
        sr.read_rds(tmp_path / "nope.rds")
    path = tmp_path / "sce.rds"
    _r(f'saveRDS(SingleCellExperiment::SingleCellExperiment(list(counts = diag(3))), "{path}")')
    with pytest.raises(DataContractError, match="assay 'raw' not found; available assays: counts"):
        sr.read_rds(path, assay="raw")
    split = tmp_path / "v5.rds"
    _r(
        f"""
        data("pbmc_small", package = "SeuratObject")
        x <- pbmc_small
        fake <- structure(list(), class = structure("Assay5", package = "SeuratObject"))
        attr(fake, "layers") <- list(counts.1 = NULL, counts.2 = NULL)
        x@assays$RNA <- fake
        saveRDS(x, "{split}")
        """
    )
    with pytest.raises(DataContractError, match=r"split into counts\.1, counts\.2.*JoinLayers"):
        sr.read_rds(split)


@needs_r
def test_to_sce_and_write_rds_round_trip(small, tmp_path):
    adata = small[:50].copy()
    adata.obs["cell_type"] = adata.obs["cell_type"].cat.add_categories(["never_seen"])
    adata.obsm["X_harmony"] = np.arange(100, dtype=np.float32).reshape(50, 2)
    sce = sr.to_sce(adata, assay_name="raw")
    assert list(sr._r().r["assayNames"](sce)) == ["raw", "counts"]
    assert list(sr._r().r["reducedDimNames"](sce)) == ["harmony"]
    path = sr.write_rds(adata, tmp_path / "out" / "small.rds")
    back = sr.read_rds(path, assay="X")
    np.testing.assert_array_equal(back.X.toarray(), adata.X.toarray())
    assert list(back.obs_names) == list(adata.obs_names)
    assert list(back.obs["cell_type"].cat.categories) == list(adata.obs["cell_type"].cat.categories)
    np.testing.assert_allclose(back.obsm["X_harmony"], adata.obsm["X_harmony"])
    with pytest.raises(ValueError, match="also a layer name"):
        sr.to_sce(adata, assay_name="counts")


@pytest.fixture(scope="module")
def tiny():
    from sceval.testing import small_dataset

    return small_dataset(n_cells=240, n_genes=200, n_cell_types=3)


@needs_r
@pytest.mark.slow
@pytest.mark.parametrize("key", R_MODELS)
def test_r_baselines_embed_and_are_seeded(tiny, key):
    ctx = _ctx(tiny)
    model = get_model(key)
    model.check(tiny, ctx)
    emb = model.embed_cells(tiny, ctx)
    assert emb.shape[0] == tiny.n_obs and emb.shape[1] >= 1
    assert emb.dtype == np.float32 and np.all(np.isfinite(emb))
    again = get_model(key).embed_cells(tiny, _ctx(tiny))
    np.testing.assert_allclose(emb, again, rtol=1e-4, atol=1e-4)


@needs_r
def test_singler_scores_are_out_of_fold(tiny):
    """Each column is a label; a cell scores highest for its own label on easy data."""
    emb = get_model("singler", folds=3).embed_cells(tiny, _ctx(tiny))
    labels = tiny.obs["cell_type"].astype(str).to_numpy()
    cats = np.array(sorted(set(labels)))
    assert emb.shape == (tiny.n_obs, cats.size)
    assert (cats[emb.argmax(1)] == labels).mean() > 0.9
    with pytest.raises(ValueError, match="folds >= 2"):
        get_model("singler", folds=1).embed_cells(tiny, _ctx(tiny))


@needs_r
def test_combat_lognorm_method(tiny):
    emb = get_model("combat_sva", method="lognorm", n_comps=10).embed_cells(tiny, _ctx(tiny))
    assert emb.shape == (tiny.n_obs, 10)
    with pytest.raises(ValueError, match="'seq' or 'lognorm'"):
        get_model("combat_sva", method="nope").check(tiny, _ctx(tiny))
