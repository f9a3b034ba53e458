"""Metrics on gene embeddings: probe scores and module-versus-reference comparisons.

Pure functions on arrays and gene-name collections, used by the ``gene_function`` and
``gene_network`` tasks:

- :func:`auroc` - area under the ROC curve (Mann-Whitney statistic, ties count half),
  one-vs-rest macro average for several classes;
- :func:`gene_probe_metrics` - accuracy, macro F1 and AUROC of class probabilities;
- :func:`best_match_jaccard` - mean over reference sets of the best Jaccard index
  with any module;
- :func:`module_ami` - adjusted mutual information of modules and reference labels;
- :func:`hypergeometric_sf`, :func:`benjamini_hochberg`, :func:`module_enrichment` -
  over-representation of reference sets in modules and the share of enriched modules.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = [
    "EnrichmentResult",
    "auroc",
    "benjamini_hochberg",
    "best_match_jaccard",
    "gene_probe_metrics",
    "hypergeometric_sf",
    "module_ami",
    "module_enrichment",
]


def _binary_auroc(y: np.ndarray, score: np.ndarray) -> float:
    from scipy.stats import rankdata

    y = np.asarray(y, dtype=bool)
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(np.asarray(score, dtype=np.float64))  # ties get the mean rank
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def auroc(
    y_true: Sequence | np.ndarray, scores: np.ndarray, classes: Sequence | None = None
) -> float:
    """Area under the ROC curve.

    Parameters
    ----------
    y_true
        True label per item, shape ``(n,)``.
    scores
        Shape ``(n,)`` (binary: score of the positive class, ``classes[1]``) or
        ``(n, n_classes)`` (score per class, columns in the order of ``classes``).
    classes
        Class labels in column order; default the sorted unique values of ``y_true``.

    Returns
    -------
    float
        The probability that a random positive scores higher than a random negative
        (ties count one half). With several classes, the unweighted mean of the
        one-vs-rest values over classes that have both positives and negatives. NaN
        when no class has both.
    """
    y = np.asarray(y_true).astype(str)
    cls = [str(c) for c in (np.unique(y) if classes is None else classes)]
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim == 1:
        if len(cls) != 2:
            msg = (
                f"auroc: a 1-d score needs exactly 2 classes, found {len(cls)}. "
                "Fix: pass one score column per class."
            )
            raise ValueError(msg)
        return _binary_auroc(y == cls[1], s)
    if s.shape != (y.size, len(cls)):
        msg = f"auroc: expected scores of shape ({y.size}, {len(cls)}), found {s.shape}."
        raise ValueError(msg)
    if len(cls) == 2:
        return _binary_auroc(y == cls[1], s[:, 1])
    vals = [_binary_auroc(y == c, s[:, j]) for j, c in enumerate(cls)]
    vals = [v for v in vals if not np.isnan(v)]
    return float(np.mean(vals)) if vals else float("nan")


def gene_probe_metrics(
    y_true: Sequence | np.ndarray, proba: np.ndarray, classes: Sequence
) -> dict[str, float]:
    """Accuracy, macro F1 and AUROC of out-of-fold class probabilities.

    Parameters
    ----------
    y_true
        True label per gene, shape ``(n,)``.
    proba
        Predicted class probabilities, shape ``(n, n_classes)``, columns in the order
        of ``classes``; the prediction is the arg-max column.
    classes
        Class labels.

    Returns
    -------
    dict
        ``gene_accuracy``, ``gene_f1_macro`` and ``gene_auroc`` (one-vs-rest macro for
        more than two classes).
    """
    from sklearn.metrics import accuracy_score, f1_score

    y = np.asarray(y_true).astype(str)
    cls = np.asarray([str(c) for c in classes])
    pred = cls[np.argmax(np.asarray(proba), axis=1)]
    return {
        "gene_accuracy": float(accuracy_score(y, pred)),
        "gene_f1_macro": float(f1_score(y, pred, labels=cls, average="macro", zero_division=0.0)),
        "gene_auroc": auroc(y, proba, cls),
    }


def best_match_jaccard(
    modules: Mapping[str, Collection[str]], reference: Mapping[str, Collection[str]]
) -> float:
    """Mean over reference sets of the largest Jaccard index with any module.

    ``J(A, B) = |A & B| / |A | B|``. A reference set recovered exactly by one module
    scores 1; a reference set split evenly over two modules scores at most 0.5.
    NaN when there are no reference sets.
    """
    mods = [set(map(str, m)) for m in modules.values()]
    vals = []
    for ref in reference.values():
        r = set(map(str, ref))
        best = 0.0
        for m in mods:
            union = len(r | m)
            if union:
                best = max(best, len(r & m) / union)
        vals.append(best)
    return float(np.mean(vals)) if vals else float("nan")


def module_ami(module_of: Mapping[str, str], reference_of: Mapping[str, str]) -> tuple[float, int]:
    """Adjusted mutual information between module and reference labels.

    Parameters
    ----------
    module_of, reference_of
        Gene -> module and gene -> reference label (genes in several reference sets
        should be left out by the caller).

    Returns
    -------
    (ami, n_genes)
        AMI (arithmetic normalization, sklearn's default) over the genes in both
        mappings, and their number. NaN when fewer than two such genes.
    """
    from sklearn.metrics import adjusted_mutual_info_score

    common = sorted(set(module_of) & set(reference_of))
    if len(common) < 2:
        return float("nan"), len(common)
    a = [str(module_of[g]) for g in common]
    b = [str(reference_of[g]) for g in common]
    return float(adjusted_mutual_info_score(b, a)), len(common)


def hypergeometric_sf(k: int, universe: int, n_ref: int, n_module: int) -> float:
    """P(X >= k) for X ~ Hypergeometric(universe, n_ref successes, n_module draws):
    the over-representation p-value of ``k`` reference genes in a module."""
    from scipy.stats import hypergeom

    if k <= 0:
        return 1.0
    return float(hypergeom.sf(k - 1, universe, n_ref, n_module))


def benjamini_hochberg(pvalues: Sequence[float] | np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (q-values), in the input order.

    ``q_(i) = min_{j >= i} min(1, m p_(j) / j)`` for the p-values sorted increasingly.
    """
    p = np.asarray(pvalues, dtype=np.float64)
    m = p.size
    if m == 0:
        return p.copy()
    order = np.argsort(p, kind="mergesort")
    ranked = p[order] * m / np.arange(1, m + 1)
    q_sorted = np.minimum.accumulate(ranked[::-1])[::-1]
    q = np.empty(m)
    q[order] = np.minimum(q_sorted, 1.0)
    return q


@dataclass(frozen=True)
class EnrichmentResult:
    """Over-representation of reference sets in modules.

    Attributes
    ----------
    share
        Share of modules with at least one reference set at ``q < alpha``.
    table
        One row per (module, reference set) test: ``module``, ``reference``,
        ``overlap``, ``module_size``, ``reference_size``, ``pvalue``, ``qvalue``.
    n_modules
        Number of modules tested.
    """

    share: float
    table: pd.DataFrame
    n_modules: int


def module_enrichment(
    modules: Mapping[str, Collection[str]],
    reference: Mapping[str, Collection[str]],
    universe: Collection[str],
    alpha: float = 0.05,
) -> EnrichmentResult:
    """Hypergeometric over-representation of every reference set in every module,
    Benjamini-Hochberg over all tests; a module is enriched when one of its tests has
    ``q < alpha``.

    Parameters
    ----------
    modules, reference
        Name -> genes. Only genes in ``universe`` count.
    universe
        All genes that could have been drawn (the genes of the graph).
    alpha
        False-discovery rate.
    """
    uni = set(map(str, universe))
    n_uni = len(uni)
    mods = {str(k): set(map(str, v)) & uni for k, v in modules.items()}
    refs = {str(k): set(map(str, v)) & uni for k, v in reference.items()}
    rows = []
    for mk, m in mods.items():
        for rk, r in refs.items():
            k = len(m & r)
            rows.append((mk, rk, k, len(m), len(r), hypergeometric_sf(k, n_uni, len(r), len(m))))
    cols = ["module", "reference", "overlap", "module_size", "reference_size", "pvalue"]
    table = pd.DataFrame(rows, columns=cols)
    table["qvalue"] = benjamini_hochberg(table["pvalue"].to_numpy())
    if not mods:
        return EnrichmentResult(float("nan"), table, 0)
    enriched = set(table.loc[table["qvalue"] < alpha, "module"])
    return EnrichmentResult(len(enriched) / len(mods), table, len(mods))
