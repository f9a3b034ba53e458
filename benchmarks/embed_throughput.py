"""Cell-embedding throughput of every foundation model, at tiny or official size.

For each model key, simulates ``--cells`` cells (human genes, or mouse with
``--species mouse``), writes a random-weight checkpoint in the model's official on-disk
layout with :func:`sceval.testing.tiny_checkpoint` (``--size tiny``: the test
dimensions; ``--size official``: the released dimensions, random weights, so the
compute per cell is the real one), and times ``embed_cells`` through the same code the
benchmark runs (tokenization included, checkpoint loading excluded where the model
caches it: the first call is a warm-up on ``--warmup`` cells and is not timed).

Prints one row per model: parameters (from the checkpoint's size on disk), embedding
width, cells, seconds, cells/s. ``--json PATH`` also writes the rows.

Usage::

    python benchmarks/embed_throughput.py --models scgpt,geneformer --size tiny --cells 200
    python benchmarks/embed_throughput.py --models cellfm --size official --cells 4
    python benchmarks/embed_throughput.py --all --size tiny --device cuda --precision bf16

This is a script, not a test; official sizes need several GB of RAM per model.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _folder_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file()) / 1e6


def _data(n_cells: int, n_genes: int, species: str, seed: int):
    from sceval.data.simulate import simulate

    return simulate(
        n_cells=n_cells,
        n_genes=n_genes,
        n_batches=2,
        n_cell_types=4,
        species=species,
        seed=seed,
    )


def time_model(key: str, args: argparse.Namespace, root: Path) -> dict:
    """Write a checkpoint for ``key`` and time ``embed_cells`` on simulated cells."""
    from sceval.data import validate
    from sceval.models import EmbedContext, get_model
    from sceval.testing import tiny_checkpoint

    # the simulator needs a few cells per type and batch: simulate at least 40, keep the rest
    n = args.cells + args.warmup
    adata = _data(max(n, 40), args.genes, args.species, args.seed)[:n].copy()
    t0 = time.perf_counter()
    folder = tiny_checkpoint(key, root / key.replace(".", "_"), adata, size=args.size)
    write_s = time.perf_counter() - t0
    params: dict = {"checkpoint": str(folder), "batch_size": args.batch_size}
    if args.precision:
        params["precision"] = args.precision
    model = get_model(key, **params)
    rep = validate(adata, batch_key="batch", label_key="cell_type")
    ctx = EmbedContext(report=rep, seed=args.seed, batch_key="batch", device=args.device)
    model.check(adata, ctx)
    if args.warmup:
        model.embed_cells(adata[: args.warmup].copy(), ctx)
    data = adata[args.warmup :].copy()
    t0 = time.perf_counter()
    emb = np.asarray(model.embed_cells(data, ctx))
    sec = time.perf_counter() - t0
    return {
        "model": key,
        "size": args.size,
        "device": args.device,
        "precision": args.precision or "auto",
        "checkpoint_mb": round(_folder_mb(Path(folder)), 1),
        "dim": int(emb.shape[1]),
        "cells": int(emb.shape[0]),
        "seconds": round(sec, 3),
        "cells_per_s": round(emb.shape[0] / sec, 2),
        "write_checkpoint_s": round(write_s, 1),
        "finite": bool(np.isfinite(emb).all()),
    }


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, time each model, print the table."""
    from sceval.models import MODELS
    from sceval.testing import tiny_checkpoint_archs

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="", help="comma-separated model keys")
    p.add_argument("--all", action="store_true", help="every foundation model")
    p.add_argument("--size", choices=("tiny", "official"), default="tiny")
    p.add_argument("--cells", type=int, default=200)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--genes", type=int, default=2000)
    p.add_argument("--species", default="human")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", default="")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default="")
    args = p.parse_args(argv)
    archs = set(tiny_checkpoint_archs())
    if args.all:
        keys = [
            k
            for k in MODELS.keys()
            if MODELS.get(k).info.kind == "foundation" and k.split(".")[0] in archs
        ]
    else:
        keys = [k.strip() for k in args.models.split(",") if k.strip()]
    if not keys:
        p.error("name --models KEY[,KEY...] or --all")
    rows = []
    with tempfile.TemporaryDirectory(prefix="sceval-throughput-") as tmp:
        for key in keys:
            try:
                row = time_model(key, args, Path(tmp))
            except Exception as err:  # a benchmark reports and goes on
                row = {"model": key, "size": args.size, "error": f"{type(err).__name__}: {err}"}
            rows.append(row)
            print(json.dumps(row), flush=True)
    import pandas as pd

    print(pd.DataFrame(rows).to_string(index=False))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0 if all("error" not in r for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
