"""Peak memory of one grid cell on a large backed h5ad (foundation model + metric subsample).

Usage::

    python benchmarks/grid_backed_memory.py [--cells 200000] [--genes 2000]
        [--chunk 20000] [--subsample 20000] [--tasks annotation,integration]
        [--model scgpt] [--folder DIR]

Writes a sparse simulated count matrix of ``--cells`` cells in chunks (each chunk
simulated with :func:`sceval.data.simulate.simulate`, written as its own h5ad and
joined with ``anndata.experimental.concat_on_disk``, so the full matrix is never in
memory), writes a tiny random-weight checkpoint of ``--model`` in its official layout
(:func:`sceval.testing.tiny_checkpoint`), then runs a one-model grid in a fresh
process: the dataset is opened ``backed: true``, the model streams it in chunks
(``embed_streaming``), and the tasks score a seeded, label-stratified subsample of
``--subsample`` cells. Prints the count matrix size, wall time, each cell's
``peak_mem_mb`` and the process's peak RSS (``VmHWM``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = r"""
import json, sys, time
from sceval.benchmark import run_grid
from sceval.benchmark.record import peak_mb
cfg, out = json.loads(sys.argv[1]), sys.argv[2]
t0 = time.perf_counter()
res = run_grid(cfg, out, progress=False)
wall = time.perf_counter() - t0
cells = res.groupby(["task", "cell"], sort=False).agg(
    status=("status", "first"), peak_mem_mb=("peak_mem_mb", "first"),
    n_cells=("n_cells", "first"), subsample=("subsample", "first"),
    runtime_s=("runtime_s", "first"), message=("message", "first")).reset_index()
print(json.dumps({"wall_s": wall, "vmhwm_mb": peak_mb(),
                  "cells": cells.to_dict("records")}))
"""


def write_data(path: Path, n_cells: int, n_genes: int, chunk: int) -> tuple[float, object]:
    """Simulated counts in chunks joined on disk; returns (MiB of X, first chunk)."""
    import anndata as ad
    from anndata.experimental import concat_on_disk

    from sceval.data.simulate import simulate

    parts, first, nbytes = [], None, 0
    tmp = path.parent / "chunks"
    tmp.mkdir(exist_ok=True)
    for i, start in enumerate(range(0, n_cells, chunk)):
        n = min(chunk, n_cells - start)
        a = simulate(n_cells=max(n, 10), n_genes=n_genes, n_batches=2, n_cell_types=8, seed=i)
        a = a[:n].copy()
        if first is None:
            first = a
        else:  # same genes (the simulator draws its own per seed): keep the first names
            a.var = first.var.copy()
        a.obs_names = [f"c{start + j}" for j in range(n)]
        a.obs["batch"] = a.obs["batch"].astype(str) + f"_chunk{i % 4}"
        a.uns = {}
        del a.layers["counts"]  # counts are in X
        nbytes += a.X.data.nbytes + a.X.indices.nbytes + a.X.indptr.nbytes
        f = tmp / f"part{i:03d}.h5ad"
        a.write_h5ad(f)
        parts.append(f)
        del a
    concat_on_disk([str(p) for p in parts], str(path), merge="first")
    for p in parts:
        p.unlink()
    tmp.rmdir()
    check = ad.read_h5ad(path, backed="r")
    assert check.n_obs == n_cells, check
    return nbytes / 2**20, first


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cells", type=int, default=200_000)
    ap.add_argument("--genes", type=int, default=2000)
    ap.add_argument("--chunk", type=int, default=20_000, help="cells per simulated chunk")
    ap.add_argument("--subsample", type=int, default=20_000, help="cells the metrics see")
    ap.add_argument("--tasks", default="annotation,integration")
    ap.add_argument("--model", default="scgpt")
    ap.add_argument("--folder", default=None, help="work folder (default: a temp folder)")
    args = ap.parse_args()

    from sceval.testing import tiny_checkpoint

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.folder or tmp)
        work.mkdir(parents=True, exist_ok=True)
        data = work / "big.h5ad"
        t0 = time.perf_counter()
        mb, first = write_data(data, args.cells, args.genes, args.chunk)
        t_write = time.perf_counter() - t0
        ckpt = tiny_checkpoint(args.model, work / "ckpt", first)
        del first
        cfg = {
            "device": "cpu",
            "seeds": [0],
            "datasets": [
                {
                    "name": f"sim{args.cells}",
                    "path": str(data),
                    "backed": True,
                    "batch_key": "batch",
                    "label_key": "cell_type",
                }
            ],
            "models": [{"key": args.model, "checkpoint": str(ckpt)}],
            "tasks": [
                {"key": t, "subsample": {"n": args.subsample, "stratify": "label"}}
                for t in args.tasks.split(",")
            ],
        }
        out = subprocess.run(
            [sys.executable, "-c", CHILD, json.dumps(cfg), str(work / "out")],
            capture_output=True,
            text=True,
        )
        if out.returncode != 0:
            sys.exit(out.stderr)
        rep = json.loads(out.stdout.strip().splitlines()[-1])
    print(
        f"{args.cells} cells x {args.genes} genes, backed h5ad; X = {mb:.0f} MiB in memory "
        f"if loaded (written in {t_write:.0f} s)"
    )
    print(f"model {args.model} (tiny checkpoint), metric subsample {args.subsample} cells")
    for c in rep["cells"]:
        print(
            f"  {c['task']:<12} {c['status']:<8} n_cells={c['n_cells']:<6} "
            f"{c['subsample']:<24} runtime {c['runtime_s']:.0f} s  "
            f"peak_mem_mb {c['peak_mem_mb']:.0f}"
        )
        if c["status"] != "ok":
            print(f"    {c['message'][:200]}")
    print(
        f"grid wall time {rep['wall_s']:.0f} s; process peak RSS (VmHWM) {rep['vmhwm_mb']:.0f} MiB"
    )


if __name__ == "__main__":
    main()
