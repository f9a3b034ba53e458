"""Tiny scBERT checkpoints with random weights, in the official on-disk layout.

The folder holds the files of the official release (TencentAILabHealthcare/scBERT):
``panglao_pretrained.pth`` (``{'epoch', 'model_state_dict', ...}`` as written by
``utils.save_ckpt``; the state dict of ``PerformerLM`` from
``performer_pytorch/performer_pytorch.py``) and ``panglao_10000.h5ad`` (the reference whose
``var_names`` are the model's gene order). A tiny model also gets ``scbert.json`` in the
format of OpenBioMed's ``configs/ctc/scbert.json`` with its dimensions; the official size
writes none (the loader then uses the official dimensions). The key list is written here
independently of :mod:`sceval.models._performer`, so loading checks the names.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

__all__ = ["official_keys", "write_for_adata", "write_gene_reference", "write_tiny_scbert"]

#: Dimensions of the tiny model used in tests.
TINY = {"dim": 32, "depth": 2, "heads": 2}
#: The released model (``predict.py``).
OFFICIAL = {"dim": 200, "depth": 6, "heads": 10}
OFFICIAL_GENE_NUM = 16906


def official_keys(
    *, num_tokens: int, dim: int, depth: int, heads: int, n_genes: int, dim_head: int = 64
) -> list[tuple[str, tuple[int, ...], str]]:
    """``(key, shape, kind)`` of every entry of an official scBERT ``model_state_dict``."""
    inner = heads * dim_head
    nb = int(dim_head * math.log(dim_head))
    keys: list[tuple[str, tuple[int, ...], str]] = [
        ("token_emb.weight", (num_tokens, dim), "embedding"),
        ("pos_emb.emb.weight", (n_genes + 1, dim), "gene2vec"),
        ("performer.calls_since_last_redraw", (), "counter"),
    ]
    for i in range(depth):
        a = f"performer.net.layers.{i}.0"
        f = f"performer.net.layers.{i}.1"
        keys += [
            (f"{a}.norm.weight", (dim,), "norm_weight"),
            (f"{a}.norm.bias", (dim,), "norm_bias"),
            (f"{a}.fn.fast_attention.projection_matrix", (nb, dim_head), "projection"),
            (f"{a}.fn.to_q.weight", (inner, dim), f"linear:{dim}"),
            (f"{a}.fn.to_k.weight", (inner, dim), f"linear:{dim}"),
            (f"{a}.fn.to_v.weight", (inner, dim), f"linear:{dim}"),
            (f"{a}.fn.to_out.weight", (dim, inner), f"linear:{inner}"),
            (f"{a}.fn.to_out.bias", (dim,), f"linear:{inner}"),
            (f"{f}.norm.weight", (dim,), "norm_weight"),
            (f"{f}.norm.bias", (dim,), "norm_bias"),
            (f"{f}.fn.fn.w1.weight", (4 * dim, dim), f"linear:{dim}"),
            (f"{f}.fn.fn.w1.bias", (4 * dim,), f"linear:{dim}"),
            (f"{f}.fn.fn.w2.weight", (dim, 4 * dim), f"linear:{4 * dim}"),
            (f"{f}.fn.fn.w2.bias", (dim,), f"linear:{4 * dim}"),
        ]
    keys += [
        ("norm.weight", (dim,), "norm_weight"),
        ("norm.bias", (dim,), "norm_bias"),
        ("to_out.weight", (num_tokens, dim), f"linear:{dim}"),
        ("to_out.bias", (num_tokens,), f"linear:{dim}"),
    ]
    return keys


def random_state(
    keys: list[tuple[str, tuple[int, ...], str]], seed: int, *, extra_rows: int = 1
) -> dict[str, Any]:
    """Seeded random tensors for ``keys`` (gene2vec rows float64; the last ``extra_rows``
    rows of the gene2vec table as the official ones: zeros, or for CellLM ones then
    zeros)."""
    import torch

    gen = torch.Generator().manual_seed(int(seed))
    state: dict[str, Any] = {}
    for key, shape, kind in keys:
        if kind == "embedding":
            t = torch.randn(shape, generator=gen)
        elif kind == "gene2vec":
            t = 0.5 * torch.randn(shape, generator=gen, dtype=torch.float64)
            t[-1] = 0.0
            if extra_rows == 2:
                t[-2] = 1.0
        elif kind == "counter":
            t = torch.tensor(0)
        elif kind == "norm_weight":
            t = 1.0 + 0.1 * torch.randn(shape, generator=gen)
        elif kind == "norm_bias":
            t = 0.1 * torch.randn(shape, generator=gen)
        elif kind == "projection":
            rows, cols = shape
            blocks = []
            for _ in range(math.ceil(rows / cols)):
                q, _r = torch.linalg.qr(torch.randn(cols, cols, generator=gen))
                blocks.append(q.t())
            mult = torch.randn(rows, cols, generator=gen).norm(dim=1)
            t = torch.diag(mult) @ torch.cat(blocks)[:rows]
        else:  # nn.Linear default scale, uniform in +-1/sqrt(fan_in)
            bound = 1.0 / math.sqrt(int(kind.split(":")[1]))
            t = (torch.rand(shape, generator=gen) * 2.0 - 1.0) * bound
        state[key] = t.contiguous()
    return state


def write_gene_reference(path: Path, genes: list[str]) -> Path:
    """An ``.h5ad`` whose ``var_names`` are ``genes`` (one empty cell), like the official
    reference files whose ``var_names`` give a model's gene order."""
    import anndata as ad
    import numpy as np
    import pandas as pd
    import scipy.sparse as sp

    adata = ad.AnnData(
        X=sp.csr_matrix((1, len(genes)), dtype=np.float32),
        obs=pd.DataFrame(index=["cell0"]),
        var=pd.DataFrame(index=pd.Index(genes, dtype=object)),
    )
    adata.write_h5ad(path)
    return path


def write_tiny_scbert(
    folder: str | Path,
    *,
    genes: list[str],
    dim: int = TINY["dim"],
    depth: int = TINY["depth"],
    heads: int = TINY["heads"],
    seed: int = 0,
    write_config: bool = True,
) -> Path:
    """Write a random-weight scBERT checkpoint folder in the official layout.

    Parameters
    ----------
    folder
        Created if needed.
    genes
        The gene order (``var_names`` of ``panglao_10000.h5ad``; duplicates dropped).
    dim, depth, heads
        Architecture (``dim_head`` is 64 as in every scBERT; ``num_tokens`` 7).
    seed
        Seed of the weights.
    write_config
        Write ``scbert.json`` (OpenBioMed format) with these dimensions; needed unless
        they are the official ones with 16,906 genes.
    """
    import torch

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    names = list(dict.fromkeys(str(g) for g in genes))
    keys = official_keys(num_tokens=7, dim=dim, depth=depth, heads=heads, n_genes=len(names))
    state = random_state(keys, seed)
    torch.save(
        {"epoch": 1, "model_state_dict": state, "losses": 0.0},
        folder / "panglao_pretrained.pth",
    )
    write_gene_reference(folder / "panglao_10000.h5ad", names)
    if write_config:
        config = {
            "model": "scbert",
            "network": {
                "structure": {
                    "name": "scbert",
                    "num_tokens": 7,
                    "dim": dim,
                    "depth": depth,
                    "max_seq_len": len(names) + 1,
                    "gene_num": len(names),
                    "heads": heads,
                    "local_attn_heads": 0,
                    "g2v_position_emb": True,
                    "gene2vec_path": "../assets/gene2vec_16906.npy",
                    "ckpt_path": "../ckpts/cell_ckpts/scbert/panglao_pretrain.pth",
                    "param_key": "model_state_dict",
                }
            },
        }
        with open(folder / "scbert.json", "w", encoding="utf-8") as fh:
            json.dump(config, fh, indent=4)
    return folder


def _symbols(adata: Any) -> list[str]:
    col = adata.var["gene_symbol"] if "gene_symbol" in adata.var else adata.var_names
    return [str(g) for g in col]


def write_for_adata(folder: Path, adata: Any, *, seed: int = 0, size: str = "tiny") -> Path:
    """:func:`sceval.testing.tiny_checkpoint` writer: a gene order of ``adata``'s symbols.

    ``size="official"``: the released dimensions (200-d, 6 layers, 10 heads) and exactly
    16,906 genes (``adata``'s symbols, then filler names), with no ``scbert.json``.
    """
    genes = list(dict.fromkeys(_symbols(adata)))
    if size == "official":
        genes = genes[:OFFICIAL_GENE_NUM]
        genes += [f"SCEVAL_FILLER_{i}" for i in range(OFFICIAL_GENE_NUM - len(genes))]
        return write_tiny_scbert(folder, genes=genes, seed=seed, write_config=False, **OFFICIAL)
    return write_tiny_scbert(folder, genes=genes, seed=seed)
