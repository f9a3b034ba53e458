"""Tiny scGPT checkpoints with random weights, in the official on-disk layout.

No pretrained weights are available offline, so tests build a checkpoint folder with the
files and state-dict key names of an official scGPT checkpoint (bowang-lab/scGPT,
``scgpt/model/model.py``: ``TransformerModel`` built with ``do_mvc=True``), filled with
seeded random numbers. The key list below is written out independently of
:mod:`sceval.models.scgpt`, so loading it there checks the names.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = ["official_args", "write_tiny_scgpt"]

_SPECIALS = ("<pad>", "<cls>", "<eoc>")


def official_args(
    *,
    d_model: int,
    nlayers: int,
    nhead: int,
    d_hid: int,
    n_bins: int,
    max_seq_len: int,
    fast_transformer: bool = True,
) -> dict[str, Any]:
    """The fields of an official ``args.json`` (the whole-human pretraining run), with the
    architecture fields set to the given values."""
    return {
        "data_source": "tiny",
        "save_dir": "tiny",
        "load_model": None,
        "n_hvg": None,
        "valid_size_or_ratio": 0.003,
        "dist_backend": "nccl",
        "grad_accu_steps": 1,
        "pad_token": "<pad>",
        "input_style": "binned",
        "input_emb_style": "continuous",
        "n_bins": n_bins,
        "max_seq_len": max_seq_len,
        "training_tasks": "both",
        "dist_url": "tcp://localhost:0",
        "mask_ratio": [0.25, 0.5, 0.75],
        "trunc_by_sample": True,
        "vocab_path": "vocab.json",
        "rank": 0,
        "batch_size": 32,
        "eval_batch_size": 64,
        "epochs": 6,
        "lr": 0.0001,
        "scheduler_interval": 100,
        "scheduler_factor": 0.99,
        "warmup_ratio_or_step": 10000.0,
        "no_cls": True,
        "no_cce": True,
        "fp16": True,
        "fast_transformer": fast_transformer,
        "nlayers": nlayers,
        "nheads": nhead,
        "embsize": d_model,
        "d_hid": d_hid,
        "dropout": 0.2,
        "n_layers_cls": 3,
        "log_interval": 9000,
        "save_interval": 27000,
        "mask_value": -1,
        "pad_value": -2,
        "USE_CLS": False,
        "USE_CCE": False,
        "MVC": True,
        "USE_GENERATIVE_TRAINING": True,
        "world_size": 1,
        "distributed": False,
        "local_rank": 0,
        "gpu": 0,
    }


def _official_shapes(
    ntoken: int, d: int, nlayers: int, d_hid: int, wqkv_naming: bool
) -> list[tuple[str, tuple[int, ...], str]]:
    """(key, shape, init kind) of an official scGPT state dict, in a fixed order."""
    keys: list[tuple[str, tuple[int, ...], str]] = []

    def linear(name: str, n_out: int, n_in: int, bias: bool = True) -> None:
        keys.append((f"{name}.weight", (n_out, n_in), f"linear:{n_in}"))
        if bias:
            keys.append((f"{name}.bias", (n_out,), f"linear:{n_in}"))

    def norm(name: str) -> None:
        keys.append((f"{name}.weight", (d,), "norm_weight"))
        keys.append((f"{name}.bias", (d,), "norm_bias"))

    keys.append(("encoder.embedding.weight", (ntoken, d), "embedding"))
    norm("encoder.enc_norm")
    linear("value_encoder.linear1", d, 1)
    linear("value_encoder.linear2", d, d)
    norm("value_encoder.norm")
    for i in range(nlayers):
        p = f"transformer_encoder.layers.{i}"
        if wqkv_naming:  # flash-attn FlashMHA (use_fast_transformer=True)
            linear(f"{p}.self_attn.Wqkv", 3 * d, d)
        else:  # torch.nn.MultiheadAttention
            keys.append((f"{p}.self_attn.in_proj_weight", (3 * d, d), f"linear:{d}"))
            keys.append((f"{p}.self_attn.in_proj_bias", (3 * d,), f"linear:{d}"))
        linear(f"{p}.self_attn.out_proj", d, d)
        linear(f"{p}.linear1", d_hid, d)
        linear(f"{p}.linear2", d, d_hid)
        norm(f"{p}.norm1")
        norm(f"{p}.norm2")
    # ExprDecoder.fc = Sequential(Linear, LeakyReLU, Linear, LeakyReLU, Linear)
    linear("decoder.fc.0", d, d)
    linear("decoder.fc.2", d, d)
    linear("decoder.fc.4", 1, d)
    # ClsDecoder(nlayers=3)._decoder = [Linear, ReLU, LayerNorm, Linear, ReLU, LayerNorm]
    linear("cls_decoder._decoder.0", d, d)
    norm("cls_decoder._decoder.2")
    linear("cls_decoder._decoder.3", d, d)
    norm("cls_decoder._decoder.5")
    linear("cls_decoder.out_layer", 1, d)
    # MVCDecoder(arch_style="inner product")
    linear("mvc_decoder.gene2query", d, d)
    linear("mvc_decoder.W", d, d, bias=False)
    return keys


def write_tiny_scgpt(
    folder: str | Path,
    *,
    genes: Iterable[str],
    d_model: int = 32,
    nlayers: int = 2,
    nhead: int = 4,
    d_hid: int = 64,
    n_bins: int = 51,
    max_seq_len: int = 64,
    seed: int = 0,
    wqkv_naming: bool = True,
    extra_keys: Iterable[str] = ("flag_encoder.weight",),
) -> Path:
    """Write a random-weight scGPT checkpoint folder in the official layout.

    Parameters
    ----------
    folder
        Created if needed; ``args.json``, ``vocab.json`` and ``best_model.pt`` are
        written into it.
    genes
        Gene symbols of the vocabulary (ids ``0..n-1`` in this order, duplicates
        dropped); ``<pad>``, ``<cls>``, ``<eoc>`` follow.
    d_model, nlayers, nhead, d_hid, n_bins, max_seq_len
        Architecture and tokenization fields of ``args.json``.
    seed
        Seed of the weights; the same seed gives the same weights in both namings.
    wqkv_naming
        ``True``: attention input projections named ``self_attn.Wqkv.{weight,bias}``
        (flash-attn checkpoints such as the released ones); ``False``: the torch names
        ``self_attn.in_proj_weight`` / ``in_proj_bias``.
    extra_keys
        Additional keys (random ``(2, d_model)`` tensors), e.g. the ``flag_encoder``
        of the whole-human checkpoint that loaders must ignore.

    Returns
    -------
    pathlib.Path
        The folder.
    """
    import torch

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    names = [g for g in dict.fromkeys(str(g) for g in genes) if g not in _SPECIALS]
    vocab = {g: i for i, g in enumerate(names)}
    for tok in _SPECIALS:
        vocab[tok] = len(vocab)
    args = official_args(
        d_model=d_model,
        nlayers=nlayers,
        nhead=nhead,
        d_hid=d_hid,
        n_bins=n_bins,
        max_seq_len=max_seq_len,
        fast_transformer=wqkv_naming,
    )
    gen = torch.Generator().manual_seed(int(seed))
    state: dict[str, Any] = {}
    for key, shape, kind in _official_shapes(len(vocab), d_model, nlayers, d_hid, wqkv_naming):
        if kind == "embedding":
            t = torch.rand(shape, generator=gen) * 2.0 - 1.0
        elif kind == "norm_weight":
            t = 1.0 + 0.1 * torch.randn(shape, generator=gen)
        elif kind == "norm_bias":
            t = 0.1 * torch.randn(shape, generator=gen)
        else:  # nn.Linear default scale, uniform in +-1/sqrt(fan_in)
            bound = 1.0 / math.sqrt(int(kind.split(":")[1]))
            t = (torch.rand(shape, generator=gen) * 2.0 - 1.0) * bound
        state[key] = t.contiguous()
    for key in extra_keys:
        state[str(key)] = torch.randn((2, d_model), generator=gen)
    with open(folder / "args.json", "w", encoding="utf-8") as fh:
        json.dump(args, fh, indent=2)
    with open(folder / "vocab.json", "w", encoding="utf-8") as fh:
        json.dump(vocab, fh, indent=2)
    torch.save(state, folder / "best_model.pt")
    return folder


def write_for_adata(folder: Path, adata: Any, *, seed: int = 0, size: str = "tiny") -> Path:
    """:func:`sceval.testing.tiny_checkpoint` writer: a vocabulary of ``adata``'s gene
    symbols; ``size="official"`` uses the released whole-human dimensions (512-d, 12
    layers, 8 heads, 1,200 tokens)."""
    symbols = adata.var["gene_symbol"] if "gene_symbol" in adata.var else adata.var_names
    dims: dict[str, Any] = {}
    if size == "official":
        dims = {"d_model": 512, "nlayers": 12, "nhead": 8, "d_hid": 512, "max_seq_len": 1200}
    return write_tiny_scgpt(folder, genes=[str(g) for g in symbols], seed=seed, **dims)
