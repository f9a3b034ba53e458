"""Time each baseline's embedding on the default simulated integration dataset.

Usage::

    python benchmarks/baselines_timing.py [--device cpu|cuda] [--models pca,harmony,scvi]
        [--n-cells 3000] [--scvi-epochs N]

Prints seconds per model and the scIB total of each embedding, so a CPU and a GPU run
can be compared (scVI is the only baseline that uses the GPU).
"""

from __future__ import annotations

import argparse
import time

from sceval.benchmark.runner import run_benchmark
from sceval.data.datasets import simulated_batches


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--models", default="pca,harmony,combat,scvi")
    ap.add_argument("--n-cells", type=int, default=3000)
    ap.add_argument("--scvi-epochs", type=int, default=None, help="default: scvi heuristic")
    args = ap.parse_args()
    adata = simulated_batches(n_cells=args.n_cells)
    params = {"scvi": {"max_epochs": args.scvi_epochs}} if args.scvi_epochs else {}
    print(f"{'model':<14}{'seconds':>10}{'total':>8}{'ilisi':>8}  status")
    for model in args.models.split(","):
        t0 = time.perf_counter()
        res = run_benchmark(
            adata,
            [model],
            ["integration"],
            batch_key="batch",
            label_key="cell_type",
            device=args.device,
            model_params=params,
        )
        dt = time.perf_counter() - t0
        v = res.set_index("metric")["value"]
        status = res["status"].iloc[0]
        print(
            f"{model:<14}{dt:>10.1f}{v.get('total', float('nan')):>8.3f}"
            f"{v.get('ilisi', float('nan')):>8.3f}  {status} {res['message'].iloc[0][:60]}"
        )


if __name__ == "__main__":
    main()
