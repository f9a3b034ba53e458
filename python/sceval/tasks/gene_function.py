"""Gene function prediction: logistic-regression probes on gene embeddings.

The gene embeddings of each model are a genes x d matrix:

* models with ``embed_genes`` (foundation models: scGPT's gene encoder, Geneformer's
  token embeddings; any model class that implements it);
* ``pca``: the PCA loadings of the dataset, i.e. the Pearson correlation of every gene's
  log-normalized expression with each principal component of the ``pca`` baseline (for
  the genes the PCA was fitted on these equal ``component * sqrt(eigenvalue)``; the
  correlation extends them to every gene);
* ``coexpression`` (a baseline that gives gene embeddings only): the spectral embedding
  of the gene-gene Pearson correlation matrix of the dataset, i.e. its leading
  eigenvectors scaled by the square roots of their eigenvalues, computed by a truncated
  SVD of the standardized cells x genes matrix;
* ``shuffled`` (negative control): seeded standard-normal gene vectors (50 dimensions).

Other models have no gene embeddings and get ``not_applicable`` rows with the reason.

The probe is a logistic regression on standardized features with seeded, gene-level
stratified K-fold cross-validation; accuracy, macro F1 and AUROC (one-vs-rest macro for
several classes) are computed on the pooled out-of-fold predictions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from sceval._errors import DataContractError, ModelSkippedError, NotApplicableError
from sceval.data.gene_sets import GeneSet, match_genes, resolve_gene_set
from sceval.metrics._specs import register_metrics
from sceval.metrics.genes import gene_probe_metrics
from sceval.models import _preprocess as pp
from sceval.models.base import EmbedContext, Model, ModelInfo, register_model
from sceval.tasks.base import MetricResult, Task, TaskInfo, register_task

__all__ = [
    "CoexpressionModel",
    "GeneEmbedding",
    "GeneFunctionTask",
    "dataset_gene_ids",
    "gene_embedding",
    "matched_gene_set",
]

GENE_FUNCTION_KEYS = ("gene_accuracy", "gene_f1_macro", "gene_auroc")
_DESCRIPTIONS = {
    "gene_accuracy": "accuracy of a cross-validated logistic probe predicting gene labels "
    "from gene embeddings",
    "gene_f1_macro": "macro F1 of the cross-validated gene-label probe",
    "gene_auroc": "AUROC (one-vs-rest macro for several classes) of the cross-validated "
    "gene-label probe",
}
register_metrics({k: (True, "gene", _DESCRIPTIONS[k]) for k in GENE_FUNCTION_KEYS})

RANDOM_DIM = 50
_ENSEMBL_RE = re.compile(r"^ENS[A-Z]*G\d{11}")


# --------------------------------------------------------------------------- embeddings


@register_model
class CoexpressionModel(Model):
    """``coexpression``: spectral embedding of the gene-gene correlation matrix.

    Gives gene embeddings only (tasks ``gene_function`` and ``gene_network``); cell
    tasks report it as skipped.

    Parameters
    ----------
    n_comps
        Number of eigenvectors (default 50, capped by the data shape).
    """

    info = ModelInfo(
        key="coexpression",
        kind="baseline",
        input="lognorm",
        description="gene embeddings only: leading eigenvectors of the gene-gene "
        "correlation matrix (gene tasks)",
        embeds_cells=False,
        provides=("embed_genes",),
    )

    def embed_cells(self, adata: Any, ctx: EmbedContext) -> np.ndarray:
        msg = (
            "model 'coexpression' does not embed cells: it gives gene embeddings only, "
            "scored by the tasks gene_function and gene_network."
        )
        raise ModelSkippedError(msg)

    def gene_matrix(self, adata: Any, ctx: EmbedContext) -> np.ndarray:
        """Genes x d embedding of every gene of ``adata`` (zero rows for constant genes)."""
        k = int(self.params.get("n_comps", pp.N_COMPS))
        key = ("coexpression", k, ctx.seed)
        if key not in ctx.cache:
            ctx.cache[key] = _coexpression(pp.lognorm(adata, ctx), k, ctx.seed)
        return ctx.cache[key]


def _gene_moments(x: Any) -> tuple[np.ndarray, np.ndarray]:
    n = x.shape[0]
    mean = np.asarray(x.mean(axis=0), dtype=np.float64).ravel()
    sq = x.multiply(x) if sp.issparse(x) else np.square(x)
    ex2 = np.asarray(sq.mean(axis=0), dtype=np.float64).ravel()
    var = np.maximum(ex2 - mean**2, 0.0) * n / max(n - 1, 1)
    return mean, np.sqrt(var)


def _coexpression(x: Any, k: int, seed: int, n_iter: int = 4) -> np.ndarray:
    """Leading eigenpairs of the gene correlation matrix of ``x`` (cells x genes).

    A seeded randomized SVD (Halko et al., SIAM Rev. 2011; ``n_iter`` power iterations,
    10 extra columns) of the standardized matrix ``Z = (X - mean) / sd``, applied
    implicitly so sparse data stay sparse: the correlation matrix is ``Z.T Z / (n - 1)``,
    its eigenvectors are the right singular vectors of ``Z`` and its eigenvalues
    ``s**2 / (n - 1)``. Returns ``eigenvectors * sqrt(eigenvalues)``; constant genes get
    zero rows.
    """
    x = sp.csr_matrix(x, dtype=np.float64)
    n, g = x.shape
    mean, sd = _gene_moments(x)
    ok = sd > 0
    inv = np.where(ok, 1.0 / np.where(ok, sd, 1.0), 0.0)
    xt = x.T.tocsr()

    def z_mul(w: np.ndarray) -> np.ndarray:  # Z @ w
        w = w * inv[:, None]
        return np.asarray(x @ w) - (mean @ w)[None, :]

    def zt_mul(u: np.ndarray) -> np.ndarray:  # Z.T @ u
        return (np.asarray(xt @ u) - np.outer(mean, u.sum(axis=0))) * inv[:, None]

    kk = int(max(1, min(k, n - 1, int(ok.sum()) - 1)))
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(z_mul(rng.standard_normal((g, min(kk + 10, g)))))
    for _ in range(n_iter):
        w, _ = np.linalg.qr(zt_mul(q))
        q, _ = np.linalg.qr(z_mul(w))
    _, s, vt = np.linalg.svd(zt_mul(q).T, full_matrices=False)  # B = Q.T Z
    emb = vt[:kk].T * (s[:kk] / np.sqrt(max(n - 1, 1)))[None, :]
    emb[~ok] = 0.0
    return emb.astype(np.float32)


def _pca_loadings(adata: Any, ctx: EmbedContext, positions: np.ndarray, n_comps: int) -> np.ndarray:
    """Pearson correlation of each gene (lognorm) with the cell PCs of the pca baseline."""
    scores = np.asarray(pp.unintegrated_pca(adata, ctx, n_comps), dtype=np.float64)
    scores = scores - scores.mean(axis=0)
    x = pp.lognorm(adata, ctx)[:, positions]
    n = x.shape[0]
    _, sd = _gene_moments(x)
    cov = np.asarray(x.T @ scores) / max(n - 1, 1)  # scores are centred
    sd_s = scores.std(axis=0, ddof=1)
    denom = np.outer(np.where(sd > 0, sd, np.inf), np.where(sd_s > 0, sd_s, np.inf))
    return (cov / denom).astype(np.float32)


@dataclass(frozen=True)
class GeneEmbedding:
    """Gene vectors of one model for requested dataset genes.

    Attributes
    ----------
    matrix
        ``(found.sum(), d)`` float32, rows in the order of the found genes.
    found
        Boolean mask over the requested genes.
    source
        What the vectors are (for the results message).
    """

    matrix: np.ndarray
    found: np.ndarray
    source: str


def dataset_gene_ids(adata: Any) -> tuple[list[str], list[str]]:
    """The dataset's gene symbols and Ensembl IDs (``""`` when unknown), from
    ``var["gene_symbol"]`` / ``var["ensembl_id"]`` (see ``harmonize_genes``) or else
    ``var_names``."""
    names = [str(v) for v in adata.var_names]
    if "gene_symbol" in adata.var:
        symbols = [str(v) for v in adata.var["gene_symbol"].astype(str)]
    else:
        symbols = ["" if _ENSEMBL_RE.match(v) else v for v in names]
    if "ensembl_id" in adata.var:
        ensembl = [str(v) for v in adata.var["ensembl_id"].astype(str)]
    else:
        ensembl = [v if _ENSEMBL_RE.match(v) else "" for v in names]
    return symbols, ensembl


def gene_embedding(
    model: Any, adata: Any, ctx: EmbedContext, positions: np.ndarray
) -> GeneEmbedding:
    """The gene embedding ``model`` gives for the dataset genes at ``positions``.

    Raises
    ------
    NotApplicableError
        When the model has no gene embeddings.
    ModelSkippedError
        When none of the genes is in the model's vocabulary (or its checkpoint is missing).
    """
    from sceval.models.baselines.pca import PCAModel
    from sceval.models.controls import ShuffledControl

    positions = np.asarray(positions, dtype=np.int64)
    key = model.info.key
    all_found = np.ones(positions.size, dtype=bool)
    if isinstance(model, PCAModel):
        k = int(model.params.get("n_comps", pp.N_COMPS))
        mat = _pca_loadings(adata, ctx, positions, k)
        return GeneEmbedding(mat, all_found, "PCA loadings (gene x PC correlation)")
    if isinstance(model, CoexpressionModel):
        mat = model.gene_matrix(adata, ctx)[positions]
        return GeneEmbedding(mat, all_found, "gene correlation eigenvectors")
    if isinstance(model, ShuffledControl):
        rng = np.random.default_rng(ctx.seed)
        full = rng.standard_normal((adata.n_vars, RANDOM_DIM)).astype(np.float32)
        return GeneEmbedding(full[positions], all_found, "random gene vectors (seeded)")
    embed = getattr(model, "embed_genes", None)
    if not callable(embed):
        msg = (
            f"model {key!r} has no gene embeddings; gene tasks score models with "
            "embed_genes (foundation models), pca (loadings), coexpression and shuffled "
            "(random control)."
        )
        raise NotApplicableError(msg)
    symbols, ensembl = dataset_gene_ids(adata)
    names = [symbols[i] or ensembl[i] for i in positions]
    try:
        mat, found = embed(names, ctx)
    except NotImplementedError as err:
        raise NotApplicableError(str(err)) from err
    mat = np.asarray(mat, dtype=np.float32)
    found = np.asarray(found, dtype=bool)
    if found.shape != (positions.size,) or mat.shape[0] != int(found.sum()):
        msg = (
            f"model {key!r}: embed_genes returned a {mat.shape} matrix and a mask of shape "
            f"{found.shape}; expected (n_found, d) and ({positions.size},)."
        )
        raise RuntimeError(msg)
    if not found.any():
        msg = (
            f"model {key!r}: none of the {positions.size} requested genes is in its "
            f"vocabulary (looked up as symbols, e.g. {names[:3]}). Fix: run "
            "sceval.harmonize_genes(adata) so var['gene_symbol'] / var['ensembl_id'] hold "
            "the model's ID type, and check the species."
        )
        raise ModelSkippedError(msg)
    if not np.all(np.isfinite(mat)):
        msg = f"model {key!r}: embed_genes returned NaN or infinite values"
        raise RuntimeError(msg)
    return GeneEmbedding(mat, found, "model gene embeddings")


def _id_examples(values: list[str]) -> str:
    ex = [v for v in values if v][:3]
    return ", ".join(ex) if ex else "(none)"


def matched_gene_set(gene_set: GeneSet, adata: Any) -> tuple[np.ndarray, np.ndarray, str]:
    """Dataset positions and labels of the set's genes found in ``adata``, and a note
    counting the genes that are not in the dataset.

    Raises
    ------
    DataContractError
        When no gene of the set is in the dataset (the message names the ID types).
    """
    symbols, ensembl = dataset_gene_ids(adata)
    pos = match_genes(gene_set, symbols, ensembl)
    labels = gene_set.table["label"].astype(str).to_numpy()
    keep = pos >= 0
    n_missing = int((~keep).sum())
    if not keep.any():
        msg = (
            f"gene set {gene_set.name!r} ({gene_set.n_genes} genes, e.g. symbols "
            f"{_id_examples(gene_set.table['gene_symbol'].tolist())}; Ensembl IDs "
            f"{_id_examples(gene_set.table['ensembl_id'].tolist())}) shares no gene with "
            f"the dataset (var symbols e.g. {_id_examples(symbols)}; Ensembl IDs e.g. "
            f"{_id_examples(ensembl)}). Fix: run sceval.harmonize_genes(adata) to add "
            "var['gene_symbol'] and var['ensembl_id'], and check the species (shipped sets "
            "are human)."
        )
        raise DataContractError(msg)
    pos, labels = pos[keep], labels[keep]
    _, first = np.unique(pos, return_index=True)  # two set IDs on one dataset gene
    first = np.sort(first)
    pos, labels = pos[first], labels[first]
    note = (
        f"gene set {gene_set.name!r}: {gene_set.n_genes} genes, {pos.size} in the dataset "
        f"({n_missing} not in the dataset)"
    )
    return pos, labels, note


def _check_folds(labels: np.ndarray, n_folds: int, where: str) -> None:
    uniq, counts = np.unique(labels, return_counts=True)
    if uniq.size < 2:
        msg = (
            f"{where}: expected at least 2 labels, found {uniq.size} ({uniq.tolist()}). "
            "Fix: use a gene set with two or more labels that occur in the dataset."
        )
        raise DataContractError(msg)
    small = [f"{u} ({c})" for u, c in zip(uniq, counts, strict=True) if c < n_folds]
    if small:
        msg = (
            f"{where}: labels with fewer genes than n_folds={n_folds}: {small}. Fix: "
            f"pass fewer folds (n_folds <= {int(counts.min())}) or drop these labels "
            "from the gene set."
        )
        raise DataContractError(msg)


def probe_cv(
    x: np.ndarray, labels: np.ndarray, n_folds: int, seed: int
) -> tuple[np.ndarray, list[str]]:
    """Out-of-fold class probabilities of a logistic probe (standardized features,
    seeded stratified K-fold); returns ``(proba (n, n_classes), classes)``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    classes = sorted(set(labels.tolist()))
    proba = np.zeros((labels.size, len(classes)))
    folds = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    for tr, te in folds.split(x, labels):
        clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, random_state=seed))
        clf.fit(x[tr], labels[tr])
        cols = [classes.index(c) for c in clf.classes_]
        proba[np.ix_(te, cols)] = clf.predict_proba(x[te])
    return proba, classes


@register_task
class GeneFunctionTask(Task):
    """``gene_function``: predict gene labels (e.g. transcription factor or not, GO
    category) from each model's gene embedding with a cross-validated logistic probe.

    Parameters
    ----------
    gene_set
        A shipped set name (``sceval.data.gene_sets.list_gene_sets()``), the path of a
        table with a gene column and a label column, or a ``{label: [genes]}`` dict.
        Default ``"tf_dna_binding"``.
    n_folds
        Folds of the stratified cross-validation (default 5).
    """

    info = TaskInfo(
        key="gene_function",
        needs_batch=False,
        needs_labels=False,
        metric_keys=GENE_FUNCTION_KEYS,
        description="gene function: cross-validated logistic probe on gene embeddings "
        "predicting gene-set labels (accuracy, macro F1, AUROC)",
        default=False,
        needs=("gene_set",),
        uses="gene embeddings",
    )

    def run(self, adata: Any, model: Any, ctx: EmbedContext, embedding: Any) -> list[MetricResult]:
        n_folds = int(self.params.get("n_folds", 5))
        if n_folds < 2:
            msg = f"n_folds must be >= 2, found {n_folds}. Fix: pass n_folds=5 (default)."
            raise DataContractError(msg)
        gene_set = resolve_gene_set(self.params.get("gene_set", "tf_dna_binding"))
        pos, labels, note = matched_gene_set(gene_set, adata)
        _check_folds(labels, n_folds, f"gene set {gene_set.name!r} after matching the dataset")
        emb = gene_embedding(model, adata, ctx, pos)
        n_lost = int((~emb.found).sum())
        if n_lost:
            note += f"; {n_lost} not in the model's vocabulary"
        y = labels[emb.found]
        _check_folds(y, n_folds, f"gene set {gene_set.name!r} in model {model.info.key!r}")
        proba, classes = probe_cv(np.asarray(emb.matrix, np.float64), y, n_folds, ctx.seed)
        vals = gene_probe_metrics(y, proba, classes)
        note += f"; {y.size} genes scored, {len(classes)} labels; {emb.source}"
        return [MetricResult(k, float(vals[k]), "ok", note) for k in GENE_FUNCTION_KEYS]
