"""Throughput of scGPT zero-shot cell embeddings: sceval's batching vs the official batching.

Simulates cells with a realistic spread of expressed genes (about 150 to 2,000 non-zero
genes of 3,000, so some cells are shorter and some longer than ``max_seq_len``), writes a
random-weight scGPT checkpoint in the official layout (no pretrained weights are needed
for timing) and embeds the cells twice with the same torch module and the same tokens:

``official``
    The batching of ``scgpt.tasks.cell_emb.get_batch_cell_embeddings``: consecutive
    cells, each batch padded to its longest cell (capped at ``max_seq_len``; with real
    data nearly every batch holds a cell that long), the full transformer output, then
    position 0.
``sceval``
    ``get_model("scgpt").embed_cells``: cells sorted by length so each batch is padded
    to its own longest cell only, and the last layer evaluated for ``<cls>`` only.

Both timings include gene matching and tokenization. The script prints cells/s of
each, their ratio and the largest absolute difference between the two embeddings.

Usage::

    python benchmarks/embed_throughput_scgpt.py [--n-cells 512] [--d-model 128]
        [--nlayers 4] [--max-seq-len 1200] [--device cuda --precision bf16]

This is a script, not a test. The official package itself cannot be installed here
(it needs torchtext); note that on CUDA it runs attention through flash-attn's unpadded
kernels, which skip padded positions in attention but not in the linear layers.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from typing import Any

import numpy as np

from sceval.data import simulate, validate
from sceval.models import EmbedContext, get_model
from sceval.models.foundation import inference_context
from sceval.models.scgpt import ScGPTTokenizer, build_tokenizer
from sceval.testing.scgpt import write_tiny_scgpt


def official_batching(
    model: Any, tok: ScGPTTokenizer, batch_size: int, device: str, precision: str
) -> np.ndarray:
    """Embeddings with the official loop: consecutive cells, padded batches, full output."""
    import torch

    n = tok.n_cells
    out = np.zeros((n, model.config.d_model), dtype=np.float32)
    with inference_context(device, precision):
        for start in range(0, n, batch_size):
            idx = np.arange(start, min(start + batch_size, n))
            genes, values, _ = tok.batch(idx)
            src = torch.from_numpy(genes).to(device)
            pad_mask = src.eq(tok.pad_id)  # official: input_gene_ids.eq(vocab[pad_token])
            output = model.encode(src, torch.from_numpy(values).to(device), pad_mask)
            out[idx] = output[:, 0].float().cpu().numpy()
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n-cells", type=int, default=512)
    p.add_argument("--n-genes", type=int, default=3000)
    p.add_argument("--d-model", type=int, default=128)
    p.add_argument("--nlayers", type=int, default=4)
    p.add_argument("--nhead", type=int, default=8)
    p.add_argument("--d-hid", type=int, default=None, help="default: d_model (as released)")
    p.add_argument("--max-seq-len", type=int, default=1200)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", default="fp32", choices=["auto", "fp32", "bf16", "fp16"])
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()

    import torch

    adata = simulate(
        n_cells=a.n_cells,
        n_genes=a.n_genes,
        n_batches=2,
        library_size=2500.0,
        library_sd=0.8,
        seed=a.seed,
    )
    nnz = adata.layers["counts"].getnnz(axis=1)
    folder = write_tiny_scgpt(
        tempfile.mkdtemp(prefix="scgpt_bench_"),
        genes=list(adata.var_names),
        d_model=a.d_model,
        nlayers=a.nlayers,
        nhead=a.nhead,
        d_hid=a.d_hid or a.d_model,
        max_seq_len=a.max_seq_len,
        seed=a.seed,
    )
    ctx = EmbedContext(report=validate(adata), seed=a.seed, device=a.device)
    model = get_model(
        "scgpt",
        checkpoint=str(folder),
        batch_size=a.batch_size,
        precision=a.precision,
        max_length=a.max_seq_len,
    )
    net = model._load(ctx).model  # the module both paths use (loaded once, not timed)
    vocab = model._load(ctx).vocab

    # warm-up (CUDA context, kernel selection) on a few cells, not timed
    warm = adata[: min(64, adata.n_obs)].copy()
    wctx = EmbedContext(report=validate(warm), seed=a.seed, device=a.device)
    model.embed_cells(warm, wctx)
    wtok, _ = build_tokenizer(warm, wctx.report, vocab, net.config, max_length=a.max_seq_len)
    official_batching(net, wtok, a.batch_size, a.device, a.precision)

    def sync() -> None:
        if a.device.startswith("cuda"):
            torch.cuda.synchronize()

    sync()
    t0 = time.perf_counter()
    tok, _ = build_tokenizer(
        adata, ctx.report, vocab, net.config, max_length=a.max_seq_len, seed=ctx.seed
    )
    ref = official_batching(net, tok, a.batch_size, a.device, a.precision)
    sync()
    t_official = time.perf_counter() - t0

    t0 = time.perf_counter()
    ours = model.embed_cells(adata, ctx)
    sync()
    t_sceval = time.perf_counter() - t0

    lengths = tok.lengths
    card = torch.cuda.get_device_name() if a.device.startswith("cuda") else "CPU"
    print(
        f"device {a.device} ({card}, {torch.get_num_threads()} CPU threads), precision "
        f"{a.precision}, torch {torch.__version__}"
    )
    print(
        f"checkpoint: d_model {a.d_model}, {a.nlayers} layers, {a.nhead} heads, d_hid "
        f"{a.d_hid or a.d_model}, max_seq_len {a.max_seq_len}; batch size {a.batch_size}"
    )
    print(
        f"{a.n_cells} cells x {a.n_genes} genes; non-zero genes per cell: min {nnz.min()}, "
        f"median {int(np.median(nnz))}, max {nnz.max()}; tokens per cell: mean "
        f"{lengths.mean():.0f}, {100 * np.mean(lengths == a.max_seq_len):.0f}% at max_seq_len"
    )
    print(f"official batching (pad per consecutive batch): {a.n_cells / t_official:9.1f} cells/s")
    print(f"sceval (sorted by length, <cls>-only last layer): {a.n_cells / t_sceval:6.1f} cells/s")
    print(f"speed-up: {t_official / t_sceval:.2f}x")
    print(f"max |difference| of the embeddings: {np.abs(ours - ref).max():.2e}")


if __name__ == "__main__":
    main()
