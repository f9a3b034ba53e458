"""Exact k-nearest-neighbour graphs shared by the neighbourhood-based metrics.

The graph is computed once per embedding (:func:`compute_neighbors`, k = 90 by
default) and narrowed with :meth:`Neighbors.subset` for the metrics that use
fewer neighbours (k = 15 for Leiden clustering and graph connectivity, k = 50
for kBET).

Convention: a cell is never its own neighbour here. scib-metrics and scanpy store
the cell itself in column 0, so their ``n_neighbors=15`` graph holds 14 other
cells while ours holds 15. :func:`umap_connectivities` accounts for the implicit
self edge so that it gives the same weights as UMAP / scanpy on the graph with
the self column added.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from sklearn.neighbors import NearestNeighbors

from sceval._errors import DataContractError

__all__ = ["Neighbors", "as_embedding", "compute_neighbors", "umap_connectivities"]


def as_embedding(X: object, name: str = "X", min_cells: int = 1) -> np.ndarray:
    """Validate an embedding and return it as a C-contiguous float64 array.

    Parameters
    ----------
    X
        Array-like of shape (n_cells, n_dims).
    name
        Argument name used in error messages.
    min_cells
        Smallest accepted number of rows.

    Returns
    -------
    numpy.ndarray
        Array of shape (n_cells, n_dims), dtype float64.

    Raises
    ------
    DataContractError
        If ``X`` is sparse, not 2-D, not numeric, has too few rows, no columns, or
        contains NaN / inf.
    """
    if sp.issparse(X):
        msg = (
            f"{name}: expected a dense embedding array of shape (n_cells, n_dims), found a "
            f"sparse {type(X).__name__}. Pass a dense embedding (e.g. X.toarray() or a PCA)."
        )
        raise DataContractError(msg)
    try:
        arr = np.asarray(X)
    except Exception as err:  # pragma: no cover - exotic array-likes
        msg = f"{name}: expected a numeric array, found {type(X).__name__} ({err})."
        raise DataContractError(msg) from err
    if arr.ndim != 2:
        msg = (
            f"{name}: expected a 2-D array of shape (n_cells, n_dims), found shape "
            f"{arr.shape}. Reshape it, e.g. X.reshape(-1, 1) for a single dimension."
        )
        raise DataContractError(msg)
    if arr.dtype.kind not in "biuf":
        msg = (
            f"{name}: expected a numeric array, found dtype {arr.dtype}. "
            "Convert the embedding to floats."
        )
        raise DataContractError(msg)
    n, d = arr.shape
    if n < min_cells or d < 1:
        msg = (
            f"{name}: expected at least {min_cells} cells and 1 dimension, found shape "
            f"{arr.shape}. Metrics need more cells to be meaningful."
        )
        raise DataContractError(msg)
    arr = np.ascontiguousarray(arr, dtype=np.float64)
    finite = np.isfinite(arr)
    if not finite.all():
        bad_rows = np.flatnonzero(~finite.all(axis=1))
        n_nan = int(np.isnan(arr).sum())
        n_inf = int(np.isinf(arr).sum())
        msg = (
            f"{name}: expected finite values, found {n_nan} NaN and {n_inf} inf entries in "
            f"{bad_rows.size} cells (first rows: {bad_rows[:5].tolist()}). Remove or impute "
            "those cells before computing metrics."
        )
        raise DataContractError(msg)
    return arr


@dataclass(frozen=True, eq=False)
class Neighbors:
    """An exact k-nearest-neighbour graph, the cell itself excluded.

    Attributes
    ----------
    indices
        Array of shape (n_cells, k), dtype int64: row ``i`` lists the ``k`` nearest
        other cells of cell ``i``, nearest first.
    distances
        Array of shape (n_cells, k), dtype float64: the matching Euclidean distances,
        non-decreasing along each row.
    """

    indices: np.ndarray
    distances: np.ndarray

    def __post_init__(self) -> None:
        idx = np.asarray(self.indices)
        dist = np.asarray(self.distances, dtype=np.float64)
        if idx.ndim != 2 or idx.shape != dist.shape:
            msg = (
                "Neighbors: expected indices and distances of the same shape (n_cells, k), "
                f"found {idx.shape} and {dist.shape}."
            )
            raise DataContractError(msg)
        if idx.dtype.kind not in "iu":
            msg = f"Neighbors: expected integer indices, found dtype {idx.dtype}."
            raise DataContractError(msg)
        n, k = idx.shape
        if k < 1 or n < 2:
            msg = f"Neighbors: expected at least 2 cells and 1 neighbour, found shape {idx.shape}."
            raise DataContractError(msg)
        idx = idx.astype(np.int64, copy=True)
        if idx.min() < 0 or idx.max() >= n:
            msg = (
                f"Neighbors: expected indices in [0, {n - 1}], found range "
                f"[{idx.min()}, {idx.max()}]."
            )
            raise DataContractError(msg)
        if np.any(idx == np.arange(n)[:, None]):
            msg = (
                "Neighbors: expected the cell itself to be excluded from its neighbours, found "
                "self edges. Drop the self column (scanpy / scib-metrics store it first)."
            )
            raise DataContractError(msg)
        if not np.all(np.isfinite(dist)) or dist.min() < 0:
            msg = "Neighbors: expected finite, non-negative distances."
            raise DataContractError(msg)
        idx.setflags(write=False)
        dist = dist.copy()
        dist.setflags(write=False)
        object.__setattr__(self, "indices", idx)
        object.__setattr__(self, "distances", dist)

    @property
    def n_cells(self) -> int:
        """Number of cells (rows)."""
        return int(self.indices.shape[0])

    @property
    def n_neighbors(self) -> int:
        """Number of neighbours per cell (columns)."""
        return int(self.indices.shape[1])

    def subset(self, k: int) -> Neighbors:
        """The graph of the ``k`` nearest neighbours (first ``k`` columns), no recomputation.

        Parameters
        ----------
        k
            Number of neighbours to keep. When this graph already holds every other
            cell (``n_neighbors == n_cells - 1``), larger ``k`` are capped to it.

        Returns
        -------
        Neighbors
            The first ``k`` columns (copied), shape (n_cells, k).

        Raises
        ------
        ValueError
            If ``k < 1`` or ``k`` exceeds the neighbours available.
        """
        if k < 1:
            msg = f"Neighbors.subset: expected k >= 1, found k={k}."
            raise ValueError(msg)
        if k > self.n_neighbors:
            if self.n_neighbors == self.n_cells - 1:
                return self
            msg = (
                f"Neighbors.subset: expected k <= {self.n_neighbors} (the neighbours computed), "
                f"found k={k}. Call compute_neighbors with n_neighbors >= {k}."
            )
            raise ValueError(msg)
        if k == self.n_neighbors:
            return self
        return Neighbors(self.indices[:, :k], self.distances[:, :k])

    def adjacency(self) -> sp.csr_matrix:
        """Directed kNN adjacency matrix.

        Returns
        -------
        scipy.sparse.csr_matrix
            Shape (n_cells, n_cells); entry ``(i, j)`` is 1 if ``j`` is a neighbour of ``i``.
        """
        n, k = self.indices.shape
        indptr = np.arange(0, n * k + 1, k, dtype=np.int64)
        data = np.ones(n * k, dtype=np.float64)
        return sp.csr_matrix((data, self.indices.ravel(), indptr), shape=(n, n))


def _knn_exact(X: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact Euclidean kNN of the rows of ``X`` among themselves, self excluded.

    scikit-learn picks a k-d tree in low dimensions and a chunked, multi-threaded
    brute-force search (float64) otherwise; querying the fitted points with
    ``X=None`` excludes each point from its own neighbours even with duplicates.
    """
    nn = NearestNeighbors(n_neighbors=k).fit(X)
    distances, indices = nn.kneighbors()
    return indices.astype(np.int64, copy=False), distances.astype(np.float64, copy=False)


def compute_neighbors(X: np.ndarray, n_neighbors: int = 90) -> Neighbors:
    """Exact Euclidean k-nearest neighbours of every cell, the cell itself excluded.

    Uses :class:`sklearn.neighbors.NearestNeighbors` (k-d tree in low dimensions,
    chunked float64 brute force otherwise); 20,000 cells x 50 dimensions with
    k = 90 take about 1.3 s on 2 cores with bounded memory.

    Parameters
    ----------
    X
        Embedding of shape (n_cells, n_dims); finite values.
    n_neighbors
        Neighbours per cell; capped at ``n_cells - 1``.

    Returns
    -------
    Neighbors
        Indices and distances of shape (n_cells, min(n_neighbors, n_cells - 1)).

    Raises
    ------
    DataContractError
        If ``X`` is invalid (see :func:`as_embedding`) or has fewer than 2 cells.
    ValueError
        If ``n_neighbors < 1``.
    """
    if int(n_neighbors) != n_neighbors or n_neighbors < 1:
        msg = f"compute_neighbors: expected an integer n_neighbors >= 1, found {n_neighbors!r}."
        raise ValueError(msg)
    X = as_embedding(X, min_cells=2)
    k = min(int(n_neighbors), X.shape[0] - 1)
    indices, distances = _knn_exact(X, k)
    return Neighbors(indices, distances)


def _smooth_knn_sigma(
    distances: np.ndarray, n_iter: int = 64, tol: float = 1e-5
) -> tuple[np.ndarray, np.ndarray]:
    """Per-cell (sigma, rho) of the UMAP fuzzy set, vectorised over cells.

    ``distances`` has shape (n, k), self excluded; the self edge (distance 0) is
    counted as UMAP does when the kNN result includes it.
    """
    n, k = distances.shape
    target = np.log2(k + 1)
    positive = distances > 0
    has_pos = positive.any(axis=1)
    first = np.argmax(positive, axis=1)
    rho = np.where(has_pos, distances[np.arange(n), first], 0.0)
    shifted = distances - rho[:, None]
    lo = np.zeros(n)
    hi = np.full(n, np.inf)
    mid = np.ones(n)
    active = np.ones(n, dtype=bool)
    for _ in range(n_iter):
        ia = np.flatnonzero(active)
        if ia.size == 0:
            break
        s = shifted[ia]
        m = mid[ia]
        psum = np.where(s > 0, np.exp(-np.maximum(s, 0) / m[:, None]), 1.0).sum(axis=1)
        conv = np.abs(psum - target) < tol
        upd = ~conv
        iu, ps, mu = ia[upd], psum[upd], m[upd]
        too_big = ps > target
        hi_u, lo_u = hi[iu], lo[iu]
        hi_u = np.where(too_big, mu, hi_u)
        lo_u = np.where(too_big, lo_u, mu)
        new_mid = np.where(
            too_big, (lo_u + hi_u) / 2.0, np.where(np.isinf(hi_u), mu * 2.0, (lo_u + hi_u) / 2.0)
        )
        hi[iu], lo[iu], mid[iu] = hi_u, lo_u, new_mid
        active[ia[conv]] = False
    sigma = mid
    row_mean = distances.sum(axis=1) / (k + 1)
    all_mean = distances.sum() / (n * (k + 1))
    floor = np.where(rho > 0, 1e-3 * row_mean, 1e-3 * all_mean)
    sigma = np.maximum(sigma, floor)
    return sigma, rho


def umap_connectivities(neighbors: Neighbors) -> sp.csr_matrix:
    """Symmetric fuzzy-union connectivities of a kNN graph, as UMAP / scanpy compute them.

    For each cell, ``w_ij = exp(-(d_ij - rho_i) / sigma_i)`` with ``rho_i`` the distance
    to the nearest neighbour and ``sigma_i`` calibrated so that the weights (plus the
    implicit self edge) sum to ``log2(k + 1)``; the result is ``W + W.T - W * W.T``.
    ``k + 1`` is used because scanpy's ``n_neighbors`` counts the cell itself.

    Parameters
    ----------
    neighbors
        kNN graph of shape (n_cells, k).

    Returns
    -------
    scipy.sparse.csr_matrix
        Shape (n_cells, n_cells), symmetric, values in (0, 1], sorted indices.
    """
    d = neighbors.distances
    n, k = d.shape
    sigma, rho = _smooth_knn_sigma(d)
    shifted = d - rho[:, None]
    vals = np.where(shifted > 0, np.exp(-np.maximum(shifted, 0) / sigma[:, None]), 1.0)
    indptr = np.arange(0, n * k + 1, k, dtype=np.int64)
    W = sp.csr_matrix((vals.ravel(), neighbors.indices.ravel(), indptr), shape=(n, n))
    Wt = W.T.tocsr()
    conn = (W + Wt - W.multiply(Wt)).tocsr()
    conn.eliminate_zeros()
    conn.sort_indices()
    return conn
