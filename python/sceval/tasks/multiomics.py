"""Multiomics: align paired RNA and ATAC profiles of the same cells.

The benchmark's AnnData is the RNA part; the ATAC part of the same cells comes through
the task parameter ``atac`` (see :class:`MultiomicsTask`). Each model gives one
embedding per cell and modality, and the two are scored as if the modalities were two
batches of ``2 n`` cells (rows: RNA cells, then ATAC cells):

* models with ``embed_multiome(rna, atac, ctx) -> (joint | None, rna_emb, atac_emb)``
  (the baselines ``concat_pca`` and ``wnn`` here) give both per-modality embeddings in
  one shared space;
* any model that embeds cells embeds the RNA and the ATAC *gene activity*
  (:func:`~sceval.data.simulate_multiome.gene_activity`, accessible peaks linked to each
  gene, counts with the RNA gene names) separately with ``embed_cells``; models with a
  fixed embedding space (foundation models) put both in one space; models fitted per
  dataset (``pca``) fit two spaces, which agree only as far as the two matrices share
  their main axes of variation (on simulated data with strong programs they often do).

Metrics: the scIB metrics of :func:`~sceval.metrics.integration_metrics` with the
modality as the batch, prefixed ``mm_`` (``mm_nmi``, ``mm_ari``, ``mm_silhouette_label``,
``mm_clisi``, ``mm_ilisi``, ``mm_silhouette_batch``, ``mm_graph_connectivity``,
``mm_bio``, ``mm_batch``, ``mm_total``), and ``foscttm``: for each cell, the share of
cells of the other modality closer to it than its own paired profile, averaged over
cells and both directions (0 perfect, about 0.5 random; lower is better).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from sceval._errors import DataContractError, ModelSkippedError, NotApplicableError
from sceval.data.simulate_multiome import align_modalities, check_atac, gene_activity
from sceval.metrics._specs import register_metrics
from sceval.models import _preprocess as pp
from sceval.models.base import EmbedContext, Model, ModelInfo, register_model
from sceval.tasks.base import MetricResult, Task, TaskInfo, register_task

__all__ = [
    "MULTIOMICS_KEYS",
    "WNN",
    "ConcatPCA",
    "MultiomicsTask",
    "foscttm",
    "joint_projection",
    "lsi",
    "wnn_weights",
]

#: integration metric -> multiomics key, category
_FROM_INTEGRATION = {
    "nmi": ("mm_nmi", "bio"),
    "ari": ("mm_ari", "bio"),
    "silhouette_label": ("mm_silhouette_label", "bio"),
    "clisi": ("mm_clisi", "bio"),
    "ilisi": ("mm_ilisi", "batch"),
    "silhouette_batch": ("mm_silhouette_batch", "batch"),
    "graph_connectivity": ("mm_graph_connectivity", "batch"),
}
_BIO = tuple(k for k, c in _FROM_INTEGRATION.values() if c == "bio")
_BATCH = tuple(k for k, c in _FROM_INTEGRATION.values() if c == "batch")
MULTIOMICS_KEYS = (*_BIO, *_BATCH, "foscttm", "mm_bio", "mm_batch", "mm_total")

_SPECS = {
    "mm_nmi": (True, "bio", "multiomics: NMI of Leiden clusters vs labels, both modalities"),
    "mm_ari": (True, "bio", "multiomics: ARI of Leiden clusters vs labels, both modalities"),
    "mm_silhouette_label": (True, "bio", "multiomics: rescaled label silhouette"),
    "mm_clisi": (True, "bio", "multiomics: rescaled cell-type LISI"),
    "mm_ilisi": (True, "batch", "multiomics: rescaled LISI of the modality (mixing)"),
    "mm_silhouette_batch": (True, "batch", "multiomics: 1 - |silhouette| of the modality"),
    "mm_graph_connectivity": (True, "batch", "multiomics: per-label kNN graph connectivity"),
    "foscttm": (
        False,
        "batch",
        "fraction of samples closer than the true match (paired cells, both directions)",
    ),
    "mm_bio": (True, "aggregate", "multiomics: mean of the mm_ bio-conservation metrics"),
    "mm_batch": (True, "aggregate", "multiomics: mean of the mm_ modality-mixing metrics"),
    "mm_total": (True, "aggregate", "multiomics: 0.6 * mm_bio + 0.4 * mm_batch"),
}
register_metrics(_SPECS)

N_COMPS = 30


# ---------------------------------------------------------------------------
# metric
# ---------------------------------------------------------------------------


def foscttm(x: np.ndarray, y: np.ndarray, chunk: int = 2048) -> float:
    """Fraction of samples closer than the true match, averaged over both directions.

    Row ``i`` of ``x`` and row ``i`` of ``y`` are the two profiles of cell ``i``. For
    each ``i``, the share of the other ``n - 1`` rows of ``y`` closer (Euclidean) to
    ``x[i]`` than ``y[i]`` is, and likewise from ``y[i]`` to ``x``; the result is the mean
    of all ``2 n`` shares (0 when every cell's match is its nearest; about 0.5 for an
    unrelated pairing). Ties count half (mid-rank), so identical embeddings score 0.5.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.ndim != 2 or x.shape != y.shape or x.shape[0] < 2:
        msg = (
            f"foscttm: expected two embeddings of the same shape (n >= 2 cells, 2-D), found "
            f"{x.shape} and {y.shape}. Fix: pass the paired cells in the same order."
        )
        raise DataContractError(msg)
    n = x.shape[0]
    xx, yy = (x**2).sum(axis=1), (y**2).sum(axis=1)
    true_d = ((x - y) ** 2).sum(axis=1)
    closer_x = np.zeros(n)  # from x[i] to rows of y
    closer_y = np.zeros(n)  # from y[j] to rows of x
    for s in range(0, n, chunk):
        e = min(s + chunk, n)
        d = xx[s:e, None] + yy[None, :] - 2.0 * x[s:e] @ y.T  # d[i, j] = |x_i - y_j|^2
        np.maximum(d, 0.0, out=d)
        tol = 1e-9 * (1.0 + true_d)
        lo_x, hi_x = (true_d[s:e] - tol[s:e])[:, None], (true_d[s:e] + tol[s:e])[:, None]
        closer_x[s:e] = (d < lo_x).sum(axis=1) + 0.5 * ((d >= lo_x) & (d <= hi_x)).sum(axis=1)
        lo_y, hi_y = (true_d - tol)[None, :], (true_d + tol)[None, :]
        closer_y += (d < lo_y).sum(axis=0) + 0.5 * ((d >= lo_y) & (d <= hi_y)).sum(axis=0)
    # each cell's own match ties with itself: remove its half count
    return float((closer_x.mean() + closer_y.mean() - 1.0) / (2.0 * (n - 1)))


# ---------------------------------------------------------------------------
# shared preprocessing of the paired baselines
# ---------------------------------------------------------------------------


def lsi(atac_bin: sp.csr_matrix, n_comps: int = N_COMPS, seed: int = 0) -> np.ndarray:
    """TF-IDF + truncated SVD (LSI) of a binary peak matrix, first component dropped.

    TF = peak / total accessible peaks of the cell, IDF = n_cells / peak's cell count,
    value ``log1p(TF * IDF * 1e4)`` (the Signac recipe, Stuart et al., Nat. Methods
    2021). The first component tracks sequencing depth and is dropped; the others are
    standardized.
    """
    from sklearn.decomposition import TruncatedSVD

    x = sp.csr_matrix(atac_bin, dtype=np.float64)
    tot = np.asarray(x.sum(axis=1)).ravel()
    tot[tot == 0] = 1.0
    df = np.asarray((x > 0).sum(axis=0)).ravel()
    idf = x.shape[0] / np.maximum(df, 1)
    tfidf = sp.csr_matrix(sp.diags(1.0 / tot) @ x @ sp.diags(idf))
    tfidf.data = np.log1p(tfidf.data * 1e4)
    k = int(max(2, min(n_comps + 1, min(x.shape) - 1)))
    svd = TruncatedSVD(n_components=k, algorithm="randomized", random_state=seed)
    z = svd.fit_transform(tfidf)[:, 1:]
    return _standardize(z)


def _standardize(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    z = z - z.mean(axis=0)
    sd = z.std(axis=0)
    sd[sd == 0] = 1.0
    return z / sd


def _unit_block(z: np.ndarray) -> np.ndarray:
    """Center and scale a block to total variance 1 (so blocks weigh the same)."""
    z = np.asarray(z, dtype=np.float64)
    z = z - z.mean(axis=0)
    tot = float(np.sqrt((z**2).sum() / max(z.shape[0], 1)))
    return z / (tot if tot > 0 else 1.0)


def _blocks(rna: Any, atac: Any, ctx: EmbedContext) -> tuple[np.ndarray, np.ndarray]:
    """Unit-variance RNA PCA block and ATAC LSI block, cached per seed."""
    key = ("multiomics_blocks", id(atac), ctx.seed)
    if key not in ctx.cache:
        r = _unit_block(pp.unintegrated_pca(rna, ctx, N_COMPS))
        a = _unit_block(lsi(check_atac(atac), N_COMPS, ctx.seed))
        ctx.cache[key] = (r, a)
    return ctx.cache[key]


def _joint_pca(
    rna_block: np.ndarray, atac_block: np.ndarray, w: np.ndarray, k: int, seed: int
) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    """Joint PCA scores, each block's part of them, and the parts' correlations."""
    from sklearn.decomposition import PCA

    j = np.hstack([np.sqrt(w)[:, None] * rna_block, np.sqrt(1.0 - w)[:, None] * atac_block])
    est = PCA(n_components=k, svd_solver="full" if min(j.shape) <= 200 else "randomized")
    est.set_params(random_state=seed)
    joint = est.fit_transform(j)
    v = est.components_.T  # (d_r + d_a) x k
    d_r = rna_block.shape[1]
    parts = [(b - b.mean(axis=0)) @ vb for b, vb in ((rna_block, v[:d_r]), (atac_block, v[d_r:]))]
    rho = np.zeros(k)
    for c in range(k):
        if parts[0][:, c].std() > 0 and parts[1][:, c].std() > 0:
            rho[c] = np.corrcoef(parts[0][:, c], parts[1][:, c])[0, 1]
    return joint, parts, np.nan_to_num(rho)


def joint_projection(
    rna_block: np.ndarray,
    atac_block: np.ndarray,
    w_rna: np.ndarray | float = 0.5,
    n_comps: int = N_COMPS,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Joint PCA of the weighted concatenation and each modality's part of it.

    The joint matrix of cell ``i`` is ``[sqrt(w_i) r_i, sqrt(1 - w_i) a_i]`` (``w`` per
    cell or one value); its principal axes ``V`` define the shared space and the joint
    embedding is ``J V``. Each modality's embedding is its block projected alone on the
    axes (``[r_i, 0] V``, ``[0, a_i] V``), standardized per component and scaled by the
    component's joint sd times its *excess agreement* ``(rho - c) / (1 - c)`` (0 when
    negative): ``rho`` is the correlation across cells of the two parts and ``c`` the
    largest such correlation after refitting with the ATAC rows shuffled (PCA favours
    components whose parts correlate by chance, so that chance level is removed).
    Components carried by one modality drop out; both embeddings lie in one space and
    are compared by FOSCTTM.

    Returns
    -------
    tuple of numpy.ndarray
        ``(joint, rna_emb, atac_emb)``, float32, ``n_cells x k``.
    """
    n = rna_block.shape[0]
    w = np.broadcast_to(np.asarray(w_rna, dtype=np.float64), (n,))
    k = pp.n_pcs((n, rna_block.shape[1] + atac_block.shape[1]), n_comps)
    joint, parts, rho = _joint_pca(rna_block, atac_block, w, k, seed)
    perm = np.random.default_rng([seed, 104729]).permutation(n)
    _, _, rho_null = _joint_pca(rna_block, atac_block[perm], w, k, seed)
    chance = float(np.clip(rho_null.max(), 0.0, 0.99))
    excess = np.clip((rho - chance) / (1.0 - chance), 0.0, None)
    scale = joint.std(axis=0) * excess
    rna_emb, atac_emb = (_standardize(p) * scale for p in parts)
    return (
        joint.astype(np.float32),
        rna_emb.astype(np.float32),
        atac_emb.astype(np.float32),
    )


def _affinity(x: np.ndarray, pred: np.ndarray, nb_dist: np.ndarray) -> np.ndarray:
    """exp(-max(|x - pred| - d_1, 0) / (sigma - d_1)): d_1 nearest, sigma k-th distance."""
    err = np.linalg.norm(x - pred, axis=1)
    d1, sigma = nb_dist[:, 0], nb_dist[:, -1]
    width = np.maximum(sigma - d1, 1e-12)
    return np.exp(-np.maximum(err - d1, 0.0) / width)


def wnn_weights(rna_block: np.ndarray, atac_block: np.ndarray, k: int = 20) -> np.ndarray:
    """Per-cell RNA weight in [0, 1] (ATAC weight is 1 minus it), WNN style.

    For each modality ``m`` and cell ``i``: the within-modality prediction of ``i``'s
    profile is the mean ``m``-profile of its ``k`` nearest neighbours in ``m``; the
    cross-modality prediction is the mean ``m``-profile of its neighbours in the other
    modality. Both errors become affinities (Seurat's kernel: distance beyond the
    nearest neighbour over the bandwidth to the k-th), and the modality's score is the
    ratio within / cross affinity. Weights are the scores normalized to sum 1.
    """
    from sceval.metrics._neighbors import compute_neighbors

    k = int(max(1, min(k, rna_block.shape[0] - 1)))
    nb = {"r": compute_neighbors(rna_block, k), "a": compute_neighbors(atac_block, k)}
    x = {"r": rna_block, "a": atac_block}
    score = {}
    for m, o in (("r", "a"), ("a", "r")):
        within = x[m][nb[m].indices].mean(axis=1)
        cross = x[m][nb[o].indices].mean(axis=1)
        a_w = _affinity(x[m], within, nb[m].distances)
        a_c = _affinity(x[m], cross, nb[m].distances)
        score[m] = a_w / (a_c + 1e-4)
    return score["r"] / (score["r"] + score["a"])


# ---------------------------------------------------------------------------
# paired baselines
# ---------------------------------------------------------------------------


class _PairedBaseline(Model):
    """Shared part: paired-modality baselines embed only through ``embed_multiome``."""

    def embed_cells(self, adata: Any, ctx: EmbedContext) -> np.ndarray:
        msg = (
            f"{self.info.key!r} is a paired-multiome baseline and makes no cell embedding "
            "(it needs RNA and ATAC of the same cells); run it with tasks=['multiomics']."
        )
        raise ModelSkippedError(msg)

    def embed_multiome(
        self, rna: Any, atac: Any, ctx: EmbedContext
    ) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
        raise NotImplementedError


@register_model
class ConcatPCA(_PairedBaseline):
    """``concat_pca``: joint PCA of RNA PCs concatenated with ATAC LSI, equal weights."""

    info = ModelInfo(
        key="concat_pca",
        kind="baseline",
        embeds_cells=False,
        provides=("embed_multiome",),
        description="multiomics: PCA of [RNA HVG PCA, ATAC TF-IDF/LSI], each block scaled "
        "to unit variance",
    )

    def embed_multiome(
        self, rna: Any, atac: Any, ctx: EmbedContext
    ) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
        """``(joint, rna_emb, atac_emb)`` in the joint PCA space (see joint_projection)."""
        r, a = _blocks(rna, atac, ctx)
        return joint_projection(r, a, 0.5, int(self.params.get("n_comps", N_COMPS)), ctx.seed)


@register_model
class WNN(_PairedBaseline):
    """``wnn``: weighted-nearest-neighbour style joint embedding.

    Simplified from Seurat v4 WNN (Hao et al., Cell 2021): the per-cell modality weights
    follow Seurat's idea (within- vs cross-modality kNN prediction affinities, see
    :func:`wnn_weights`) but are normalized ratios instead of a softmax over
    bandwidth-scaled scores, and instead of building a weighted kNN graph the weights
    scale each cell's blocks in a concatenation whose PCA is the joint embedding
    (:func:`joint_projection`), so the result is an embedding scored like the others.
    """

    info = ModelInfo(
        key="wnn",
        kind="baseline",
        embeds_cells=False,
        provides=("embed_multiome",),
        description="multiomics: per-cell modality weights from kNN prediction accuracy "
        "(simplified Seurat WNN), weighted concatenation + PCA",
        citation="Hao et al., Cell 2021",
    )

    def embed_multiome(
        self, rna: Any, atac: Any, ctx: EmbedContext
    ) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
        """``(joint, rna_emb, atac_emb)`` with per-cell weights (see :func:`wnn_weights`)."""
        r, a = _blocks(rna, atac, ctx)
        w = wnn_weights(r, a, int(self.params.get("n_neighbors", 20)))
        ctx.cache[("wnn_weights", id(atac), ctx.seed)] = w
        return joint_projection(r, a, w, int(self.params.get("n_comps", N_COMPS)), ctx.seed)


# ---------------------------------------------------------------------------
# task
# ---------------------------------------------------------------------------


def _resolve_atac(atac: Any) -> Any:
    if atac is None:
        msg = (
            "multiomics needs the ATAC part of the same cells; found none. Fix: pass "
            "task_params={'multiomics': {'atac': atac_adata}} (AnnData, .h5ad or .h5mu path "
            "or MuData)."
        )
        raise DataContractError(msg)
    if isinstance(atac, str | Path):
        path = str(atac)
        if path.endswith(".h5mu"):
            import mudata

            atac = mudata.read_h5mu(path)
        else:
            import anndata as ad

            if not Path(path).exists():
                msg = f"multiomics: expected an existing .h5ad/.h5mu file, found none at {path!r}"
                raise DataContractError(msg)
            atac = ad.read_h5ad(path)
    if hasattr(atac, "mod"):
        from sceval.data.simulate_multiome import _ATAC_NAMES, _pick_mod

        atac = _pick_mod(atac.mod, _ATAC_NAMES, "ATAC")
    return atac


@register_task
class MultiomicsTask(Task):
    """``multiomics``: align paired RNA and ATAC embeddings of the same cells.

    Parameters
    ----------
    atac
        The ATAC part (cells x peaks, counts or binary) of the benchmark's cells: an
        AnnData, an ``.h5ad`` path, or an ``.h5mu`` path / MuData whose ``atac``
        modality is used. Cells are matched by barcode; only shared cells are scored.
    peak_to_gene
        For gene activity (models that embed cells): an ``atac.var`` column name
        (default ``"gene"``) or a ``{peak: gene}`` mapping.
    n_neighbors
        Neighbours of the integration metrics' kNN graph (default 90).
    """

    info = TaskInfo(
        key="multiomics",
        needs_batch=False,
        needs_labels=True,
        metric_keys=MULTIOMICS_KEYS,
        description="multiomics: paired RNA + ATAC embeddings scored with the modality as "
        "batch (scIB metrics) and FOSCTTM",
        default=False,
        needs=("atac",),
        uses="paired embed_multiome, or cell embeddings of RNA and ATAC gene activity",
    )

    def _paired(self, adata: Any) -> tuple[np.ndarray, Any]:
        """RNA positions of the shared cells and the aligned ATAC AnnData (cached)."""
        cached = getattr(self, "_cache", None)
        if cached is not None and cached[0] is adata:
            return cached[1], cached[2]
        atac = _resolve_atac(self.params.get("atac"))
        _, atac_al = align_modalities(adata, atac)
        pos = adata.obs_names.get_indexer(atac_al.obs_names)
        self._cache = (adata, pos, atac_al)
        return pos, atac_al

    def _gene_activity_ctx(self, adata: Any, atac: Any, ctx: EmbedContext) -> tuple[Any, Any]:
        from sceval.data import validate

        key = ("multiomics_gene_activity", id(atac))
        if key not in ctx.cache:
            try:
                ga = gene_activity(atac, self.params.get("peak_to_gene"), genes=adata.var_names)
                ga.var = adata.var.copy()
                report = validate(ga, label_key=ctx.label_key)
            except DataContractError as err:
                msg = f"multiomics: the ATAC gene-activity matrix is not usable ({err})"
                raise NotApplicableError(msg) from err
            ctx.cache[key] = (ga, report, {})
        ga, report, cache = ctx.cache[key]
        ga_ctx = EmbedContext(
            report=report,
            seed=ctx.seed,
            batch_key=None,
            label_key=ctx.label_key,
            device=ctx.device,
            cache=cache,
        )
        return ga, ga_ctx

    def run(
        self, adata: Any, model: Any, ctx: EmbedContext, embedding: Callable[[], np.ndarray]
    ) -> list[MetricResult]:
        """Embed both modalities, score them as two batches, add FOSCTTM."""
        from sceval.metrics import integration_metrics

        pos, atac = self._paired(adata)
        if ctx.label_key is None:
            msg = "multiomics needs a label key for its bio-conservation metrics; pass label_key="
            raise NotApplicableError(msg)
        if callable(getattr(model, "embed_multiome", None)):
            model.check(adata, ctx)
            rna = adata if pos.size == adata.n_obs else adata[pos].copy()
            sub_ctx = ctx
            if rna is not adata:
                sub_ctx = EmbedContext(
                    report=ctx.report,
                    seed=ctx.seed,
                    batch_key=ctx.batch_key,
                    label_key=ctx.label_key,
                    device=ctx.device,
                    cache=ctx.cache.setdefault(("multiomics_subset", id(atac)), {}),
                )
            _, e_rna, e_atac = model.embed_multiome(rna, atac, sub_ctx)
            note = f"{model.info.key}: per-modality parts of the joint embedding"
        elif model.info.embeds_cells:
            e_rna = np.asarray(embedding())[pos]
            ga, ga_ctx = self._gene_activity_ctx(
                adata[pos] if pos.size < adata.n_obs else adata, atac, ctx
            )
            model.check(ga, ga_ctx)
            e_atac = np.asarray(model.embed_cells(ga, ga_ctx))
            note = "RNA and ATAC gene activity embedded separately"
        else:
            msg = (
                f"model {model.info.key!r} neither embeds cells nor has embed_multiome(); "
                "multiomics scores paired-multiome models and cell-embedding models"
            )
            raise NotApplicableError(msg)
        e_rna, e_atac = np.asarray(e_rna, np.float32), np.asarray(e_atac, np.float32)
        if e_rna.shape != e_atac.shape or e_rna.shape[0] != pos.size:
            msg = (
                f"model {model.info.key!r}: expected RNA and ATAC embeddings of shape "
                f"({pos.size}, d), found {e_rna.shape} and {e_atac.shape}"
            )
            raise RuntimeError(msg)
        labels = adata.obs[ctx.label_key].astype(str).to_numpy()[pos]
        x = np.vstack([e_rna, e_atac])
        mod = np.repeat(np.array(["rna", "atac"]), pos.size)
        res = integration_metrics(
            x,
            np.concatenate([labels, labels]),
            mod,
            n_neighbors=int(self.params.get("n_neighbors", 90)),
            seed=ctx.seed,
        )
        vals: dict[str, float] = {}
        msgs: dict[str, str] = {}
        for src, (dst, _) in _FROM_INTEGRATION.items():
            vals[dst] = float(res.values.get(src, np.nan))
            if src in res.messages:
                msgs[dst] = res.messages[src]
        vals["foscttm"] = foscttm(e_rna, e_atac)
        bio = [vals[k] for k in _BIO if np.isfinite(vals[k])]
        bat = [vals[k] for k in _BATCH if np.isfinite(vals[k])]
        vals["mm_bio"] = float(np.mean(bio)) if bio else float("nan")
        vals["mm_batch"] = float(np.mean(bat)) if bat else float("nan")
        vals["mm_total"] = 0.6 * vals["mm_bio"] + 0.4 * vals["mm_batch"]
        note += f"; {pos.size} paired cells"
        out = []
        for k in MULTIOMICS_KEYS:
            if np.isfinite(vals[k]):
                out.append(MetricResult(k, vals[k], message=note))
            else:
                out.append(MetricResult(k, vals[k], "not_applicable", msgs.get(k, note)))
        return out
