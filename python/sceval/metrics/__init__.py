"""Metrics: pure functions on arrays.

- :func:`integration_metrics` - the scIB set (bio conservation, batch correction and
  their 0.6 / 0.4 aggregate) on a cell embedding; the individual metrics are exported
  too (:func:`nmi_ari`, :func:`silhouette_label`, :func:`ilisi`, :func:`kbet`, ...).
- :func:`classification_metrics` - accuracy and macro precision / recall / F1.
- :data:`METRICS` - the registry of :class:`MetricSpec` (key, direction, category).
"""

from __future__ import annotations

from sceval.metrics._neighbors import Neighbors, compute_neighbors, umap_connectivities
from sceval.metrics._specs import (
    AGGREGATE_KEYS,
    BATCH_KEYS,
    BIO_KEYS,
    CLASSIFICATION_KEYS,
    METRICS,
    MetricSpec,
)
from sceval.metrics.classification import classification_metrics, confusion_matrix
from sceval.metrics.integration import (
    IntegrationResult,
    KbetResult,
    clisi,
    graph_connectivity,
    ilisi,
    integration_metrics,
    isolated_labels,
    kbet,
    kbet_per_label,
    lisi,
    nmi_ari,
    pcr,
    pcr_comparison,
    silhouette_batch,
    silhouette_label,
)

__all__ = [
    "AGGREGATE_KEYS",
    "BATCH_KEYS",
    "BIO_KEYS",
    "CLASSIFICATION_KEYS",
    "METRICS",
    "IntegrationResult",
    "KbetResult",
    "MetricSpec",
    "Neighbors",
    "classification_metrics",
    "clisi",
    "compute_neighbors",
    "confusion_matrix",
    "graph_connectivity",
    "ilisi",
    "integration_metrics",
    "isolated_labels",
    "kbet",
    "kbet_per_label",
    "lisi",
    "nmi_ari",
    "pcr",
    "pcr_comparison",
    "silhouette_batch",
    "silhouette_label",
    "umap_connectivities",
]
