"""Shared preprocessing for baselines, cached per benchmark run in ``EmbedContext.cache``.

The recipe is the standard scanpy one (Wolf et al., Genome Biol. 2018):
log-normalize to 10,000 counts per cell, select highly variable genes
(``flavor="seurat"`` on log data), scale to unit variance clipped at 10, PCA.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from sceval.data.contract import get_counts, get_lognorm
from sceval.models.base import EmbedContext

__all__ = ["hvg_mask", "lognorm", "n_pcs", "pca", "scaled_hvg"]

N_TOP_GENES = 2000
N_COMPS = 50


def lognorm(adata: Any, ctx: EmbedContext) -> sp.csr_matrix:
    """Log-normalized cells x genes matrix (all genes), cached."""
    if "lognorm" not in ctx.cache:
        ctx.cache["lognorm"] = get_lognorm(adata, ctx.report)
    return ctx.cache["lognorm"]


def hvg_mask(adata: Any, ctx: EmbedContext, n_top_genes: int = N_TOP_GENES) -> np.ndarray:
    """Boolean mask of highly variable genes (all genes when there are few), cached."""
    key = f"hvg_{n_top_genes}"
    if key not in ctx.cache:
        import anndata as ad
        import scanpy as sc

        x = lognorm(adata, ctx)
        if x.shape[1] <= n_top_genes:
            mask = np.ones(x.shape[1], dtype=bool)
        else:
            tmp = ad.AnnData(X=x.copy())
            sc.pp.highly_variable_genes(tmp, n_top_genes=n_top_genes, flavor="seurat")
            mask = tmp.var["highly_variable"].to_numpy()
        ctx.cache[key] = mask
    return ctx.cache[key]


def hvg_counts(adata: Any, ctx: EmbedContext) -> sp.csr_matrix:
    """Raw counts restricted to the highly variable genes."""
    return get_counts(adata, ctx.report)[:, hvg_mask(adata, ctx)]


def scale(x: Any, max_value: float = 10.0) -> np.ndarray:
    """Center and scale genes to unit variance, clipped at ``max_value`` (dense float32)."""
    x = np.asarray(x.toarray() if sp.issparse(x) else x, dtype=np.float64)
    mu = x.mean(axis=0)
    sd = x.std(axis=0, ddof=1) if x.shape[0] > 1 else np.ones(x.shape[1])
    sd[sd == 0] = 1.0
    z = (x - mu) / sd
    np.clip(z, -max_value, max_value, out=z)
    return z.astype(np.float32)


def scaled_hvg(adata: Any, ctx: EmbedContext) -> np.ndarray:
    """Scaled log-normalized HVG matrix (dense), cached."""
    if "scaled_hvg" not in ctx.cache:
        ctx.cache["scaled_hvg"] = scale(lognorm(adata, ctx)[:, hvg_mask(adata, ctx)])
    return ctx.cache["scaled_hvg"]


def n_pcs(shape: tuple[int, int], n_comps: int = N_COMPS) -> int:
    """Number of components that fits a matrix of ``shape``."""
    return int(max(1, min(n_comps, shape[0] - 1, shape[1] - 1)))


def pca(x: np.ndarray, n_comps: int = N_COMPS, seed: int = 0) -> np.ndarray:
    """PCA scores of a dense centered matrix (randomized SVD with a fixed seed)."""
    from sklearn.decomposition import PCA

    k = n_pcs(x.shape, n_comps)
    solver = "full" if min(x.shape) <= 200 else "randomized"
    est = PCA(n_components=k, svd_solver=solver, random_state=seed)
    return est.fit_transform(x).astype(np.float32)


def unintegrated_pca(adata: Any, ctx: EmbedContext, n_comps: int = N_COMPS) -> np.ndarray:
    """PCA of the scaled HVG matrix before any batch correction, cached per seed."""
    key = f"pca_{n_comps}_{ctx.seed}"
    if key not in ctx.cache:
        ctx.cache[key] = pca(scaled_hvg(adata, ctx), n_comps, seed=ctx.seed)
    return ctx.cache[key]
