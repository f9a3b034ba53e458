"""PCA on log-normalized highly variable genes."""

from __future__ import annotations

from typing import Any

import numpy as np

from sceval.models import _preprocess as pp
from sceval.models.base import EmbedContext, Model, ModelInfo, register_model


@register_model
class PCAModel(Model):
    """``pca``: log-normalize, 2,000 HVGs, scale, 50 principal components (scanpy recipe).

    Parameters
    ----------
    n_comps
        Number of components (capped by the data shape).
    """

    info = ModelInfo(
        key="pca",
        kind="baseline",
        input="lognorm",
        requires=("scanpy",),
        install="pip install scanpy",
        description="PCA of log-normalized, scaled highly variable genes (scanpy recipe)",
        citation="Wolf et al., Genome Biol. 2018 (scanpy)",
    )

    def embed_cells(self, adata: Any, ctx: EmbedContext) -> np.ndarray:
        return pp.unintegrated_pca(adata, ctx, int(self.params.get("n_comps", pp.N_COMPS)))
