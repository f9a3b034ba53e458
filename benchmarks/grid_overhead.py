"""The grid engine's own overhead per cell, against the cells' compute.

Usage::

    python benchmarks/grid_overhead.py [--config inst/examples/grid_simulated.yaml]
        [--n-cells 2000] [--n-genes 1000] [--executor inline] [--per-cell]

Runs the config's grid (default: the shipped example, 48 cells of baseline models and
controls on simulated data; ``--n-cells``/``--n-genes`` resize its simulated datasets,
0 keeps the example's tiny 240 x 120) into a fresh folder and compares the total wall time of
``run_grid`` with the sum of the cells' own compute, timed inside each cell: the
model's embedding (once per dataset x model x seed, shared by its tasks) plus the
task's scoring. Everything else is the engine's overhead: config parsing, hashing,
scheduling, the embedding cache, writing each cell's Parquet file atomically (with
fsync), rebuilding results.parquet/csv and run.json. Loading (simulating) and
validating the datasets is shown apart. Target: overhead < 5% of the compute.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default=str(ROOT / "inst" / "examples" / "grid_simulated.yaml"))
    ap.add_argument("--executor", default="inline", choices=["inline", "processes", "dask"])
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--n-cells", type=int, default=2000, help="cells per simulated dataset")
    ap.add_argument("--n-genes", type=int, default=1000, help="genes per simulated dataset")
    ap.add_argument("--per-cell", action="store_true", help="print every cell's timings")
    args = ap.parse_args()

    import sceval.metrics
    import sceval.models
    import sceval.tasks  # noqa: F401
    from sceval.benchmark import load_config, run_grid
    from sceval.benchmark.executors import InlineExecutor, make_executor

    cfg = load_config(args.config)
    if args.n_cells:
        import dataclasses

        datasets = tuple(
            dataclasses.replace(
                d, simulate={**d.simulate, "n_cells": args.n_cells, "n_genes": args.n_genes}
            )
            if d.simulate is not None
            else d
            for d in cfg.datasets
        )
        cfg = dataclasses.replace(cfg, datasets=datasets)
    stamps: list[tuple[float, dict]] = []

    class Timed(InlineExecutor):
        def run(self, jobs, on_cell):  # type: ignore[override]
            def note(item: dict) -> None:
                stamps.append((time.perf_counter(), item))
                on_cell(item)

            return super().run(jobs, note)

    ex = (
        Timed() if args.executor == "inline" else make_executor(args.executor, workers=args.workers)
    )
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        t0 = time.perf_counter()
        res = run_grid(cfg, out, executor=ex, progress=False)
        wall = time.perf_counter() - t0
        rec = json.loads((out / "run.json").read_text())
    n = res["cell"].nunique()
    comp = rec["compute_s"]
    compute = comp["embedding"] + comp["tasks"]
    load = comp["data_load"]
    overhead = wall - compute - load
    if args.per_cell and stamps:
        print(
            f"{'cell':>10} {'embed_s':>8} {'task_s':>8} {'load_s':>7} {'wall_s':>7} {'over_ms':>8}"
        )
        prev = t0
        for ts, item in stamps:
            gap = ts - prev
            own = item["embed_s"] + item["task_s"] + item.get("load_s", 0.0)
            print(
                f"{item['cell'][:10]:>10} {item['embed_s']:8.3f} {item['task_s']:8.3f} "
                f"{item.get('load_s', 0.0):7.3f} {gap:7.3f} {1000 * (gap - own):8.1f}"
            )
            prev = ts
    size = f"{args.n_cells} x {args.n_genes}" if args.n_cells else "as in the config"
    print(
        f"executor: {args.executor}; grid: {n} cells, {len(res)} rows "
        f"({Path(args.config).name}, simulated datasets {size})"
    )
    print(f"wall time of run_grid:      {wall:8.2f} s")
    print(
        f"cells' compute (embed+task):{compute:8.2f} s  (embedding {comp['embedding']:.2f} s, "
        f"tasks {comp['tasks']:.2f} s)"
    )
    print(f"data loading + validation:  {load:8.2f} s")
    print(
        f"engine overhead:            {overhead:8.2f} s = {1000 * overhead / n:.1f} ms per cell "
        f"= {100 * overhead / compute:.2f}% of the compute (target < 5%)"
    )
    print(
        f"  including data loading:   {overhead + load:8.2f} s = "
        f"{100 * (overhead + load) / compute:.2f}%"
    )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
