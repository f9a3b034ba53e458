"""Expression imputation: hide observed counts, let the model reconstruct them.

A seeded share of the observed (non-zero) count entries of the highly variable genes
is set to zero (``mode="entries"``), or whole genes are zeroed in every cell
(``mode="genes"``: only models with prior knowledge of genes can recover them; the
baselines here are expected near 0). The model returns a log-normalized matrix
(``log1p(x / total * 1e4)``) and is scored on the held-out entries against the
log-normalized original counts: per-gene Pearson and Spearman (mean over genes), RMSE,
and the bio-conservation metrics of the ``integration`` task (NMI, ARI, label
silhouette) on the PCA of the imputed matrix when a label key is given.

Models take part by defining ``impute(counts_masked, mask, ctx)``; the baselines
``identity`` (no imputation, control), ``knn_smooth`` (MAGIC-style diffusion; van Dijk et
al., Cell 2018) and ``scvi_impute`` (scVI denoised expression; Lopez et al., Nat.
Methods 2018) are registered here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.sparse as sp

from sceval._errors import ModelSkippedError, NotApplicableError
from sceval.data.contract import get_counts
from sceval.metrics._specs import register_metrics
from sceval.metrics.expression import heldout_correlation, rmse
from sceval.models import _preprocess as pp
from sceval.models.base import EmbedContext, Model, ModelInfo, register_model
from sceval.tasks.base import MetricResult, Task, TaskInfo, register_task

__all__ = [
    "IDENTITY",
    "IMPUTATION_KEYS",
    "ImputationTask",
    "KnnSmoothImpute",
    "MaskedData",
    "ScviImpute",
    "log_normalize",
    "mask_counts",
]

IMPUTATION_KEYS = (
    "impute_pearson",
    "impute_spearman",
    "impute_rmse",
    "impute_nmi",
    "impute_ari",
    "impute_silhouette_label",
)
_DESCRIPTIONS = {
    "impute_pearson": (
        True,
        "Per-gene Pearson of held-out log-normalized values, mean over genes.",
    ),
    "impute_spearman": (True, "Per-gene Spearman of held-out values, mean over genes."),
    "impute_rmse": (False, "RMSE of held-out values on the log-normalized scale."),
    "impute_nmi": (True, "NMI of Leiden clusters of the imputed matrix's PCA vs labels."),
    "impute_ari": (True, "ARI of Leiden clusters of the imputed matrix's PCA vs labels."),
    "impute_silhouette_label": (True, "Rescaled label silhouette on the imputed matrix's PCA."),
}
register_metrics({k: (hib, "imputation", desc) for k, (hib, desc) in _DESCRIPTIONS.items()})

MODES = ("entries", "genes")
IDENTITY = "identity"


def log_normalize(counts: Any, target_sum: float = 1e4) -> np.ndarray:
    """Dense ``log1p(x / total * target_sum)`` of a cells x genes count matrix."""
    x = counts.toarray() if sp.issparse(counts) else np.asarray(counts)
    x = np.asarray(x, dtype=np.float64)
    tot = x.sum(axis=1, keepdims=True)
    tot[tot == 0] = 1.0
    return np.log1p(x / tot * target_sum).astype(np.float32)


class MaskedData:
    """The masked count matrix, the held-out entries and their true values.

    Attributes
    ----------
    masked
        Counts with the held-out entries set to 0 (CSR, cells x genes).
    mask
        Boolean CSR, True at the held-out entries.
    rows, cols
        Coordinates of the held-out entries.
    truth
        Log-normalized original values (library size of the unmasked cell) there.
    genes
        Indices of the scored genes within the full gene list.
    """

    def __init__(
        self,
        masked: sp.csr_matrix,
        mask: sp.csr_matrix,
        rows: np.ndarray,
        cols: np.ndarray,
        truth: np.ndarray,
        genes: np.ndarray,
    ) -> None:
        self.masked, self.mask, self.rows, self.cols = masked, mask, rows, cols
        self.truth, self.genes = truth, genes


def _check_fraction(mask_fraction: Any) -> float:
    try:
        frac = float(mask_fraction)
    except (TypeError, ValueError):
        frac = float("nan")
    if not 0 < frac < 1:
        msg = (
            f"imputation: expected mask_fraction in (0, 1), found {mask_fraction!r}. "
            "Fix: pass e.g. task_params={'imputation': {'mask_fraction': 0.1}}."
        )
        raise ValueError(msg)
    return frac


def mask_counts(
    counts: Any, mask_fraction: float = 0.1, mode: str = "entries", seed: int = 0
) -> MaskedData:
    """Hold out a seeded share of a count matrix.

    Parameters
    ----------
    counts
        Raw counts, cells x genes.
    mask_fraction
        In (0, 1): share of the non-zero entries (``"entries"``) or of the genes
        (``"genes"``, at least one) held out.
    mode
        ``"entries"`` or ``"genes"``; held-out genes are zeroed in every cell and scored
        over all cells (zeros included).
    seed
        Seed of the draw.

    Returns
    -------
    MaskedData
    """
    frac = _check_fraction(mask_fraction)
    if mode not in MODES:
        msg = f"imputation: expected mode in {MODES}, found {mode!r}."
        raise ValueError(msg)
    c = sp.csr_matrix(counts, dtype=np.float32)
    c.eliminate_zeros()
    n, g = c.shape
    rng = np.random.default_rng(seed)
    tot = np.asarray(c.sum(axis=1)).ravel()
    tot[tot == 0] = 1.0
    if mode == "entries":
        coo = c.tocoo()
        n_hold = round(frac * coo.nnz)
        if n_hold < 1:
            msg = (
                f"imputation: mask_fraction={frac} of {coo.nnz} non-zero counts holds out "
                "nothing; raise mask_fraction or use a larger dataset."
            )
            raise NotApplicableError(msg)
        pick = np.sort(rng.choice(coo.nnz, size=n_hold, replace=False))
        rows, cols = coo.row[pick].astype(np.int64), coo.col[pick].astype(np.int64)
        vals = coo.data[pick]
    else:
        n_genes = max(1, round(frac * g))
        held = np.sort(rng.choice(g, size=n_genes, replace=False))
        rows = np.repeat(np.arange(n, dtype=np.int64), n_genes)
        cols = np.tile(held.astype(np.int64), n)
        vals = np.asarray(c[:, held].toarray(), dtype=np.float32).ravel()
    mask = sp.csr_matrix((np.ones(rows.size, dtype=bool), (rows, cols)), shape=c.shape)
    masked = c.copy()
    masked = masked - masked.multiply(mask)
    masked = sp.csr_matrix(masked, dtype=np.float32)
    masked.eliminate_zeros()
    truth = np.log1p(vals / tot[rows] * 1e4)
    return MaskedData(masked, mask, rows, cols, truth, np.unique(cols))


# ---------------------------------------------------------------------------
# baselines
# ---------------------------------------------------------------------------


class _ImputationBaseline(Model):
    """Shared part: imputation baselines make no cell embedding."""

    def embed_cells(self, adata: Any, ctx: EmbedContext) -> np.ndarray:
        msg = (
            f"{self.info.key!r} is an imputation baseline (it reconstructs expression and "
            "makes no cell embedding); run it with tasks=['imputation']."
        )
        raise ModelSkippedError(msg)

    def impute(
        self, counts_masked: sp.csr_matrix, mask: sp.csr_matrix, ctx: EmbedContext, **kwargs: Any
    ) -> Any:
        raise NotImplementedError


@register_model
class IdentityImpute(_ImputationBaseline):
    """``identity``: no imputation (the log-normalized masked counts); the control."""

    info = ModelInfo(
        key=IDENTITY,
        kind="baseline",
        embeds_cells=False,
        provides=("impute",),
        input="counts",
        description="imputation control: returns the masked data unchanged (log-normalized)",
    )

    def impute(
        self, counts_masked: sp.csr_matrix, mask: sp.csr_matrix, ctx: EmbedContext, **kwargs: Any
    ) -> np.ndarray:
        """Return ``log1p(x / total * 1e4)`` of ``counts_masked``."""
        return log_normalize(counts_masked)


def diffusion_operator(x: np.ndarray, n_neighbors: int = 15) -> sp.csr_matrix:
    """Row-stochastic Markov matrix of a symmetrized adaptive Gaussian kNN graph.

    Each cell's bandwidth is the distance to its ``n_neighbors``-th neighbour (as in
    MAGIC's adaptive kernel); the cell itself is included with weight 1.
    """
    from sceval.metrics._neighbors import compute_neighbors

    nb = compute_neighbors(x, n_neighbors)
    n, k = nb.indices.shape
    sigma = np.maximum(nb.distances[:, -1], 1e-12)
    w = np.exp(-((nb.distances / sigma[:, None]) ** 2))
    a = sp.csr_matrix((w.ravel(), (np.repeat(np.arange(n), k), nb.indices.ravel())), shape=(n, n))
    a = (a + a.T) / 2 + sp.identity(n, format="csr")
    deg = np.asarray(a.sum(axis=1)).ravel()
    return sp.csr_matrix(sp.diags(1.0 / deg) @ a)


@register_model
class KnnSmoothImpute(_ImputationBaseline):
    """``knn_smooth``: MAGIC-style diffusion (van Dijk et al., Cell 2018).

    The log-normalized masked data are scaled, reduced by a seeded PCA, a kNN graph with
    an adaptive Gaussian kernel is built on the PCs, and its Markov matrix is applied
    ``t`` times to the log-normalized values.

    Parameters
    ----------
    n_neighbors
        Neighbours of the graph (default 15).
    t
        Diffusion steps (default 3).
    n_comps
        Principal components (default 30).
    """

    info = ModelInfo(
        key="knn_smooth",
        kind="baseline",
        embeds_cells=False,
        provides=("impute",),
        input="counts",
        description="imputation baseline: MAGIC-style kNN diffusion on the masked data's PCA",
        citation="van Dijk et al., Cell 2018",
    )

    def impute(
        self, counts_masked: sp.csr_matrix, mask: sp.csr_matrix, ctx: EmbedContext, **kwargs: Any
    ) -> np.ndarray:
        """Diffuse the log-normalized masked data over the kNN graph of its PCA."""
        x = log_normalize(counts_masked)
        pcs = pp.pca(pp.scale(x), int(self.params.get("n_comps", 30)), seed=ctx.seed)
        op = diffusion_operator(pcs, int(self.params.get("n_neighbors", 15)))
        out = x.astype(np.float64)
        for _ in range(int(self.params.get("t", 3))):
            out = op @ out
        return out.astype(np.float32)


@register_model
class ScviImpute(_ImputationBaseline):
    """``scvi_impute``: scVI denoised expression ``log1p(rho * 1e4)``, where ``rho`` is
    ``get_normalized_expression()`` (per-cell gene proportions), trained on the masked
    counts (no batch covariate).

    Parameters
    ----------
    n_latent
        Latent dimension (default 10).
    max_epochs
        Training epochs; default scvi-tools' size heuristic.
    """

    info = ModelInfo(
        key="scvi_impute",
        kind="baseline",
        embeds_cells=False,
        provides=("impute",),
        input="counts",
        requires=("scvi",),
        install="pip install scvi-tools",
        description="imputation baseline: scVI denoised normalized expression",
        citation="Lopez et al., Nat. Methods 2018",
    )

    def impute(
        self, counts_masked: sp.csr_matrix, mask: sp.csr_matrix, ctx: EmbedContext, **kwargs: Any
    ) -> np.ndarray:
        """Train scVI on ``counts_masked`` and return its log-normalized denoised mean."""
        import anndata as ad
        import scvi

        from sceval.models.baselines.scvi import default_max_epochs

        tmp = ad.AnnData(X=sp.csr_matrix(counts_masked, dtype=np.float32))
        scvi.settings.seed = int(ctx.seed)
        scvi.model.SCVI.setup_anndata(tmp)
        model = scvi.model.SCVI(tmp, n_latent=int(self.params.get("n_latent", 10)))
        epochs = self.params.get("max_epochs") or default_max_epochs(tmp.n_obs)
        model.train(
            max_epochs=int(epochs),
            accelerator="gpu" if ctx.device.startswith("cuda") else "cpu",
            enable_progress_bar=False,
            enable_model_summary=False,
            logger=False,
        )
        rho = np.asarray(model.get_normalized_expression(return_numpy=True), dtype=np.float64)
        return np.log1p(rho * 1e4).astype(np.float32)


# ---------------------------------------------------------------------------
# the task
# ---------------------------------------------------------------------------


@register_task
class ImputationTask(Task):
    """``imputation``: reconstruct held-out counts (see the module docstring).

    Parameters
    ----------
    mask_fraction
        In (0, 1): share of non-zero entries (or of genes) held out (default 0.1).
    mode
        ``"entries"`` (default) or ``"genes"``.
    n_top_genes
        The task works on this many highly variable genes (default 2000).
    min_values
        Genes with fewer held-out entries are not scored for correlation (default 5).
    """

    info = TaskInfo(
        key="imputation",
        needs_batch=False,
        needs_labels=False,
        metric_keys=IMPUTATION_KEYS,
        description="expression imputation: held-out counts, per-gene correlation, RMSE, bio",
        default=False,
        uses="expression imputation",
    )

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        _check_fraction(params.get("mask_fraction", 0.1))
        mode = params.get("mode", "entries")
        if mode not in MODES:
            msg = f"imputation: expected mode in {MODES}, found {mode!r}."
            raise ValueError(msg)

    def _masked(self, adata: Any, ctx: EmbedContext) -> tuple[MaskedData, np.ndarray]:
        frac = float(self.params.get("mask_fraction", 0.1))
        mode = str(self.params.get("mode", "entries"))
        n_top = int(self.params.get("n_top_genes", 2000))
        key = ("imputation_mask", frac, mode, n_top, ctx.seed)
        if key not in ctx.cache:
            hvg = pp.hvg_mask(adata, ctx, n_top)
            counts = get_counts(adata, ctx.report)[:, hvg]
            ctx.cache[key] = (mask_counts(counts, frac, mode, ctx.seed), hvg)
        return ctx.cache[key]

    def run(
        self, adata: Any, model: Any, ctx: EmbedContext, embedding: Callable[[], np.ndarray]
    ) -> list[MetricResult]:
        """Mask, let ``model.impute`` reconstruct, score the held-out entries."""
        key = model.info.key
        if not callable(getattr(model, "impute", None)):
            msg = (
                f"model {key!r} cannot impute expression (it has no impute() method); "
                "imputation scores models that reconstruct masked counts."
            )
            raise NotApplicableError(msg)
        if not ctx.report.has_counts:
            msg = (
                "imputation masks raw counts, but none were found; store raw UMI counts in "
                "adata.layers['counts'] or pass counts_layer=."
            )
            raise NotApplicableError(msg)
        model.check(adata, ctx)
        md, hvg = self._masked(adata, ctx)
        var = adata.var.iloc[np.flatnonzero(hvg)]
        names = var["gene_symbol"] if "gene_symbol" in var.columns else var.index
        out = model.impute(md.masked.copy(), md.mask, ctx, genes=[str(g) for g in names])
        out = np.asarray(out.toarray() if sp.issparse(out) else out, dtype=np.float32)
        if out.shape != md.masked.shape or not np.all(np.isfinite(out)):
            msg = (
                f"model {key!r} impute() returned shape {out.shape} (finite: "
                f"{bool(np.all(np.isfinite(out)))}); expected finite {md.masked.shape}"
            )
            raise RuntimeError(msg)
        pred = out[md.rows, md.cols]
        min_values = int(self.params.get("min_values", 5))
        res: dict[str, float] = {}
        msgs: dict[str, str] = {}
        for name, method in (("impute_pearson", "pearson"), ("impute_spearman", "spearman")):
            try:
                res[name] = heldout_correlation(
                    md.truth, pred, md.cols, method, min_values=min_values
                )
            except NotApplicableError as err:
                res[name], msgs[name] = float("nan"), str(err)
        res["impute_rmse"] = rmse(md.truth, pred)
        self._bio(out, adata, ctx, res, msgs)
        note = f"{self.params.get('mode', 'entries')}: {md.rows.size} held-out entries"
        results = []
        for k in IMPUTATION_KEYS:
            if np.isnan(res[k]):
                results.append(MetricResult(k, res[k], "not_applicable", msgs.get(k, "")))
            else:
                results.append(MetricResult(k, res[k], message=note))
        return results

    def _bio(
        self,
        imputed: np.ndarray,
        adata: Any,
        ctx: EmbedContext,
        res: dict[str, float],
        msgs: dict[str, str],
    ) -> None:
        from sceval.metrics import nmi_ari, silhouette_label

        bio = ("impute_nmi", "impute_ari", "impute_silhouette_label")
        if ctx.label_key is None:
            for k in bio:
                res[k] = float("nan")
                msgs[k] = "no label_key given; bio-conservation of the imputed matrix needs labels"
            return
        labels = adata.obs[ctx.label_key].astype(str).to_numpy()
        pcs = pp.pca(pp.scale(imputed), seed=ctx.seed)
        try:
            res["impute_nmi"], res["impute_ari"] = nmi_ari(pcs, labels, seed=ctx.seed)
            res["impute_silhouette_label"] = silhouette_label(pcs, labels)
        except NotApplicableError as err:
            for k in bio:
                res.setdefault(k, float("nan"))
                if np.isnan(res[k]):
                    msgs[k] = str(err)
