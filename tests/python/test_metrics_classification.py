"""Classification metrics: hand-worked values, sklearn agreement, orientation, errors."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from sceval._errors import DataContractError
from sceval.metrics import CLASSIFICATION_KEYS, METRICS, classification_metrics, confusion_matrix

# Hand-worked example. Confusion matrix, rows = TRUE class, columns = PREDICTED class:
#
#              pred a  pred b  pred c   | true total
#     true a      3       1       0     |     4
#     true b      1       1       0     |     2
#     true c      0       2       3     |     5
#     ----------------------------------+
#     pred total  4       4       3         n = 11
#
# TP = (3, 1, 3); accuracy = 7 / 11.
# precision = TP / predicted total = (3/4, 1/4, 3/3)  -> macro (0.75 + 0.25 + 1) / 3 = 2/3
# recall    = TP / true total      = (3/4, 1/2, 3/5)  -> macro (0.75 + 0.5 + 0.6) / 3 = 1.85/3
# F1 = 2 TP / (true total + predicted total) = (6/8, 2/6, 6/8)
#                                               -> macro (0.75 + 1/3 + 0.75) / 3 = 11/18
# balanced accuracy = recall macro (every class occurs in y_true) = 1.85 / 3.
# With y_true and y_pred swapped (the scEval study's classification_report(pred, true))
# precision and recall trade places: precision_macro would read 1.85/3 and recall 2/3.
_PAIRS = [("a", "a")] * 3 + [("a", "b")] + [("b", "a")] + [("b", "b")]
_PAIRS += [("c", "b")] * 2 + [("c", "c")] * 3
Y_TRUE = np.array([t for t, _ in _PAIRS])
Y_PRED = np.array([p for _, p in _PAIRS])

EXPECTED = {
    "accuracy": 7 / 11,
    "balanced_accuracy": 1.85 / 3,
    "precision_macro": 2 / 3,
    "recall_macro": 1.85 / 3,
    "f1_macro": 11 / 18,
}


def test_confusion_matrix_orientation() -> None:
    cm, classes = confusion_matrix(Y_TRUE, Y_PRED)
    assert classes.tolist() == ["a", "b", "c"]
    np.testing.assert_array_equal(cm, [[3, 1, 0], [1, 1, 0], [0, 2, 3]])
    np.testing.assert_array_equal(cm, skm.confusion_matrix(Y_TRUE, Y_PRED, labels=classes))


def test_hand_worked_values() -> None:
    got = classification_metrics(Y_TRUE, Y_PRED)
    assert list(got) == list(CLASSIFICATION_KEYS)
    for key, value in EXPECTED.items():
        assert got[key] == pytest.approx(value, abs=1e-12), key
    # precision and recall differ here, so a swapped call is caught:
    swapped = classification_metrics(Y_PRED, Y_TRUE)
    assert swapped["precision_macro"] == pytest.approx(EXPECTED["recall_macro"])
    assert swapped["recall_macro"] == pytest.approx(EXPECTED["precision_macro"])
    assert got["precision_macro"] != pytest.approx(swapped["precision_macro"])


def _sklearn(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    labels = np.union1d(y_true, y_pred)
    kw = {"labels": labels, "average": "macro", "zero_division": 0}
    return {
        "accuracy": skm.accuracy_score(y_true, y_pred),
        "balanced_accuracy": skm.balanced_accuracy_score(y_true, y_pred),
        "precision_macro": skm.precision_score(y_true, y_pred, **kw),
        "recall_macro": skm.recall_score(y_true, y_pred, **kw),
        "f1_macro": skm.f1_score(y_true, y_pred, **kw),
    }


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("seed", range(5))
def test_agrees_with_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y_true = rng.choice(["B", "NK", "T", "mono", "DC"], size=200, p=[0.3, 0.1, 0.4, 0.15, 0.05])
    y_pred = np.where(rng.random(200) < 0.7, y_true, rng.choice(["B", "T", "plasma"], 200))
    got = classification_metrics(y_true, y_pred)
    ref = _sklearn(y_true, y_pred)
    for key in CLASSIFICATION_KEYS:
        assert got[key] == pytest.approx(ref[key], abs=1e-12), key


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_class_only_predicted_counts_in_macro_but_not_balanced_accuracy() -> None:
    # One cell of true class a predicted as d (a class absent from y_true).
    y_true = ["a", "a", "b", "b"]
    y_pred = ["a", "d", "b", "b"]
    got = classification_metrics(y_true, y_pred)
    # classes a, b, d: TP (1, 2, 0), predicted (1, 2, 1), true (2, 2, 0)
    # precision (1/1, 2/2, 0/1) = (1, 1, 0); recall (1/2, 2/2, 0 by zero_division)
    assert got["precision_macro"] == pytest.approx((1 + 1 + 0) / 3)
    assert got["recall_macro"] == pytest.approx((0.5 + 1 + 0) / 3)
    assert got["balanced_accuracy"] == pytest.approx((0.5 + 1) / 2)  # classes of y_true
    # F1 = 2 TP / (true + predicted): a 2/3, b 4/4, d 0/1
    assert got["f1_macro"] == pytest.approx((2 / 3 + 1 + 0) / 3)
    ref = _sklearn(np.array(y_true), np.array(y_pred))
    for key in CLASSIFICATION_KEYS:
        assert got[key] == pytest.approx(ref[key]), key


def test_explicit_labels_superset_and_perfect_prediction() -> None:
    got = classification_metrics([1, 2, 2], [1, 2, 2], labels=[1, 2, 3])
    assert got["accuracy"] == 1.0
    assert got["balanced_accuracy"] == 1.0
    assert got["precision_macro"] == pytest.approx(2 / 3)  # class 3 never occurs: 0
    perfect = classification_metrics(["x", "y"], ["x", "y"])
    assert all(v == 1.0 for v in perfect.values())


def test_errors() -> None:
    with pytest.raises(DataContractError, match=r"same shape, found \(3,\) and \(2,\)"):
        classification_metrics(["a", "b", "c"], ["a", "b"])
    with pytest.raises(DataContractError, match="at least one cell"):
        classification_metrics([], [])
    with pytest.raises(DataContractError, match="missing values"):
        classification_metrics(["a", None], ["a", "b"])
    with pytest.raises(DataContractError, match="same type"):
        classification_metrics([1, 2], ["1", "2"])
    with pytest.raises(DataContractError, match="expected every class"):
        classification_metrics(["a", "b"], ["a", "c"], labels=["a", "b"])


def test_registry_entries() -> None:
    assert set(CLASSIFICATION_KEYS) == {
        "accuracy",
        "balanced_accuracy",
        "precision_macro",
        "recall_macro",
        "f1_macro",
    }
    for key in CLASSIFICATION_KEYS:
        spec = METRICS.get(key)
        assert spec.category == "classification"
        assert spec.higher_is_better
    # Every key of the brief is registered (other modules may register more).
    assert set(METRICS.keys()) >= {
        *CLASSIFICATION_KEYS,
        *("nmi", "ari", "silhouette_label", "clisi", "isolated_labels"),
        *("silhouette_batch", "ilisi", "kbet", "graph_connectivity", "pcr_comparison"),
        *("bio_conservation", "batch_correction", "total"),
    }
