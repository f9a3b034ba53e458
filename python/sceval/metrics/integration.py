"""The scIB integration metrics (Luecken et al., Nat. Methods 2022) on cell embeddings.

Definitions follow scib-metrics 0.5 (the defaults of its ``Benchmarker``):
Leiden NMI / ARI over a resolution sweep on the 15-neighbour UMAP graph,
rescaled silhouettes, scaled LISI medians on the 90-neighbour graph, kBET per
label on diffusion-map neighbourhoods built from the 50-neighbour graph, graph
connectivity on the 15-neighbour graph and principal component regression
comparison on a one-hot batch covariate. Neighbour counts exclude the cell
itself (scib-metrics counts it, so its "15 neighbours" are 14 other cells).

Every function is pure: it takes arrays (and :class:`~sceval.metrics.Neighbors`)
and returns numbers. Data the metric cannot be computed on raises
:class:`~sceval._errors.NotApplicableError`; malformed arrays raise
:class:`~sceval._errors.DataContractError`. :func:`integration_metrics` runs the
whole set, computing the neighbour graph once, and turns not-applicable metrics
into NaN values with a message.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components
from scipy.stats import chi2
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from sceval._errors import DataContractError, NotApplicableError
from sceval.metrics._neighbors import (
    Neighbors,
    _knn_exact,
    as_embedding,
    compute_neighbors,
    umap_connectivities,
)
from sceval.metrics._specs import AGGREGATE_KEYS, BATCH_KEYS, BIO_KEYS

__all__ = [
    "IntegrationResult",
    "KbetResult",
    "clisi",
    "graph_connectivity",
    "ilisi",
    "integration_metrics",
    "isolated_labels",
    "kbet",
    "kbet_per_label",
    "lisi",
    "nmi_ari",
    "pcr",
    "pcr_comparison",
    "silhouette_batch",
    "silhouette_label",
]

#: Fewest cells any metric accepts.
MIN_CELLS = 3
#: Neighbours used by Leiden clustering and graph connectivity (scib-metrics: 15).
K_CLUSTER = 15
#: Neighbours of the graph kBET starts from (scib-metrics: 50).
K_KBET = 50
#: Leiden resolutions searched for the best NMI (scib-metrics: 0.2, 0.4, ..., 2.0).
DEFAULT_RESOLUTIONS = tuple(round(0.2 * i, 1) for i in range(1, 11))
#: Weights of the total score (scIB).
BIO_WEIGHT, BATCH_WEIGHT = 0.6, 0.4

# Memory budget (bytes) of one block of the cell x cell distance matrix.
_BLOCK_BYTES = 64 * 2**20
# kBET per label: fewest cells tested, and the neighbourhood-size bounds (scib).
_KBET_MIN_CELLS = 10
_KBET_K_MIN, _KBET_K_MAX = 10, 70
# Largest subgraph whose diffusion map is computed with a dense eigensolver.
_DENSE_EIGEN_MAX = 1000


# ---------------------------------------------------------------------------
# input validation
# ---------------------------------------------------------------------------


def _as_codes(values: object, name: str, n_cells: int, ref: str) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes (n_cells,) and sorted category names of a label / batch vector."""
    arr = np.asarray(values)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1 or arr.shape[0] != n_cells:
        msg = (
            f"{name}: expected shape ({n_cells},) to match {ref}, found {arr.shape}. "
            f"Pass one {name} value per cell, in the same order as the embedding rows."
        )
        raise DataContractError(msg)
    try:
        codes, uniques = pd.factorize(arr, sort=True)
    except TypeError:  # unorderable mixed types
        codes, uniques = pd.factorize(arr.astype(str), sort=True)
    if (codes < 0).any():
        bad = np.flatnonzero(codes < 0)
        msg = (
            f"{name}: expected a value for every cell, found {bad.size} missing values "
            f"(first positions: {bad[:5].tolist()}). Drop those cells or fill in the {name}."
        )
        raise DataContractError(msg)
    return codes.astype(np.int64), np.asarray(uniques)


def _check_n_cells(n: int, what: str) -> None:
    if n < MIN_CELLS:
        msg = (
            f"{what}: expected at least {MIN_CELLS} cells, found {n}. Integration metrics are "
            "not meaningful on so few cells; evaluate a larger dataset."
        )
        raise DataContractError(msg)


def _embedding(X: object, name: str = "X") -> np.ndarray:
    arr = as_embedding(X, name=name)
    _check_n_cells(arr.shape[0], name)
    return arr


def _neighbors_arg(neighbors: object, fn: str) -> Neighbors:
    if not isinstance(neighbors, Neighbors):
        msg = (
            f"{fn}: expected a sceval.metrics.Neighbors graph, found {type(neighbors).__name__}. "
            "Build one with sceval.metrics.compute_neighbors(X)."
        )
        raise DataContractError(msg)
    _check_n_cells(neighbors.n_cells, fn)
    return neighbors


def _first_k(neighbors: Neighbors, k: int | None) -> Neighbors:
    if k is None:
        return neighbors
    return neighbors.subset(min(int(k), neighbors.n_neighbors))


def _shown(value: object) -> str:
    """repr of a label / batch value without numpy scalar wrappers."""
    return repr(value.item() if isinstance(value, np.generic) else value)


def _need_two(uniques: np.ndarray, what: str, kind: str) -> None:
    if uniques.size < 2:
        found = _shown(uniques[0])
        if what == "batch":
            msg = f"only one batch (B={found}); {kind} needs >= 2 batches"
        else:
            msg = f"only one label (label={found}); {kind} needs >= 2 labels"
        raise NotApplicableError(msg)


# ---------------------------------------------------------------------------
# silhouette family
# ---------------------------------------------------------------------------


def _silhouette_samples(X: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Silhouette width of every cell (as sklearn), computed in row blocks.

    ``codes`` are dense cluster codes 0..C-1. Cells of singleton clusters get 0,
    as in sklearn. Memory: one (block, n_cells) float64 block at a time.
    """
    n = X.shape[0]
    n_cat = int(codes.max()) + 1
    counts = np.bincount(codes, minlength=n_cat).astype(np.float64)
    Xc = X - X.mean(axis=0)
    sq = np.einsum("ij,ij->i", Xc, Xc)
    if n * n_cat * 8 <= 256 * 2**20:
        onehot: Any = np.zeros((n, n_cat))
        onehot[np.arange(n), codes] = 1.0
    else:
        onehot = sp.csr_matrix((np.ones(n), (np.arange(n), codes)), shape=(n, n_cat))
    rows = int(max(1, min(4096, _BLOCK_BYTES // (8 * n))))
    intra = np.empty(n)
    inter = np.empty(n)
    for start in range(0, n, rows):
        stop = min(n, start + rows)
        r = np.arange(stop - start)
        d = Xc[start:stop] @ Xc.T
        d *= -2.0
        d += sq[start:stop, None]
        d += sq[None, :]
        np.maximum(d, 0.0, out=d)
        np.sqrt(d, out=d)
        d[r, start + r] = 0.0
        sums = np.asarray(d @ onehot) if isinstance(onehot, np.ndarray) else (onehot.T @ d.T).T
        own = codes[start:stop]
        intra[start:stop] = sums[r, own]
        sums /= counts[None, :]
        sums[r, own] = np.inf
        inter[start:stop] = sums.min(axis=1)
    size = counts[codes]
    with np.errstate(divide="ignore", invalid="ignore"):
        a = intra / (size - 1.0)
        s = (inter - a) / np.maximum(a, inter)
    s[size <= 1] = 0.0
    return np.nan_to_num(s, nan=0.0, posinf=0.0, neginf=0.0)


def _rescale_sil(s: np.ndarray | float, rescale: bool) -> Any:
    return (s + 1.0) / 2.0 if rescale else s


def silhouette_label(X: np.ndarray, labels: Sequence[Any], rescale: bool = True) -> float:
    """Average silhouette width of the cell-type labels (bio conservation).

    Parameters
    ----------
    X
        Embedding of shape (n_cells, n_dims).
    labels
        Cell-type labels of shape (n_cells,).
    rescale
        Return ``(asw + 1) / 2`` in [0, 1] instead of the raw ASW in [-1, 1].

    Returns
    -------
    float
        Mean Euclidean silhouette width over cells (higher is better).

    Raises
    ------
    NotApplicableError
        With a single label.
    """
    X = _embedding(X)
    codes, uniq = _as_codes(labels, "labels", X.shape[0], f"X of shape {X.shape}")
    _need_two(uniq, "label", "silhouette_label")
    return float(_rescale_sil(np.mean(_silhouette_samples(X, codes)), rescale))


def _silhouette_batch(
    X: np.ndarray, lab: np.ndarray, lab_names: np.ndarray, bat: np.ndarray, rescale: bool
) -> tuple[float, dict[str, str]]:
    scores: list[float] = []
    skipped: dict[str, str] = {}
    for c, name in enumerate(lab_names):
        idx = np.flatnonzero(lab == c)
        sub_codes, sub_uniq = pd.factorize(bat[idx], sort=True)
        if sub_uniq.size < 2:
            skipped[str(name)] = f"all {idx.size} cells come from one batch"
            continue
        if sub_uniq.size == idx.size:
            skipped[str(name)] = f"each of its {idx.size} cells comes from a different batch"
            continue
        sil = np.abs(_silhouette_samples(X[idx], sub_codes.astype(np.int64)))
        if rescale:
            sil = 1.0 - sil
        scores.append(float(np.mean(sil)))
    if not scores:
        msg = (
            "silhouette_batch: no label has cells from >= 2 batches "
            f"({'; '.join(f'{k}: {v}' for k, v in list(skipped.items())[:5])})"
        )
        raise NotApplicableError(msg)
    return float(np.mean(scores)), skipped


def silhouette_batch(
    X: np.ndarray, labels: Sequence[Any], batch: Sequence[Any], rescale: bool = True
) -> float:
    """Batch ASW within labels, the scIB definition (batch correction).

    For each label, the silhouette width of the batches among that label's cells
    is computed; ``1 - |s|`` is averaged over the label's cells, then over labels.
    Labels whose cells come from a single batch (or each from a different batch)
    are skipped, as in scib.

    Parameters
    ----------
    X
        Embedding of shape (n_cells, n_dims).
    labels
        Cell-type labels of shape (n_cells,).
    batch
        Batch of shape (n_cells,).
    rescale
        Return the mean of ``1 - |s|`` (higher is better); otherwise the mean of ``|s|``.

    Returns
    -------
    float
        Value in [0, 1].

    Raises
    ------
    NotApplicableError
        With a single batch, or when no label has cells from two batches.
    """
    X = _embedding(X)
    ref = f"X of shape {X.shape}"
    lab, lab_names = _as_codes(labels, "labels", X.shape[0], ref)
    bat, bat_names = _as_codes(batch, "batch", X.shape[0], ref)
    _need_two(bat_names, "batch", "silhouette_batch")
    return _silhouette_batch(X, lab, lab_names, bat, rescale)[0]


def _isolated_label_codes(lab: np.ndarray, bat: np.ndarray, n_bat: int) -> tuple[np.ndarray, int]:
    pairs = np.unique(lab * n_bat + bat)
    per_label = np.bincount(pairs // n_bat, minlength=int(lab.max()) + 1)
    fewest = int(per_label.min())
    return np.flatnonzero(per_label <= fewest), fewest


def _isolated_from_samples(sil: np.ndarray, lab: np.ndarray, iso: np.ndarray) -> float:
    return float(np.mean([sil[lab == c].mean() for c in iso]))


def isolated_labels(
    X: np.ndarray, labels: Sequence[Any], batch: Sequence[Any], rescale: bool = True
) -> float:
    """Isolated-label score, scib-metrics' default (silhouette based).

    The isolated labels are those present in the fewest batches. The silhouette
    width of every cell is computed with respect to all labels; the score is the
    mean over isolated labels of their cells' mean (rescaled) silhouette.

    Parameters
    ----------
    X
        Embedding of shape (n_cells, n_dims).
    labels
        Cell-type labels of shape (n_cells,).
    batch
        Batch of shape (n_cells,).
    rescale
        Rescale silhouettes to [0, 1] as ``(s + 1) / 2``.

    Returns
    -------
    float
        Higher is better.

    Raises
    ------
    NotApplicableError
        With a single label.
    """
    X = _embedding(X)
    ref = f"X of shape {X.shape}"
    lab, lab_names = _as_codes(labels, "labels", X.shape[0], ref)
    bat, bat_names = _as_codes(batch, "batch", X.shape[0], ref)
    _need_two(lab_names, "label", "isolated_labels")
    iso, _ = _isolated_label_codes(lab, bat, bat_names.size)
    sil = _rescale_sil(_silhouette_samples(X, lab), rescale)
    return _isolated_from_samples(sil, lab, iso)


# ---------------------------------------------------------------------------
# Leiden NMI / ARI
# ---------------------------------------------------------------------------


def _nmi_ari_from_conn(
    conn: sp.csr_matrix,
    lab: np.ndarray,
    seed: int,
    resolutions: Sequence[float],
) -> tuple[float, float, float]:
    import igraph

    graph = igraph.Graph.Weighted_Adjacency(conn, mode="directed")
    graph.to_undirected(mode="each")
    weights = graph.es["weight"]
    best = (-np.inf, np.nan, np.nan)
    try:
        for res in resolutions:
            igraph.set_random_number_generator(random.Random(seed))
            clusters = graph.community_leiden(
                objective_function="modularity", weights=weights, resolution=float(res)
            )
            pred = np.asarray(clusters.membership)
            nmi = normalized_mutual_info_score(lab, pred, average_method="arithmetic")
            if nmi > best[0]:
                best = (float(nmi), float(adjusted_rand_score(lab, pred)), float(res))
    finally:
        igraph.set_random_number_generator(random)
    return best


def nmi_ari(
    X_or_neighbors: np.ndarray | Neighbors,
    labels: Sequence[Any],
    seed: int = 0,
    *,
    n_neighbors: int = K_CLUSTER,
    resolutions: Sequence[float] = DEFAULT_RESOLUTIONS,
) -> tuple[float, float]:
    """NMI and ARI between Leiden clusters and labels, best NMI over a resolution sweep.

    Leiden (igraph, modularity, seeded) runs on the UMAP connectivities of the
    ``n_neighbors`` graph at each resolution; the clustering with the highest NMI
    is kept and its ARI reported, as scib-metrics'
    ``nmi_ari_cluster_labels_leiden(optimize_resolution=True)``.

    Parameters
    ----------
    X_or_neighbors
        Embedding of shape (n_cells, n_dims) or a :class:`Neighbors` graph (its first
        ``n_neighbors`` columns are used).
    labels
        Cell-type labels of shape (n_cells,).
    seed
        Seed of igraph's random number generator for every Leiden run.
    n_neighbors
        Neighbours of the clustering graph (default 15).
    resolutions
        Leiden resolutions searched (default 0.2, 0.4, ..., 2.0).

    Returns
    -------
    tuple of float
        ``(nmi, ari)``, both higher-is-better.

    Raises
    ------
    NotApplicableError
        With a single label.
    """
    if isinstance(X_or_neighbors, Neighbors):
        nb = _first_k(_neighbors_arg(X_or_neighbors, "nmi_ari"), n_neighbors)
    else:
        X = _embedding(X_or_neighbors)
        nb = compute_neighbors(X, n_neighbors)
    lab, lab_names = _as_codes(labels, "labels", nb.n_cells, f"{nb.n_cells} cells")
    _need_two(lab_names, "label", "nmi / ari")
    nmi, ari, _ = _nmi_ari_from_conn(umap_connectivities(nb), lab, seed, resolutions)
    return nmi, ari


# ---------------------------------------------------------------------------
# LISI
# ---------------------------------------------------------------------------


def _simpson(
    distances: np.ndarray,
    nb_codes: np.ndarray,
    n_cat: int,
    perplexity: float,
    tol: float = 1e-5,
    max_iter: int = 50,
) -> np.ndarray:
    """Simpson index of each cell's neighbourhood under a perplexity-calibrated kernel.

    Per cell, ``p_j ∝ exp(-beta * d_j)`` with ``beta`` found by bisection (at most
    ``max_iter`` steps, starting at 1) so that the entropy of ``p`` is
    ``log(perplexity)``; the result is ``sum_c (sum_{j in c} p_j) ** 2``.
    Distances are shifted by the row minimum, which leaves ``p`` and the entropy
    unchanged but avoids underflow.
    """
    n = distances.shape[0]
    dd = distances - distances.min(axis=1, keepdims=True)
    log_u = np.log(perplexity)

    def hbeta(rows: np.ndarray, beta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        d = dd[rows]
        p = np.exp(-d * beta[:, None])
        sum_p = p.sum(axis=1)
        h = np.log(sum_p) + beta * (d * p).sum(axis=1) / sum_p
        return h, p / sum_p[:, None]

    all_rows = np.arange(n)
    beta = np.ones(n)
    beta_min = np.full(n, -np.inf)
    beta_max = np.full(n, np.inf)
    h, P = hbeta(all_rows, beta)
    h_diff = h - log_u
    for _ in range(max_iter):
        act = np.flatnonzero(np.abs(h_diff) >= tol)
        if act.size == 0:
            break
        b, bmin, bmax = beta[act], beta_min[act], beta_max[act]
        up = h_diff[act] > 0  # entropy too high: sharpen the kernel
        new_b = np.where(
            up,
            np.where(np.isinf(bmax), b * 2.0, (b + bmax) / 2.0),
            np.where(np.isinf(bmin), b / 2.0, (b + bmin) / 2.0),
        )
        beta_min[act] = np.where(up, b, bmin)
        beta_max[act] = np.where(up, bmax, b)
        beta[act] = new_b
        h_act, P[act] = hbeta(act, new_b)
        h_diff[act] = h_act - log_u
    flat = (np.arange(n)[:, None] * n_cat + nb_codes).ravel()
    per_cat = np.bincount(flat, weights=P.ravel(), minlength=n * n_cat).reshape(n, n_cat)
    return np.einsum("ij,ij->i", per_cat, per_cat)


def _effective_perplexity(perplexity: float, k: int) -> float:
    if perplexity <= 0:
        msg = f"LISI: expected perplexity > 0, found {perplexity}."
        raise ValueError(msg)
    return float(min(perplexity, max(1.0, np.floor(k / 3))))


def lisi(neighbors: Neighbors, categories: Sequence[Any], perplexity: float = 30) -> np.ndarray:
    """Local inverse Simpson index of every cell (Korsunsky et al. 2019).

    Parameters
    ----------
    neighbors
        kNN graph of shape (n_cells, k); all ``k`` neighbours are used.
    categories
        Batch or label of shape (n_cells,).
    perplexity
        Effective neighbourhood size of the Gaussian kernel; capped at ``floor(k / 3)``
        (the scib-metrics default when ``k`` is small).

    Returns
    -------
    numpy.ndarray
        Shape (n_cells,): the effective number of categories around each cell, in
        [1, number of categories].
    """
    nb = _neighbors_arg(neighbors, "lisi")
    codes, _ = _as_codes(categories, "categories", nb.n_cells, f"{nb.n_cells} cells")
    return _lisi(nb, codes, perplexity)


def _lisi(nb: Neighbors, codes: np.ndarray, perplexity: float) -> np.ndarray:
    n_cat = int(codes.max()) + 1
    perp = _effective_perplexity(perplexity, nb.n_neighbors)
    return 1.0 / _simpson(nb.distances, codes[nb.indices], n_cat, perp)


def ilisi(
    neighbors: Neighbors, batch: Sequence[Any], perplexity: float = 30, scale: bool = True
) -> float:
    """Integration LISI: median batch LISI, scaled to [0, 1] as ``(x - 1) / (B - 1)``.

    Parameters
    ----------
    neighbors
        kNN graph of shape (n_cells, k) (scib-metrics uses k = 90).
    batch
        Batch of shape (n_cells,).
    perplexity
        See :func:`lisi`.
    scale
        Scale so that 1 means every neighbourhood holds all ``B`` batches evenly.

    Returns
    -------
    float
        Higher is better.

    Raises
    ------
    NotApplicableError
        With a single batch.
    """
    nb = _neighbors_arg(neighbors, "ilisi")
    bat, names = _as_codes(batch, "batch", nb.n_cells, f"{nb.n_cells} cells")
    _need_two(names, "batch", "ilisi")
    x = float(np.nanmedian(_lisi(nb, bat, perplexity)))
    return (x - 1.0) / (names.size - 1.0) if scale else x


def clisi(
    neighbors: Neighbors, labels: Sequence[Any], perplexity: float = 30, scale: bool = True
) -> float:
    """Cell-type LISI: median label LISI, scaled to [0, 1] as ``(C - x) / (C - 1)``.

    Parameters
    ----------
    neighbors
        kNN graph of shape (n_cells, k) (scib-metrics uses k = 90).
    labels
        Cell-type labels of shape (n_cells,).
    perplexity
        See :func:`lisi`.
    scale
        Scale so that 1 means every neighbourhood holds a single label.

    Returns
    -------
    float
        Higher is better.

    Raises
    ------
    NotApplicableError
        With a single label.
    """
    nb = _neighbors_arg(neighbors, "clisi")
    lab, names = _as_codes(labels, "labels", nb.n_cells, f"{nb.n_cells} cells")
    _need_two(names, "label", "clisi")
    x = float(np.nanmedian(_lisi(nb, lab, perplexity)))
    return (names.size - x) / (names.size - 1.0) if scale else x


# ---------------------------------------------------------------------------
# kBET
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class KbetResult:
    """kBET per label.

    Attributes
    ----------
    score
        Mean acceptance rate over the tested labels (NaN if none could be tested).
    per_label
        Acceptance rate of each tested label (0 for labels whose kNN graph falls
        apart into small pieces, as in scib; the reason is in ``notes``).
    skipped
        Labels not tested, with the reason (fewer than 10 cells, one batch).
    notes
        Remarks on tested labels (e.g. small components dropped).
    """

    score: float
    per_label: dict[str, float] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)


def _diffusion_embedding(conn: sp.csr_matrix, n_comps: int) -> np.ndarray:
    """Multiscale diffusion-map coordinates of a connected similarity graph.

    The kernel is density-normalised (Coifman & Lafon), symmetrically normalised,
    and its ``n_comps`` eigenvectors of largest |eigenvalue| are weighted by
    ``lambda / (1 - lambda)`` (weight 1 for the trivial eigenvalue 1), so that
    Euclidean distances approximate diffusion distances integrated over time.
    """
    m = conn.shape[0]
    q = np.asarray(conn.sum(axis=0)).ravel()
    inv_q = sp.diags(1.0 / q)
    K = inv_q @ conn @ inv_q
    z = np.sqrt(np.asarray(K.sum(axis=0)).ravel())
    inv_z = sp.diags(1.0 / z)
    T = (inv_z @ K @ inv_z).astype(np.float64)
    n_comps = int(min(n_comps, m - 1))
    evals: np.ndarray
    if m <= _DENSE_EIGEN_MAX:
        evals, evecs = np.linalg.eigh(T.toarray())
    else:
        from scipy.sparse.linalg import ArpackError, eigsh

        try:
            v0 = np.full(m, 1.0 / np.sqrt(m))
            evals, evecs = eigsh(T, k=n_comps, which="LM", v0=v0)
        except ArpackError:
            evals, evecs = np.linalg.eigh(T.toarray())
    top = np.argsort(-np.abs(evals), kind="stable")[:n_comps]
    evals, evecs = evals[top], evecs[:, top]
    trivial = np.abs(1.0 - evals) < 1e-6
    with np.errstate(divide="ignore"):
        weights = np.where(trivial, 1.0, evals / np.where(trivial, 1.0, 1.0 - evals))
    return evecs * weights[None, :]


def _kbet_acceptance(emb: np.ndarray, bat: np.ndarray, k0: int, alpha: float) -> float:
    """Fraction of cells whose (k0 + 1)-cell neighbourhood (self included) passes the
    chi-square test of batch frequencies against the global ones."""
    m = emb.shape[0]
    k = int(min(k0, m - 1))
    idx, _ = _knn_exact(emb, k)
    hood = np.hstack([np.arange(m)[:, None], idx])
    n_bat = int(bat.max()) + 1
    freq = np.bincount(bat, minlength=n_bat) / m
    flat = (np.arange(m)[:, None] * n_bat + bat[hood]).ravel()
    observed = np.bincount(flat, minlength=m * n_bat).reshape(m, n_bat)
    expected = freq[None, :] * hood.shape[1]
    stat = np.sum((observed - expected) ** 2 / expected, axis=1)
    p = chi2.sf(stat, n_bat - 1)
    return float(np.mean(p >= alpha))


def _kbet_per_label(
    conn: sp.csr_matrix,
    lab: np.ndarray,
    lab_names: np.ndarray,
    bat: np.ndarray,
    alpha: float,
    diffusion_n_comps: int = 100,
) -> KbetResult:
    per_label: dict[str, float] = {}
    skipped: dict[str, str] = {}
    notes: dict[str, str] = {}
    for c, name_obj in enumerate(lab_names):
        name = str(name_obj)
        idx = np.flatnonzero(lab == c)
        n_obs = idx.size
        sub_bat, sub_uniq = pd.factorize(bat[idx], sort=True)
        if n_obs < _KBET_MIN_CELLS:
            skipped[name] = f"{n_obs} cells (kBET needs >= {_KBET_MIN_CELLS})"
            continue
        if sub_uniq.size < 2:
            skipped[name] = f"all {n_obs} cells come from one batch"
            continue
        counts = np.bincount(sub_bat)
        k0 = int(min(_KBET_K_MAX, max(_KBET_K_MIN, np.floor(counts.mean() / 4))))
        sub = conn[idx][:, idx].tocsr()
        n_comp, comp = connected_components(sub, directed=True, connection="strong")
        keep = np.arange(n_obs)
        if n_comp > 1:
            sizes = np.bincount(comp)
            keep = np.flatnonzero(sizes[comp] >= 3 * k0)
            if keep.size < 0.75 * n_obs:
                per_label[name] = 0.0
                notes[name] = (
                    f"kNN graph splits into {n_comp} components and fewer than 75% of the "
                    f"cells lie in components of >= {3 * k0} cells; scored 0 as in scib"
                )
                continue
            notes[name] = f"{n_obs - keep.size} cells in components of < {3 * k0} cells left out"
            sub = sub[keep][:, keep].tocsr()
        kept_bat, kept_uniq = pd.factorize(sub_bat[keep], sort=True)
        if kept_uniq.size < 2:
            skipped[name] = "one batch left after dropping small graph components"
            continue
        emb = _diffusion_embedding(sub, diffusion_n_comps)
        per_label[name] = _kbet_acceptance(emb, kept_bat.astype(np.int64), k0, alpha)
    score = float(np.mean(list(per_label.values()))) if per_label else float("nan")
    return KbetResult(score=score, per_label=per_label, skipped=skipped, notes=notes)


def kbet_per_label(
    neighbors: Neighbors,
    batch: Sequence[Any],
    labels: Sequence[Any],
    alpha: float = 0.05,
    *,
    n_neighbors: int | None = K_KBET,
) -> KbetResult:
    """kBET acceptance rate per label, as scib-metrics' ``kbet_per_label``.

    For each label with >= 10 cells from >= 2 batches: the UMAP connectivities
    of the ``n_neighbors`` graph are restricted to the label's cells; if this
    subgraph is disconnected, components smaller than ``3 * k0`` are dropped (or
    the label scores 0 when they hold more than 25% of its cells); cells are
    embedded with a diffusion map (up to 100 components) and each cell's
    neighbourhood of itself plus its ``k0`` nearest cells is tested with a
    chi-square test of its batch counts against the label's batch frequencies.
    ``k0 = clip(floor(mean cells per batch / 4), 10, 70)``. The label's score
    is the fraction of cells whose test is not rejected at level ``alpha``.

    Parameters
    ----------
    neighbors
        kNN graph of shape (n_cells, k); the first ``n_neighbors`` columns are used.
    batch
        Batch of shape (n_cells,).
    labels
        Cell-type labels of shape (n_cells,).
    alpha
        Significance level of each test.
    n_neighbors
        Neighbours of the graph the connectivities come from (default 50, as the
        scib-metrics Benchmarker); ``None`` uses all columns.

    Returns
    -------
    KbetResult
        Mean score, per-label scores and the labels skipped with reasons.

    Raises
    ------
    NotApplicableError
        With a single batch.
    """
    nb = _first_k(_neighbors_arg(neighbors, "kbet"), n_neighbors)
    ref = f"{nb.n_cells} cells"
    bat, bat_names = _as_codes(batch, "batch", nb.n_cells, ref)
    lab, lab_names = _as_codes(labels, "labels", nb.n_cells, ref)
    _need_two(bat_names, "batch", "kbet")
    if not 0 < alpha < 1:
        msg = f"kbet: expected 0 < alpha < 1, found {alpha}."
        raise ValueError(msg)
    return _kbet_per_label(umap_connectivities(nb), lab, lab_names, bat, alpha)


def _kbet_score(res: KbetResult) -> float:
    if not res.per_label:
        reasons = "; ".join(f"{k}: {v}" for k, v in list(res.skipped.items())[:5])
        msg = f"kbet: no label could be tested ({reasons})"
        raise NotApplicableError(msg)
    return res.score


def kbet(
    neighbors: Neighbors,
    batch: Sequence[Any],
    labels: Sequence[Any],
    alpha: float = 0.05,
    *,
    n_neighbors: int | None = K_KBET,
) -> float:
    """kBET acceptance rate averaged over labels (see :func:`kbet_per_label`).

    Returns
    -------
    float
        In [0, 1]; higher means better-mixed batches.

    Raises
    ------
    NotApplicableError
        With a single batch, or when no label can be tested (every label has
        fewer than 10 cells or comes from one batch); the message lists why.
    """
    return _kbet_score(kbet_per_label(neighbors, batch, labels, alpha, n_neighbors=n_neighbors))


# ---------------------------------------------------------------------------
# graph connectivity
# ---------------------------------------------------------------------------


def _graph_connectivity(nb: Neighbors, lab: np.ndarray, n_lab: int) -> float:
    adj = nb.adjacency()
    fractions = []
    for c in range(n_lab):
        idx = np.flatnonzero(lab == c)
        sub = adj[idx][:, idx]
        _, comp = connected_components(sub, directed=True, connection="strong")
        fractions.append(np.bincount(comp).max() / idx.size)
    return float(np.mean(fractions))


def graph_connectivity(
    neighbors: Neighbors, labels: Sequence[Any], *, n_neighbors: int | None = K_CLUSTER
) -> float:
    """Graph connectivity: per label, the fraction of its cells in the largest strongly
    connected component of the kNN graph restricted to the label; mean over labels.

    Parameters
    ----------
    neighbors
        kNN graph of shape (n_cells, k); the first ``n_neighbors`` columns are used.
    labels
        Cell-type labels of shape (n_cells,).
    n_neighbors
        Neighbours of the graph (default 15, as scib-metrics); ``None`` uses all.

    Returns
    -------
    float
        In (0, 1]; higher is better.
    """
    nb = _first_k(_neighbors_arg(neighbors, "graph_connectivity"), n_neighbors)
    lab, names = _as_codes(labels, "labels", nb.n_cells, f"{nb.n_cells} cells")
    return _graph_connectivity(nb, lab, names.size)


# ---------------------------------------------------------------------------
# principal component regression
# ---------------------------------------------------------------------------


def _pcr(X: np.ndarray, bat: np.ndarray, n_bat: int) -> float:
    """Variance-weighted R^2 of the PCs regressed on the one-hot batch.

    With all principal components kept this equals the between-batch sum of
    squares over the total sum of squares of ``X`` (the PCs are a rotation of the
    centred data and each PC's R^2 times its variance is its between-batch
    sum of squares), which is computed directly.
    """
    Xc = X - X.mean(axis=0)
    total = float(np.einsum("ij,ij->", Xc, Xc))
    if total <= 0:
        return float("nan")
    onehot = sp.csr_matrix(
        (np.ones(X.shape[0]), (bat, np.arange(X.shape[0]))), shape=(n_bat, X.shape[0])
    )
    sums = onehot @ Xc
    counts = np.bincount(bat, minlength=n_bat).astype(np.float64)
    between = float(np.sum(sums**2 / counts[:, None]))
    return between / total


def pcr(X: np.ndarray, batch: Sequence[Any]) -> float:
    """Principal component regression of an embedding on the batch (Büttner et al. 2019).

    Every PC is regressed on the one-hot batch; the R^2 values are averaged with
    the PCs' explained variances as weights (all components kept).

    Parameters
    ----------
    X
        Embedding of shape (n_cells, n_dims).
    batch
        Batch of shape (n_cells,).

    Returns
    -------
    float
        Fraction of variance explained by batch, in [0, 1] (NaN for constant ``X``).
    """
    X = _embedding(X)
    bat, names = _as_codes(batch, "batch", X.shape[0], f"X of shape {X.shape}")
    return _pcr(X, bat, names.size)


def _pcr_comparison(pre: float, post: float, scale: bool) -> float:
    if not scale:
        return post - pre
    if not np.isfinite(pre) or pre <= 0:
        msg = (
            "pcr_comparison: the unintegrated embedding X_pre has no batch-explained "
            f"variance (PCR = {pre}), so its reduction cannot be measured"
        )
        raise NotApplicableError(msg)
    return float(max(0.0, (pre - post) / pre))


def pcr_comparison(
    X_pre: np.ndarray, X_post: np.ndarray, batch: Sequence[Any], scale: bool = True
) -> float:
    """Principal component regression comparison before / after integration.

    Parameters
    ----------
    X_pre
        Unintegrated embedding (e.g. PCA of the expression), shape (n_cells, n_dims_pre).
    X_post
        Integrated embedding, shape (n_cells, n_dims_post).
    batch
        Batch of shape (n_cells,), treated as categorical (one-hot).
    scale
        Return ``max(0, (pcr_pre - pcr_post) / pcr_pre)`` in [0, 1] (higher is better);
        otherwise the raw difference ``pcr_post - pcr_pre``.

    Returns
    -------
    float

    Raises
    ------
    NotApplicableError
        With a single batch, or when ``X_pre`` carries no batch variance.
    DataContractError
        If the embeddings have different numbers of cells.
    """
    X_post = _embedding(X_post, "X_post")
    X_pre = _embedding(X_pre, "X_pre")
    if X_pre.shape[0] != X_post.shape[0]:
        msg = (
            f"pcr_comparison: expected X_pre and X_post with the same cells, found shapes "
            f"{X_pre.shape} and {X_post.shape}. Pass both embeddings of the same cells."
        )
        raise DataContractError(msg)
    bat, names = _as_codes(batch, "batch", X_post.shape[0], f"X_post of shape {X_post.shape}")
    _need_two(names, "batch", "pcr_comparison")
    return _pcr_comparison(_pcr(X_pre, bat, names.size), _pcr(X_post, bat, names.size), scale)


# ---------------------------------------------------------------------------
# the whole set
# ---------------------------------------------------------------------------


@dataclass
class IntegrationResult:
    """All integration metrics of one embedding.

    Attributes
    ----------
    values
        Every bio, batch and aggregate key (see :data:`sceval.metrics.METRICS`) to its
        value; NaN where the metric does not apply.
    messages
        For each NaN value, why it is NaN.
    details
        Extra information: ``"kbet"`` (:class:`KbetResult`), ``"silhouette_batch_skipped"``
        (label -> reason), ``"leiden_resolution"``, ``"pcr_pre"`` / ``"pcr_post"``,
        ``"isolated_labels"`` (the labels scored), ``"n_neighbors"``.
    timings
        Seconds spent per step (``"neighbors"``, each metric key, ``"total"``).
    """

    values: dict[str, float]
    messages: dict[str, str]
    details: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    def __getitem__(self, key: str) -> float:
        return self.values[key]


def _mean_available(values: dict[str, float], keys: Sequence[str]) -> float:
    vals = [values[k] for k in keys if np.isfinite(values[k])]
    return float(np.mean(vals)) if vals else float("nan")


def integration_metrics(
    X: np.ndarray,
    labels: Sequence[Any],
    batch: Sequence[Any],
    *,
    X_pre: np.ndarray | None = None,
    n_neighbors: int = 90,
    seed: int = 0,
) -> IntegrationResult:
    """Compute the scIB metric set and its aggregates on one embedding.

    The exact kNN graph is computed once with ``n_neighbors`` neighbours (LISI),
    and its first 50 (kBET) and 15 (Leiden, graph connectivity) columns are reused;
    the label silhouettes are computed once for ``silhouette_label`` and
    ``isolated_labels``.

    Parameters
    ----------
    X
        Embedding of shape (n_cells, n_dims).
    labels
        Cell-type labels of shape (n_cells,).
    batch
        Batch of shape (n_cells,).
    X_pre
        Unintegrated embedding of the same cells, shape (n_cells, n_dims_pre), for
        ``pcr_comparison`` (not applicable when ``None``).
    n_neighbors
        Neighbours of the shared graph (default 90, as scib-metrics).
    seed
        Seed of the Leiden clustering.

    Returns
    -------
    IntegrationResult
        ``values`` for every bio / batch / aggregate key; ``messages`` for the NaN ones.
        ``bio_conservation`` and ``batch_correction`` are the means of the available
        metrics of their category; ``total = 0.6 * bio + 0.4 * batch`` (NaN when either is).

    Raises
    ------
    DataContractError
        If ``X`` (or ``X_pre``) holds NaN / inf, is not 2-D or has fewer than 3 cells,
        or if ``labels``, ``batch`` or ``X_pre`` do not match ``X`` in length.
    """
    t_start = time.perf_counter()
    X = _embedding(X)
    n = X.shape[0]
    ref = f"X of shape {X.shape}"
    lab, lab_names = _as_codes(labels, "labels", n, ref)
    bat, bat_names = _as_codes(batch, "batch", n, ref)
    if X_pre is not None:
        X_pre = _embedding(X_pre, "X_pre")
        if X_pre.shape[0] != n:
            msg = (
                f"X_pre: expected {n} cells to match {ref}, found shape {X_pre.shape}. "
                "Pass the unintegrated embedding of the same cells in the same order."
            )
            raise DataContractError(msg)
    n_lab, n_bat = lab_names.size, bat_names.size

    values: dict[str, float] = {}
    messages: dict[str, str] = {}
    details: dict[str, Any] = {}
    timings: dict[str, float] = {}

    def run(key: str, fn: Callable[[], float]) -> None:
        t0 = time.perf_counter()
        try:
            values[key] = float(fn())
        except NotApplicableError as err:
            values[key] = float("nan")
            messages[key] = str(err)
        timings[key] = time.perf_counter() - t0

    t0 = time.perf_counter()
    nb = compute_neighbors(X, n_neighbors)
    nb_cluster = _first_k(nb, K_CLUSTER)
    conn_cluster = umap_connectivities(nb_cluster)
    timings["neighbors"] = time.perf_counter() - t0
    details["n_neighbors"] = nb.n_neighbors

    # --- biological conservation --------------------------------------------------
    if n_lab < 2:
        msg = (
            f"only one label (label={_shown(lab_names[0])}); "
            "bio-conservation metrics need >= 2 labels"
        )
        for key in BIO_KEYS:
            values[key] = float("nan")
            messages[key] = msg
    else:
        nmi_ari_out: dict[str, float] = {}

        def _nmi() -> float:
            nmi_v, ari_v, res = _nmi_ari_from_conn(conn_cluster, lab, seed, DEFAULT_RESOLUTIONS)
            nmi_ari_out["ari"] = ari_v
            details["leiden_resolution"] = res
            return nmi_v

        run("nmi", _nmi)
        values["ari"] = nmi_ari_out.get("ari", float("nan"))
        if "nmi" in messages:
            messages["ari"] = messages["nmi"]
        timings["ari"] = 0.0

        t0 = time.perf_counter()
        sil = _silhouette_samples(X, lab)
        timings["silhouette_label"] = time.perf_counter() - t0
        values["silhouette_label"] = float(_rescale_sil(np.mean(sil), True))
        run("clisi", lambda: (n_lab - np.nanmedian(_lisi(nb, lab, 30))) / (n_lab - 1.0))

        def _iso() -> float:
            iso, fewest = _isolated_label_codes(lab, bat, n_bat)
            details["isolated_labels"] = [str(lab_names[c]) for c in iso]
            details["isolated_labels_n_batches"] = fewest
            return _isolated_from_samples(_rescale_sil(sil, True), lab, iso)

        run("isolated_labels", _iso)

    # --- batch correction ---------------------------------------------------------------
    if n_bat < 2:
        msg = (
            f"only one batch (B={_shown(bat_names[0])}); batch-correction metrics need >= 2 batches"
        )
        for key in BATCH_KEYS:
            values[key] = float("nan")
            messages[key] = msg
    else:

        def _sil_batch() -> float:
            score, skipped = _silhouette_batch(X, lab, lab_names, bat, True)
            details["silhouette_batch_skipped"] = skipped
            return score

        def _kbet() -> float:
            res = _kbet_per_label(
                umap_connectivities(_first_k(nb, K_KBET)), lab, lab_names, bat, 0.05
            )
            details["kbet"] = res
            return _kbet_score(res)

        def _pcr_cmp() -> float:
            if X_pre is None:
                msg = (
                    "no unintegrated embedding given (X_pre=None); pcr_comparison needs the "
                    "pre-integration embedding"
                )
                raise NotApplicableError(msg)
            pre, post = _pcr(X_pre, bat, n_bat), _pcr(X, bat, n_bat)
            details["pcr_pre"], details["pcr_post"] = pre, post
            return _pcr_comparison(pre, post, True)

        run("silhouette_batch", _sil_batch)
        run("ilisi", lambda: (np.nanmedian(_lisi(nb, bat, 30)) - 1.0) / (n_bat - 1.0))
        run("kbet", _kbet)
        run("graph_connectivity", lambda: _graph_connectivity(nb_cluster, lab, n_lab))
        run("pcr_comparison", _pcr_cmp)

    # --- aggregates ---------------------------------------------------------------------
    bio = _mean_available(values, BIO_KEYS)
    batch_score = _mean_available(values, BATCH_KEYS)
    values["bio_conservation"] = bio
    values["batch_correction"] = batch_score
    if np.isnan(bio):
        messages["bio_conservation"] = f"no bio-conservation metric available ({messages['nmi']})"
    if np.isnan(batch_score):
        messages["batch_correction"] = f"no batch-correction metric available ({messages['ilisi']})"
    values["total"] = BIO_WEIGHT * bio + BATCH_WEIGHT * batch_score
    if np.isnan(values["total"]):
        parts = [
            f"{k} is NaN: {messages[k]}"
            for k in ("bio_conservation", "batch_correction")
            if k in messages
        ]
        messages["total"] = "total = 0.6 * bio + 0.4 * batch needs both; " + "; ".join(parts)
    timings["total"] = time.perf_counter() - t_start

    order = [*BIO_KEYS, *BATCH_KEYS, *AGGREGATE_KEYS]
    values = {k: values[k] for k in order}
    messages = {k: messages[k] for k in order if k in messages}
    return IntegrationResult(values=values, messages=messages, details=details, timings=timings)
