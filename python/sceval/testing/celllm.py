"""Tiny CellLM checkpoints with random weights, in the official on-disk layout.

The folder holds the files the OpenBioMed cell-type-classification setup reads
(PharMolix/OpenBioMed): ``cellLM.json`` (``configs/ctc/cellLM.json``: ``network.structure``
with the dimensions, ``ckpt_path`` and ``param_key``), ``checkpoint4_fixed.pth``
(``{'model_state_dict': ...}``, the state dict of ``PerformerLM_CellLM`` from
``open_biomed/models/cell/performer_celllm.py``) and ``zheng68k_hgnc.h5ad`` (the data whose
columns are the model's gene order; here one empty cell). Keys are listed by
:func:`sceval.testing.scbert.official_keys` (CellLM's state dict has the same names, with
``gene_num + 2`` gene2vec rows: ``<cls>`` all ones, ``<pad>`` zeros), independently of
:mod:`sceval.models._performer`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sceval.testing.scbert import _symbols, official_keys, random_state, write_gene_reference

__all__ = ["official_config", "write_for_adata", "write_tiny_celllm"]

#: Dimensions of the tiny model used in tests (``max_seq_len`` below the expressed-gene
#: count of many simulated cells, so truncation is exercised).
TINY = {"dim": 32, "depth": 2, "heads": 2, "max_seq_len": 300}
#: The released model (``configs/ctc/cellLM.json``).
OFFICIAL = {"dim": 512, "depth": 10, "heads": 16, "max_seq_len": 6000}
OFFICIAL_GENE_NUM = 19379


def official_config(*, dim: int, depth: int, heads: int, max_seq_len: int, gene_num: int) -> dict:
    """The content of an official ``cellLM.json`` with the given dimensions."""
    return {
        "model": "celllm",
        "data": {
            "cell": {
                "modality": ["structure"],
                "featurizer": {"structure": {"name": "Fullseq"}},
            }
        },
        "network": {
            "structure": {
                "name": "celllm",
                "num_tokens": 8,
                "dim": dim,
                "depth": depth,
                "max_seq_len": max_seq_len,
                "gene_num": gene_num,
                "heads": heads,
                "local_attn_heads": 0,
                "g2v_position_emb": True,
                "gene2vec_path": "../assets/gene2vec_19379_512.npy",
                "ckpt_path": "../ckpts/cell_ckpts/celllm/checkpoint4_fixed.pth",
                "param_key": "model_state_dict",
            },
            "pred_head": {"hidden_size": [512, 128], "dropout": 0},
        },
    }


def write_tiny_celllm(
    folder: str | Path,
    *,
    genes: list[str],
    dim: int = TINY["dim"],
    depth: int = TINY["depth"],
    heads: int = TINY["heads"],
    max_seq_len: int = TINY["max_seq_len"],
    seed: int = 0,
) -> Path:
    """Write a random-weight CellLM checkpoint folder in the official layout.

    Parameters
    ----------
    folder
        Created if needed.
    genes
        The model's gene order (``var_names`` of ``zheng68k_hgnc.h5ad``; duplicates
        dropped); ``gene_num`` is its length.
    dim, depth, heads, max_seq_len
        Architecture fields of ``cellLM.json`` (``dim_head`` 64, ``num_tokens`` 8).
    seed
        Seed of the weights.
    """
    import torch

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    names = list(dict.fromkeys(str(g) for g in genes))
    keys = official_keys(num_tokens=8, dim=dim, depth=depth, heads=heads, n_genes=len(names) + 1)
    state = random_state(keys, seed, extra_rows=2)
    torch.save({"model_state_dict": state}, folder / "checkpoint4_fixed.pth")
    write_gene_reference(folder / "zheng68k_hgnc.h5ad", names)
    config = official_config(
        dim=dim, depth=depth, heads=heads, max_seq_len=max_seq_len, gene_num=len(names)
    )
    with open(folder / "cellLM.json", "w", encoding="utf-8") as fh:
        json.dump(config, fh, indent=4)
    return folder


def write_for_adata(folder: Path, adata: Any, *, seed: int = 0, size: str = "tiny") -> Path:
    """:func:`sceval.testing.tiny_checkpoint` writer: a gene order of ``adata``'s symbols.

    ``size="official"``: the released dimensions (512-d, 10 layers, 16 heads, 6,000
    tokens) and exactly 19,379 genes (``adata``'s symbols, then filler names).
    """
    genes = list(dict.fromkeys(_symbols(adata)))
    if size == "official":
        genes = genes[:OFFICIAL_GENE_NUM]
        genes += [f"SCEVAL_FILLER_{i}" for i in range(OFFICIAL_GENE_NUM - len(genes))]
        return write_tiny_celllm(folder, genes=genes, seed=seed, **OFFICIAL)
    return write_tiny_celllm(folder, genes=genes, seed=seed)
