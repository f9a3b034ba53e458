"""Cell-type annotation: classification probes trained on a cell embedding.

Two probes are trained on the embedding of the training (reference) cells and
scored on the held-out (query) cells: a k-nearest-neighbour classifier and a
logistic regression on standardized features. Metrics are computed as
``metric(y_true, y_pred)``; the scEval study's code swapped the two arguments of
``classification_report``, exchanging precision and recall, which a test guards against.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sceval._errors import DataContractError
from sceval.metrics._specs import register_metrics
from sceval.models.base import EmbedContext
from sceval.tasks.base import MetricResult, Task, TaskInfo, register_task

PROBES = ("knn", "logreg")
CLASSIFICATION = ("accuracy", "balanced_accuracy", "precision_macro", "recall_macro", "f1_macro")
REFERENCE_VALUES = ("reference", "ref", "train", "training")
QUERY_VALUES = ("query", "test", "heldout", "held-out")

register_metrics(
    {
        f"{p}_{m}": (True, "classification", f"{m} of the {p} probe on held-out cells")
        for p in PROBES
        for m in CLASSIFICATION
    }
)


def split_cells(
    labels: np.ndarray,
    seed: int,
    test_size: float = 0.2,
    split: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, str]:
    """Indices of training and test cells, and a note.

    Parameters
    ----------
    labels
        Label per cell, shape ``(n_cells,)``.
    seed
        Seed of the stratified split.
    test_size
        Share of cells held out when ``split`` is None.
    split
        Optional per-cell values naming the reference and query cells
        (``reference``/``query``, ``train``/``test``; case-insensitive).

    Returns
    -------
    train, test, note
        Integer index arrays and a note (e.g. labels kept out of the test set).
    """
    n = labels.shape[0]
    if split is not None:
        vals = np.char.lower(split.astype(str))
        is_ref = np.isin(vals, REFERENCE_VALUES)
        is_query = np.isin(vals, QUERY_VALUES)
        other = sorted(set(vals[~(is_ref | is_query)].tolist()))
        if other or not is_ref.any() or not is_query.any():
            msg = (
                "The split column must mark every cell as reference or query "
                f"(one of {REFERENCE_VALUES} / {QUERY_VALUES}); found values "
                f"{sorted(set(vals.tolist()))[:10]}. Fix: recode the column or omit split_key "
                "for a seeded stratified split."
            )
            raise DataContractError(msg)
        return np.flatnonzero(is_ref), np.flatnonzero(is_query), "reference -> query split"
    from sklearn.model_selection import train_test_split

    uniq, counts = np.unique(labels, return_counts=True)
    rare = set(uniq[counts < 2].tolist())
    idx = np.arange(n)
    rare_mask = np.isin(labels, list(rare))
    common = idx[~rare_mask]
    note = ""
    if rare:
        note = f"labels with a single cell kept in training only: {sorted(rare)[:5]}"
    strat = labels[common]
    n_test = max(round(test_size * common.size), len(np.unique(strat)))
    if n_test >= common.size:
        msg = f"too few cells ({common.size}) for a stratified split with test_size={test_size}"
        raise DataContractError(msg)
    tr, te = train_test_split(common, test_size=n_test, stratify=strat, random_state=seed)
    train = np.sort(np.concatenate([tr, idx[rare_mask]]))
    return train, np.sort(te), note


def _fit_predict(
    probe: str, x_tr: np.ndarray, y_tr: np.ndarray, x_te: np.ndarray, seed: int, k: int
) -> np.ndarray:
    if probe == "knn":
        from sklearn.neighbors import KNeighborsClassifier

        clf = KNeighborsClassifier(n_neighbors=max(1, min(k, x_tr.shape[0])))
        return clf.fit(x_tr, y_tr).predict(x_te)
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, random_state=seed))
    return clf.fit(x_tr, y_tr).predict(x_te)


FINETUNE_KEYS = tuple(f"finetune_{m}" for m in CLASSIFICATION)
register_metrics(
    {
        k: (True, "classification", f"{k[9:]} of the fine-tuned model on held-out cells")
        for k in FINETUNE_KEYS
    }
)

#: ``annotation`` parameters passed to ``fine_tune_annotate`` (without the prefix).
FINETUNE_PARAMS = ("lr", "epochs", "batch_size", "val_fraction", "patience")


@register_task
class AnnotationTask(Task):
    """``annotation``: kNN and logistic-regression probes on the embedding, and
    optionally the fine-tuned model itself.

    Parameters
    ----------
    split_key
        ``obs`` column marking reference / query cells; default a seeded stratified split.
    test_size
        Held-out share for the stratified split (default 0.2).
    n_neighbors
        k of the kNN probe (default 15).
    finetune
        Also fine-tune models that support it (foundation models) on the training cells
        and report ``finetune_*`` metrics on the same test cells. The model carves its
        validation split (for early stopping) out of the training cells only; test labels
        are never seen. Models without fine-tuning get ``not_applicable`` rows.
    finetune_lr, finetune_epochs, finetune_batch_size, finetune_val_fraction, finetune_patience
        Fine-tuning hyperparameters (defaults: the model's own).
    """

    info = TaskInfo(
        key="annotation",
        needs_batch=False,
        needs_labels=True,
        metric_keys=tuple(f"{p}_{m}" for p in PROBES for m in CLASSIFICATION),
        description="cell-type annotation: kNN + logistic probes (and fine-tuning), "
        "accuracy / macro P, R, F1",
    )

    @property
    def finetune(self) -> bool:
        """Whether fine-tuning metrics are requested."""
        return bool(self.params.get("finetune", False))

    def metric_keys(self) -> tuple[str, ...]:
        return self.info.metric_keys + (FINETUNE_KEYS if self.finetune else ())

    def _split(self, adata: Any, labels: np.ndarray, seed: int) -> tuple:
        split_key = self.params.get("split_key")
        if split_key is not None and split_key not in adata.obs:
            msg = f"split_key={split_key!r} is not a column of adata.obs."
            raise DataContractError(msg)
        split = adata.obs[split_key].to_numpy() if split_key else None
        return split_cells(labels, seed, float(self.params.get("test_size", 0.2)), split)

    def evaluate(
        self, adata: Any, embedding: np.ndarray, ctx: EmbedContext, model: Any = None
    ) -> list[MetricResult]:
        labels = adata.obs[ctx.label_key].astype(str).to_numpy()
        if np.unique(labels).size < 2:
            msg = f"only one label in obs[{ctx.label_key!r}]; classification needs >= 2"
            return [
                MetricResult(k, float("nan"), "not_applicable", msg) for k in self.metric_keys()
            ]
        train, test, note = self._split(adata, labels, ctx.seed)
        if np.unique(labels[train]).size < 2:
            msg = "the training cells hold one label only"
            return [
                MetricResult(k, float("nan"), "not_applicable", msg) for k in self.metric_keys()
            ]
        x = np.asarray(embedding, dtype=np.float64)
        out: list[MetricResult] = []
        k = int(self.params.get("n_neighbors", 15))
        for probe in PROBES:
            pred = _fit_predict(probe, x[train], labels[train], x[test], ctx.seed, k)
            out += _scored(probe, labels[test], pred, note)
        if self.finetune:
            out += self._finetune(adata, labels, train, test, ctx, model, note)
        return out

    def _finetune(
        self,
        adata: Any,
        labels: np.ndarray,
        train: np.ndarray,
        test: np.ndarray,
        ctx: EmbedContext,
        model: Any,
        note: str,
    ) -> list[MetricResult]:
        fit = getattr(model, "fine_tune_annotate", None)
        if fit is None:
            key = getattr(getattr(model, "info", None), "key", "this model")
            msg = f"model {key!r} cannot be fine-tuned (it only provides an embedding)"
            return [MetricResult(k, float("nan"), "not_applicable", msg) for k in FINETUNE_KEYS]
        hp = {
            name: self.params[f"finetune_{name}"]
            for name in FINETUNE_PARAMS
            if self.params.get(f"finetune_{name}") is not None
        }
        pred = fit(adata, labels, train, test, ctx, **hp)
        hp_note = ", ".join(f"{k}={v}" for k, v in sorted(hp.items())) or "model defaults"
        return _scored(
            "finetune", labels[test], np.asarray(pred), f"{note}; {hp_note}".lstrip("; ")
        )


def _scored(prefix: str, y_true: np.ndarray, y_pred: np.ndarray, note: str) -> list[MetricResult]:
    from sceval.metrics import classification_metrics

    vals = classification_metrics(y_true, y_pred)
    return [MetricResult(f"{prefix}_{m}", float(vals[m]), "ok", note) for m in CLASSIFICATION]
