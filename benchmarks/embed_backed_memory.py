"""Peak memory of embedding a backed h5ad with a foundation model, by number of cells.

Usage::

    python benchmarks/embed_backed_memory.py [--cells 50000,200000] [--genes 2000]
        [--model scgpt] [--chunk-size 20000]

For each size, writes a sparse count matrix (about 200 expressed genes per cell) to an
h5ad file, then embeds it in a fresh process from ``anndata.read_h5ad(path,
backed="r")`` with a tiny official-layout checkpoint, and prints wall time, cells/s and
peak resident memory (``VmHWM``) next to the size of the count matrix on disk. Flat
memory across sizes (apart from the n_cells x d output) is the target.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def write_data(path: Path, n_cells: int, n_genes: int, seed: int = 0) -> float:
    """Random sparse counts (cells x genes) with real gene symbols; returns MB of X."""
    import anndata as ad
    import pandas as pd
    import scipy.sparse as sp

    from sceval.data.genes import load_gene_table

    rng = np.random.default_rng(seed)
    table = load_gene_table("human")
    table = table[table["gene_type"].str.contains("protein")].drop_duplicates("symbol")
    genes = table["symbol"].to_numpy()[:n_genes]
    nnz = rng.poisson(200, size=n_cells).clip(1, n_genes)
    indptr = np.concatenate([[0], np.cumsum(nnz)]).astype(np.int64)
    indices = np.concatenate([np.sort(rng.choice(n_genes, k, replace=False)) for k in nnz])
    data = (rng.geometric(0.4, size=indices.size)).astype(np.float32)
    x = sp.csr_matrix((data, indices.astype(np.int32), indptr), shape=(n_cells, n_genes))
    obs = pd.DataFrame(index=[f"c{i}" for i in range(n_cells)])
    ad.AnnData(X=x, obs=obs, var=pd.DataFrame(index=genes)).write_h5ad(path)
    return (x.data.nbytes + x.indices.nbytes + x.indptr.nbytes) / 2**20


def _peak_rss_mb() -> float:
    """This process's peak resident memory: VmHWM (per address space, so unlike
    ``ru_maxrss`` it does not inherit the parent's peak across fork + exec)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def embed(path: str, model_key: str, ckpt: str, chunk_size: int) -> dict[str, float]:
    import anndata as ad

    from sceval.data import validate
    from sceval.models import EmbedContext, get_model

    t0 = time.perf_counter()
    adata = ad.read_h5ad(path, backed="r")
    ctx = EmbedContext(report=validate(adata), seed=0)
    model = get_model(model_key, checkpoint=ckpt, chunk_size=chunk_size, batch_size=256)
    emb = model.embed_streaming(adata, ctx)
    dt = time.perf_counter() - t0
    rss = _peak_rss_mb()
    return {
        "seconds": dt,
        "cells_per_s": emb.shape[0] / dt,
        "peak_rss_mb": rss,
        "output_mb": emb.nbytes / 2**20,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", default="50000,200000")
    ap.add_argument("--genes", type=int, default=2000)
    ap.add_argument("--model", default="scgpt")
    ap.add_argument("--chunk-size", type=int, default=20000)
    ap.add_argument("--_child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._child:
        print(json.dumps(embed(*args._child[:2], args._child[2], args.chunk_size)))
        return
    import anndata as ad

    from sceval.testing import tiny_checkpoint

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        print(
            f"{'cells':>8} {'X on disk MB':>12} {'seconds':>8} {'cells/s':>8} "
            f"{'peak RSS MB':>11} {'output MB':>9}"
        )
        ckpt = None
        for n in (int(s) for s in args.cells.split(",")):
            path = tmp / f"d{n}.h5ad"
            x_mb = write_data(path, n, args.genes)
            if ckpt is None:
                ckpt = str(
                    tiny_checkpoint(args.model, tmp / "ckpt", ad.read_h5ad(path, backed="r"))
                )
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--chunk-size",
                    str(args.chunk_size),
                    "--_child",
                    str(path),
                    args.model,
                    ckpt,
                ],
                check=True,
                capture_output=True,
                text=True,
            )
            r = json.loads(out.stdout.strip().splitlines()[-1])
            print(
                f"{n:>8} {x_mb:>12.0f} {r['seconds']:>8.1f} {r['cells_per_s']:>8.0f} "
                f"{r['peak_rss_mb']:>11.0f} {r['output_mb']:>9.1f}"
            )
            path.unlink()


if __name__ == "__main__":
    main()
