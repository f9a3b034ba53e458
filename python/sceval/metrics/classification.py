"""Classification metrics for cell-type annotation.

Rows of the confusion matrix are TRUE classes and columns PREDICTED classes, so
precision divides by column sums and recall by row sums. (The scEval study
called ``classification_report(pred, true)``, which swaps the two; the tests pin
the orientation with a hand-worked example.)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from sceval._errors import DataContractError

__all__ = ["classification_metrics", "confusion_matrix"]


def _as_label_array(values: Sequence[Any], name: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        msg = f"{name}: expected a 1-D array of class labels, found shape {arr.shape}."
        raise DataContractError(msg)
    missing = pd.isna(arr)
    if missing.any():
        pos = np.flatnonzero(missing)
        msg = (
            f"{name}: expected a label for every cell, found {pos.size} missing values "
            f"(first positions: {pos[:5].tolist()}). Drop those cells or fill them in."
        )
        raise DataContractError(msg)
    return arr


def _kind(arr: np.ndarray) -> str:
    if arr.dtype.kind in "biuf":
        return "numeric"
    if arr.dtype.kind in "USO":
        kinds = {"numeric" if isinstance(v, (int, float, np.number)) else "text" for v in arr}
        return kinds.pop() if len(kinds) == 1 else "mixed"
    return arr.dtype.kind


def _prepare(
    y_true: Sequence[Any], y_pred: Sequence[Any], labels: Sequence[Any] | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    yt = _as_label_array(y_true, "y_true")
    yp = _as_label_array(y_pred, "y_pred")
    if yt.shape != yp.shape:
        msg = (
            f"y_true and y_pred: expected the same shape, found {yt.shape} and {yp.shape}. "
            "Pass one prediction per true label."
        )
        raise DataContractError(msg)
    if yt.size == 0:
        msg = "y_true: expected at least one cell, found none."
        raise DataContractError(msg)
    k_true, k_pred = _kind(yt), _kind(yp)
    if "mixed" in (k_true, k_pred) or k_true != k_pred:
        msg = (
            f"y_true holds {k_true} labels and y_pred holds {k_pred} labels; expected both of "
            "the same type. Convert both, e.g. with np.asarray(y, dtype=str)."
        )
        raise DataContractError(msg)
    observed = np.unique(np.concatenate([yt.astype(object), yp.astype(object)]))
    if labels is None:
        classes = observed
    else:
        classes = _as_label_array(labels, "labels")
        uniq = pd.unique(classes.astype(object))
        if uniq.size != classes.size:
            msg = "labels: expected distinct class labels, found duplicates."
            raise DataContractError(msg)
        classes = classes.astype(object)
        absent = np.setdiff1d(observed, classes)
        if absent.size:
            msg = (
                f"labels: expected every class in y_true and y_pred, found {absent.size} "
                f"missing ({absent[:5].tolist()}). Add them to labels or pass labels=None."
            )
            raise DataContractError(msg)
    return yt.astype(object), yp.astype(object), classes


def confusion_matrix(
    y_true: Sequence[Any], y_pred: Sequence[Any], labels: Sequence[Any] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Confusion matrix with true classes as rows and predicted classes as columns.

    Parameters
    ----------
    y_true
        True labels of shape (n_cells,).
    y_pred
        Predicted labels of shape (n_cells,).
    labels
        Classes, in the order of the rows / columns; must include every class seen
        in ``y_true`` and ``y_pred``. Default: their sorted union.

    Returns
    -------
    counts
        Array of shape (n_classes, n_classes), int64: ``counts[i, j]`` is the number of
        cells of true class ``classes[i]`` predicted as ``classes[j]``.
    classes
        Array of shape (n_classes,) with the class labels.
    """
    yt, yp, classes = _prepare(y_true, y_pred, labels)
    return _confusion(yt, yp, classes), classes


def _confusion(yt: np.ndarray, yp: np.ndarray, classes: np.ndarray) -> np.ndarray:
    index = pd.Index(classes)
    i = index.get_indexer(yt)
    j = index.get_indexer(yp)
    c = classes.size
    return np.bincount(i * c + j, minlength=c * c).reshape(c, c).astype(np.int64)


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.zeros_like(num, dtype=np.float64)
    np.divide(num, den, out=out, where=den > 0)
    return out


def classification_metrics(
    y_true: Sequence[Any], y_pred: Sequence[Any], labels: Sequence[Any] | None = None
) -> dict[str, float]:
    """Accuracy, balanced accuracy and macro precision / recall / F1.

    Macro averages are unweighted means over ``labels`` (default: the union of the
    classes in ``y_true`` and ``y_pred``); a per-class ratio with a zero
    denominator counts as 0 (scikit-learn's ``zero_division=0``).

    - precision of class c = TP / (TP + FP) = TP / (cells predicted c)
    - recall of class c = TP / (TP + FN) = TP / (cells truly c)
    - F1 of class c = 2 TP / (2 TP + FP + FN)
    - balanced accuracy = mean recall over the classes present in ``y_true``
      (so it differs from ``recall_macro`` when ``y_pred`` holds extra classes)

    Parameters
    ----------
    y_true
        True labels of shape (n_cells,).
    y_pred
        Predicted labels of shape (n_cells,).
    labels
        Classes to average over; must include every observed class.

    Returns
    -------
    dict of str to float
        Keys ``accuracy``, ``balanced_accuracy``, ``precision_macro``, ``recall_macro``,
        ``f1_macro``; all in [0, 1], higher is better.

    Raises
    ------
    DataContractError
        On length mismatches, empty or missing labels, or labels of different types.
    """
    yt, yp, classes = _prepare(y_true, y_pred, labels)
    cm = _confusion(yt, yp, classes).astype(np.float64)
    tp = np.diag(cm)
    n_true = cm.sum(axis=1)
    n_pred = cm.sum(axis=0)
    precision = _safe_div(tp, n_pred)
    recall = _safe_div(tp, n_true)
    f1 = _safe_div(2.0 * tp, n_true + n_pred)
    return {
        "accuracy": float(tp.sum() / cm.sum()),
        "balanced_accuracy": float(recall[n_true > 0].mean()),
        "precision_macro": float(precision.mean()),
        "recall_macro": float(recall.mean()),
        "f1_macro": float(f1.mean()),
    }
