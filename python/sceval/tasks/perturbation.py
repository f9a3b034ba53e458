"""Perturbation prediction: predict the mean expression of unseen genetic perturbations.

Conditions follow the GEARS / scPerturb convention (``ctrl``, ``A+ctrl``, ``A+B``; see
:mod:`sceval.data.simulate_perturbation`). The conditions are split (seeded) into
training and test conditions:

* ``split="single"``: some single perturbations are held out (their genes are unseen);
  combinations involving a held-out gene are dropped from training;
* ``split="combo"``: some combinations whose two singles were measured are held out; all
  singles and the other combinations train.

A model predicts the mean log-normalized expression of each test condition from the
training cells (control cells always train). Perturbation baselines
(:class:`PerturbationBaseline`: ``mean``, ``additive``, ``linear``) predict directly.
Other models are scored through a gene representation of the perturbed genes and a
ridge head (features standardized, penalty by leave-one-out CV) trained to map the summed
representation of a condition's genes to its change from the control mean: foundation
models through ``embed_genes``, ``pca`` through the PCA loadings of the scaled training
cells; models with neither get ``not_applicable`` rows. Metrics are in
:mod:`sceval.metrics.perturbation`.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from sceval._errors import ModelSkippedError, NotApplicableError
from sceval.data.simulate_perturbation import (
    check_perturbation,
    condition_name,
    gene_index,
    parse_condition,
)
from sceval.metrics._specs import register_metrics
from sceval.metrics.perturbation import PERTURBATION_KEYS, mean_scores, perturbation_scores
from sceval.models.base import EmbedContext, Model, ModelInfo, register_model
from sceval.tasks.base import MetricResult, Task, TaskInfo, register_task

__all__ = [
    "AdditiveBaseline",
    "LinearBaseline",
    "MeanBaseline",
    "PerturbationBaseline",
    "PerturbationTask",
    "fit_predict_head",
    "pca_gene_loadings",
    "split_conditions",
    "training_means",
]

SPLITS = ("single", "combo")
N_DE = 20
#: Cells used to compute PCA gene loadings (a seeded subsample beyond this).
MAX_PCA_CELLS = 20_000
_DESCRIPTIONS = {
    "mse": "mean squared error of the predicted mean expression (all genes)",
    "pearson": "Pearson correlation of predicted and observed mean expression",
    "pearson_delta": "Pearson correlation of predicted and observed change from control",
    "mse_de20": "MSE on the 20 genes most changed by the perturbation",
    "pearson_de20": "Pearson correlation of expression on the top-20 DE genes",
    "pearson_delta_de20": "Pearson correlation of the change on the top-20 DE genes",
}


register_metrics(
    {
        k: (higher, "perturbation", _DESCRIPTIONS[k] + " (perturbation task)")
        for k, higher in PERTURBATION_KEYS.items()
    }
)


# --------------------------------------------------------------------------- helpers


def _means_by_condition(x: Any, labels: np.ndarray, order: Sequence[str]) -> np.ndarray:
    """Mean rows of ``x`` per label in ``order`` (dense ``len(order) x n_genes``)."""
    pos = {c: i for i, c in enumerate(order)}
    rows = np.array([pos.get(lab, -1) for lab in labels])
    keep = np.flatnonzero(rows >= 0)
    ind = sp.csr_matrix((np.ones(keep.size), (rows[keep], keep)), shape=(len(order), labels.size))
    n = np.asarray(ind.sum(axis=1)).ravel()
    n[n == 0] = 1.0
    sums = ind @ (x if sp.issparse(x) else np.asarray(x))
    sums = sums.toarray() if sp.issparse(sums) else np.asarray(sums)
    return sums / n[:, None]


def training_means(train_adata: Any) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Control mean ``(n_genes,)`` and the mean of every training condition.

    ``train_adata`` is the training AnnData built by :class:`PerturbationTask`: ``X``
    log-normalized, canonical conditions in ``obs[uns["perturbation"]["condition_key"]]``.
    The result is cached in ``train_adata.uns["perturbation"]``.
    """
    info = train_adata.uns["perturbation"]
    if "means" not in info:
        labels = train_adata.obs[info["condition_key"]].astype(str).to_numpy()
        order = sorted(set(labels.tolist()))
        m = _means_by_condition(train_adata.X, labels, order)
        info["means"] = {c: m[i] for i, c in enumerate(order)}
    means = dict(info["means"])
    ctrl = means.pop(info["control"])
    return ctrl, means


def pca_gene_loadings(x: Any, n_comps: int = 50, seed: int = 0, scale: bool = False) -> np.ndarray:
    """Gene representation from a PCA of cells: ``(n_genes, n_comps)``.

    Parameters
    ----------
    x
        Log-normalized cells x genes matrix (dense or sparse).
    n_comps
        Components (capped by the shape).
    seed
        Seed of the cell subsample (beyond :data:`MAX_PCA_CELLS` cells) and of the SVD.
    scale
        Scale genes to unit variance (the ``pca`` model's recipe) and return the
        components; otherwise center only and return components times the square root of
        the explained variance.
    """
    from sklearn.decomposition import PCA

    from sceval.models._preprocess import scale as scale_genes

    n = x.shape[0]
    if n > MAX_PCA_CELLS:
        idx = np.sort(np.random.default_rng(seed).choice(n, MAX_PCA_CELLS, replace=False))
        x = x[idx]
    if scale:
        dense = scale_genes(x).astype(np.float64)
    else:
        dense = np.asarray(x.toarray() if sp.issparse(x) else x, dtype=np.float64)
        dense = dense - dense.mean(axis=0)
    k = int(max(1, min(n_comps, dense.shape[0] - 1, dense.shape[1] - 1)))
    pca = PCA(n_components=k, svd_solver="randomized", random_state=seed).fit(dense)
    comps = pca.components_.T
    if scale:
        return comps
    return comps * np.sqrt(pca.explained_variance_)[None, :]


def fit_predict_head(
    reps: dict[str, np.ndarray],
    train_genes: Sequence[tuple[str, ...]],
    train_delta: np.ndarray,
    test_genes: Sequence[tuple[str, ...]],
) -> tuple[np.ndarray, str]:
    """Ridge head from summed gene representations to the change from control.

    Parameters
    ----------
    reps
        Gene -> representation vector (genes without one are simply absent).
    train_genes, test_genes
        Perturbed genes of each training / test condition.
    train_delta
        Observed change from the control mean of each training condition,
        ``(n_train, n_genes)``.

    Returns
    -------
    pred_delta, note
        ``(n_test, n_genes)`` predicted changes (0, i.e. the control mean, for test
        conditions whose genes lack a representation) and a note saying how many.

    Raises
    ------
    NotApplicableError
        When fewer than two training conditions have a representation.
    """
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    def feats(genes: tuple[str, ...]) -> np.ndarray | None:
        if not genes or any(g not in reps for g in genes):
            return None
        return np.sum([np.asarray(reps[g], dtype=np.float64) for g in genes], axis=0)

    tr = [(feats(g), i) for i, g in enumerate(train_genes)]
    tr = [(f, i) for f, i in tr if f is not None]
    if len(tr) < 2:
        msg = (
            f"only {len(tr)} training condition(s) have a gene representation; the head "
            "needs >= 2. Expected the model to know the perturbed genes."
        )
        raise NotApplicableError(msg)
    x_tr = np.stack([f for f, _ in tr])
    y_tr = train_delta[[i for _, i in tr]]
    head = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-2, 5, 15)))
    head.fit(x_tr, y_tr)
    out = np.zeros((len(test_genes), train_delta.shape[1]))
    te = [(feats(g), i) for i, g in enumerate(test_genes)]
    known = [(f, i) for f, i in te if f is not None]
    if known:
        out[[i for _, i in known]] = head.predict(np.stack([f for f, _ in known]))
    n_miss = len(test_genes) - len(known)
    n_drop = len(train_genes) - len(tr)
    notes = []
    if n_miss:
        notes.append(f"{n_miss} test condition(s) without a gene representation: control mean")
    if n_drop:
        notes.append(f"{n_drop} training condition(s) without a gene representation dropped")
    return out, "; ".join(notes)


def split_conditions(
    singles: Sequence[str],
    combos: Sequence[str],
    split: str = "single",
    test_fraction: float = 0.25,
    seed: int = 0,
    control: str = "ctrl",
) -> tuple[list[str], list[str], str]:
    """Seeded split of perturbation conditions into training and test conditions.

    Parameters
    ----------
    singles, combos
        Canonical single (``A+ctrl``) and combination (``A+B``) conditions.
    split
        ``"single"`` holds out single perturbations (combinations with a held-out gene
        are dropped); ``"combo"`` holds out combinations whose two singles are present.
    test_fraction
        Share of the eligible conditions held out (at least one; at least one left).
    seed
        Seed of the draw.
    control
        The control value (to parse conditions).

    Returns
    -------
    train, test, note
        Sorted condition lists and a note on dropped or ineligible conditions.

    Raises
    ------
    NotApplicableError
        When there are too few conditions to split.
    """
    if split not in SPLITS:
        msg = f"split must be one of {SPLITS}, found {split!r}. Fix: pass split='single'."
        raise ValueError(msg)
    if not 0 < test_fraction < 1:
        msg = f"test_fraction must be in (0, 1), found {test_fraction}. Fix: e.g. 0.25."
        raise ValueError(msg)
    rng = np.random.default_rng(seed)
    singles, combos = sorted(singles), sorted(combos)
    note = ""
    if split == "single":
        if len(singles) < 2:
            msg = (
                f"split='single' needs >= 2 single perturbations, found {len(singles)}. "
                "Fix: use data with more singles, or split='combo'."
            )
            raise NotApplicableError(msg)
        n_test = int(min(max(1, round(test_fraction * len(singles))), len(singles) - 1))
        test = sorted(rng.choice(singles, size=n_test, replace=False).tolist())
        held = {g for c in test for g in parse_condition(c, control)}
        kept = [c for c in combos if not held & set(parse_condition(c, control))]
        if len(kept) < len(combos):
            note = f"{len(combos) - len(kept)} combination(s) with a held-out gene not used"
        train = sorted(set(singles) - set(test)) + kept
        return sorted(train), test, note
    if not combos:
        msg = "split='combo' needs combinations (A+B), found none. Fix: use split='single'."
        raise NotApplicableError(msg)
    single_genes = {g for c in singles for g in parse_condition(c, control)}
    eligible = [c for c in combos if set(parse_condition(c, control)) <= single_genes]
    unseen = sorted({g for c in combos for g in parse_condition(c, control)} - single_genes)
    if not eligible:
        msg = (
            f"split='combo' tests combinations whose singles were measured, but every one of "
            f"the {len(combos)} combination(s) has an unmeasured single (genes without "
            f"'A+{control}' cells: {unseen[:8]}). Fix: add those singles or use split='single'."
        )
        raise NotApplicableError(msg)
    n_test = int(max(1, round(test_fraction * len(eligible))))
    if n_test >= len(eligible) and not singles:
        n_test = len(eligible) - 1
    if n_test < 1:
        msg = "split='combo' left no training conditions. Fix: add single perturbations."
        raise NotApplicableError(msg)
    test = sorted(rng.choice(eligible, size=n_test, replace=False).tolist())
    if len(eligible) < len(combos):
        note = (
            f"{len(combos) - len(eligible)} combination(s) with unmeasured singles "
            f"({unseen[:5]}) kept in training only"
        )
    train = sorted(set(singles) | (set(combos) - set(test)))
    return train, test, note


# --------------------------------------------------------------------------- baselines


class PerturbationBaseline(Model):
    """A model that predicts the mean expression of perturbations (no cell embedding).

    After :meth:`predict_perturbation`, ``note`` holds a line for the results message.
    """

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.note = ""

    def embed_cells(self, adata: Any, ctx: EmbedContext) -> np.ndarray:
        msg = (
            f"model {self.info.key!r} is a perturbation baseline; it predicts expression, it "
            "does not embed cells. Fix: score it with the 'perturbation' task only."
        )
        raise ModelSkippedError(msg)

    @abstractmethod
    def predict_perturbation(
        self, train_adata: Any, conditions: Sequence[str], ctx: EmbedContext, **kwargs: Any
    ) -> np.ndarray:
        """Predicted mean log-normalized expression, ``(len(conditions), n_genes)``.

        Parameters
        ----------
        train_adata
            Training cells: ``X`` log-normalized, canonical conditions in
            ``obs[uns["perturbation"]["condition_key"]]``, control value in
            ``uns["perturbation"]["control"]``.
        conditions
            Conditions to predict (``A+ctrl`` or ``A+B``).
        ctx
            The benchmark context (seed, cache).
        """


def _control(train_adata: Any) -> str:
    return str(train_adata.uns["perturbation"]["control"])


@register_model
class MeanBaseline(PerturbationBaseline):
    """``mean``: every perturbation is predicted as the control mean."""

    info = ModelInfo(
        key="mean",
        kind="baseline",
        embeds_cells=False,
        provides=("predict_perturbation",),
        description="perturbation baseline: the mean expression of control cells",
    )

    def predict_perturbation(
        self, train_adata: Any, conditions: Sequence[str], ctx: EmbedContext, **kwargs: Any
    ) -> np.ndarray:
        ctrl, _ = training_means(train_adata)
        self.note = ""
        return np.tile(ctrl, (len(conditions), 1))


@register_model
class AdditiveBaseline(PerturbationBaseline):
    """``additive``: control mean plus the sum of the observed single-gene changes.

    Genes whose single perturbation was not in training contribute no change (for an
    unseen single: the control mean); the note counts them.
    """

    info = ModelInfo(
        key="additive",
        kind="baseline",
        embeds_cells=False,
        provides=("predict_perturbation",),
        description="perturbation baseline: control mean + sum of single-perturbation changes",
    )

    def predict_perturbation(
        self, train_adata: Any, conditions: Sequence[str], ctx: EmbedContext, **kwargs: Any
    ) -> np.ndarray:
        ctrl, means = training_means(train_adata)
        control = _control(train_adata)
        out = np.tile(ctrl, (len(conditions), 1))
        unseen: set[str] = set()
        for i, c in enumerate(conditions):
            for g in parse_condition(c, control):
                single = condition_name([g], control)
                if single in means:
                    out[i] += means[single] - ctrl
                else:
                    unseen.add(g)
        self.note = (
            f"{len(unseen)} gene(s) without a training single perturbation predicted "
            "as no change (control mean)"
            if unseen
            else ""
        )
        return out


@register_model
class LinearBaseline(PerturbationBaseline):
    """``linear``: ridge regression from the perturbed genes' PCA loadings (of the
    training cells) to the change from control.

    Parameters
    ----------
    n_comps
        PCA components of the gene representation (default 50).
    """

    info = ModelInfo(
        key="linear",
        kind="baseline",
        embeds_cells=False,
        provides=("predict_perturbation",),
        requires=("sklearn",),
        install="pip install scikit-learn",
        description="perturbation baseline: ridge from PCA gene loadings to the change",
    )

    def predict_perturbation(
        self, train_adata: Any, conditions: Sequence[str], ctx: EmbedContext, **kwargs: Any
    ) -> np.ndarray:
        ctrl, means = training_means(train_adata)
        control = _control(train_adata)
        load = pca_gene_loadings(
            train_adata.X, int(self.params.get("n_comps", 50)), seed=ctx.seed, scale=False
        )
        index = gene_index(train_adata)
        reps = _reps_from_matrix(load, index, means, conditions, control)
        train = sorted(means)
        delta = np.stack([means[c] - ctrl for c in train])
        pred, self.note = fit_predict_head(
            reps,
            [parse_condition(c, control) for c in train],
            delta,
            [parse_condition(c, control) for c in conditions],
        )
        return ctrl[None, :] + pred


def _reps_from_matrix(
    mat: np.ndarray,
    index: dict[str, int],
    means: dict[str, np.ndarray],
    conditions: Sequence[str],
    control: str,
) -> dict[str, np.ndarray]:
    genes = {g for c in [*means, *conditions] for g in parse_condition(c, control)}
    return {g: mat[index[g]] for g in genes if g in index}


# --------------------------------------------------------------------------- task


@dataclass
class _Prepared:
    train_adata: Any
    test: list[str]
    true_test: np.ndarray
    ctrl_mean: np.ndarray
    note: str


@register_task
class PerturbationTask(Task):
    """``perturbation``: predict the mean expression of held-out perturbations.

    Parameters
    ----------
    perturbation_key
        ``obs`` column with the conditions (default ``"condition"``).
    control
        Its control value (default ``"ctrl"``).
    split
        ``"single"`` (unseen single perturbations, default) or ``"combo"`` (unseen
        combinations of seen singles).
    test_fraction
        Share of eligible conditions held out (default 0.25).
    """

    info = TaskInfo(
        key="perturbation",
        needs_batch=False,
        needs_labels=False,
        metric_keys=tuple(PERTURBATION_KEYS),
        description="perturbation prediction: expression of unseen perturbations, "
        "MSE / Pearson (delta) on all and top-20 DE genes",
        default=False,
        needs=("perturbation_key",),
        uses="expression prediction / gene embeddings",
    )

    def _param(self, name: str, default: Any) -> Any:
        v = self.params.get(name)
        return default if v is None else v

    def prepare(self, adata: Any, ctx: EmbedContext) -> _Prepared:
        """Split conditions and build the training AnnData (cached in ``ctx.cache``)."""
        import anndata as ad

        from sceval.models._preprocess import lognorm

        key = str(self._param("perturbation_key", "condition"))
        control = str(self._param("control", "ctrl"))
        split = str(self._param("split", "single"))
        tf = float(self._param("test_fraction", 0.25))
        cache_key = ("perturbation", key, control, split, tf, ctx.seed)
        if cache_key in ctx.cache:
            return ctx.cache[cache_key]
        s = check_perturbation(adata, key, control)
        train, test, note = split_conditions(s.singles, s.combos, split, tf, ctx.seed, control)
        x = lognorm(adata, ctx)
        labels = s.canonical
        is_train = np.isin(labels, [control, *train])
        obs = pd.DataFrame(
            {"condition": labels[is_train]}, index=adata.obs_names[is_train].astype(str)
        )
        train_adata = ad.AnnData(X=x[np.flatnonzero(is_train)], obs=obs, var=adata.var.copy())
        train_adata.uns["perturbation"] = {"condition_key": "condition", "control": control}
        m = _means_by_condition(x, labels, [control, *test])
        note = "; ".join(
            p
            for p in (f"split={split}: {len(train)} train / {len(test)} test conditions", note)
            if p
        )
        prep = _Prepared(train_adata, test, m[1:], m[0], note)
        ctx.cache[cache_key] = prep
        return prep

    def run(
        self, adata: Any, model: Any, ctx: EmbedContext, embedding: Callable[[], np.ndarray]
    ) -> list[MetricResult]:
        prep = self.prepare(adata, ctx)
        pred, note = self._predict(adata, model, ctx, prep)
        pred = np.asarray(pred, dtype=np.float64)
        want = (len(prep.test), prep.ctrl_mean.size)
        if pred.shape != want or not np.all(np.isfinite(pred)):
            msg = f"model {model.info.key!r} predicted shape {pred.shape} (expected {want}) "
            msg += "or non-finite values"
            raise RuntimeError(msg)
        scores = perturbation_scores(pred, prep.true_test, prep.ctrl_mean, N_DE)
        table = pd.DataFrame(scores, index=pd.Index(prep.test, name="condition"))
        ctx.cache.setdefault("perturbation_scores", {})[(model.info.key, ctx.seed)] = table
        avg = mean_scores(scores)
        message = "; ".join(p for p in (prep.note, note) if p)
        return [MetricResult(k, avg[k], "ok", message) for k in self.metric_keys()]

    def _predict(
        self, adata: Any, model: Any, ctx: EmbedContext, prep: _Prepared
    ) -> tuple[np.ndarray, str]:
        tr = prep.train_adata
        if isinstance(model, PerturbationBaseline) or hasattr(model, "predict_perturbation"):
            pred = model.predict_perturbation(tr, prep.test, ctx)
            return pred, str(getattr(model, "note", ""))
        key = model.info.key
        control = _control(tr)
        ctrl, means = training_means(tr)
        if key == "pca":
            n_comps = int(model.params.get("n_comps", 50))
            mat = pca_gene_loadings(tr.X, n_comps, seed=ctx.seed, scale=True)
            reps = _reps_from_matrix(mat, gene_index(tr), means, prep.test, control)
            source = "PCA loadings of the scaled training cells"
        elif hasattr(model, "embed_genes"):
            model.check(adata, ctx)
            genes = sorted({g for c in [*means, *prep.test] for g in parse_condition(c, control)})
            try:
                mat, found = model.embed_genes(genes, ctx)
            except NotImplementedError as err:
                msg = f"model {key!r} exposes no gene embeddings ({err}), so it cannot "
                msg += "predict perturbations"
                raise NotApplicableError(msg) from err
            found = np.asarray(found, dtype=bool)
            mat = np.asarray(mat, dtype=np.float64)
            names = [g for g, f in zip(genes, found, strict=True) if f]
            reps = dict(zip(names, mat, strict=True))
            source = f"gene embeddings of {int(found.sum())}/{len(genes)} perturbed genes"
        else:
            msg = (
                f"model {key!r} neither predicts perturbations nor exposes gene embeddings; "
                "the perturbation task scores perturbation baselines, 'pca' and foundation "
                "models with embed_genes"
            )
            raise NotApplicableError(msg)
        train = sorted(means)
        delta = np.stack([means[c] - ctrl for c in train])
        pred, note = fit_predict_head(
            reps,
            [parse_condition(c, control) for c in train],
            delta,
            [parse_condition(c, control) for c in prep.test],
        )
        return ctrl[None, :] + pred, "; ".join(p for p in (f"ridge head on {source}", note) if p)
