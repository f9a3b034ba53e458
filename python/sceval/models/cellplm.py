"""CellPLM (Wen et al., ICLR 2024) in plain PyTorch, loading the official checkpoints.

CellPLM treats the **cell** as the token: a forward pass embeds a set of cells as one
sequence and a Flowformer encoder (linear "flow" attention) lets every cell attend to
the other cells of that set. The architecture follows OmicsML/CellPLM
(``CellPLM/model/cellformer.py`` ``OmicsFormer``; ``embedder/omics.py``
``OmicsEmbeddingLayer`` / ``OmicsEmbedder``; ``layer/flowformer.py`` ``FlowformerLayer`` /
``Flow_Attention``; ``latent/__init__.py`` ``PreLatentNorm``, ``LatentModel``;
``latent/autoencoders.py`` ``GMVAELatentLayer`` / ``VAELatentLayer``) with module names
equal to the official state-dict keys, so an official ``<version>.best.ckpt`` loads
with strict key checking (the official ``pipeline/__init__.py:load_pretrain`` silently
skips every key whose name or shape does not match; here any mismatch is an error
listing the keys).

Zero-shot cell embeddings follow ``CellPLM/pipeline/cell_embedding.py``
(``CellEmbeddingPipeline`` with ``head_type="embedder"``):

1. genes are matched to the checkpoint's ``gene_list`` (19,374 human Ensembl IDs in the
   released config) by Ensembl ID. The official pipeline converts symbols with the
   online ``mygene`` service (``pipeline/experimental.py``); sceval uses
   ``var["ensembl_id"]`` or its bundled gene tables (:func:`sceval.data.genes.map_genes`)
   instead, offline. Of genes sharing an Ensembl ID only the first is kept (the official
   ``var_names_make_unique`` renames the others out of the gene set).
2. raw counts, ``log1p``, no library-size normalization (``OmicsEmbedder.forward``);
3. ``log1p(x) @ embedder.feat_enc.emb[matched genes]`` (a sparse-dense product), then
   ``extra_linear`` (Linear, ReLU, Dropout, GroupNorm(4, d)). The 2-D sinusoidal
   position encoding is built but multiplied by 0 in the official forward (its weights
   are loaded, never used);
4. pre-norm Flowformer layers over **all cells of the forward pass as one sequence**,
   then ``pre_latent_norm`` (LayerNorm);
5. the latent layer: ``gmvae`` (``20230926_85M``) returns the mean of q(z | x, y) where
   ``y`` is a one-hot cluster; ``vae`` (``20231027_85M``) returns ``hid_2mu(h)``.

Which cells share a forward pass (batch composition)
----------------------------------------------------
Because cells are tokens, **a cell's embedding depends on the other cells in its forward
pass.** The official pipeline groups cells by ``obs["batch"]`` and embeds each group in
one pass (``batch_size=0``) or in consecutive chunks of ``batch_size`` cells. Here
cells are grouped by ``group_by`` (default: the benchmark's batch key, else one group)
and each group is embedded in one pass, or in chunks of at most ``batch_size`` cells
(consecutive in data order, as official, or in a seeded random order with
``shuffle=True``). The result message records the grouping. Large and backed data are
embedded as one whole (backed data are read in chunks and only their counts are kept in
memory), so chunked streaming does not change the embeddings.

Gumbel sampling in the GMVAE latent
-----------------------------------
In eval mode the official GMVAE still draws the cluster ``y`` as a hard Gumbel-softmax
sample (``InferenceNet.forward(x, temperature, hard=True)``) from the global torch RNG,
so the official embeddings change from run to run. ``latent="argmax"`` (default) uses
the most probable cluster instead (deterministic); ``latent="gumbel"`` reproduces the
official sampling with Gumbel noise seeded by ``(ctx.seed, global cell index)``
(independent of batching and chunking). The ``vae`` latent is deterministic in eval mode.

torch is imported on first use only; the torch modules are available as attributes of
this module once torch is installed.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import re
import types
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sceval._errors import DataContractError, ModelSkippedError, ScevalError
from sceval.models.base import EmbedContext, ModelInfo, register_model
from sceval.models.checkpoints import CheckpointSpec, FileSpec, register_checkpoint
from sceval.models.foundation import (
    FoundationModel,
    GeneCoverage,
    gene_coverage,
    inference_context,
)

if TYPE_CHECKING:  # pragma: no cover
    import scipy.sparse as sp
    import torch

__all__ = [
    "IGNORED_KEY_PREFIXES",
    "LATENT_MODES",
    "CellPLMCheckpointError",
    "CellPLMConfig",
    "CellPLMCoverage",
    "CellPLMModel",
    "CellPLMRandomModel",
    "cell_embeddings",
    "ensembl_ids",
    "forward_groups",
    "gumbel_uniforms",
    "load_cellplm",
    "match_genes",
    "read_config",
    "reset_parameters",
    "sinusoidal_table",
]

#: State-dict prefixes of pretraining-only modules, dropped by name (the official
#: embedding pipeline builds ``head_type="embedder"``, which has no ``decoder``).
IGNORED_KEY_PREFIXES = ("decoder.",)

#: ``latent=`` choices: the most probable GMVAE cluster, or the official Gumbel draw.
LATENT_MODES = ("argmax", "gumbel")

#: Hidden width of ``inference_qzyx`` (hard-coded ``512`` in ``InferenceNet``).
QZYX_HIDDEN = 512
#: ``Sinusoidal2dPE`` grid (``height=width=100``).
PE_GRID = 100
_MAX_LISTED = 15
_ENSEMBL = re.compile(r"^(ENS[A-Z]*G\d{11})(\.\d+)?(_PAR_Y)?$")

_CITATION = (
    "Wen, H., Tang, W., Dai, X., Ding, J., Jin, W., Xie, Y. & Tang, J. CellPLM: "
    "Pre-training of Cell Language Model Beyond Single Cells. ICLR 2024 "
    "(https://openreview.net/forum?id=BKXvPDekud); bioRxiv 2023.10.03.560734"
)
_LICENSE = "BSD-2-Clause"
_HOME = "https://github.com/OmicsML/CellPLM"
_DROPBOX = (
    "https://www.dropbox.com/scl/fo/i5rmxgtqzg7iykt2e9uqm/h?rlkey=o8hi0xads9ol07o48jdityzv1&dl=0"
)


class CellPLMCheckpointError(ScevalError, ValueError):
    """A CellPLM checkpoint folder does not match the official format."""


# --------------------------------------------------------------------------- checkpoints


def _spec(version: str, latent: str, description: str) -> CheckpointSpec:
    files = (
        # a shared Dropbox folder: no per-file URL is published (manual download)
        FileSpec(f"{version}.config.json", _DROPBOX, manual=True),
        FileSpec(f"{version}.best.ckpt", _DROPBOX, manual=True),
    )
    return CheckpointSpec(
        name=f"cellplm.{version.lower()}",
        model="cellplm",
        files=files,
        license=_LICENSE,
        citation=_CITATION,
        homepage=_HOME,
        description=description,
        notes=(
            "Official download: the Dropbox folder linked from the 'Pretrained CellPLM Model "
            "Checkpoints' section of the OmicsML/CellPLM README (ckpt/README.md: a checkpoint "
            "is '<version>.config.json' + '<version>.best.ckpt' with a common prefix; the "
            "gene list, 19,374 human Ensembl IDs, is the config's 'gene_list'). No per-file "
            "URLs or checksums are published; the sha256 of each file is recorded when it is "
            f"first verified. Latent layer: {latent}. License: BSD-2-Clause (the repository's "
            "LICENSE; no separate license is stated for the weights)."
        ),
        approx_size_mb=340,
    )


register_checkpoint(
    _spec(
        "20231027_85M",
        "vae (as printed by tutorials/cell_embedding.ipynb)",
        "CellPLM 20231027_85M: 85M parameters, 4 Flowformer layers over cells, 1024-d, VAE "
        "latent 512-d; the version the official cell-embedding tutorial loads",
    )
)
register_checkpoint(
    _spec(
        "20230926_85M",
        "gmvae (ckpt/20230926_85M.config.json in the repository)",
        "CellPLM 20230926_85M: 85M parameters, 4 Flowformer layers over cells, 1024-d, "
        "GMVAE latent 512-d with 16 clusters; the config ships in the repository",
    )
)


# --------------------------------------------------------------------------- config


@dataclass(frozen=True)
class CellPLMConfig:
    """Architecture of a CellPLM checkpoint (from ``<version>.config.json``).

    Attributes
    ----------
    gene_list
        Ensembl IDs of the rows of ``embedder.feat_enc.emb``.
    enc_hid
        Width of the gene embedding and the encoder.
    enc_layers, enc_head
        Flowformer layers and attention heads (``enc_head`` defaults to 8).
    latent_mod
        ``"gmvae"`` or ``"vae"``.
    post_latent_dim
        Width of the cell embedding.
    num_clusters
        GMVAE clusters (``"gmvae"`` only).
    norm
        Norm of ``extra_linear`` and ``norm0`` (``"groupnorm"``: ``GroupNorm(4, d)``).
    pe_type
        ``"sin"`` (a ``Sinusoidal2dPE`` whose output is multiplied by 0) or ``None``.
    dropout
        ``model_dropout`` (used only when training).
    version
        The checkpoint's file prefix.
    """

    gene_list: tuple[str, ...]
    enc_hid: int
    enc_layers: int
    enc_head: int = 8
    latent_mod: str = "gmvae"
    post_latent_dim: int = 512
    num_clusters: int = 16
    norm: str = "groupnorm"
    pe_type: str | None = "sin"
    dropout: float = 0.1
    version: str = ""

    @property
    def n_genes(self) -> int:
        """Length of the gene list."""
        return len(self.gene_list)


_NORMS = ("groupnorm", "layernorm")
#: Config switches that add modules or inputs the zero-shot port does not implement,
#: with the value the released checkpoints use.
_UNSUPPORTED = {
    "cat_pe": False,
    "input_covariate": False,
    "dsbn": False,
    "dar": False,
    "ecs": False,
}


def read_config(path: str | Path) -> CellPLMConfig:
    """Read and check an official ``<version>.config.json``.

    Raises
    ------
    CellPLMCheckpointError
        Not a JSON object, missing keys, an encoder other than ``flowformer``, a latent
        other than ``gmvae``/``vae``, or a switch the port does not implement.
    """
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as fh:
            raw = json.load(fh)
    except ValueError as err:
        msg = f"{str(path)!r} is not valid JSON ({err}); expected the CellPLM config."
        raise CellPLMCheckpointError(msg) from err
    if not isinstance(raw, dict):
        msg = f"{str(path)!r} holds a {type(raw).__name__}; expected a JSON object."
        raise CellPLMCheckpointError(msg)
    need = ("gene_list", "enc_mod", "enc_hid", "enc_layers", "latent_mod", "post_latent_dim")
    missing = [k for k in need if k not in raw]
    if missing:
        msg = (
            f"{str(path)!r} lacks {missing}; expected an official CellPLM config with "
            f"{list(need)} (e.g. ckpt/20230926_85M.config.json of OmicsML/CellPLM). Fix: use "
            "the config.json that comes with the .best.ckpt."
        )
        raise CellPLMCheckpointError(msg)
    genes = raw["gene_list"]
    if not isinstance(genes, list) or not genes or not all(isinstance(g, str) for g in genes):
        msg = (
            f"{str(path)!r}: 'gene_list' must be a non-empty list of Ensembl IDs (strings), "
            f"found {type(genes).__name__}. Fix: use the official config file."
        )
        raise CellPLMCheckpointError(msg)
    if len(set(genes)) != len(genes):
        msg = (
            f"{str(path)!r}: 'gene_list' has {len(genes) - len(set(genes))} duplicated IDs; "
            "expected unique Ensembl IDs (one row of embedder.feat_enc.emb each)."
        )
        raise CellPLMCheckpointError(msg)
    if raw["enc_mod"] != "flowformer":
        msg = (
            f"{str(path)!r} has enc_mod={raw['enc_mod']!r}; sceval implements the "
            "'flowformer' encoder of the released CellPLM checkpoints only."
        )
        raise CellPLMCheckpointError(msg)
    latent = raw["latent_mod"]
    if latent not in ("gmvae", "vae"):
        msg = (
            f"{str(path)!r} has latent_mod={latent!r}; sceval implements 'gmvae' "
            "(20230926_85M) and 'vae' (20231027_85M)."
        )
        raise CellPLMCheckpointError(msg)
    norm = raw.get("norm", "layernorm")
    if norm not in _NORMS:
        msg = f"{str(path)!r} has norm={norm!r}; sceval implements {list(_NORMS)}."
        raise CellPLMCheckpointError(msg)
    pe_type = raw.get("pe_type", "sin")
    if pe_type not in ("sin", "sinu", "sinusoidal", None):
        msg = (
            f"{str(path)!r} has pe_type={pe_type!r}; sceval implements the sinusoidal "
            "position encoding of the released checkpoints ('sin') or none (null)."
        )
        raise CellPLMCheckpointError(msg)
    on = [k for k, v in _UNSUPPORTED.items() if bool(raw.get(k, v)) != v]
    if "cat_pe" not in raw and pe_type is not None:
        on.append("cat_pe")  # OmicsFormer's default cat_pe=True
    if on:
        msg = (
            f"{str(path)!r} switches on {on}; sceval implements the zero-shot CellPLM of the "
            f"released checkpoints, which set {dict(_UNSUPPORTED)}."
        )
        raise CellPLMCheckpointError(msg)
    try:
        return CellPLMConfig(
            gene_list=tuple(genes),
            enc_hid=int(raw["enc_hid"]),
            enc_layers=int(raw["enc_layers"]),
            enc_head=int(raw.get("enc_head", 8)),
            latent_mod=str(latent),
            post_latent_dim=int(raw["post_latent_dim"]),
            num_clusters=int(raw.get("num_clusters", 16)),
            norm=str(norm),
            pe_type=None if pe_type is None else "sin",
            dropout=float(raw.get("model_dropout", 0.1)),
            version=path.name[: -len(".config.json")],
        )
    except (TypeError, ValueError) as err:
        msg = f"{str(path)!r}: a numeric field is not a number ({err})."
        raise CellPLMCheckpointError(msg) from err


# --------------------------------------------------------------------------- torch modules


@functools.cache
def _nn() -> types.SimpleNamespace:
    """Define the torch modules on first use (torch is an optional dependency)."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    def make_norm(name: str, d: int) -> nn.Module:
        return nn.GroupNorm(4, d) if name == "groupnorm" else nn.LayerNorm(d)

    class Sinusoidal2dPE(nn.Module):
        """``embedder.pe_enc``: the official 2-D sinusoidal table and ``missing_pe``.

        Loaded for strict key checking only: the official forward multiplies the
        position encoding by 0 (``pe = 0.``), so it never changes the output.
        """

        def __init__(self, d: int) -> None:
            super().__init__()
            self.missing_pe = nn.Parameter(torch.zeros(d))
            self.pe_enc = nn.Embedding(PE_GRID * PE_GRID, d)
            self.pe_enc.weight.requires_grad_(False)

    class OmicsEmbedder(nn.Module):
        """``embedder.feat_enc``: the gene embedding table ``emb`` (genes x d)."""

        def __init__(self, n_genes: int, d: int) -> None:
            super().__init__()
            self.emb = nn.Parameter(torch.zeros(n_genes, d))

        def forward(self, x: torch.Tensor, gene_idx: torch.Tensor) -> torch.Tensor:
            """``x``: sparse ``log1p`` counts (cells x matched genes)."""
            return torch.sparse.mm(x, self.emb.index_select(0, gene_idx))

    class OmicsEmbeddingLayer(nn.Module):
        """``embedder``: gene-embedding sum, then ``extra_linear``."""

        def __init__(self, c: CellPLMConfig) -> None:
            super().__init__()
            d = c.enc_hid
            self.norm0 = make_norm(c.norm, d)  # defined but unused in the official forward
            self.extra_linear = nn.Sequential(
                nn.Linear(d, d), nn.ReLU(), nn.Dropout(c.dropout), make_norm(c.norm, d)
            )
            if c.pe_type is not None:
                self.pe_enc = Sinusoidal2dPE(d)
            self.feat_enc = OmicsEmbedder(c.n_genes, d)

        def forward(self, x: torch.Tensor, gene_idx: torch.Tensor) -> torch.Tensor:
            return self.extra_linear(self.feat_enc(x, gene_idx))

    class FlowAttention(nn.Module):
        """``self_attn``: Flowformer's flow attention (non-causal), one sequence.

        The flow normalization (sums over all cells of the sequence) runs in float32
        even under autocast.
        """

        def __init__(self, d: int, n_heads: int, eps: float = 1e-6) -> None:
            super().__init__()
            if d % n_heads:
                msg = f"enc_hid ({d}) must be divisible by enc_head ({n_heads})"
                raise CellPLMCheckpointError(msg)
            self.n_heads = n_heads
            self.eps = eps
            self.query_projection = nn.Linear(d, d)
            self.key_projection = nn.Linear(d, d)
            self.value_projection = nn.Linear(d, d)
            self.out_projection = nn.Linear(d, d)
            self.dropout = nn.Dropout(0.01)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            """``x``: ``(cells, d)``; returns ``(cells, d)``."""
            n, d = x.shape
            h = self.n_heads

            def heads(t: torch.Tensor) -> torch.Tensor:
                return t.float().view(n, h, d // h).transpose(0, 1)  # (h, n, dh)

            q = torch.sigmoid(heads(self.query_projection(x)))
            k = torch.sigmoid(heads(self.key_projection(x)))
            v = heads(self.value_projection(x))
            eps = self.eps
            with torch.autocast(x.device.type, enabled=False):
                sink_in = 1.0 / torch.einsum("hld,hd->hl", q + eps, k.sum(1) + eps)
                source_out = 1.0 / torch.einsum("hld,hd->hl", k + eps, q.sum(1) + eps)
                sink = torch.einsum("hld,hd->hl", q + eps, (k * source_out[..., None]).sum(1) + eps)
                source = torch.einsum("hld,hd->hl", k + eps, (q * sink_in[..., None]).sum(1) + eps)
                source = torch.clamp(source, min=-1.0, max=1.0)
                allocation = torch.sigmoid(sink)  # official: * (L / S) = 1 for self-attention
                competition = torch.softmax(source, dim=-1) * float(n)
                kv = torch.einsum("hld,hlm->hdm", k, v * competition[..., None])
                out = torch.einsum("hld,hdm->hlm", q * sink_in[..., None], kv)
                out = out * allocation[..., None]
            out = out.transpose(0, 1).reshape(n, d).to(x.dtype)
            return self.dropout(self.out_projection(out))

    class FlowformerLayer(nn.Module):
        """Pre-LayerNorm layer: flow attention and a GELU feed-forward of width 2d."""

        def __init__(self, d: int, n_heads: int, dropout: float) -> None:
            super().__init__()
            self.self_attn = FlowAttention(d, n_heads)
            self._ff_block = nn.Sequential(
                nn.Linear(d, 2 * d),
                nn.GELU(),
                nn.Dropout(dropout),
                nn.Linear(2 * d, d),
                nn.Dropout(dropout),
            )
            self.dropout1 = nn.Dropout(dropout)
            self.norm1 = nn.LayerNorm(d)
            self.norm2 = nn.LayerNorm(d)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = x + self.dropout1(self.self_attn(self.norm1(x)))
            return x + self._ff_block(self.norm2(x))

    class Encoder(nn.Module):
        """``encoder``: the Flowformer layers."""

        def __init__(self, c: CellPLMConfig) -> None:
            super().__init__()
            self.layers = nn.ModuleList(
                FlowformerLayer(c.enc_hid, c.enc_head, c.dropout) for _ in range(c.enc_layers)
            )

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            for layer in self.layers:
                x = layer(x)
            return x

    class PreLatentNorm(nn.Module):
        """``pre_latent_norm``: LayerNorm (``type="ln"``)."""

        def __init__(self, d: int) -> None:
            super().__init__()
            self.norm = nn.LayerNorm(d)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.norm(x)

    class GumbelSoftmax(nn.Module):
        """``inference_qyx.0``: cluster logits."""

        def __init__(self, d: int, k: int) -> None:
            super().__init__()
            self.logits = nn.Linear(d, k)

    class Gaussian(nn.Module):
        """``inference_qzyx.2``: mean and (softplus) variance heads."""

        def __init__(self, d_in: int, z: int) -> None:
            super().__init__()
            self.mu = nn.Linear(d_in, z)
            self.var = nn.Linear(d_in, z)

    class InferenceNet(nn.Module):
        """``latent.layers.1.inference``: q(y | x), q(z | x, y) and the prior p(z | y)."""

        def __init__(self, d: int, z: int, k: int) -> None:
            super().__init__()
            self.inference_qyx = nn.ModuleList([GumbelSoftmax(d, k)])
            self.inference_qzyx = nn.ModuleList(
                [nn.Linear(d + k, QZYX_HIDDEN), nn.ReLU(), Gaussian(QZYX_HIDDEN, z)]
            )
            self.y_mu = nn.Linear(k, z)
            self.y_var = nn.Linear(k, z)

    class GMVAELatentLayer(nn.Module):
        """GMVAE latent: the mean of q(z | x, y) for a one-hot cluster ``y``."""

        def __init__(self, c: CellPLMConfig) -> None:
            super().__init__()
            self.inference = InferenceNet(c.enc_hid, c.post_latent_dim, c.num_clusters)

        def forward(self, h: torch.Tensor, uniforms: torch.Tensor | None = None) -> torch.Tensor:
            """``uniforms``: ``(cells, clusters)`` U[0, 1) draws for the official Gumbel
            sample, or ``None`` for the most probable cluster."""
            inf = self.inference
            logits = inf.inference_qyx[0].logits(h).float()
            if uniforms is not None:  # official: argmax of logits + Gumbel noise (T = 1)
                u = uniforms.to(logits)
                logits = logits - torch.log(-torch.log(u + 1e-20) + 1e-20)
            y = F.one_hot(logits.argmax(-1), logits.shape[-1]).to(h.dtype)
            hidden = inf.inference_qzyx[1](inf.inference_qzyx[0](torch.cat([h, y], 1)))
            return inf.inference_qzyx[2].mu(hidden)

    class VAELatentLayer(nn.Module):
        """VAE latent: ``hid_2mu(h)`` (the eval-mode ``z``)."""

        def __init__(self, c: CellPLMConfig) -> None:
            super().__init__()
            self.hid_2mu = nn.Linear(c.enc_hid, c.post_latent_dim)
            self.hid_2sigma = nn.Linear(c.enc_hid, c.post_latent_dim)

        def forward(self, h: torch.Tensor, uniforms: torch.Tensor | None = None) -> torch.Tensor:
            return self.hid_2mu(h)

    class LatentModel(nn.Module):
        """``latent``: ``layers[0]`` is the parameter-free placeholder, ``layers[1]`` the
        latent layer."""

        def __init__(self, c: CellPLMConfig) -> None:
            super().__init__()
            layer = GMVAELatentLayer(c) if c.latent_mod == "gmvae" else VAELatentLayer(c)
            self.layers = nn.ModuleList([nn.Identity(), layer])

    class CellPLM(nn.Module):
        """The official ``OmicsFormer`` with the embedder head, official module names."""

        def __init__(self, config: CellPLMConfig) -> None:
            super().__init__()
            self.config = config
            self.embedder = OmicsEmbeddingLayer(config)
            self.encoder = Encoder(config)
            self.pre_latent_norm = PreLatentNorm(config.enc_hid)
            self.latent = LatentModel(config)

        def forward(
            self,
            x: torch.Tensor,
            gene_idx: torch.Tensor,
            uniforms: torch.Tensor | None = None,
        ) -> torch.Tensor:
            """Cell embeddings of one forward pass.

            Parameters
            ----------
            x
                Sparse ``log1p`` counts, cells x matched genes (float32).
            gene_idx
                Row of ``embedder.feat_enc.emb`` for each column of ``x`` (long).
            uniforms
                GMVAE only: ``(cells, clusters)`` uniforms for the Gumbel draw, or
                ``None`` for the argmax cluster.

            Returns
            -------
            torch.Tensor
                ``(cells, post_latent_dim)``.
            """
            h = self.embedder(x, gene_idx)
            h = self.pre_latent_norm(self.encoder(h))
            return self.latent.layers[1](h, uniforms)

        def gene_embeddings(self, gene_idx: torch.Tensor) -> torch.Tensor:
            """Rows of ``embedder.feat_enc.emb``."""
            return self.embedder.feat_enc.emb.index_select(0, gene_idx)

    return types.SimpleNamespace(
        Sinusoidal2dPE=Sinusoidal2dPE,
        OmicsEmbedder=OmicsEmbedder,
        OmicsEmbeddingLayer=OmicsEmbeddingLayer,
        FlowAttention=FlowAttention,
        FlowformerLayer=FlowformerLayer,
        GMVAELatentLayer=GMVAELatentLayer,
        VAELatentLayer=VAELatentLayer,
        CellPLM=CellPLM,
    )


_LAZY_MODULES = (
    "CellPLM",
    "FlowAttention",
    "FlowformerLayer",
    "GMVAELatentLayer",
    "OmicsEmbedder",
    "OmicsEmbeddingLayer",
    "Sinusoidal2dPE",
    "VAELatentLayer",
)


def __getattr__(name: str) -> Any:
    if name in _LAZY_MODULES:
        return getattr(_nn(), name)
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)


# --------------------------------------------------------------------------- loading


def _find_version(folder: Path, version: str | None) -> str:
    configs = sorted(p.name[: -len(".config.json")] for p in folder.glob("*.config.json"))
    if version is not None:
        if version not in configs:
            msg = (
                f"CellPLM checkpoint folder {str(folder)!r} has no {version}.config.json; "
                f"versions there: {configs or 'none'}. Fix: pass version= one of them."
            )
            raise FileNotFoundError(msg)
        return version
    if len(configs) == 1:
        return configs[0]
    if not configs:
        msg = (
            f"CellPLM checkpoint folder {str(folder)!r} has no '<version>.config.json'; "
            "expected the official pair '<version>.config.json' + '<version>.best.ckpt' "
            f"(e.g. 20231027_85M). Fix: download both files from {_DROPBOX} into the folder."
        )
        raise FileNotFoundError(msg)
    msg = (
        f"CellPLM checkpoint folder {str(folder)!r} holds several versions {configs}; "
        "pass version= to choose one."
    )
    raise FileNotFoundError(msg)


def _state_dict(obj: dict[str, Any], path: Path) -> tuple[dict[str, Any], list[str]]:
    """The ``model_state_dict`` of an official ``.best.ckpt`` (or a plain state dict),
    without ``module.`` prefixes and pretraining-only keys."""
    import torch

    state = obj.get("model_state_dict", obj)
    if not isinstance(state, dict):
        msg = (
            f"{str(path)!r}: 'model_state_dict' is a {type(state).__name__}; expected a "
            "state dict (the official .best.ckpt holds {'model_state_dict': {...}})."
        )
        raise CellPLMCheckpointError(msg)
    if state and all(str(k).startswith("module.") for k in state):  # saved from DDP
        state = {str(k)[len("module.") :]: v for k, v in state.items()}
    out: dict[str, Any] = {}
    ignored: list[str] = []
    not_tensors: list[str] = []
    for key, value in state.items():
        key = str(key)
        if key.startswith(IGNORED_KEY_PREFIXES):
            ignored.append(key)
        elif not isinstance(value, torch.Tensor):
            not_tensors.append(key)
        else:
            out[key] = value
    if not_tensors:
        msg = (
            f"{str(path)!r}: entries {not_tensors[:5]} of the state dict are not tensors; "
            "expected {'model_state_dict': {name: tensor}} as the official .best.ckpt "
            "(or a plain state dict)."
        )
        raise CellPLMCheckpointError(msg)
    return out, ignored


def _check_keys(model: Any, state: dict[str, Any], path: Path, config: CellPLMConfig) -> None:
    from sceval.models._safe_load import describe_key_mismatch, state_mismatch

    emb = state.get("embedder.feat_enc.emb")
    if emb is not None and emb.ndim == 2 and emb.shape[0] != config.n_genes:
        msg = (
            f"the gene list of {config.version}.config.json has {config.n_genes} genes but "
            f"embedder.feat_enc.emb in {str(path)!r} has {emb.shape[0]} rows (one per "
            "gene); expected equal lengths. Fix: use the config.json and .best.ckpt of the "
            "same checkpoint version, unmodified."
        )
        raise CellPLMCheckpointError(msg)
    missing, unexpected, shapes = (sorted(x) for x in state_mismatch(model.state_dict(), state))
    if not (missing or unexpected or shapes):
        return
    c = config
    arch = (
        f"enc_hid={c.enc_hid}, enc_layers={c.enc_layers}, latent_mod={c.latent_mod!r}, "
        f"post_latent_dim={c.post_latent_dim}, num_clusters={c.num_clusters}, "
        f"norm={c.norm!r}, {c.n_genes} genes"
    )
    msg = (
        f"{str(path)!r} does not match the CellPLM architecture of {c.version}.config.json "
        f"({arch}): "
        + describe_key_mismatch(missing, unexpected, shapes, _MAX_LISTED)
        + ". Expected an official CellPLM .best.ckpt (keys embedder.*, encoder.layers.N.*, "
        "pre_latent_norm.*, latent.layers.1.*; pretraining-only modules "
        f"{list(IGNORED_KEY_PREFIXES)} are ignored). Unlike the official loader, which "
        "silently skips mismatched keys, sceval refuses a partial load. Fix: use the "
        "config.json and .best.ckpt of the same version."
    )
    raise CellPLMCheckpointError(msg)


def load_cellplm(folder: str | Path, version: str | None = None) -> tuple[Any, CellPLMConfig]:
    """Load an official CellPLM checkpoint folder.

    Parameters
    ----------
    folder
        A folder with ``<version>.config.json`` and ``<version>.best.ckpt`` (a
        ``torch.save`` dict with ``model_state_dict``, loaded with ``weights_only=True``).
    version
        The file prefix, needed only when the folder holds several versions.

    Returns
    -------
    model : CellPLM
        In eval mode on the CPU, float32; ``model.ignored_keys`` lists the checkpoint keys
        dropped by name (:data:`IGNORED_KEY_PREFIXES`).
    config : CellPLMConfig

    Raises
    ------
    FileNotFoundError
        A file is missing.
    CellPLMCheckpointError
        A malformed config; a gene list whose length differs from the embedding table;
        missing, unexpected or mis-shaped weights (one message lists them all).
    sceval.models._safe_load.UnsafePickleError
        The ``.best.ckpt`` holds anything but tensors and plain data (never executed).
    """
    from sceval.models._safe_load import safe_torch_load

    folder = Path(folder)
    if not folder.is_dir():
        msg = f"CellPLM checkpoint folder {str(folder)!r} does not exist."
        raise FileNotFoundError(msg)
    version = _find_version(folder, version)
    ckpt = folder / f"{version}.best.ckpt"
    if not ckpt.is_file():
        msg = (
            f"CellPLM checkpoint folder {str(folder)!r} has {version}.config.json but not "
            f"{version}.best.ckpt; expected both (official layout). Fix: download the "
            f"weights from {_DROPBOX} into the folder."
        )
        raise FileNotFoundError(msg)
    config = read_config(folder / f"{version}.config.json")
    state, ignored = _state_dict(safe_torch_load(ckpt), ckpt)
    model = _nn().CellPLM(config)
    _check_keys(model, state, ckpt, config)
    model.load_state_dict(state, strict=True)
    model.ignored_keys = ignored
    model.eval()
    return model, config


def reset_parameters(model: Any, seed: int) -> Any:
    """Re-initialize every learned weight of a :class:`CellPLM` in place, seeded.

    The initializations of the freshly built official model: ``nn.Linear`` defaults
    (uniform in ``±1/sqrt(fan_in)``), norms ones/zeros, the gene embedding
    ``randn * 0.005`` (``OmicsEmbedder``), ``missing_pe`` ``randn * 0.01``; the fixed
    sinusoidal table is rebuilt. Only a local generator is used.
    """
    import torch
    from torch import nn

    gen = torch.Generator().manual_seed(int(seed))

    def put(t: torch.Tensor, value: torch.Tensor) -> None:
        with torch.no_grad():
            t.copy_(value)

    for mod in model.modules():
        if isinstance(mod, nn.Linear):
            bound = 1.0 / math.sqrt(mod.in_features)
            put(mod.weight, torch.empty(mod.weight.shape).uniform_(-bound, bound, generator=gen))
            put(mod.bias, torch.empty(mod.bias.shape).uniform_(-bound, bound, generator=gen))
        elif isinstance(mod, (nn.LayerNorm, nn.GroupNorm)):
            put(mod.weight, torch.ones_like(mod.weight))
            put(mod.bias, torch.zeros_like(mod.bias))
    emb = model.embedder.feat_enc.emb
    put(emb, torch.randn(emb.shape, generator=gen) * 0.005)
    pe = getattr(model.embedder, "pe_enc", None)
    if pe is not None:
        put(pe.missing_pe, torch.randn(pe.missing_pe.shape, generator=gen) * 0.01)
        put(pe.pe_enc.weight, sinusoidal_table(pe.missing_pe.shape[0]))
    return model


def sinusoidal_table(d: int, height: int = PE_GRID, width: int = PE_GRID) -> Any:
    """The fixed ``Sinusoidal2dPE`` table, ``(height * width, d)`` (unused in the forward)."""
    import torch

    half = d // 2
    div = torch.exp(torch.arange(0.0, half, 2) * -(math.log(10000.0) / half))
    pos_w = torch.arange(0.0, width)[:, None] * div  # (width, half/2)
    pos_h = torch.arange(0.0, height)[:, None] * div
    pe = torch.zeros(d, height, width)
    pe[0:half:2] = torch.sin(pos_w).T[:, None, :].expand(-1, height, -1)
    pe[1:half:2] = torch.cos(pos_w).T[:, None, :].expand(-1, height, -1)
    pe[half::2] = torch.sin(pos_h).T[:, :, None].expand(-1, -1, width)
    pe[half + 1 :: 2] = torch.cos(pos_h).T[:, :, None].expand(-1, -1, width)
    return pe.flatten(1).T.contiguous()


# --------------------------------------------------------------------------- genes


def ensembl_ids(adata: Any, report: Any) -> np.ndarray:
    """Unversioned Ensembl IDs of ``adata``'s genes (``""`` when unknown), offline.

    Ensembl IDs are used as they are (the version suffix dropped); for symbols the
    column ``var["ensembl_id"]`` (written by :func:`sceval.data.harmonize_genes`) is used
    when present, else the bundled gene tables (:func:`sceval.data.genes.map_genes`, species
    detected from the names) -- instead of the official online ``mygene`` query.
    """
    col = getattr(report, "gene_id_column", None)
    ids = [str(x) for x in (adata.var[col] if col else adata.var_names)]
    if str(getattr(report, "gene_id_type", "symbol")).startswith("ensembl"):
        raw = ids
    elif "ensembl_id" in adata.var.columns:
        raw = ["" if v is None or v != v else str(v) for v in adata.var["ensembl_id"]]
    else:
        from sceval.data.genes import map_genes

        table, _ = map_genes(ids)  # species detected: mouse symbols stay mouse
        raw = [str(v) for v in table["ensembl_id"]]
    out = []
    for name in raw:
        m = _ENSEMBL.match(name.strip())
        out.append(m.group(1) if m else "")
    return np.asarray(out, dtype=object)


def match_genes(ids: np.ndarray, gene_list: tuple[str, ...]) -> np.ndarray:
    """Row of the checkpoint's gene list for each gene (``-1``: not in it).

    Of several genes with the same Ensembl ID only the first is matched (the official
    pipeline makes names unique, which takes the later ones out of the gene set).
    """
    index = {g: i for i, g in enumerate(gene_list)}
    seen: set[str] = set()
    rows = np.full(len(ids), -1, dtype=np.int64)
    for j, g in enumerate(ids):
        if g and g in index and g not in seen:
            rows[j] = index[g]
            seen.add(g)
    return rows


# --------------------------------------------------------------------------- inference


def gumbel_uniforms(seed: int, cells: np.ndarray, k: int) -> np.ndarray:
    """``(len(cells), k)`` U[0, 1) draws for the GMVAE Gumbel sample, one generator per
    cell keyed by ``(seed, global cell index)`` (so batching and chunking do not matter)."""
    out = np.empty((len(cells), k), dtype=np.float32)
    for r, c in enumerate(cells):
        out[r] = np.random.default_rng((int(seed), 7, int(c))).random(k, dtype=np.float32)
    return out


def forward_groups(
    labels: np.ndarray, batch_size: int, *, shuffle: bool = False, seed: int = 0
) -> list[np.ndarray]:
    """Which cells share a forward pass.

    Cells are grouped by ``labels`` (e.g. all zeros: one group), groups in order of first
    appearance; each group is one pass, or is cut into passes of at most ``batch_size``
    cells (``<= 0``: no cut), consecutive in data order (official) or, with ``shuffle``,
    in a random order seeded by ``seed``.

    Returns
    -------
    list of numpy.ndarray
        Cell indices of each forward pass.
    """
    n = len(labels)
    codes = np.unique(np.asarray(labels).astype(str), return_inverse=True)[1].ravel()
    first: dict[int, int] = {}
    for i, c in enumerate(codes.tolist()):
        first.setdefault(c, i)
    rng = np.random.default_rng((int(seed), 11))
    passes: list[np.ndarray] = []
    for c in sorted(first, key=first.__getitem__):
        idx = np.flatnonzero(codes == c)
        if shuffle:
            idx = idx[rng.permutation(idx.size)]
        size = idx.size if batch_size <= 0 else int(batch_size)
        passes.extend(idx[i : i + size] for i in range(0, idx.size, size))
    if sum(p.size for p in passes) != n:  # pragma: no cover - guards the cutting above
        msg = "forward_groups lost cells"
        raise RuntimeError(msg)
    return passes


def cell_embeddings(
    model: Any,
    counts: sp.csr_matrix,
    gene_rows: np.ndarray,
    passes: list[np.ndarray],
    *,
    latent: str = "argmax",
    seed: int = 0,
    offset: int = 0,
    device: str = "cpu",
    precision: str = "auto",
) -> np.ndarray:
    """CellPLM embeddings of all cells, in cell order.

    Parameters
    ----------
    model
        A :class:`CellPLM` already on ``device``.
    counts
        Raw counts, CSR cells x matched genes.
    gene_rows
        Row of ``embedder.feat_enc.emb`` for each column of ``counts``.
    passes
        Cell indices of each forward pass (:func:`forward_groups`).
    latent
        ``"argmax"`` or ``"gumbel"`` (GMVAE only; see the module docstring).
    seed, offset
        Seed of the Gumbel draws and the global index of cell 0 (chunked data).
    device, precision
        See :func:`sceval.models.foundation.inference_context`.
    """
    import scipy.sparse as sp
    import torch

    if latent not in LATENT_MODES:
        msg = f"latent={latent!r} is not supported; expected one of {list(LATENT_MODES)}."
        raise ValueError(msg)
    m = sp.csr_matrix(counts, dtype=np.float32, copy=True)
    m.sum_duplicates()  # sorted, unique column indices per row (a coalesced COO below)
    rows = torch.as_tensor(np.asarray(gene_rows, dtype=np.int64), device=device)
    cfg = model.config
    out = np.zeros((m.shape[0], cfg.post_latent_dim), dtype=np.float32)
    gumbel = latent == "gumbel" and cfg.latent_mod == "gmvae"
    model.eval()
    with inference_context(device, precision):
        for idx in passes:
            sub = m[idx]
            cells = np.repeat(np.arange(sub.shape[0], dtype=np.int64), np.diff(sub.indptr))
            x = torch.sparse_coo_tensor(
                torch.from_numpy(np.stack([cells, sub.indices.astype(np.int64)])),
                torch.from_numpy(np.log1p(sub.data)),
                size=sub.shape,
                dtype=torch.float32,
                check_invariants=True,
                is_coalesced=True,
            ).to(device)
            u = None
            if gumbel:
                u = torch.from_numpy(gumbel_uniforms(seed, idx + offset, cfg.num_clusters))
                u = u.to(device)
            with torch.autocast(torch.device(device).type, enabled=False):
                h = model.embedder(x, rows)  # sparse product in float32
            h = model.pre_latent_norm(model.encoder(h))
            emb = model.latent.layers[1](h, u)
            out[idx] = emb.float().cpu().numpy()
    return out


# --------------------------------------------------------------------------- models


@dataclass(frozen=True)
class CellPLMCoverage(GeneCoverage):
    """Gene coverage plus the batch-composition note for the results message."""

    note: str = ""

    @property
    def message(self) -> str:
        """Coverage line and how cells were grouped into forward passes."""
        base = super().message
        return f"{base}; {self.note}" if self.note else base


@dataclass
class _Loaded:
    key: tuple[Any, ...]
    model: Any
    config: CellPLMConfig


class _CellPLMBase(FoundationModel):
    """Shared implementation of ``cellplm`` and ``cellplm.random``."""

    default_checkpoint = "cellplm.20231027_85m"
    random_weights = False

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._loaded: _Loaded | None = None
        self.coverage: GeneCoverage | None = None

    def _latent(self) -> str:
        latent = str(self.params.get("latent", "argmax"))
        if latent not in LATENT_MODES:
            msg = (
                f"model {self.info.key!r}: latent={latent!r} is not supported; expected one of "
                f"{list(LATENT_MODES)} ('argmax': deterministic, the default; 'gumbel': the "
                "official Gumbel draw of the GMVAE cluster, seeded)."
            )
            raise ValueError(msg)
        return latent

    def check(self, adata: Any, ctx: EmbedContext) -> None:
        """Base checks plus: the checkpoint exists (else :class:`ModelSkippedError`)."""
        super().check(adata, ctx)
        self.checkpoint_dir()
        self._latent()

    def _load(self, ctx: EmbedContext) -> _Loaded:
        folder = self.checkpoint_dir()
        device = self._device(ctx)
        random = self.random_weights or bool(self.params.get("random_init", False))
        version = self.params.get("version")
        key = (str(folder), version, random, int(ctx.seed) if random else None, device)
        if self._loaded is not None and self._loaded.key == key:
            return self._loaded
        try:
            model, config = load_cellplm(folder, version)
        except FileNotFoundError as err:
            raise ModelSkippedError(str(err)) from err
        if random:
            reset_parameters(model, ctx.seed)
        model.to(device)
        self._loaded = _Loaded(key, model, config)
        return self._loaded

    def _group_labels(self, adata: Any, ctx: EmbedContext) -> tuple[np.ndarray, str]:
        group_by = self.params.get("group_by", "auto")
        if group_by == "auto":
            group_by = ctx.batch_key
        if group_by in (None, "none", "all"):
            return np.zeros(adata.n_obs, dtype=np.int64), "all cells"
        if group_by not in adata.obs.columns:
            msg = (
                f"model {self.info.key!r}: group_by={group_by!r} is not a column of adata.obs; "
                "expected 'auto' (the batch key), 'all' (one group) or an obs column."
            )
            raise DataContractError(msg)
        return adata.obs[group_by].to_numpy(), f"obs[{group_by!r}]"

    def _prepare(
        self, adata: Any, ctx: EmbedContext, config: CellPLMConfig
    ) -> tuple[Any, np.ndarray, list[np.ndarray], str]:
        """Matched counts, their gene rows, the forward passes and the grouping note."""
        from sceval.data.contract import get_counts

        rows = match_genes(ensembl_ids(adata, ctx.report), config.gene_list)
        matched = rows >= 0
        counts = get_counts(adata, ctx.report)
        try:
            cov = gene_coverage(matched, counts, self.info.key)
        except DataContractError as err:
            msg = (
                f"{err} CellPLM's gene list holds {config.n_genes} human Ensembl IDs "
                f"(e.g. {list(config.gene_list[:2])}); symbols are mapped offline with "
                "var['ensembl_id'] or the bundled gene tables, so mouse or other species' "
                "genes do not match (CellPLM was pretrained on human cells only)."
            )
            raise DataContractError(msg) from err
        labels, where = self._group_labels(adata, ctx)
        batch_size = int(self.params.get("batch_size", 0) or 0)
        shuffle = bool(self.params.get("shuffle", False))
        passes = forward_groups(labels, batch_size, shuffle=shuffle, seed=ctx.seed)
        largest = max((p.size for p in passes), default=0)
        n_groups = len(np.unique(np.asarray(labels).astype(str)))
        cut = (
            f"cut into passes of <= {batch_size} cells"
            + (" in a seeded random order" if shuffle else " in data order")
            if batch_size > 0
            else "one pass per group"
        )
        latent = self._latent() if config.latent_mod == "gmvae" else "vae mean"
        note = (
            f"cells are tokens, so each cell's embedding depends on the cells sharing its "
            f"forward pass: grouped by {where} ({n_groups} groups, {cut}, {len(passes)} "
            f"passes, largest {largest} cells); latent: {latent}"
        )
        self.coverage = CellPLMCoverage(**dataclasses.asdict(cov), note=note)
        return counts[:, np.flatnonzero(matched)], rows[matched], passes, note

    def embed_cells(self, adata: Any, ctx: EmbedContext) -> np.ndarray:
        """CellPLM embeddings ``(n_cells, post_latent_dim)`` float32 (not normalized)."""
        loaded = self._load(ctx)
        counts, rows, passes, _ = self._prepare(adata, ctx, loaded.config)
        return cell_embeddings(
            loaded.model,
            counts,
            rows,
            passes,
            latent=self._latent(),
            seed=ctx.seed,
            offset=ctx.cell_offset,
            device=self._device(ctx),
            precision=self._precision(),
        )

    def embed_streaming(self, adata: Any, ctx: EmbedContext) -> np.ndarray:
        """Embed all cells at once: cells of one group must share forward passes, so the
        data are not cut into independent chunks. Backed data are read chunk by chunk
        and only the counts are kept in memory."""
        if not bool(getattr(adata, "isbacked", False)):
            return self.embed_cells(adata, ctx)
        import anndata as ad
        import scipy.sparse as sp

        size = int(self.params.get("chunk_size", self.chunk_size))
        if size < 1:
            msg = f"chunk_size must be >= 1, got {size}"
            raise ValueError(msg)
        from sceval.data.contract import get_counts

        parts = []
        for start in range(0, adata.n_obs, size):
            chunk = adata[start : min(start + size, adata.n_obs)].to_memory()
            parts.append(get_counts(chunk, ctx.report))
            del chunk
        mem = ad.AnnData(X=sp.vstack(parts).tocsr(), obs=adata.obs.copy(), var=adata.var.copy())
        rep = dataclasses.replace(ctx.report, counts_location="X")
        return self.embed_cells(mem, dataclasses.replace(ctx, report=rep, cache={}))

    def embed_genes(self, genes: list[str], ctx: EmbedContext) -> tuple[np.ndarray, np.ndarray]:
        """Rows of the gene embedding table ``embedder.feat_enc.emb`` for ``genes``
        (symbols or Ensembl IDs, mapped offline): ``(matrix (n_found, enc_hid), found
        mask (len(genes),))``."""
        import torch

        from sceval.data.genes import map_genes

        loaded = self._load(ctx)
        table, _ = map_genes([str(g) for g in genes])
        ids = []
        for g in table["ensembl_id"]:
            m = _ENSEMBL.match(str(g))
            ids.append(m.group(1) if m else "")
        index = {g: i for i, g in enumerate(loaded.config.gene_list)}
        rows = [index.get(g, -1) if g else -1 for g in ids]
        found = np.array([r >= 0 for r in rows], dtype=bool)
        sel = torch.tensor([r for r in rows if r >= 0], dtype=torch.long)
        device = self._device(ctx)
        with inference_context(device, "fp32"):
            emb = loaded.model.gene_embeddings(sel.to(device))
        return emb.float().cpu().numpy(), found


_PARAMS_DOC = """
    Parameters (keyword arguments)
    ----------
    checkpoint
        Registered checkpoint name or a local folder in the official layout
        (``<version>.config.json`` + ``<version>.best.ckpt``). Default
        ``"cellplm.20231027_85m"``.
    version
        File prefix when the folder holds several versions (e.g. the official ``ckpt/``).
    group_by
        Which cells share forward passes: ``"auto"`` (default: the benchmark's batch key,
        as the official pipeline groups by ``obs["batch"]``; one group without a batch
        key), ``"all"`` (one group) or an ``obs`` column.
    batch_size
        Most cells per forward pass; ``0`` (default, official) embeds each group in one
        pass. Memory grows linearly with it.
    shuffle
        With ``batch_size > 0``: cut groups in a random order seeded by ``ctx.seed``
        instead of data order (official).
    latent
        ``"argmax"`` (default: the most probable GMVAE cluster, deterministic) or
        ``"gumbel"`` (the official Gumbel draw, seeded per cell by ``ctx.seed``).
    precision
        ``"auto"`` (bf16 on CUDA when supported, fp32 on CPU), ``"fp32"``, ``"bf16"``,
        ``"fp16"``; the flow normalization always runs in fp32.
"""


@register_model
class CellPLMModel(_CellPLMBase):
    """``cellplm``: zero-shot CellPLM cell embeddings (the latent mean).

    Cells are tokens: **a cell's embedding depends on which other cells share its
    forward pass** (``group_by``, ``batch_size``, ``shuffle``); the results message
    says how cells were grouped.
    """

    __doc__ = (__doc__ or "") + _PARAMS_DOC
    info = ModelInfo(
        key="cellplm",
        kind="foundation",
        input="counts",
        requires=("torch",),
        install="pip install torch",
        description=(
            "CellPLM zero-shot cell embedding (cells as tokens, Flowformer over the cells of "
            "a batch; official checkpoint, plain PyTorch)"
        ),
        citation="Wen et al., ICLR 2024 (CellPLM)",
        license=_LICENSE,
    )


@register_model
class CellPLMRandomModel(_CellPLMBase):
    """``cellplm.random``: the CellPLM architecture, gene list and preprocessing of the
    checkpoint with all weights re-initialized (seeded by ``ctx.seed``): what the
    architecture gives without pretraining."""

    __doc__ = (__doc__ or "") + _PARAMS_DOC
    random_weights = True
    info = ModelInfo(
        key="cellplm.random",
        kind="control",
        input="counts",
        requires=("torch",),
        install="pip install torch",
        description="control: CellPLM architecture with seeded random weights (no pretraining)",
        citation="Wen et al., ICLR 2024 (CellPLM); randomly initialized",
        license=_LICENSE,
    )
