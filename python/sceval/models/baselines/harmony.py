"""Harmony batch correction of the PCA embedding (harmonypy)."""

from __future__ import annotations

from typing import Any

import numpy as np

from sceval.models import _preprocess as pp
from sceval.models.base import EmbedContext, Model, ModelInfo, register_model


@register_model
class HarmonyModel(Model):
    """``harmony``: Harmony (Korsunsky et al., Nat. Methods 2019) on the PCA embedding.

    Parameters
    ----------
    theta
        Diversity penalty (harmonypy default 2).
    max_iter_harmony
        Maximum Harmony iterations (default 10).
    """

    info = ModelInfo(
        key="harmony",
        kind="baseline",
        input="lognorm",
        needs_batch=True,
        requires=("harmonypy",),
        install="pip install harmonypy",
        description="Harmony soft-clustering batch correction of the PCA embedding",
        citation="Korsunsky et al., Nat. Methods 2019",
    )

    def embed_cells(self, adata: Any, ctx: EmbedContext) -> np.ndarray:
        import harmonypy
        import pandas as pd

        x = pp.unintegrated_pca(adata, ctx).astype(np.float64)
        meta = pd.DataFrame({"batch": adata.obs[ctx.batch_key].astype(str).to_numpy()})
        kwargs = {k: self.params[k] for k in ("theta", "max_iter_harmony") if k in self.params}
        ho = harmonypy.run_harmony(
            x, meta, ["batch"], random_state=ctx.seed, verbose=False, **kwargs
        )
        z = np.asarray(ho.Z_corr)
        if z.shape[0] != x.shape[0]:  # harmonypy < 2 returns d x n
            z = z.T
        return z.astype(np.float32)
