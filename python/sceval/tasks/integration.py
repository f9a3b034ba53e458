"""Batch integration: the scIB metric set on a cell embedding.

Luecken et al., "Benchmarking atlas-level data integration in single-cell genomics",
Nat. Methods 2022.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sceval.models import _preprocess as pp
from sceval.models.base import EmbedContext
from sceval.tasks.base import MetricResult, Task, TaskInfo, register_task

BIO = ("nmi", "ari", "silhouette_label", "clisi", "isolated_labels")
BATCH = ("silhouette_batch", "ilisi", "kbet", "graph_connectivity", "pcr_comparison")
AGGREGATE = ("bio_conservation", "batch_correction", "total")


@register_task
class IntegrationTask(Task):
    """``integration``: scIB bio-conservation and batch-correction metrics plus the
    0.6 bio / 0.4 batch aggregate. The PCR comparison uses the unintegrated PCA
    (``unintegrated`` control) as the pre-integration reference.

    Parameters
    ----------
    n_neighbors
        Neighbours of the shared kNN graph (default 90, as scib-metrics).
    """

    info = TaskInfo(
        key="integration",
        needs_batch=True,
        needs_labels=True,
        metric_keys=BIO + BATCH + AGGREGATE,
        description="batch integration: scIB metrics (NMI, ARI, ASW, LISI, kBET, ...) + aggregate",
    )

    def evaluate(
        self, adata: Any, embedding: np.ndarray, ctx: EmbedContext, model: Any = None
    ) -> list[MetricResult]:
        from sceval.metrics import integration_metrics

        labels = adata.obs[ctx.label_key].astype(str).to_numpy()
        batch = adata.obs[ctx.batch_key].astype(str).to_numpy()
        x_pre = pp.unintegrated_pca(adata, ctx)
        res = integration_metrics(
            embedding,
            labels,
            batch,
            X_pre=x_pre,
            n_neighbors=int(self.params.get("n_neighbors", 90)),
            seed=ctx.seed,
        )
        out = []
        for key in self.info.metric_keys:
            val = float(res.values.get(key, np.nan))
            if np.isnan(val):
                msg = res.messages.get(key, "not computed")
                out.append(MetricResult(key, val, "not_applicable", msg))
            else:
                out.append(MetricResult(key, val))
        return out
