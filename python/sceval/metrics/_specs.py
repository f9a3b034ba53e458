"""Metadata for every metric sceval reports.

The keys are the ones users see in result tables, configs, the CLI and R; they
are the keys of :attr:`IntegrationResult.values
<sceval.metrics.integration.IntegrationResult>` and of the dictionary returned
by :func:`~sceval.metrics.classification.classification_metrics`.
"""

from __future__ import annotations

from dataclasses import dataclass

from sceval._registry import Registry

__all__ = [
    "AGGREGATE_KEYS",
    "BATCH_KEYS",
    "BIO_KEYS",
    "CATEGORIES",
    "CLASSIFICATION_KEYS",
    "METRICS",
    "MetricSpec",
    "register_metrics",
]

#: The allowed values of :attr:`MetricSpec.category`.
CATEGORIES = (
    "bio",
    "batch",
    "aggregate",
    "classification",
    "perturbation",
    "imputation",
    "simulation",
    "gene",
)


@dataclass(frozen=True)
class MetricSpec:
    """What a metric key means.

    Attributes
    ----------
    key
        Registry key, e.g. ``"ilisi"``.
    higher_is_better
        Whether larger values are better (the scIB metrics are all rescaled so that 1
        is best; errors such as ``mse`` are lower-is-better).
    category
        ``"bio"`` (biological conservation), ``"batch"`` (batch correction),
        ``"aggregate"`` (weighted means of the former), ``"classification"``,
        ``"perturbation"``, ``"imputation"``, ``"simulation"`` or ``"gene"`` (gene-level
        tasks).
    description
        One sentence for tables and docs.
    """

    key: str
    higher_is_better: bool
    category: str
    description: str

    def __post_init__(self) -> None:
        if self.category not in CATEGORIES:
            msg = (
                f"MetricSpec {self.key!r}: expected category in {CATEGORIES}, "
                f"found {self.category!r}. Use one of the listed categories."
            )
            raise ValueError(msg)


METRICS: Registry[MetricSpec] = Registry("metric")

_SPECS = (
    # --- biological conservation -------------------------------------------------
    MetricSpec(
        "nmi",
        True,
        "bio",
        "Normalized mutual information between Leiden clusters (best of a resolution "
        "sweep) and cell-type labels.",
    ),
    MetricSpec(
        "ari",
        True,
        "bio",
        "Adjusted Rand index between the Leiden clusters chosen for NMI and the labels.",
    ),
    MetricSpec(
        "silhouette_label",
        True,
        "bio",
        "Average silhouette width of cell-type labels, rescaled to [0, 1] as (s + 1) / 2.",
    ),
    MetricSpec(
        "clisi",
        True,
        "bio",
        "Cell-type LISI (median over cells), rescaled so that 1 means pure neighbourhoods.",
    ),
    MetricSpec(
        "isolated_labels",
        True,
        "bio",
        "Rescaled silhouette of the labels present in the fewest batches.",
    ),
    # --- batch correction ---------------------------------------------------------
    MetricSpec(
        "silhouette_batch",
        True,
        "batch",
        "Per label, 1 - |silhouette| of batches, averaged over labels (scIB batch ASW).",
    ),
    MetricSpec(
        "ilisi",
        True,
        "batch",
        "Integration LISI (median over cells), rescaled so that 1 means fully mixed batches.",
    ),
    MetricSpec(
        "kbet",
        True,
        "batch",
        "kBET acceptance rate per label on diffusion-map neighbourhoods, averaged over labels.",
    ),
    MetricSpec(
        "graph_connectivity",
        True,
        "batch",
        "Per label, fraction of cells in the largest connected component of the kNN "
        "subgraph, averaged over labels.",
    ),
    MetricSpec(
        "pcr_comparison",
        True,
        "batch",
        "Relative decrease of the batch-explained variance (principal component "
        "regression) from the unintegrated to the integrated embedding.",
    ),
    # --- aggregates ---------------------------------------------------------------
    MetricSpec(
        "bio_conservation",
        True,
        "aggregate",
        "Mean of the available biological-conservation metrics.",
    ),
    MetricSpec(
        "batch_correction",
        True,
        "aggregate",
        "Mean of the available batch-correction metrics.",
    ),
    MetricSpec(
        "total",
        True,
        "aggregate",
        "0.6 * bio_conservation + 0.4 * batch_correction (scIB weighting).",
    ),
    # --- classification -------------------------------------------------------------
    MetricSpec("accuracy", True, "classification", "Fraction of cells predicted correctly."),
    MetricSpec(
        "balanced_accuracy",
        True,
        "classification",
        "Mean per-class recall over the classes present in the true labels.",
    ),
    MetricSpec(
        "precision_macro",
        True,
        "classification",
        "Unweighted mean over classes of TP / (TP + FP); 0 for never-predicted classes.",
    ),
    MetricSpec(
        "recall_macro",
        True,
        "classification",
        "Unweighted mean over classes of TP / (TP + FN); 0 for classes absent from y_true.",
    ),
    MetricSpec(
        "f1_macro",
        True,
        "classification",
        "Unweighted mean over classes of the per-class F1 score.",
    ),
)

for _spec in _SPECS:
    METRICS.register(_spec.key, _spec)
del _spec

#: Metric keys by category, in reporting order.
BIO_KEYS = tuple(s.key for s in _SPECS if s.category == "bio")
BATCH_KEYS = tuple(s.key for s in _SPECS if s.category == "batch")
AGGREGATE_KEYS = tuple(s.key for s in _SPECS if s.category == "aggregate")
CLASSIFICATION_KEYS = tuple(s.key for s in _SPECS if s.category == "classification")


def register_metrics(specs: dict[str, tuple[bool, str, str]]) -> None:
    """Register task metrics: ``{key: (higher_is_better, category, description)}``.

    Idempotent (a module imported twice registers nothing new), so each task module
    declares its metrics next to the code that computes them.
    """
    for key, (higher, category, description) in specs.items():
        if key not in METRICS:
            METRICS.register(key, MetricSpec(key, higher, category, description))
