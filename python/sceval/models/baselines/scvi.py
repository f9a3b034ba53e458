"""scVI latent space (scvi-tools)."""

from __future__ import annotations

from typing import Any

import numpy as np

from sceval.models import _preprocess as pp
from sceval.models.base import EmbedContext, Model, ModelInfo, register_model


def default_max_epochs(n_cells: int) -> int:
    """scvi-tools' heuristic: ``min(round(20000 / n_cells * 400), 400)``."""
    return int(min(round(20000 / max(n_cells, 1) * 400), 400))


@register_model
class SCVIModel(Model):
    """``scvi``: scVI (Lopez et al., Nat. Methods 2018) latent mean on HVG counts.

    Parameters
    ----------
    n_latent
        Latent dimension (default 30, as in the scIB benchmark).
    max_epochs
        Training epochs; default scvi-tools' size heuristic.
    """

    info = ModelInfo(
        key="scvi",
        kind="baseline",
        input="counts",
        needs_batch=True,
        requires=("scvi",),
        install="pip install scvi-tools",
        description="scVI variational autoencoder latent space, batch as covariate",
        citation="Lopez et al., Nat. Methods 2018",
    )

    def embed_cells(self, adata: Any, ctx: EmbedContext) -> np.ndarray:
        import anndata as ad
        import scvi

        counts = pp.hvg_counts(adata, ctx)
        tmp = ad.AnnData(X=counts, obs=adata.obs[[ctx.batch_key]].copy())
        tmp.obs[ctx.batch_key] = tmp.obs[ctx.batch_key].astype(str).astype("category")
        scvi.settings.seed = int(ctx.seed)
        scvi.model.SCVI.setup_anndata(tmp, batch_key=ctx.batch_key)
        model = scvi.model.SCVI(tmp, n_latent=int(self.params.get("n_latent", 30)))
        epochs = self.params.get("max_epochs") or default_max_epochs(tmp.n_obs)
        accelerator = "gpu" if ctx.device.startswith("cuda") else "cpu"
        model.train(
            max_epochs=int(epochs),
            accelerator=accelerator,
            enable_progress_bar=False,
            enable_model_summary=False,
            logger=False,
        )
        return np.asarray(model.get_latent_representation(), dtype=np.float32)
