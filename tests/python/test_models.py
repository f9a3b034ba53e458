"""The shared model contract: every registered model on the same small data."""

from __future__ import annotations

import numpy as np
import pytest

from sceval._errors import ModelSkippedError
from sceval.data import validate
from sceval.models import MODELS, EmbedContext, ExternalEmbedding, get_model

FAST_PARAMS = {"scvi": {"max_epochs": 2, "n_latent": 8}}


def _foundation_archs() -> tuple[str, ...]:
    from sceval.testing import tiny_checkpoint_archs

    return tuple(tiny_checkpoint_archs())


FOUNDATION_ARCHS = _foundation_archs()


def _ctx(adata, seed=0, **kw):
    rep = validate(adata, batch_key=kw.get("batch_key", "batch"), label_key="cell_type")
    return EmbedContext(
        report=rep, seed=seed, batch_key=kw.get("batch_key", "batch"), label_key="cell_type"
    )


def _params(key, small, tmp_path_factory):
    params = dict(FAST_PARAMS.get(key, {}))
    if key.split(".", 1)[0] in FOUNDATION_ARCHS:
        from sceval.testing import tiny_checkpoint

        folder = tmp_path_factory.mktemp(key.replace(".", "_"))
        params["checkpoint"] = str(tiny_checkpoint(key, folder, small))
    return params


@pytest.mark.parametrize("key", MODELS.keys())
def test_model_contract(small, key, tmp_path_factory):
    """Every registered model (foundation ones on a tiny official-layout checkpoint)."""
    params = _params(key, small, tmp_path_factory)
    model = get_model(key, **params)
    info = model.info
    assert info.key == key
    assert info.kind in ("foundation", "baseline", "control")
    if not info.embeds_cells:  # task-specific baselines say so instead of embedding
        assert info.provides
        with pytest.raises(
            ModelSkippedError, match=r"does not embed cells|no cell embedding|it predicts"
        ):
            model.check(small, _ctx(small))
            model.embed_cells(small, _ctx(small))
        return
    assert info.input in ("counts", "lognorm")
    assert info.description
    ctx = _ctx(small)
    model.check(small, ctx)
    emb = model.embed_cells(small, ctx)
    assert emb.ndim == 2 and emb.shape[0] == small.n_obs and emb.shape[1] >= 1
    assert np.all(np.isfinite(emb))
    # seeded: the same seed gives the same embedding
    emb2 = get_model(key, **params).embed_cells(small, _ctx(small))
    np.testing.assert_allclose(emb, emb2, rtol=1e-4, atol=1e-4)


def test_count_models_skip_without_counts():
    import scanpy as sc

    pb = sc.datasets.pbmc68k_reduced()
    rep = validate(pb, batch_key="phase", label_key="bulk_labels")
    ctx = EmbedContext(report=rep, batch_key="phase", label_key="bulk_labels")
    with pytest.raises(ModelSkippedError, match=r"needs raw counts.*adata.layers\['counts'\]"):
        get_model("scvi").check(pb, ctx)


def test_batch_models_skip_with_one_batch(small_copy):
    small_copy.obs["one"] = "b"
    ctx = _ctx(small_copy, batch_key="one")
    with pytest.raises(ModelSkippedError, match=r"needs >= 2 batches"):
        get_model("harmony").check(small_copy, ctx)


def test_shuffled_is_a_permutation_of_unintegrated(small):
    ctx = _ctx(small)
    u = get_model("unintegrated").embed_cells(small, ctx)
    s = get_model("shuffled").embed_cells(small, ctx)
    assert not np.allclose(u, s)
    np.testing.assert_allclose(np.sort(u, axis=0), np.sort(s, axis=0))


def test_labels_control_is_one_hot(small):
    emb = get_model("labels").embed_cells(small, _ctx(small))
    codes = small.obs["cell_type"].cat.codes.to_numpy()
    assert emb.shape[1] == small.obs["cell_type"].nunique()
    assert np.all(emb.argmax(1) == codes)


def test_harmony_reduces_batch_separation(small):
    """Harmony moves batch centroids together relative to the uncorrected PCA."""
    ctx = _ctx(small)
    b = small.obs["batch"].to_numpy()

    def spread(e):
        cents = np.stack([e[b == k].mean(0) for k in np.unique(b)])
        return np.linalg.norm(cents - cents.mean(0), axis=1).mean()

    u = get_model("unintegrated").embed_cells(small, ctx)
    h = get_model("harmony").embed_cells(small, ctx)
    assert spread(h) < 0.5 * spread(u)


def test_external_embedding(small_copy):
    ctx = _ctx(small_copy)
    ext = ExternalEmbedding("X_mine")
    assert ext.info.key == "mine" and ext.info.kind == "external"
    with pytest.raises(ModelSkippedError, match=r"'X_mine' not found in adata.obsm"):
        ext.check(small_copy, ctx)
    small_copy.obsm["X_mine"] = np.zeros((small_copy.n_obs, 3))
    ext.check(small_copy, ctx)
    assert ext.embed_cells(small_copy, ctx).shape == (small_copy.n_obs, 3)


def test_every_foundation_model_has_a_checkpoint_writer():
    """A new architecture must come with a writer in ``sceval.testing.<arch>`` so the
    contract test above runs it on a tiny official-layout checkpoint."""
    for key in MODELS.keys():
        if MODELS.get(key).info.kind == "foundation":
            assert key.split(".", 1)[0] in FOUNDATION_ARCHS, key
            assert MODELS.get(key).info.license, f"{key} has no license in its ModelInfo"
