"""Gene network: modules of a gene-embedding kNN graph compared with known modules.

Each model's gene embedding (see :mod:`sceval.tasks.gene_function` for which models
give one) is turned into a cosine-similarity k-nearest-neighbour graph over the genes
(symmetrized, weights = cosine similarity clipped at 0), partitioned by seeded Leiden
(RB configuration model). The modules are compared with reference modules: the
simulator's known programs (``var["program"]``) by default when present, else a gene
set (``reference=``: a shipped name, a path or a ``{label: genes}`` dict; the label
``other`` of binary sets is not a module).
The graph holds the reference genes found in the dataset (and in the model's
vocabulary); they are also the universe of the enrichment tests.

Metrics: ``module_jaccard`` (mean over reference sets of the best Jaccard index with a
module), ``module_ami`` (adjusted mutual information of modules and reference labels on
the genes in both) and ``module_enriched`` (share of modules of at least
``min_module_size`` genes enriched for a reference set: hypergeometric test,
Benjamini-Hochberg over all module x reference tests at 0.05).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from sceval._errors import DataContractError
from sceval.data.gene_sets import resolve_gene_set
from sceval.metrics._specs import register_metrics
from sceval.metrics.genes import best_match_jaccard, module_ami, module_enrichment
from sceval.models.base import EmbedContext
from sceval.tasks.base import MetricResult, Task, TaskInfo, register_task
from sceval.tasks.gene_function import gene_embedding, matched_gene_set

__all__ = ["GeneNetworkTask", "cosine_knn_graph", "leiden_modules", "reference_modules"]

GENE_NETWORK_KEYS = ("module_jaccard", "module_ami", "module_enriched")
_DESCRIPTIONS = {
    "module_jaccard": "mean over reference gene modules of the best Jaccard index with a "
    "Leiden module of the gene-embedding kNN graph",
    "module_ami": "adjusted mutual information between gene-graph Leiden modules and "
    "reference modules",
    "module_enriched": "share of gene-graph modules enriched for a reference module "
    "(hypergeometric, BH q < 0.05)",
}
register_metrics({k: (True, "gene", _DESCRIPTIONS[k]) for k in GENE_NETWORK_KEYS})


def cosine_knn_graph(x: np.ndarray, k: int = 15) -> sp.csr_matrix:
    """Symmetric kNN graph under cosine similarity; edge weight = similarity (>= 0).

    Zero vectors have similarity 0 to everything. ``k`` is capped at ``n - 1``.
    """
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[0]
    k = int(max(1, min(k, n - 1)))
    norm = np.linalg.norm(x, axis=1)
    xn = x / np.where(norm > 0, norm, 1.0)[:, None]
    rows, cols, vals = [], [], []
    step = max(1, 2_000_000 // max(n, 1))
    for start in range(0, n, step):
        sim = xn[start : start + step] @ xn.T
        idx = np.arange(start, min(start + step, n))
        sim[np.arange(idx.size), idx] = -np.inf  # no self-loops
        nn = np.argpartition(-sim, k - 1, axis=1)[:, :k]
        rows.append(np.repeat(idx, k))
        cols.append(nn.ravel())
        vals.append(np.take_along_axis(sim, nn, axis=1).ravel())
    w = np.clip(np.concatenate(vals), 0.0, None) + 1e-6  # keep edges of orthogonal genes
    g = sp.csr_matrix((w, (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))
    return g.maximum(g.T).tocsr()


def leiden_modules(graph: sp.csr_matrix, resolution: float = 1.0, seed: int = 0) -> np.ndarray:
    """Seeded Leiden partition (RB configuration model) of a weighted undirected graph;
    module index per node."""
    import igraph as ig
    import leidenalg

    coo = sp.triu(graph, k=1).tocoo()
    g = ig.Graph(n=graph.shape[0], edges=list(zip(coo.row.tolist(), coo.col.tolist(), strict=True)))
    part = leidenalg.find_partition(
        g,
        leidenalg.RBConfigurationVertexPartition,
        weights=coo.data.tolist(),
        resolution_parameter=resolution,
        seed=int(seed),
        n_iterations=-1,
    )
    return np.asarray(part.membership, dtype=np.int64)


def reference_modules(adata: Any, reference: Any) -> tuple[np.ndarray, np.ndarray, str]:
    """Dataset positions and reference-module labels of the reference genes, and a note.

    ``reference=None`` uses the simulator's programs (``var["program"]``, each gene in
    at most one); otherwise a gene set (its ``other`` label is left out).
    """
    if reference is None:
        if "program" not in adata.var:
            msg = (
                "gene_network found no reference modules: adata.var has no 'program' "
                "column (simulated data has one). Fix: pass task_params={'gene_network': "
                "{'reference': 'go_bp_5'}} (a shipped gene set, a path or a "
                "{module: [genes]} dict)."
            )
            raise DataContractError(msg)
        prog = adata.var["program"].astype(str).to_numpy()
        pos = np.flatnonzero(prog != "")
        if pos.size == 0:
            msg = (
                "var['program'] marks no gene; expected the simulator's program genes. "
                "Fix: pass a reference gene set, e.g. reference='go_bp_5'."
            )
            raise DataContractError(msg)
        return pos, prog[pos], f"reference: {np.unique(prog[pos]).size} simulated programs"
    gene_set = resolve_gene_set(reference)
    pos, labels, note = matched_gene_set(gene_set, adata)
    keep = labels != "other"
    return pos[keep], labels[keep], note.replace("gene set", "reference", 1)


@register_task
class GeneNetworkTask(Task):
    """``gene_network``: Leiden modules of a cosine kNN graph of gene embeddings versus
    reference modules.

    Parameters
    ----------
    reference
        ``None`` (default): the simulator's programs; else a gene set (shipped name,
        path or ``{module: [genes]}`` dict).
    n_neighbors
        k of the gene kNN graph (default 15).
    resolution
        Leiden resolution (default 1.0).
    min_module_size
        Modules smaller than this are not tested for enrichment (default 5).
    alpha
        False-discovery rate of the enrichment tests (default 0.05).
    """

    info = TaskInfo(
        key="gene_network",
        needs_batch=False,
        needs_labels=False,
        metric_keys=GENE_NETWORK_KEYS,
        description="gene network: Leiden modules of a gene-embedding kNN graph vs known "
        "modules (best-match Jaccard, AMI, share of enriched modules)",
        default=False,
        uses="gene embeddings",
    )

    def run(self, adata: Any, model: Any, ctx: EmbedContext, embedding: Any) -> list[MetricResult]:
        pos, labels, note = reference_modules(adata, self.params.get("reference"))
        if np.unique(labels).size < 2 or pos.size < 3:
            msg = (
                f"gene_network needs >= 2 reference modules and >= 3 genes; found "
                f"{np.unique(labels).size} modules over {pos.size} genes. Fix: use a "
                "reference with more modules."
            )
            raise DataContractError(msg)
        emb = gene_embedding(model, adata, ctx, pos)
        n_lost = int((~emb.found).sum())
        if n_lost:
            note += f"; {n_lost} not in the model's vocabulary"
        genes = [str(p) for p in pos[emb.found]]
        ref_labels = labels[emb.found]
        k = int(self.params.get("n_neighbors", 15))
        graph = cosine_knn_graph(emb.matrix, k)
        member = leiden_modules(graph, float(self.params.get("resolution", 1.0)), ctx.seed)
        modules: dict[str, list[str]] = {}
        for g, m in zip(genes, member.tolist(), strict=True):
            modules.setdefault(str(m), []).append(g)
        reference: dict[str, list[str]] = {}
        for g, r in zip(genes, ref_labels.tolist(), strict=True):
            reference.setdefault(str(r), []).append(g)
        min_size = int(self.params.get("min_module_size", 5))
        big = {m: v for m, v in modules.items() if len(v) >= min_size}
        jac = best_match_jaccard(modules, reference)
        ami, _ = module_ami(
            dict(zip(genes, member.astype(str).tolist(), strict=True)),
            dict(zip(genes, ref_labels.tolist(), strict=True)),
        )
        enr = module_enrichment(big, reference, genes, float(self.params.get("alpha", 0.05)))
        note += (
            f"; {len(genes)} genes, {len(modules)} modules ({len(big)} with >= {min_size} "
            f"genes tested for enrichment); {emb.source}"
        )
        vals = {"module_jaccard": jac, "module_ami": ami, "module_enriched": enr.share}
        return [
            MetricResult(
                key, float(vals[key]), "ok" if np.isfinite(vals[key]) else "not_applicable", note
            )
            for key in GENE_NETWORK_KEYS
        ]
