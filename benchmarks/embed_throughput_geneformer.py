"""Geneformer cell-embedding throughput: sceval's length-sorted batching vs pad-to-max.

Simulates cells with a realistic spread of expressed genes (log-normal, median
``--genes-median``, clipped to 200..8,000, over a 20,000-gene vocabulary), writes a
random-weight checkpoint of the chosen size in the official layout, tokenizes the cells
as Geneformer does and embeds them three ways with the same model:

``sorted``
    sceval: cells sorted by length, each batch padded to its own longest cell.
``unsorted``
    data order, each batch padded to its own longest cell.
``pad-max``
    data order, every cell padded to the model's input size (2,048 for V1, 4,096 for V2),
    as code that pads to ``max_position_embeddings`` does.

and prints cells/s for each (best of ``--repeats`` interleaved runs), the ratio to
``pad-max`` and the largest absolute difference between the embeddings (the three must
agree up to float error).

What the official code does: ``EmbExtractor.extract_embs`` (geneformer/emb_extractor.py)
first calls ``downsample_and_sort`` (geneformer/perturber_utils.py), which sorts the
cells by length, longest first, and ``get_embs`` pads each forward batch to that batch's
longest cell (``pad_tensor_list(..., max_len, ...)`` with ``max_len`` the batch maximum).
So the official extractor already batches like ``sorted``; the ``pad-max`` column is a
naive baseline, not the official one. (It also samples 1,000 cells by default and uses
eager fp32 unless the model was loaded otherwise; sceval embeds all cells, uses SDPA
attention, optional bf16 autocast on CUDA, and stops after the requested layer.)

Usage::

    python benchmarks/embed_throughput_geneformer.py [--size v1-10m] [--n-cells 64]
        [--batch-size 16] [--device cpu|cuda] [--precision fp32|bf16|fp16|auto]

This is a script, not a test.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from sceval.models.geneformer import (
    build_bert,
    encode_cells,
    load_checkpoint,
    load_weights,
    tokenize_counts,
)
from sceval.testing.geneformer import write_tiny_geneformer

#: (version, hidden, layers, heads, intermediate, input size)
SIZES = {
    "tiny": ("v2", 64, 2, 4, 128, 4096),
    "v1-10m": ("v1", 256, 6, 4, 512, 2048),
    "v2-104m": ("v2", 768, 12, 12, 3072, 4096),
}
N_VOCAB = 20_000


def simulate_counts(
    n_cells: int, n_genes: int, genes_median: float, seed: int = 0
) -> sp.csr_matrix:
    """Sparse counts with a log-normal number of expressed genes per cell."""
    rng = np.random.default_rng(seed)
    n_expr = np.clip(rng.lognormal(np.log(genes_median), 0.6, n_cells), 200, 8000).astype(int)
    popularity = rng.dirichlet(np.full(n_genes, 0.3))  # some genes expressed far more often
    rows, cols, vals = [], [], []
    for i, k in enumerate(n_expr):
        genes = rng.choice(n_genes, size=min(k, n_genes), replace=False, p=popularity)
        rows.append(np.full(genes.size, i))
        cols.append(genes)
        vals.append(1 + rng.negative_binomial(1, 0.3, genes.size))
    return sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
        shape=(n_cells, n_genes),
        dtype=np.float32,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", choices=sorted(SIZES), default="v1-10m")
    ap.add_argument("--n-cells", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--genes-median", type=float, default=1500.0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default="fp32", choices=["auto", "fp32", "bf16", "fp16"])
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    ap.add_argument("--repeats", type=int, default=2, help="timed runs per mode (best kept)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    version, hidden, layers, heads, inter, max_len = SIZES[args.size]
    vocab = [f"ENSG{10_000_000_000 + i:011d}" for i in range(N_VOCAB)]
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        folder = write_tiny_geneformer(
            Path(tmp) / "ckpt",
            ensembl_ids=vocab,
            version=version,
            hidden=hidden,
            layers=layers,
            heads=heads,
            intermediate=inter,
            max_len=max_len,
            seed=args.seed,
            gene_names=vocab,
        )
        ck = load_checkpoint(folder)
        model = build_bert(ck.config)
        load_weights(model, ck.state_dict())
        model = model.to(args.device).eval()
        t_setup = time.perf_counter() - t0

        counts = simulate_counts(args.n_cells, N_VOCAB, args.genes_median, args.seed)
        t0 = time.perf_counter()
        toks = tokenize_counts(
            counts, vocab, ck.dicts, special_tokens=ck.special_tokens, input_size=ck.input_size
        )
        t_tok = time.perf_counter() - t0
        lens = toks.lengths
        print(
            f"model {args.size} ({version}, {hidden}-d, {layers} layers, input {max_len}); "
            f"{args.n_cells} cells, tokens per cell median {int(np.median(lens))}, "
            f"min {lens.min()}, max {lens.max()} ({(lens == max_len).mean():.0%} truncated); "
            f"device {args.device}, precision {args.precision}, batch {args.batch_size}"
        )
        print(f"setup {t_setup:.1f} s; tokenization {t_tok:.2f} s")

        def run(padding: str) -> tuple[np.ndarray, float]:
            kw = {
                "special_tokens": ck.special_tokens,
                "batch_size": args.batch_size,
                "device": args.device,
                "precision": args.precision,
                "pad_id": ck.dicts.pad_id,
                "padding": padding,
            }
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            t = time.perf_counter()
            emb = encode_cells(model, toks, **kw)
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            return emb, time.perf_counter() - t

        modes = ("sorted", "unsorted", "max")
        warm = type(toks)(ids=toks.ids[: toks.offsets[1]], offsets=toks.offsets[:2])
        for p in modes:  # warm-up (kernels, allocator)
            encode_cells(
                model,
                warm,
                special_tokens=ck.special_tokens,
                device=args.device,
                precision=args.precision,
                padding=p,
            )
        results: dict[str, tuple[np.ndarray, float]] = {}
        for _ in range(max(1, args.repeats)):  # interleaved, best time kept
            for p in modes:
                emb, secs = run(p)
                if p not in results or secs < results[p][1]:
                    results[p] = (emb, secs)
        base = results["max"][1]
        ref = results["max"][0]
        names = {"sorted": "sorted (sceval)", "unsorted": "unsorted", "max": "pad-max"}
        for p, (emb, secs) in results.items():
            diff = float(np.abs(emb - ref).max())
            print(
                f"{names[p]:>16}: {args.n_cells / secs:9.1f} cells/s  ({secs:7.2f} s)  "
                f"x{base / secs:5.2f} vs pad-max  max|diff| vs pad-max {diff:.2e}"
            )


if __name__ == "__main__":
    main()
