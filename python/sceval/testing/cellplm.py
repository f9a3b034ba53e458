"""Tiny CellPLM checkpoints with random weights, in the official on-disk layout.

No pretrained weights are available offline, so tests build a checkpoint folder with the
files and state-dict key names of an official CellPLM checkpoint (OmicsML/CellPLM,
``ckpt/README.md``: ``<version>.config.json`` + ``<version>.best.ckpt``, the latter a
``torch.save`` dict whose ``model_state_dict`` is the whole pretraining ``OmicsFormer``:
``embedder``, ``encoder``, ``latent``, ``decoder`` (``NBMLPDecoder``) and
``pre_latent_norm``), filled with seeded random numbers. The key list below is written
out independently of :mod:`sceval.models.cellplm`, so loading it there checks the names.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = ["official_config", "official_shapes", "write_for_adata", "write_tiny_cellplm"]

#: Dimensions of the released ``20230926_85M`` config (``ckpt/20230926_85M.config.json``).
OFFICIAL_DIMS: dict[str, Any] = {
    "enc_hid": 1024,
    "enc_layers": 4,
    "post_latent_dim": 512,
    "num_clusters": 16,
    "dec_hid": 1024,
    "n_genes": 19374,
    "batch_num": 12596,
    "dataset_num": 484,
}


def official_config(
    gene_list: list[str],
    *,
    enc_hid: int,
    enc_layers: int,
    latent_mod: str,
    post_latent_dim: int,
    num_clusters: int,
    dec_hid: int,
    batch_num: int,
    dataset_num: int,
) -> dict[str, Any]:
    """The fields of the official ``20230926_85M.config.json`` with the architecture
    fields set to the given values."""
    return {
        "name": "tiny",
        "enc_mod": "flowformer",
        "enc_hid": enc_hid,
        "enc_layers": enc_layers,
        "latent_mod": latent_mod,
        "lamda": 5.0,
        "post_latent_dim": post_latent_dim,
        "dec_mod": "nbmlp",
        "dec_hid": dec_hid,
        "dec_layers": 2,
        "model_dropout": 0.2,
        "mask_node_rate": 0.75,
        "mask_feature_rate": 0.25,
        "drop_node_rate": 0.3,
        "norm": "groupnorm",
        "dataset": "tiny",
        "architecture": "OmicsFormer",
        "epochs": 200,
        "lr": 0.0002,
        "wd": 1e-08,
        "w_li": 5.0,
        "w_en": 5.0,
        "num_clusters": num_clusters,
        "out_dim": len(gene_list),
        "ddp": True,
        "cat_pe": False,
        "val_num": 10,
        "max_batch_size": 4000,
        "dar": False,
        "input_covariate": False,
        "beta": [2.0, 1.5],
        "batch_mixing": False,
        "ecs": False,
        "dsbn": False,
        "dae": True,
        "batch_flip": True,
        "mask_beta": True,
        "batch_num": batch_num,
        "dataset_num": dataset_num,
        "gene_list": list(gene_list),
    }


def official_shapes(
    n_genes: int,
    d: int,
    n_layers: int,
    latent_mod: str,
    z: int,
    k: int,
    dec_hid: int,
    batch_num: int,
    dataset_num: int,
) -> list[tuple[str, tuple[int, ...], str]]:
    """(key, shape, init kind) of an official pretraining ``model_state_dict``."""
    keys: list[tuple[str, tuple[int, ...], str]] = []

    def linear(name: str, n_out: int, n_in: int) -> None:
        keys.append((f"{name}.weight", (n_out, n_in), f"linear:{n_in}"))
        keys.append((f"{name}.bias", (n_out,), f"linear:{n_in}"))

    def norm(name: str, n: int) -> None:
        keys.append((f"{name}.weight", (n,), "norm_weight"))
        keys.append((f"{name}.bias", (n,), "norm_bias"))

    norm("embedder.norm0", d)  # GroupNorm(4, d)
    linear("embedder.extra_linear.0", d, d)
    norm("embedder.extra_linear.3", d)
    keys.append(("embedder.pe_enc.missing_pe", (d,), "small"))
    keys.append(("embedder.pe_enc.pe_enc.weight", (10000, d), "sinusoidal"))
    keys.append(("embedder.feat_enc.emb", (n_genes, d), "gene_emb"))
    for i in range(n_layers):
        p = f"encoder.layers.{i}"
        for proj in ("query", "key", "value", "out"):
            linear(f"{p}.self_attn.{proj}_projection", d, d)
        linear(f"{p}._ff_block.0", 2 * d, d)
        linear(f"{p}._ff_block.3", d, 2 * d)
        norm(f"{p}.norm1", d)
        norm(f"{p}.norm2", d)
    lat = "latent.layers.1"
    if latent_mod == "gmvae":
        inf = f"{lat}.inference"
        linear(f"{inf}.inference_qyx.0.logits", k, d)
        linear(f"{inf}.inference_qzyx.0", 512, d + k)
        linear(f"{inf}.inference_qzyx.2.mu", z, 512)
        linear(f"{inf}.inference_qzyx.2.var", z, 512)
        linear(f"{inf}.y_mu", z, k)
        linear(f"{inf}.y_var", z, k)
    else:  # vae
        linear(f"{lat}.hid_2mu", z, d)
        linear(f"{lat}.hid_2sigma", z, d)
    # NBMLPDecoder(dec_layers=2): one hidden layer with batch and dataset covariates
    linear("decoder.layers.0.0", dec_hid, z)
    keys.append(("decoder.layers.0.1.weight", (1,), "prelu"))
    norm("decoder.layers.0.3", dec_hid)
    for cov, n in (("batch", batch_num), ("dataset", dataset_num)):
        keys.append((f"decoder.covariate_layers.0.{cov}.0.weight", (n, dec_hid), "normal"))
        keys.append((f"decoder.covariate_layers.0.{cov}.1.weight", (1,), "prelu"))
        norm(f"decoder.covariate_layers.0.{cov}.2", dec_hid)
    keys.append(("decoder.out_layer.dec_disp", (n_genes,), "normal"))
    linear("decoder.out_layer.dec_1", 128, dec_hid)
    linear("decoder.out_layer.dec_mean.0", n_genes, 128)
    norm("pre_latent_norm.norm", d)
    return keys


def _sinusoidal(d: int, grid: int = 100) -> Any:
    """``Sinusoidal2dPE`` table: channel 2i/2i+1 of the first half encode the x
    position, of the second half the y position."""
    import torch

    half = d // 2
    freq = torch.exp(-math.log(10000.0) * torch.arange(0.0, half, 2) / half)
    table = torch.zeros(grid, grid, d)  # [y, x, channel]
    pos = torch.arange(0.0, grid)
    for j, f in enumerate(freq.tolist()):
        table[:, :, 2 * j] = torch.sin(pos * f)[None, :]
        table[:, :, 2 * j + 1] = torch.cos(pos * f)[None, :]
        table[:, :, half + 2 * j] = torch.sin(pos * f)[:, None]
        table[:, :, half + 2 * j + 1] = torch.cos(pos * f)[:, None]
    return table.reshape(grid * grid, d)


def write_tiny_cellplm(
    folder: str | Path,
    *,
    genes: Iterable[str],
    enc_hid: int = 32,
    enc_layers: int = 2,
    latent_mod: str = "gmvae",
    post_latent_dim: int = 16,
    num_clusters: int = 4,
    dec_hid: int = 32,
    batch_num: int = 5,
    dataset_num: int = 3,
    version: str | None = None,
    seed: int = 0,
    emb_scale: float = 0.5,
) -> Path:
    """Write a random-weight CellPLM checkpoint folder in the official layout.

    Parameters
    ----------
    folder
        Created if needed; ``<version>.config.json`` and ``<version>.best.ckpt`` are
        written into it.
    genes
        Ensembl IDs of the gene list, in order (duplicates dropped).
    enc_hid, enc_layers, latent_mod, post_latent_dim, num_clusters, dec_hid, batch_num, dataset_num
        Architecture fields of the config (8 attention heads, as the official default,
        need ``enc_hid`` divisible by 8).
    version
        File prefix; default ``20230926_85M`` for ``gmvae``, ``20231027_85M`` for ``vae``.
    seed
        Seed of the weights.
    emb_scale
        Scale of the random gene embedding (the official init is ``0.005``; larger values
        make tiny random models less degenerate).

    Returns
    -------
    pathlib.Path
        The folder.
    """
    import torch

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    gene_list = list(dict.fromkeys(str(g) for g in genes if str(g)))
    if version is None:
        version = "20230926_85M" if latent_mod == "gmvae" else "20231027_85M"
    config = official_config(
        gene_list,
        enc_hid=enc_hid,
        enc_layers=enc_layers,
        latent_mod=latent_mod,
        post_latent_dim=post_latent_dim,
        num_clusters=num_clusters,
        dec_hid=dec_hid,
        batch_num=batch_num,
        dataset_num=dataset_num,
    )
    config["name"] = version
    gen = torch.Generator().manual_seed(int(seed))
    state: dict[str, Any] = {}
    shapes = official_shapes(
        len(gene_list),
        enc_hid,
        enc_layers,
        latent_mod,
        post_latent_dim,
        num_clusters,
        dec_hid,
        batch_num,
        dataset_num,
    )
    for key, shape, kind in shapes:
        if kind == "sinusoidal":
            t = _sinusoidal(enc_hid)
        elif kind == "gene_emb":
            t = torch.randn(shape, generator=gen) * emb_scale
        elif kind in ("small", "normal"):
            t = torch.randn(shape, generator=gen) * (0.01 if kind == "small" else 1.0)
        elif kind == "prelu":
            t = torch.full(shape, 0.25)
        elif kind == "norm_weight":
            t = 1.0 + 0.1 * torch.randn(shape, generator=gen)
        elif kind == "norm_bias":
            t = 0.1 * torch.randn(shape, generator=gen)
        else:  # nn.Linear default scale, uniform in +-1/sqrt(fan_in)
            bound = 1.0 / math.sqrt(int(kind.split(":")[1]))
            t = (torch.rand(shape, generator=gen) * 2.0 - 1.0) * bound
        state[key] = t.contiguous()
    with open(folder / f"{version}.config.json", "w", encoding="utf-8") as fh:
        json.dump(config, fh)
    torch.save({"model_state_dict": state}, folder / f"{version}.best.ckpt")
    return folder


def _ensembl_of(adata: Any) -> list[str]:
    if "ensembl_id" in adata.var:
        return [str(g) for g in adata.var["ensembl_id"]]
    from sceval.data.genes import map_genes

    table, _ = map_genes([str(g) for g in adata.var_names])
    return [str(g) for g in table["ensembl_id"]]


def write_for_adata(folder: Path, adata: Any, *, seed: int = 0, size: str = "tiny") -> Path:
    """:func:`sceval.testing.tiny_checkpoint` writer: a gene list of ``adata``'s Ensembl
    IDs (GMVAE latent); ``size="official"`` uses the released ``20230926_85M``
    dimensions (1024-d, 4 layers, 512-d latent, 16 clusters) with the gene list padded
    to 19,374 IDs."""
    genes = [g for g in dict.fromkeys(_ensembl_of(adata)) if g]
    if size != "official":
        return write_tiny_cellplm(folder, genes=genes, seed=seed)
    dims = OFFICIAL_DIMS
    filler = (f"ENSG9{i:010d}" for i in range(dims["n_genes"]))
    taken = set(genes)
    while len(genes) < dims["n_genes"]:
        g = next(filler)
        if g not in taken:
            genes.append(g)
    return write_tiny_cellplm(
        folder,
        genes=genes,
        enc_hid=dims["enc_hid"],
        enc_layers=dims["enc_layers"],
        post_latent_dim=dims["post_latent_dim"],
        num_clusters=dims["num_clusters"],
        dec_hid=dims["dec_hid"],
        batch_num=dims["batch_num"],
        dataset_num=dims["dataset_num"],
        seed=seed,
        emb_scale=0.005,
    )
