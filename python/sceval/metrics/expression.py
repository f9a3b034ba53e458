"""Metrics on expression values: imputation accuracy and generated-vs-real agreement.

Pure functions on arrays, used by the ``imputation`` and ``simulation`` tasks:

- :func:`heldout_correlation` - per-gene Pearson / Spearman of held-out values, mean
  over genes; :func:`rmse`.
- :func:`correlation_matrix_distance` - mean absolute difference of gene-gene
  correlation matrices; :func:`moment_agreement` - Pearson of log per-gene means and
  variances.
- :func:`mmd_rbf` - maximum mean discrepancy with an RBF kernel (median heuristic);
  :func:`knn_two_sample_auc` - a kNN classifier two-sample test (C2ST);
  :func:`mixing_ilisi` - per-group iLISI of real vs generated cells.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

from sceval._errors import DataContractError, NotApplicableError

__all__ = [
    "correlation_matrix_distance",
    "heldout_correlation",
    "knn_two_sample_auc",
    "mixing_ilisi",
    "mmd_rbf",
    "moment_agreement",
    "rmse",
]


def _dense(x: Any, name: str) -> np.ndarray:
    arr = np.asarray(x.toarray() if sp.issparse(x) else x, dtype=np.float64)
    if arr.ndim != 2:
        msg = f"{name}: expected a 2-D cells x features matrix, found shape {arr.shape}."
        raise DataContractError(msg)
    if not np.all(np.isfinite(arr)):
        msg = f"{name}: expected finite values, found NaN or inf. Remove or fill them first."
        raise DataContractError(msg)
    return arr


def _same_width(a: np.ndarray, b: np.ndarray, fn: str) -> None:
    if a.shape[1] != b.shape[1]:
        msg = (
            f"{fn}: expected matrices with the same columns, found shapes {a.shape} and "
            f"{b.shape}. Pass real and generated cells over the same genes / dimensions."
        )
        raise DataContractError(msg)


def _ranks(x: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    return rankdata(x)


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    den = np.sqrt(np.dot(a, a) * np.dot(b, b))
    return float(np.dot(a, b) / den) if den > 0 else float("nan")


def heldout_correlation(
    truth: Sequence[float],
    predicted: Sequence[float],
    gene: Sequence[int],
    method: str = "pearson",
    *,
    min_values: int = 3,
) -> float:
    """Per-gene correlation of held-out values, averaged over genes.

    Parameters
    ----------
    truth, predicted
        True and predicted values of the held-out entries, shape (n_entries,).
    gene
        The gene (any hashable integer code) of each entry, shape (n_entries,).
    method
        ``"pearson"`` or ``"spearman"`` (Pearson of average ranks).
    min_values
        Genes with fewer held-out entries are left out.

    Returns
    -------
    float
        Mean over scored genes. Genes whose true values are constant are left out
        (correlation undefined); genes whose predictions are constant score 0 (the
        prediction carries no information), so a model that imputes nothing scores 0.

    Raises
    ------
    NotApplicableError
        When no gene has ``min_values`` entries with varying true values.
    DataContractError
        When the three inputs differ in length or hold non-finite values.
    """
    t = np.asarray(truth, dtype=np.float64).ravel()
    p = np.asarray(predicted, dtype=np.float64).ravel()
    g = np.asarray(gene).ravel()
    if not (t.size == p.size == g.size):
        msg = (
            f"heldout_correlation: expected truth, predicted and gene of one length, found "
            f"{t.size}, {p.size} and {g.size}."
        )
        raise DataContractError(msg)
    if not (np.all(np.isfinite(t)) and np.all(np.isfinite(p))):
        msg = "heldout_correlation: expected finite values, found NaN or inf."
        raise DataContractError(msg)
    if method not in ("pearson", "spearman"):
        msg = f"heldout_correlation: expected method 'pearson' or 'spearman', found {method!r}."
        raise ValueError(msg)
    order = np.argsort(g, kind="stable")
    t, p, g = t[order], p[order], g[order]
    starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
    ends = np.r_[starts[1:], g.size]
    scores = []
    for s, e in zip(starts, ends, strict=True):
        if e - s < min_values:
            continue
        tt, pp_ = t[s:e], p[s:e]
        if np.ptp(tt) == 0:
            continue
        if np.ptp(pp_) == 0:
            scores.append(0.0)
            continue
        if method == "spearman":
            tt, pp_ = _ranks(tt), _ranks(pp_)
        scores.append(_pearson(tt, pp_))
    if not scores:
        msg = (
            f"heldout_correlation: no gene has >= {min_values} held-out values that vary; "
            "hold out more entries (larger mask_fraction) or lower min_values."
        )
        raise NotApplicableError(msg)
    return float(np.mean(scores))


def rmse(truth: Sequence[float], predicted: Sequence[float]) -> float:
    """Root mean squared error ``sqrt(mean((truth - predicted)^2))`` (lower is better).

    Raises
    ------
    DataContractError
        When the inputs differ in length or are empty.
    """
    t = np.asarray(truth, dtype=np.float64).ravel()
    p = np.asarray(predicted, dtype=np.float64).ravel()
    if t.size != p.size or t.size == 0:
        msg = f"rmse: expected two non-empty inputs of one length, found {t.size} and {p.size}."
        raise DataContractError(msg)
    return float(np.sqrt(np.mean((t - p) ** 2)))


def _corr_matrix(x: np.ndarray) -> np.ndarray:
    xc = x - x.mean(axis=0)
    sd = np.sqrt(np.sum(xc**2, axis=0))
    sd[sd == 0] = np.inf  # constant genes correlate 0 with everything
    z = xc / sd
    c = z.T @ z
    np.fill_diagonal(c, 1.0)
    return c


def correlation_matrix_distance(real: Any, generated: Any) -> float:
    """Mean absolute difference of the gene-gene Pearson correlation matrices.

    Parameters
    ----------
    real, generated
        Cells x genes matrices over the same genes (e.g. log-normalized top-100 HVGs).

    Returns
    -------
    float
        Mean of ``|C_real - C_gen|`` over the off-diagonal pairs, in [0, 2]; lower is
        better. A constant gene correlates 0 with every other gene.
    """
    a, b = _dense(real, "real"), _dense(generated, "generated")
    _same_width(a, b, "correlation_matrix_distance")
    n = a.shape[1]
    if n < 2:
        msg = f"correlation_matrix_distance: expected >= 2 genes, found {n}."
        raise DataContractError(msg)
    d = np.abs(_corr_matrix(a) - _corr_matrix(b))
    return float(d[~np.eye(n, dtype=bool)].mean())


def moment_agreement(real: Any, generated: Any) -> tuple[float, float]:
    """Agreement of per-gene means and variances.

    Parameters
    ----------
    real, generated
        Cells x genes matrices over the same genes (counts or normalized values).

    Returns
    -------
    tuple of float
        ``(r_mean, r_var)``: Pearson correlation across genes of ``log1p`` of the
        per-gene means, and of ``log1p`` of the per-gene variances (ddof 1); higher is
        better, NaN when either side is constant across genes.
    """
    a, b = _dense(real, "real"), _dense(generated, "generated")
    _same_width(a, b, "moment_agreement")
    if min(a.shape[0], b.shape[0]) < 2:
        msg = "moment_agreement: expected >= 2 cells on each side."
        raise DataContractError(msg)
    r_mean = _pearson(np.log1p(a.mean(axis=0)), np.log1p(b.mean(axis=0)))
    r_var = _pearson(np.log1p(a.var(axis=0, ddof=1)), np.log1p(b.var(axis=0, ddof=1)))
    return r_mean, r_var


def _subsample(x: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    return x if x.shape[0] <= n else x[np.sort(rng.choice(x.shape[0], n, replace=False))]


def mmd_rbf(
    X: Any,
    Y: Any,
    *,
    bandwidth: float | None = None,
    max_cells: int = 2000,
    seed: int = 0,
) -> float:
    """Squared maximum mean discrepancy with a Gaussian (RBF) kernel.

    The biased (V-statistic) estimate ``mean k(x, x') + mean k(y, y') - 2 mean k(x, y)``
    with ``k(a, b) = exp(-|a - b|^2 / (2 sigma^2))``.

    Parameters
    ----------
    X, Y
        Samples of shape (n_x, d) and (n_y, d) (e.g. PCA coordinates).
    bandwidth
        ``sigma``; default the median heuristic: the median Euclidean distance between
        distinct points of the pooled sample.
    max_cells
        Each sample is subsampled (seeded) to at most this many cells.
    seed
        Seed of the subsampling.

    Returns
    -------
    float
        >= 0; 0 for identical samples, lower is better.
    """
    a, b = _dense(X, "X"), _dense(Y, "Y")
    _same_width(a, b, "mmd_rbf")
    rng = np.random.default_rng(seed)
    a, b = _subsample(a, max_cells, rng), _subsample(b, max_cells, rng)
    from scipy.spatial.distance import cdist

    daa, dbb, dab = cdist(a, a, "sqeuclidean"), cdist(b, b, "sqeuclidean"), cdist(a, b)
    if bandwidth is None:
        iu_a = np.triu_indices(a.shape[0], 1)
        iu_b = np.triu_indices(b.shape[0], 1)
        pooled = np.concatenate([np.sqrt(daa[iu_a]), np.sqrt(dbb[iu_b]), dab.ravel()])
        bandwidth = float(np.median(pooled))
    if not bandwidth > 0:
        return 0.0
    g = 1.0 / (2.0 * bandwidth**2)
    val = np.exp(-g * daa).mean() + np.exp(-g * dbb).mean() - 2.0 * np.exp(-g * dab**2).mean()
    return float(max(val, 0.0))


def knn_two_sample_auc(
    X: Any, Y: Any, *, n_neighbors: int = 15, n_folds: int = 5, seed: int = 0
) -> float:
    """ROC AUC of a kNN classifier telling ``X`` (label 0) from ``Y`` (label 1).

    Out-of-fold probabilities from a stratified, seeded ``n_folds``-fold split, so each
    cell is scored by a classifier that never saw it. 0.5 means the samples cannot be
    told apart; values below 0.5 are chance.

    Returns
    -------
    float
        The AUC in [0, 1].
    """
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold
    from sklearn.neighbors import KNeighborsClassifier

    a, b = _dense(X, "X"), _dense(Y, "Y")
    _same_width(a, b, "knn_two_sample_auc")
    if min(a.shape[0], b.shape[0]) < n_folds:
        msg = (
            f"knn_two_sample_auc: expected >= {n_folds} cells per sample, found "
            f"{a.shape[0]} and {b.shape[0]}."
        )
        raise NotApplicableError(msg)
    z = np.vstack([a, b])
    y = np.r_[np.zeros(a.shape[0]), np.ones(b.shape[0])]
    prob = np.zeros(y.size)
    folds = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    for tr, te in folds.split(z, y):
        k = min(n_neighbors, tr.size)
        clf = KNeighborsClassifier(n_neighbors=k).fit(z[tr], y[tr])
        prob[te] = clf.predict_proba(z[te])[:, 1]
    return float(roc_auc_score(y, prob))


def mixing_ilisi(
    X: Any,
    Y: Any,
    groups_x: Sequence[Any],
    groups_y: Sequence[Any],
    *,
    n_neighbors: int = 90,
    min_cells: int = 10,
) -> tuple[float, dict[str, float]]:
    """scIB-style mixing of real and generated cells: iLISI with real / generated as
    the batch, computed within each group (cell type) and averaged over groups.

    Parameters
    ----------
    X, Y
        Real and generated cells of shape (n_x, d) and (n_y, d) in a shared space.
    groups_x, groups_y
        Group (cell type) of each real and generated cell.
    n_neighbors
        Neighbours of the per-group kNN graph (capped at the group size minus one).
    min_cells
        Groups with fewer real or generated cells are left out.

    Returns
    -------
    tuple
        ``(mean, per_group)``: iLISI scaled to [0, 1] (1 = perfectly mixed, 0 = separate).

    Raises
    ------
    NotApplicableError
        When no group has ``min_cells`` cells on both sides.
    """
    from sceval.metrics._neighbors import compute_neighbors
    from sceval.metrics.integration import ilisi

    a, b = _dense(X, "X"), _dense(Y, "Y")
    _same_width(a, b, "mixing_ilisi")
    gx, gy = np.asarray(groups_x).astype(str), np.asarray(groups_y).astype(str)
    if gx.size != a.shape[0] or gy.size != b.shape[0]:
        msg = (
            f"mixing_ilisi: expected one group per cell, found {gx.size} groups for "
            f"{a.shape[0]} real and {gy.size} for {b.shape[0]} generated cells."
        )
        raise DataContractError(msg)
    per: dict[str, float] = {}
    for grp in sorted(set(gx.tolist()) & set(gy.tolist())):
        ia, ib = gx == grp, gy == grp
        if ia.sum() < min_cells or ib.sum() < min_cells:
            continue
        z = np.vstack([a[ia], b[ib]])
        src = np.r_[np.zeros(int(ia.sum()), dtype=int), np.ones(int(ib.sum()), dtype=int)]
        per[grp] = ilisi(compute_neighbors(z, n_neighbors), src)
    if not per:
        msg = f"mixing_ilisi: no group has >= {min_cells} real and generated cells."
        raise NotApplicableError(msg)
    return float(np.mean(list(per.values()))), per
