"""ComBat (scanpy) on log-normalized HVGs, then PCA."""

from __future__ import annotations

from typing import Any

import numpy as np

from sceval.models import _preprocess as pp
from sceval.models.base import EmbedContext, Model, ModelInfo, register_model


@register_model
class CombatModel(Model):
    """``combat``: empirical-Bayes location/scale batch correction (Johnson et al., 2007)."""

    info = ModelInfo(
        key="combat",
        kind="baseline",
        input="lognorm",
        needs_batch=True,
        requires=("scanpy",),
        install="pip install scanpy",
        description="scanpy ComBat on log-normalized HVGs, then scaled PCA",
        citation="Johnson, Li & Rabinovic, Biostatistics 2007",
    )

    def embed_cells(self, adata: Any, ctx: EmbedContext) -> np.ndarray:
        import anndata as ad
        import scanpy as sc

        x = pp.lognorm(adata, ctx)[:, pp.hvg_mask(adata, ctx)].toarray()
        tmp = ad.AnnData(X=x, obs=adata.obs[[ctx.batch_key]].copy())
        tmp.obs[ctx.batch_key] = tmp.obs[ctx.batch_key].astype(str).astype("category")
        corrected = sc.pp.combat(tmp, key=ctx.batch_key, inplace=False)
        return pp.pca(pp.scale(np.asarray(corrected)), seed=ctx.seed)
