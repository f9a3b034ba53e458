"""Perturbation-prediction metrics: pure functions on mean-expression arrays.

A prediction is the mean log-normalized expression of each perturbation
(``n_perturbations x n_genes``), compared with the observed mean of the perturbed cells.
As in the GEARS and scGPT evaluations:

* ``mse`` and ``pearson`` compare the expression profiles over all genes;
* ``pearson_delta`` correlates the changes from the control mean
  (``pred - ctrl`` with ``true - ctrl``), which is what a model has to learn;
* the ``*_de20`` variants use only the 20 genes with the largest observed
  ``|mean(perturbed) - mean(control)|`` of each perturbation.

A Pearson correlation with a constant vector (e.g. the zero change predicted by the
control-mean baseline) is defined as 0: no linear association, instead of NaN.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "PERTURBATION_KEYS",
    "mean_scores",
    "mse",
    "pearson",
    "perturbation_scores",
    "top_de_genes",
]

#: Metric keys, in display order, with whether higher is better.
PERTURBATION_KEYS: dict[str, bool] = {
    "mse": False,
    "pearson": True,
    "pearson_delta": True,
    "mse_de20": False,
    "pearson_de20": True,
    "pearson_delta_de20": True,
}


def mse(pred: np.ndarray, true: np.ndarray) -> float:
    """Mean squared error of two vectors of the same length.

    Parameters
    ----------
    pred, true
        1-d arrays.

    Returns
    -------
    float
        ``mean((pred - true) ** 2)``.
    """
    p, t = _pair(pred, true)
    return float(np.mean((p - t) ** 2))


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two vectors; 0 when either is constant.

    Parameters
    ----------
    a, b
        1-d arrays of the same length (at least 2).

    Returns
    -------
    float
        The correlation in ``[-1, 1]``.
    """
    x, y = _pair(a, b)
    if x.size < 2:
        msg = f"pearson needs at least 2 values, found {x.size}. Fix: pass longer vectors."
        raise ValueError(msg)
    if np.all(x == x[0]) or np.all(y == y[0]):
        return 0.0
    x = x - x.mean()
    y = y - y.mean()
    sx, sy = np.sqrt(np.sum(x * x)), np.sqrt(np.sum(y * y))
    if sx == 0 or sy == 0:
        return 0.0
    return float(np.clip(np.sum(x * y) / (sx * sy), -1.0, 1.0))


def top_de_genes(true: np.ndarray, ctrl: np.ndarray, n: int = 20) -> np.ndarray:
    """Indices of the ``n`` genes with the largest ``|true - ctrl|`` (largest first).

    Ties are broken by gene order (stable sort), so the result is deterministic.

    Parameters
    ----------
    true
        Observed mean expression of the perturbed cells, shape ``(n_genes,)``.
    ctrl
        Mean expression of the control cells, shape ``(n_genes,)``.
    n
        Number of genes (capped at ``n_genes``).
    """
    t, c = _pair(true, ctrl)
    if n < 1:
        msg = f"n must be >= 1, found {n}. Fix: pass a positive number of DE genes."
        raise ValueError(msg)
    order = np.argsort(-np.abs(t - c), kind="stable")
    return order[: min(n, t.size)]


def perturbation_scores(
    pred: np.ndarray, true: np.ndarray, ctrl: np.ndarray, n_de: int = 20
) -> dict[str, np.ndarray]:
    """Every metric for every perturbation.

    Parameters
    ----------
    pred, true
        Predicted and observed mean expression, shape ``(n_perturbations, n_genes)``.
    ctrl
        Mean expression of the control cells, shape ``(n_genes,)``.
    n_de
        Number of top DE genes for the ``*_de20`` metrics (the keys keep the ``de20``
        name; pass 20 to match them).

    Returns
    -------
    dict
        Metric key -> array of shape ``(n_perturbations,)``, keys as in
        :data:`PERTURBATION_KEYS`.
    """
    p = np.atleast_2d(np.asarray(pred, dtype=np.float64))
    t = np.atleast_2d(np.asarray(true, dtype=np.float64))
    c = np.asarray(ctrl, dtype=np.float64).ravel()
    if p.shape != t.shape or p.shape[1] != c.size:
        msg = (
            f"pred {p.shape}, true {t.shape} and ctrl ({c.size},) must agree: expected "
            "(n_perturbations, n_genes) twice and (n_genes,). Fix: align genes and rows."
        )
        raise ValueError(msg)
    out: dict[str, list[float]] = {k: [] for k in PERTURBATION_KEYS}
    for i in range(p.shape[0]):
        de = top_de_genes(t[i], c, n_de)
        out["mse"].append(mse(p[i], t[i]))
        out["pearson"].append(pearson(p[i], t[i]))
        out["pearson_delta"].append(pearson(p[i] - c, t[i] - c))
        out["mse_de20"].append(mse(p[i, de], t[i, de]))
        out["pearson_de20"].append(pearson(p[i, de], t[i, de]) if de.size > 1 else np.nan)
        out["pearson_delta_de20"].append(
            pearson(p[i, de] - c[de], t[i, de] - c[de]) if de.size > 1 else np.nan
        )
    return {k: np.asarray(v, dtype=np.float64) for k, v in out.items()}


def mean_scores(scores: dict[str, np.ndarray]) -> dict[str, float]:
    """Average each metric over perturbations (NaN-aware; NaN when all are NaN)."""
    out = {}
    for k, v in scores.items():
        v = np.asarray(v, dtype=np.float64)
        out[k] = float(np.mean(v[np.isfinite(v)])) if np.isfinite(v).any() else float("nan")
    return out


def _pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(a, dtype=np.float64).ravel()
    y = np.asarray(b, dtype=np.float64).ravel()
    if x.shape != y.shape:
        msg = f"expected two vectors of the same length, found {x.size} and {y.size}."
        raise ValueError(msg)
    return x, y
