"""Open Problems-style controls that bracket every benchmark.

* ``unintegrated`` (negative control for batch correction): the PCA embedding of the
  uncorrected data, the reference point an integration method must improve on.
* ``shuffled`` (negative control for biology): the same embedding with its rows randomly
  permuted across cells, which destroys all cell-level structure.
* ``labels`` (positive control for biology): a one-hot embedding of the true labels plus
  tiny Gaussian jitter (sd 0.01) to break ties, the best bio-conservation an embedding
  can have; batch mixing within a label is then random (good).

See Luecken et al., "Defining and benchmarking open problems in single-cell analysis",
Nat. Biotechnol. 2025, for the control design.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sceval._errors import ModelSkippedError
from sceval.models import _preprocess as pp
from sceval.models.base import EmbedContext, Model, ModelInfo, register_model

__all__ = ["ExternalEmbedding", "LabelsControl", "ShuffledControl", "UnintegratedControl"]


@register_model
class UnintegratedControl(Model):
    """``unintegrated``: PCA of the uncorrected data (negative control for integration)."""

    info = ModelInfo(
        key="unintegrated",
        kind="control",
        input="lognorm",
        requires=("scanpy",),
        description="negative control: PCA of uncorrected data",
        citation="Luecken et al., Nat. Biotechnol. 2025 (Open Problems controls)",
    )

    def embed_cells(self, adata: Any, ctx: EmbedContext) -> np.ndarray:
        return pp.unintegrated_pca(adata, ctx)


@register_model
class ShuffledControl(Model):
    """``shuffled``: the unintegrated PCA with rows permuted (negative control for biology)."""

    info = ModelInfo(
        key="shuffled",
        kind="control",
        input="lognorm",
        requires=("scanpy",),
        description="negative control: PCA rows randomly permuted across cells (seeded)",
        citation="Luecken et al., Nat. Biotechnol. 2025 (Open Problems controls)",
    )

    def embed_cells(self, adata: Any, ctx: EmbedContext) -> np.ndarray:
        x = pp.unintegrated_pca(adata, ctx)
        perm = np.random.default_rng(ctx.seed).permutation(x.shape[0])
        return x[perm].copy()


@register_model
class LabelsControl(Model):
    """``labels``: one-hot true labels plus jitter (positive control for biology)."""

    info = ModelInfo(
        key="labels",
        kind="control",
        input="lognorm",
        needs_labels=True,
        description="positive control: one-hot embedding of the true labels (+ sd 0.01 jitter)",
        citation="Luecken et al., Nat. Biotechnol. 2025 (Open Problems controls)",
    )

    def embed_cells(self, adata: Any, ctx: EmbedContext) -> np.ndarray:
        codes = adata.obs[ctx.label_key].astype("category").cat.codes.to_numpy()
        k = int(codes.max()) + 1
        onehot = np.eye(k, dtype=np.float32)[codes]
        noise = np.random.default_rng(ctx.seed).normal(0.0, 0.01, size=onehot.shape)
        return (onehot + noise).astype(np.float32)


class ExternalEmbedding(Model):
    """An embedding computed elsewhere (R, another tool) and stored in ``obsm``.

    Not registered: :func:`sceval.run_benchmark` creates one per name passed in
    ``embeddings=`` and reports it with ``model_kind="external"``.

    Parameters
    ----------
    obsm_key
        The ``obsm`` key holding a cells x d array.
    name
        The model name in the results table (default: ``obsm_key`` without ``X_``).
    """

    def __init__(self, obsm_key: str, name: str | None = None) -> None:
        super().__init__(obsm_key=obsm_key)
        self.obsm_key = obsm_key
        key = name or (obsm_key[2:] if obsm_key.startswith("X_") else obsm_key)
        self.info = ModelInfo(
            key=key, kind="external", input="lognorm", description=f"obsm[{obsm_key!r}]"
        )

    def check(self, adata: Any, ctx: EmbedContext) -> None:
        if self.obsm_key not in adata.obsm:
            msg = (
                f"embedding {self.obsm_key!r} not found in adata.obsm; available: "
                f"{sorted(adata.obsm.keys()) or '(none)'}. Fix: store the cells x d matrix "
                f"in adata.obsm[{self.obsm_key!r}] or pass an existing key."
            )
            raise ModelSkippedError(msg)

    def embed_cells(self, adata: Any, ctx: EmbedContext) -> np.ndarray:
        x = np.asarray(adata.obsm[self.obsm_key], dtype=np.float32)
        if x.ndim != 2 or x.shape[0] != adata.n_obs:
            msg = (
                f"embedding {self.obsm_key!r} has shape {x.shape}; expected "
                f"({adata.n_obs}, d), one row per cell."
            )
            raise ModelSkippedError(msg)
        if not np.all(np.isfinite(x)):
            msg = f"embedding {self.obsm_key!r} contains NaN or infinite values."
            raise ModelSkippedError(msg)
        return x
