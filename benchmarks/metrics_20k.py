"""Time sceval's integration metrics on a 20,000-cell simulated embedding.

Simulates 20,000 cells x 30 dimensions (3 batches, 8 labels, numpy only, seeded),
times :func:`sceval.metrics.integration_metrics` per metric and in total, and,
when scib-metrics is importable, times the scib-metrics calls its ``Benchmarker``
makes on the same neighbour graph (our exact kNN, with the self column scib-metrics
expects) and prints the ratio.

Usage::

    python benchmarks/metrics_20k.py [--n-cells 20000] [--no-scib]

This is a script, not a test; scib-metrics timings include its jax / numba
compilation, which a user pays once per process.
"""

from __future__ import annotations

import argparse
import logging
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from sceval.metrics import BATCH_KEYS, BIO_KEYS, Neighbors, compute_neighbors, integration_metrics


def simulate(
    n_cells: int = 20_000, dim: int = 30, n_batches: int = 3, n_labels: int = 8, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Gaussian label clusters with batch offsets.

    Returns
    -------
    X
        Integrated-like embedding of shape (n_cells, dim) (mild batch offsets).
    X_pre
        Unintegrated-like embedding of shape (n_cells, dim) (strong batch offsets).
    labels, batch
        String arrays of shape (n_cells,).
    """
    rng = np.random.default_rng(seed)
    lab = rng.choice(
        n_labels, size=n_cells, p=np.linspace(2, 1, n_labels) / np.linspace(2, 1, n_labels).sum()
    )
    bat = rng.integers(0, n_batches, n_cells)
    bat[lab == n_labels - 1] = 0  # one label seen in a single batch
    centers = rng.normal(0.0, 0.5, (n_labels, dim))
    X = (
        centers[lab]
        + rng.normal(0.0, 0.3, (n_batches, dim))[bat]
        + rng.normal(0.0, 0.8, (n_cells, dim))
    )
    X_pre = X + rng.normal(0.0, 1.0, (n_batches, dim))[bat]
    labels = np.array([f"ct{i}" for i in lab])
    batch = np.array([f"batch{i}" for i in bat])
    return X, X_pre, labels, batch


def _timed(fn: Callable[[], Any]) -> tuple[float, float]:
    t0 = time.perf_counter()
    value = fn()
    return float(value), time.perf_counter() - t0


def time_scib(
    X: np.ndarray, X_pre: np.ndarray, labels: np.ndarray, batch: np.ndarray, nb: Neighbors
) -> dict[str, tuple[float, float]] | None:
    """(value, seconds) of each scib-metrics Benchmarker call on our graph; None if absent."""
    try:
        import scib_metrics as sm
        from scib_metrics.nearest_neighbors import NeighborsResults
    except ImportError:
        return None
    logging.getLogger("scib_metrics").setLevel(logging.WARNING)
    n = nb.n_cells

    def to_scib(sub: Neighbors) -> NeighborsResults:
        return NeighborsResults(
            indices=np.hstack([np.arange(n)[:, None], sub.indices]),
            distances=np.hstack([np.zeros((n, 1)), sub.distances]),
        )

    out: dict[str, tuple[float, float]] = {}
    t0 = time.perf_counter()
    r15, r50, r90 = to_scib(nb.subset(15)), to_scib(nb.subset(50)), to_scib(nb)
    _ = r15.knn_graph_connectivities, r50.knn_graph_connectivities
    out["graph prep"] = (float("nan"), time.perf_counter() - t0)
    leiden: dict[str, float] = {}

    def _nmi() -> float:
        leiden.update(sm.nmi_ari_cluster_labels_leiden(r15, labels, seed=0))
        return leiden["nmi"]

    calls: dict[str, Callable[[], Any]] = {
        "nmi": _nmi,
        "silhouette_label": lambda: sm.silhouette_label(X, labels),
        "clisi": lambda: sm.clisi_knn(r90, labels),
        "isolated_labels": lambda: sm.isolated_labels(X, labels, batch),
        "silhouette_batch": lambda: sm.silhouette_batch(X, labels, batch),
        "ilisi": lambda: sm.ilisi_knn(r90, batch),
        "kbet": lambda: sm.kbet_per_label(r50, batch, labels),
        "graph_connectivity": lambda: sm.graph_connectivity(r15, labels),
        "pcr_comparison": lambda: sm.pcr_comparison(X_pre, X, batch, categorical=True),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for key, fn in calls.items():
            out[key] = _timed(fn)
    out["ari"] = (float(leiden["ari"]), 0.0)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-cells", type=int, default=20_000)
    parser.add_argument("--no-scib", action="store_true", help="skip the scib-metrics timings")
    args = parser.parse_args()

    X, X_pre, labels, batch = simulate(args.n_cells)
    print(f"data: {X.shape[0]} cells x {X.shape[1]} dims, 3 batches, 8 labels")

    res = integration_metrics(X, labels, batch, X_pre=X_pre, seed=0)
    t = res.timings
    scib = None
    if not args.no_scib:
        nb = compute_neighbors(X, 90)  # same graph as integration_metrics used
        scib = time_scib(X, X_pre, labels, batch, nb)

    header = f"{'step':<20} {'sceval s':>9} {'value':>8}"
    if scib is not None:
        header += f" {'scib s':>9} {'value':>8} {'scib/ours':>9}"
    print(header)
    print("-" * len(header))
    rows = ["neighbors", *BIO_KEYS, *BATCH_KEYS]
    ours_total_metrics = 0.0
    scib_total = 0.0
    for key in rows:
        ours_t = t.get(key, 0.0)
        ours_v = res.values.get(key, float("nan"))
        line = f"{key:<20} {ours_t:>9.2f} {ours_v:>8.4f}"
        if key != "neighbors":
            ours_total_metrics += ours_t
        if scib is not None:
            s_key = "graph prep" if key == "neighbors" else key
            s_v, s_t = scib.get(s_key, (float("nan"), float("nan")))
            scib_total += s_t
            ratio = s_t / ours_t if ours_t > 0.005 else float("nan")
            line += f" {s_t:>9.2f} {s_v:>8.4f} {ratio:>9.1f}"
        print(line)
    print("-" * len(header))
    line = f"{'total':<20} {t['total']:>9.2f} {res.values['total']:>8.4f}"
    if scib is not None:
        line += f" {scib_total:>9.2f} {'':>8} {scib_total / t['total']:>9.1f}"
    print(line)
    print(
        "notes: sceval 'neighbors' = exact kNN (k=90) + UMAP graph (k=15); scib 'graph prep' "
        "= UMAP graphs (k=15, 50) from the same kNN (scib's own pynndescent search not timed); "
        "sceval 'silhouette_label' includes the silhouettes reused by isolated_labels; "
        "'ari' comes with 'nmi'; scib times include jax / numba compilation."
    )
    if res.messages:
        print("not applicable:", res.messages)


if __name__ == "__main__":
    main()
