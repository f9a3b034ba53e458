"""Cell generation: does a model generate cells that look like real ones of each type?

The cells of each cell type are split (seeded, ``test_fraction``) into training and
held-out cells. The model sees the training cells (counts of the highly variable genes)
and generates as many cells of each type as were held out; generated cells are compared
with the held-out real cells, so a generator that copies its training cells gets no
advantage over a fresh sample. Metrics:

- ``sim_corr_diff``: mean absolute difference of the gene-gene correlation matrices of
  the top-100 HVGs (log-normalized; lower is better);
- ``sim_mean_corr`` / ``sim_var_corr``: Pearson across genes of log per-gene means /
  variances of the counts (higher is better);
- ``sim_mmd``: squared RBF MMD (median heuristic) in a shared PCA space (fitted on the
  pooled real and generated cells; lower is better);
- ``sim_c2st``: kNN classifier two-sample test in that space, reported as
  ``2 * |AUC - 0.5|`` in [0, 1]: 0 = indistinguishable, 1 = perfectly separable (lower
  is better);
- ``sim_ilisi``: iLISI of real vs generated cells (as the batch) within each cell type,
  mean over types (1 = fully mixed; higher is better).

Models take part by defining ``generate(adata_train, labels, n_per_type, ctx)``. The
baselines registered here: ``nb_sim`` (Splatter-style negative binomial per cell type;
Zappia et al., Genome Biol. 2017), ``copula_sim`` (NB marginals with a Gaussian copula
over the top genes, in the spirit of scDesign3; Song et al., Nat. Biotechnol. 2024) and
the positive control ``resample`` (real training cells of the same type).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.sparse as sp

from sceval._errors import ModelSkippedError, NotApplicableError
from sceval.data.contract import get_counts
from sceval.metrics._specs import register_metrics
from sceval.metrics.expression import (
    correlation_matrix_distance,
    knn_two_sample_auc,
    mixing_ilisi,
    mmd_rbf,
    moment_agreement,
)
from sceval.models import _preprocess as pp
from sceval.models.base import EmbedContext, Model, ModelInfo, register_model
from sceval.tasks.base import MetricResult, Task, TaskInfo, register_task
from sceval.tasks.imputation import log_normalize

__all__ = [
    "SIMULATION_KEYS",
    "CopulaSim",
    "NBFit",
    "NBSim",
    "Resample",
    "SimulationTask",
    "fit_nb",
]

SIMULATION_KEYS = (
    "sim_corr_diff",
    "sim_mean_corr",
    "sim_var_corr",
    "sim_mmd",
    "sim_c2st",
    "sim_ilisi",
)
_DESCRIPTIONS = {
    "sim_corr_diff": (False, "Mean |difference| of top-100-HVG gene-gene correlations."),
    "sim_mean_corr": (True, "Pearson across genes of log1p per-gene means, real vs generated."),
    "sim_var_corr": (True, "Pearson across genes of log1p per-gene variances."),
    "sim_mmd": (False, "Squared RBF MMD (median heuristic) of real vs generated cells in PCA."),
    "sim_c2st": (False, "kNN two-sample classifier, 2 * |AUC - 0.5| (0 = indistinguishable)."),
    "sim_ilisi": (True, "iLISI of real vs generated cells within each cell type, mean."),
}
register_metrics({k: (hib, "simulation", desc) for k, (hib, desc) in _DESCRIPTIONS.items()})


# ---------------------------------------------------------------------------
# negative binomial fits
# ---------------------------------------------------------------------------


class NBFit:
    """Per-type fit: gene proportions, dispersions, dropout and library sizes.

    Attributes
    ----------
    prop
        Per-gene share of the library, shape (n_genes,).
    phi
        Per-gene NB dispersion (variance = mu + phi * mu^2).
    pi
        Per-gene extra zero probability (dropout) beyond the NB zeros.
    log_lib_mean, log_lib_sd
        Log-normal library-size parameters.
    """

    def __init__(
        self,
        prop: np.ndarray,
        phi: np.ndarray,
        pi: np.ndarray,
        log_lib_mean: float,
        log_lib_sd: float,
    ) -> None:
        self.prop, self.phi, self.pi = prop, phi, pi
        self.log_lib_mean, self.log_lib_sd = log_lib_mean, log_lib_sd

    def sample_library(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Library sizes of ``n`` cells."""
        return np.exp(rng.normal(self.log_lib_mean, self.log_lib_sd, size=n))


def fit_nb(counts: Any) -> NBFit:
    """Fit an NB-with-dropout model to the cells of one type by moments.

    Counts are scaled to the median library size; per gene, ``mu`` and ``v`` give the
    dispersion ``phi = max((v - mu) / mu^2, 1e-4)`` (capped at 100). The dropout
    probability is the excess of observed zeros over the NB zero probability,
    ``pi = max(0, (z_obs - z_nb) / (1 - z_nb))``.

    Parameters
    ----------
    counts
        Cells x genes counts of one cell type (>= 2 cells).
    """
    x = np.asarray(counts.toarray() if sp.issparse(counts) else counts, dtype=np.float64)
    lib = x.sum(axis=1)
    lib = np.where(lib > 0, lib, 1.0)
    med = float(np.median(lib))
    y = x * (med / lib)[:, None]
    mu = y.mean(axis=0)
    v = y.var(axis=0, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        phi = np.where(mu > 0, (v - mu) / mu**2, 1.0)
    phi = np.clip(np.nan_to_num(phi, nan=1.0), 1e-4, 100.0)
    z_nb = np.where(mu > 0, (1.0 + phi * mu) ** (-1.0 / phi), 1.0)
    z_obs = (x == 0).mean(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        pi = np.where(z_nb < 1, (z_obs - z_nb) / (1.0 - z_nb), 0.0)
    pi = np.clip(np.nan_to_num(pi), 0.0, 0.99)
    total = mu.sum()
    prop = mu / total if total > 0 else np.full(mu.size, 1.0 / mu.size)
    log_lib = np.log(lib)
    sd = float(log_lib.std(ddof=1)) if lib.size > 1 else 0.0
    return NBFit(prop, phi, pi, float(log_lib.mean()), sd)


def _nb_draw(mean: np.ndarray, phi: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    shape = 1.0 / phi
    lam = rng.gamma(np.broadcast_to(shape, mean.shape), mean * phi)
    return rng.poisson(lam).astype(np.float64)


def _zinb_cdf(x: np.ndarray, mean: np.ndarray, phi: np.ndarray, pi: np.ndarray) -> np.ndarray:
    from scipy.stats import nbinom

    n = 1.0 / phi
    p = n / (n + mean)
    f = np.where(x >= 0, nbinom.cdf(x, n, p), 0.0)
    return np.where(x >= 0, pi + (1.0 - pi) * f, 0.0)


def _zinb_ppf(u: np.ndarray, mean: np.ndarray, phi: np.ndarray, pi: np.ndarray) -> np.ndarray:
    from scipy.stats import nbinom

    n = 1.0 / phi
    p = n / (n + mean)
    v = np.clip((u - pi) / (1.0 - pi), 1e-12, 1 - 1e-12)
    out = nbinom.ppf(v, n, p)
    return np.where(u <= pi, 0.0, np.nan_to_num(out, nan=0.0, posinf=0.0))


# ---------------------------------------------------------------------------
# generators
# ---------------------------------------------------------------------------


class _Generator(Model):
    """Shared part: generators make no cell embedding."""

    def embed_cells(self, adata: Any, ctx: EmbedContext) -> np.ndarray:
        msg = (
            f"{self.info.key!r} is a simulation baseline (it generates cells and makes no "
            "cell embedding); run it with tasks=['simulation']."
        )
        raise ModelSkippedError(msg)

    def _types(self, adata_train: Any, labels: Any, n_per_type: dict[str, int]) -> list[tuple]:
        x = sp.csr_matrix(adata_train.X)
        lab = np.asarray(labels).astype(str)
        return [(t, int(n), x[lab == t]) for t, n in n_per_type.items()]


def _rng(ctx: EmbedContext, salt: int) -> np.random.Generator:
    return np.random.default_rng([int(ctx.seed), salt])


@register_model
class Resample(_Generator):
    """``resample``: draws real training cells of each type (positive control: the
    best a generator can do). Cells are drawn without replacement while the type has
    enough (whole passes over shuffled cells otherwise), because exact duplicates are
    themselves detectable by the neighbourhood metrics (C2ST, iLISI)."""

    info = ModelInfo(
        key="resample",
        kind="control",
        embeds_cells=False,
        provides=("generate",),
        input="counts",
        description="simulation positive control: real training cells, resampled",
    )

    def generate(
        self, adata_train: Any, labels: Any, n_per_type: dict[str, int], ctx: EmbedContext
    ) -> sp.csr_matrix:
        """Rows grouped by type in the order of ``n_per_type``."""
        rng = _rng(ctx, 1)
        parts = []
        for _, n, x in self._types(adata_train, labels, n_per_type):
            m = x.shape[0]
            idx = np.concatenate([rng.permutation(m) for _ in range(-(-n // m))])[:n]
            parts.append(x[idx])
        return sp.vstack(parts).tocsr()


@register_model
class NBSim(_Generator):
    """``nb_sim``: Splatter-style negative binomial per cell type: per-gene mean share
    and moment dispersion, log-normal library sizes, per-gene dropout
    (see :func:`fit_nb`); genes independent."""

    info = ModelInfo(
        key="nb_sim",
        kind="baseline",
        embeds_cells=False,
        provides=("generate",),
        input="counts",
        description="simulation baseline: per-type negative binomial with dropout (Splatter-like)",
        citation="Zappia et al., Genome Biol. 2017",
    )

    def generate(
        self, adata_train: Any, labels: Any, n_per_type: dict[str, int], ctx: EmbedContext
    ) -> sp.csr_matrix:
        """Rows grouped by type in the order of ``n_per_type``."""
        rng = _rng(ctx, 2)
        parts = []
        for _, n, x in self._types(adata_train, labels, n_per_type):
            fit = fit_nb(x)
            mean = fit.sample_library(n, rng)[:, None] * fit.prop[None, :]
            c = _nb_draw(mean, fit.phi[None, :], rng)
            c[rng.random(c.shape) < fit.pi[None, :]] = 0.0
            parts.append(sp.csr_matrix(c.astype(np.float32)))
        return sp.vstack(parts).tocsr()


@register_model
class CopulaSim(_Generator):
    """``copula_sim``: per-type zero-inflated NB marginals (as ``nb_sim``) joined by a
    Gaussian copula over the ``n_genes`` most variable genes of the type, in the spirit
    of scDesign3 (Song et al., Nat. Biotechnol. 2024); other genes independent.

    The copula correlation is the correlation of the randomized-PIT normal scores of
    the training cells, shrunk towards the identity by ``shrink`` (default 0.1).

    Parameters
    ----------
    n_genes
        Genes in the copula (default 100).
    shrink
        Shrinkage of the copula correlation towards the identity.
    """

    info = ModelInfo(
        key="copula_sim",
        kind="baseline",
        embeds_cells=False,
        provides=("generate",),
        input="counts",
        description="simulation baseline: NB marginals + Gaussian copula of top genes (scDesign3)",
        citation="Song et al., Nat. Biotechnol. 2024",
    )

    def generate(
        self, adata_train: Any, labels: Any, n_per_type: dict[str, int], ctx: EmbedContext
    ) -> sp.csr_matrix:
        """Rows grouped by type in the order of ``n_per_type``."""
        from scipy.stats import norm

        rng = _rng(ctx, 3)
        k_top = int(self.params.get("n_genes", 100))
        shrink = float(self.params.get("shrink", 0.1))
        parts = []
        for _, n, x in self._types(adata_train, labels, n_per_type):
            xd = np.asarray(x.toarray(), dtype=np.float64)
            fit = fit_nb(xd)
            lib_new = fit.sample_library(n, rng)
            c = _nb_draw(lib_new[:, None] * fit.prop[None, :], fit.phi[None, :], rng)
            c[rng.random(c.shape) < fit.pi[None, :]] = 0.0
            lnorm = log_normalize(xd)
            top = np.argsort(-lnorm.var(axis=0), kind="stable")[: min(k_top, xd.shape[1])]
            top = top[lnorm[:, top].var(axis=0) > 0]
            if top.size >= 2:
                lib = np.where(xd.sum(axis=1) > 0, xd.sum(axis=1), 1.0)
                mu = lib[:, None] * fit.prop[top][None, :]
                phi, pi = fit.phi[top][None, :], fit.pi[top][None, :]
                obs = xd[:, top]
                lo = _zinb_cdf(obs - 1, mu, phi, pi)
                hi = _zinb_cdf(obs, mu, phi, pi)
                u = lo + rng.random(obs.shape) * (hi - lo)
                z = norm.ppf(np.clip(u, 1e-6, 1 - 1e-6))
                r = np.nan_to_num(np.corrcoef(z, rowvar=False))
                np.fill_diagonal(r, 1.0)
                r = (1 - shrink) * r + shrink * np.eye(top.size)
                w, vec = np.linalg.eigh(r)
                root = vec * np.sqrt(np.clip(w, 1e-8, None))
                zn = rng.standard_normal((n, top.size)) @ root.T
                mu_new = lib_new[:, None] * fit.prop[top][None, :]
                c[:, top] = _zinb_ppf(norm.cdf(zn), mu_new, phi, pi)
            parts.append(sp.csr_matrix(c.astype(np.float32)))
        return sp.vstack(parts).tocsr()


# ---------------------------------------------------------------------------
# the task
# ---------------------------------------------------------------------------


def _shared_pca(
    real_ln: np.ndarray, gen_ln: np.ndarray, n_comps: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """PCA of the pooled real and generated cells (genes scaled on the pooled cells),
    so neither side's noise is favoured; returns the real and generated scores."""
    pooled = np.vstack([real_ln, gen_ln])
    pcs = pp.pca(pp.scale(pooled), n_comps, seed=seed)
    return pcs[: real_ln.shape[0]], pcs[real_ln.shape[0] :]


def _split(
    labels: np.ndarray, test_fraction: float, min_cells: int, seed: int
) -> tuple[np.ndarray, np.ndarray, list[str], dict[str, str]]:
    rng = np.random.default_rng([seed, 17])
    train, test, kept, skipped = [], [], [], {}
    for t in sorted(set(labels.tolist())):
        idx = rng.permutation(np.flatnonzero(labels == t))
        n_test = round(test_fraction * idx.size)
        n_train = idx.size - n_test
        if n_train < min_cells or n_test < 1:
            skipped[t] = f"{idx.size} cells ({n_train} for fitting, need >= {min_cells})"
            continue
        kept.append(t)
        train.append(idx[n_test:])
        test.append(idx[:n_test])
    if not kept:
        return np.array([], int), np.array([], int), kept, skipped
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test)), kept, skipped


@register_task
class SimulationTask(Task):
    """``simulation``: generate cells per cell type, compare with held-out real cells
    (see the module docstring for the metrics).

    Parameters
    ----------
    test_fraction
        Share of each type's cells held out as the real reference (default 0.5).
    min_cells
        Types with fewer training cells are skipped with a note (default 10).
    n_top_genes
        Genes the generators see and the space of the comparison (default 2000 HVGs).
    n_corr_genes
        HVGs of the correlation metric (default 100).
    n_comps
        PCs of the comparison space (default 30).
    by_batch
        When a ``batch_key`` is given (default True), the groups are cell type x batch:
        generators get labels ``"<type> | <batch>"`` and cells are compared per group,
        so a generator is not penalized for a batch effect it was never told about.
    """

    info = TaskInfo(
        key="simulation",
        needs_batch=False,
        needs_labels=True,
        metric_keys=SIMULATION_KEYS,
        description="cell generation: generated vs held-out real cells (correlations, MMD, C2ST)",
        default=False,
        uses="cell generation",
    )

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        frac = params.get("test_fraction", 0.5)
        if not isinstance(frac, (int, float)) or not 0 < frac < 1:
            msg = (
                f"simulation: expected test_fraction in (0, 1), found {frac!r}. "
                "Fix: pass e.g. task_params={'simulation': {'test_fraction': 0.5}}."
            )
            raise ValueError(msg)

    def _reference(self, adata: Any, ctx: EmbedContext) -> dict[str, Any]:
        frac = float(self.params.get("test_fraction", 0.5))
        min_cells = int(self.params.get("min_cells", 10))
        n_top = int(self.params.get("n_top_genes", 2000))
        n_corr = int(self.params.get("n_corr_genes", 100))
        by = bool(self.params.get("by_batch", True))
        key = (
            "simulation_ref",
            frac,
            min_cells,
            n_top,
            n_corr,
            by,
            ctx.label_key,
            ctx.batch_key,
            ctx.seed,
        )
        if key in ctx.cache:
            return ctx.cache[key]
        import anndata as ad

        labels = adata.obs[ctx.label_key].astype(str).to_numpy()
        by_batch = bool(self.params.get("by_batch", True)) and ctx.batch_key is not None
        if by_batch:
            batch = adata.obs[ctx.batch_key].astype(str).to_numpy()
            labels = np.char.add(np.char.add(labels.astype(str), " | "), batch.astype(str))
        train, test, kept, skipped = _split(labels, frac, min_cells, ctx.seed)
        note = "groups: cell type | batch" if by_batch else ""
        if skipped:
            what = "cell type | batch groups" if by_batch else "cell types"
            skip = f"skipped {what} (too few cells): " + "; ".join(
                f"{t}: {why}" for t, why in skipped.items()
            )
            note = f"{note}; {skip}" if note else skip
        if not kept:
            msg = f"simulation: no cell type has enough cells to fit a generator; {note}"
            raise NotApplicableError(msg)
        hvg = pp.hvg_mask(adata, ctx, n_top)
        corr_mask = pp.hvg_mask(adata, ctx, n_corr)[hvg]
        counts = get_counts(adata, ctx.report)[:, hvg]
        var = adata.var.iloc[np.flatnonzero(hvg)].copy()
        a_train = ad.AnnData(X=counts[train], obs=adata.obs.iloc[train].copy(), var=var)
        a_train.layers["counts"] = a_train.X.copy()
        real = counts[test]
        real_ln = log_normalize(real)
        lab_test = labels[test]
        ref = {
            "train": a_train,
            "train_labels": labels[train],
            "n_per_type": {t: int(np.sum(lab_test == t)) for t in kept},
            "real": real,
            "real_ln": real_ln,
            "real_labels": lab_test,
            "corr_mask": corr_mask,
            "note": note,
        }
        ctx.cache[key] = ref
        return ref

    def run(
        self, adata: Any, model: Any, ctx: EmbedContext, embedding: Callable[[], np.ndarray]
    ) -> list[MetricResult]:
        """Fit ``model.generate`` on the training cells and score the generated cells."""
        key = model.info.key
        if not callable(getattr(model, "generate", None)):
            msg = (
                f"model {key!r} cannot generate cells (it has no generate() method); "
                "simulation scores generative models."
            )
            raise NotApplicableError(msg)
        if not ctx.report.has_counts:
            msg = (
                "simulation compares count distributions, but no raw counts were found; store "
                "raw UMI counts in adata.layers['counts'] or pass counts_layer=."
            )
            raise NotApplicableError(msg)
        model.check(adata, ctx)
        ref = self._reference(adata, ctx)
        n_per_type = dict(ref["n_per_type"])
        gen = model.generate(ref["train"], ref["train_labels"].copy(), n_per_type, ctx)
        gen = sp.csr_matrix(gen, dtype=np.float32)
        n_exp = sum(n_per_type.values())
        shape_exp = (n_exp, ref["real"].shape[1])
        if gen.shape != shape_exp or not np.all(np.isfinite(gen.data)) or (gen.data < 0).any():
            msg = (
                f"model {key!r} generate() returned shape {gen.shape}; expected finite "
                f"non-negative counts of shape {shape_exp} (rows grouped by type in the "
                "order of n_per_type)"
            )
            raise RuntimeError(msg)
        gen_labels = np.repeat(list(n_per_type), list(n_per_type.values()))
        gen_ln = log_normalize(gen)
        real_pcs, gen_pcs = _shared_pca(
            ref["real_ln"], gen_ln, int(self.params.get("n_comps", 30)), ctx.seed
        )
        cm = ref["corr_mask"]
        res: dict[str, float] = {}
        msgs: dict[str, str] = {}
        res["sim_corr_diff"] = correlation_matrix_distance(ref["real_ln"][:, cm], gen_ln[:, cm])
        res["sim_mean_corr"], res["sim_var_corr"] = moment_agreement(ref["real"], gen)
        res["sim_mmd"] = mmd_rbf(real_pcs, gen_pcs, seed=ctx.seed)
        try:
            auc = knn_two_sample_auc(real_pcs, gen_pcs, seed=ctx.seed)
            res["sim_c2st"] = 2.0 * abs(auc - 0.5)
        except NotApplicableError as err:
            res["sim_c2st"], msgs["sim_c2st"] = float("nan"), str(err)
        try:
            res["sim_ilisi"], _ = mixing_ilisi(
                real_pcs, gen_pcs, ref["real_labels"], gen_labels, min_cells=5
            )
        except NotApplicableError as err:
            res["sim_ilisi"], msgs["sim_ilisi"] = float("nan"), str(err)
        note = ref["note"]
        out = []
        for k in SIMULATION_KEYS:
            v = float(res[k])
            if np.isnan(v):
                reason = "; ".join(
                    p for p in (msgs.get(k, "undefined (constant values)"), note) if p
                )
                out.append(MetricResult(k, v, "not_applicable", reason))
            else:
                out.append(MetricResult(k, v, message=note))
        return out
