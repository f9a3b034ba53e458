"""scFoundation checkpoints with random weights, in the official on-disk layout.

The official weights (``models.ckpt``) are not available offline, so tests build a folder
with the files, dictionary structure and state-dict key names of the released checkpoint
(biomap-research/scFoundation: ``model/load.py:load_model_frommmf`` reads
``ckpt[key]['config']`` and ``ckpt[key]['state_dict']`` with Lightning ``model.`` prefixes
for ``key`` in ``'cell'``, ``'rde'``, ``'gene'``; the module tree is
``model/pretrainmodels/mae_autobin.py`` + ``transformer.py`` + ``performer.py``), filled
with seeded random numbers. The key list below is written out independently of
:mod:`sceval.models.scfoundation`, so loading it there checks the names.

The gene order is always 19,264 genes long (the format fixes it): the data's gene symbols
plus filler names, sorted like the official ``OS_scRNA_gene_index.19264.tsv``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

__all__ = ["OFFICIAL_SIZE", "TINY_SIZE", "official_config", "write_for_adata", "write_scfoundation"]

N_GENES = 19264

#: Released dimensions (``training_hyperparameter.txt`` and the printed config).
OFFICIAL_SIZE = {
    "enc_dim": 768,
    "enc_depth": 12,
    "enc_heads": 12,
    "dec_dim": 512,
    "dec_depth": 6,
    "dec_heads": 8,
    "dec_dim_head": 64,
    "bin_num": 100,
}
#: Test dimensions.
TINY_SIZE = {
    "enc_dim": 16,
    "enc_depth": 2,
    "enc_heads": 2,
    "dec_dim": 8,
    "dec_depth": 2,
    "dec_heads": 2,
    "dec_dim_head": 4,
    "bin_num": 10,
}


def official_config(
    *,
    enc_dim: int,
    enc_depth: int,
    enc_heads: int,
    dec_dim: int,
    dec_depth: int,
    dec_heads: int,
    dec_dim_head: int,
    bin_num: int,
    seq_len: int = N_GENES + 2,
) -> dict[str, Any]:
    """A sub-checkpoint ``config`` as the released file stores it (Lightning/OmegaConf
    style: ``model``, ``model_config.mae_autobin``, ``dataset_config.rnaseq``)."""
    model_cfg = {
        "mask_gene_name": False,
        "gene_num": seq_len,
        "seq_len": seq_len,
        "encoder": {
            "hidden_dim": enc_dim,
            "depth": enc_depth,
            "heads": enc_heads,
            "dim_head": 64,
            "seq_len": seq_len,
            "module_type": "transformer",
            "norm_first": False,
        },
        "decoder": {
            "hidden_dim": dec_dim,
            "depth": dec_depth,
            "heads": dec_heads,
            "dim_head": dec_dim_head,
            "module_type": "performer",
            "seq_len": seq_len,
            "norm_first": False,
        },
        "n_class": 104,
        "pad_token_id": 103,
        "mask_token_id": 102,
        "bin_num": bin_num,
        "bin_alpha": 1.0,
        "rawcount": True,
        "model": "mae_autobin",
    }
    rnaseq = {
        "num_tokens": 13,
        "train_data_path": None,
        "isPanA": False,
        "isPlanA1": False,
        "max_files_to_load": 5,
        "bin_type": "auto_bin",
        "bin_num": bin_num,
        "value_mask_prob": 0.3,
        "zero_mask_prob": 0.03,
        "replace_prob": 0.8,
        "random_token_prob": 0.1,
        "mask_ignore_token_ids": [0],
        "decoder_add_zero": True,
        "mae_encoder_max_seq_len": 15000,
        "isPlanA": False,
        "mask_prob": 0.3,
    }
    return {
        "model": "mae_autobin",
        "model_config": {"mae_autobin": model_cfg},
        "dataset_config": {"rnaseq": rnaseq},
    }


def _official_shapes(
    *,
    enc_dim: int,
    enc_depth: int,
    dec_dim: int,
    dec_depth: int,
    dec_heads: int,
    dec_dim_head: int,
    bin_num: int,
    seq_len: int,
    **_: Any,
) -> dict[str, tuple[int, ...]]:
    """Every tensor of ``MaeAutobin`` (transformer encoder, Performer decoder) by name."""
    d, dd, inner = enc_dim, dec_dim, dec_heads * dec_dim_head
    nb = int(dec_dim_head * math.log(dec_dim_head))
    s: dict[str, tuple[int, ...]] = {
        "token_emb.mlp.weight": (bin_num, 1),
        "token_emb.mlp.bias": (bin_num,),
        "token_emb.mlp2.weight": (bin_num, bin_num),
        "token_emb.mlp2.bias": (bin_num,),
        "token_emb.emb.weight": (bin_num, d),
        "token_emb.emb_mask.weight": (1, d),
        "token_emb.emb_pad.weight": (1, d),
        "pos_emb.weight": (seq_len + 1, d),
    }
    for i in range(enc_depth):
        p = f"encoder.transformer_encoder.{i}."
        s[p + "self_attn.in_proj_weight"] = (3 * d, d)
        s[p + "self_attn.in_proj_bias"] = (3 * d,)
        s[p + "self_attn.out_proj.weight"] = (d, d)
        s[p + "self_attn.out_proj.bias"] = (d,)
        s[p + "linear1.weight"] = (4 * d, d)
        s[p + "linear1.bias"] = (4 * d,)
        s[p + "linear2.weight"] = (d, 4 * d)
        s[p + "linear2.bias"] = (d,)
        for n in ("norm1", "norm2"):
            s[p + n + ".weight"] = (d,)
            s[p + n + ".bias"] = (d,)
    s["encoder.norm.weight"] = (d,)
    s["encoder.norm.bias"] = (d,)
    for i in range(dec_depth):
        a = f"decoder.performer.net.layers.{i}.0."
        f = f"decoder.performer.net.layers.{i}.1."
        s[a + "norm.weight"] = (dd,)
        s[a + "norm.bias"] = (dd,)
        s[a + "fn.fast_attention.projection_matrix"] = (nb, dec_dim_head)
        for n in ("to_q", "to_k", "to_v"):
            s[a + f"fn.{n}.weight"] = (inner, dd)
            s[a + f"fn.{n}.bias"] = (inner,)
        s[a + "fn.to_out.weight"] = (dd, inner)
        s[a + "fn.to_out.bias"] = (dd,)
        s[f + "norm.weight"] = (dd,)
        s[f + "norm.bias"] = (dd,)
        s[f + "fn.fn.w1.weight"] = (4 * dd, dd)
        s[f + "fn.fn.w1.bias"] = (4 * dd,)
        s[f + "fn.fn.w2.weight"] = (dd, 4 * dd)
        s[f + "fn.fn.w2.bias"] = (dd,)
    s["decoder.performer.calls_since_last_redraw"] = ()
    s["decoder.norm.weight"] = (dd,)
    s["decoder.norm.bias"] = (dd,)
    s["decoder_embed.weight"] = (dd, d)
    s["decoder_embed.bias"] = (dd,)
    s["norm.weight"] = (dd,)
    s["norm.bias"] = (dd,)
    s["to_final.weight"] = (1, dd)
    s["to_final.bias"] = (1,)
    return s


def _random_state(shapes: dict[str, tuple[int, ...]], seed: int) -> dict[str, Any]:
    import torch

    g = torch.Generator().manual_seed(int(seed))
    out: dict[str, Any] = {}
    for name, shape in shapes.items():
        if name.endswith("calls_since_last_redraw"):
            out[name] = torch.tensor(0)
        elif name.endswith("projection_matrix"):
            rows, cols = shape
            blocks = []
            for _ in range(math.ceil(rows / cols)):
                q, _r = torch.linalg.qr(torch.randn(cols, cols, generator=g))
                blocks.append(q.t())
            norms = torch.randn(rows, cols, generator=g).norm(dim=1)
            out[name] = torch.diag(norms) @ torch.cat(blocks)[:rows]
        elif "norm" in name.split(".")[-2] and name.endswith(".weight"):
            out[name] = 1.0 + 0.1 * torch.randn(shape, generator=g)
        elif name.endswith(".bias") or len(shape) == 1:
            out[name] = 0.1 * torch.randn(shape, generator=g)
        elif name.startswith(("token_emb.emb", "pos_emb")):
            out[name] = torch.randn(shape, generator=g)
        else:
            out[name] = torch.randn(shape, generator=g) / math.sqrt(shape[-1])
    return out


def write_scfoundation(
    folder: Path, genes: list[str], *, seed: int = 0, size: dict[str, int] | None = None
) -> Path:
    """Write ``models.ckpt`` (sub-checkpoints ``cell``, ``rde``, ``gene`` with different
    seeded weights) and ``OS_scRNA_gene_index.19264.tsv`` listing ``genes``."""
    import torch

    dims = dict(TINY_SIZE if size is None else size)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    seq_len = len(genes) + 2
    shapes = _official_shapes(**dims, seq_len=seq_len)
    ckpt = {}
    for j, key in enumerate(("gene", "cell", "rde")):
        state = _random_state(shapes, seed * 101 + j)
        ckpt[key] = {
            "config": official_config(**dims, seq_len=seq_len),
            "state_dict": {f"model.{k}": v for k, v in state.items()},
        }
    torch.save(ckpt, folder / "models.ckpt")
    lines = ["gene_name\tindex"] + [f"{g}\t{i}" for i, g in enumerate(genes)]
    (folder / "OS_scRNA_gene_index.19264.tsv").write_text("\n".join(lines) + "\n")
    return folder


def gene_list_for(symbols: list[str], n_genes: int = N_GENES) -> list[str]:
    """``n_genes`` sorted unique symbols: ``symbols`` plus ``FILL#####`` names."""
    real = sorted({str(s) for s in symbols if s and str(s) == str(s).strip()})[:n_genes]
    fill = [f"FILL{i:05d}" for i in range(n_genes)]
    taken = set(real)
    extra = [f for f in fill if f not in taken][: n_genes - len(real)]
    return sorted(real + extra)


def write_for_adata(folder: Path, adata: Any, *, seed: int = 0, size: str = "tiny") -> Path:
    """A checkpoint whose gene list covers ``adata``'s gene symbols (``var['gene_symbol']``
    when present, else ``var_names``); ``size="official"`` uses the released dimensions
    (about 1.4 GB on disk: three 120M-parameter sub-checkpoints)."""
    if size not in ("tiny", "official"):
        msg = f"size must be 'tiny' or 'official', got {size!r}"
        raise ValueError(msg)
    if "gene_symbol" in adata.var.columns:
        symbols = [str(s) for s in adata.var["gene_symbol"] if isinstance(s, str) and s]
    else:
        symbols = [str(s) for s in adata.var_names]
    return write_scfoundation(
        Path(folder),
        gene_list_for(symbols),
        seed=seed,
        size=OFFICIAL_SIZE if size == "official" else TINY_SIZE,
    )
