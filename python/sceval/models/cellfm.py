"""CellFM (Zeng et al., Nat. Commun. 2025) in plain PyTorch, reading the official
MindSpore checkpoints without MindSpore.

Architecture, as in biomed-AI/CellFM ``model.py`` (``CellFM.encode``), ``retention.py``
(``RetentionLayer``, ``MHRetention``, ``GatedLinearUnit``, ``SRMSNorm``) and the backbone
of the official zero-shot tutorials (``tutorials/CellAnnotation/annotation_model.py``
``Backbone``; ``tutorials/BatchIntegration/BatchIntegration.ipynb`` ``get_embed``):

* token of gene ``g`` with value ``x``: ``gene_emb[g] + value_enc(x)`` where the value
  encoder is ``softmax(w3(h) + a * h) @ table`` with ``h = LeakyReLU_0.2(w1 x)``;
  ``[CLS]`` (``cls_token``) is prepended and padding positions are zeroed;
* ``enc_nlayers`` layers of gated linear attention (the "retention" has no decay and
  no positional encoding): per head ``Q = relu(x W_q) / sqrt(d_h)``, ``K = relu(x W_k) /
  sqrt(d_h)`` (zero at padding), ``V = x W_v / sqrt(n)`` with ``n`` the number of
  expressed genes, ``O = SRMSNorm(Q (K^T V)) * SiLU(x W_u)``, output ``O W_o``;
  ``SRMSNorm(y) = y / max(||y / sqrt(d_h)||_2, 1e-12)`` (no weight);
* post-norm residuals with ``alpha = (2 * enc_nlayers) ** 0.25``:
  ``x = LN(alpha x + attn(x))``, ``x = LN(alpha x + ((x W_u') * (x W_v')) W_o')``;
  MindSpore's ``nn.LayerNorm`` epsilon is ``1e-7`` and ``nn.LeakyReLU`` slope ``0.2``;
* cell embedding: the final ``[CLS]`` output (1536-d, not normalized); gene embeddings:
  rows of ``gene_emb``.

Padding is excluded from the keys, so padding each batch to its own longest cell gives
the same numbers as the official padding to 2,048 genes.

Preprocessing follows the zero-shot tutorials (``CellAnnotation_zeroshot.ipynb``,
``read_h5ad`` / ``SCrna`` / ``Prepare`` of ``data_process.py``):

1. counts are rescaled so that no cell has more than 1e5 counts:
   ``round(x / max(1, total / 1e5))`` (total over all genes);
2. genes are matched to the vocabulary csv (``expand_gene_info.csv`` for the 80M
   model, ``gene_info.csv`` for the 800M one; first column, HGNC symbols; token id =
   row + 1, 0 is padding); optionally, when the checkpoint folder holds the HGNC table
   ``updated_hgcn.tsv`` of the official repository, unmatched alias and previous symbols
   are mapped to approved ones as CellFM-torch ``map_gene_list`` does;
3. ``normalize_total(target_sum=1e4)`` over the matched genes, then ``log1p``;
4. the expressed (non-zero) genes of each cell are the tokens; a cell with more than
   2,048 of them keeps 2,048 drawn at random without replacement with weights
   ``log1p(value)`` (``Prepare.sample``; nondeterministic in the official code, here
   seeded by ``(seed, global cell index)`` and counted in the results message).

torch is imported on first use only.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
import types
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sceval._errors import ModelSkippedError, ScevalError
from sceval.models.base import EmbedContext, ModelInfo, register_model
from sceval.models.checkpoints import CheckpointSpec, FileSpec, register_checkpoint
from sceval.models.foundation import (
    FoundationModel,
    GeneCoverage,
    batches_by_length,
    gene_coverage,
    inference_context,
)

if TYPE_CHECKING:  # pragma: no cover
    import scipy.sparse as sp
    import torch

__all__ = [
    "CHECKPOINT_FILES",
    "HEAD_DIM",
    "MAX_GENES",
    "CellFMCheckpointError",
    "CellFMConfig",
    "CellFMCoverage",
    "CellFMModel",
    "CellFMRandomModel",
    "CellFMTokenizer",
    "build_tokenizer",
    "cell_embeddings",
    "gene_rows",
    "load_cellfm",
    "preprocess",
    "read_hgnc_aliases",
    "read_vocab",
    "reset_parameters",
]

#: Official checkpoint file -> its vocabulary csv (model card and tutorials).
CHECKPOINT_FILES = {
    "CellFM_80M_weight.ckpt": "expand_gene_info.csv",
    "base_weight.ckpt": "gene_info.csv",
}
#: Optional HGNC table for alias remapping (``csv/updated_hgcn.tsv`` of the repository).
HGNC_FILE = "updated_hgcn.tsv"
#: Head dimension of both official configs (1536 / 48 heads); the number of heads of a
#: checkpoint is ``d_model // HEAD_DIM`` unless ``nheads=`` is given.
HEAD_DIM = 32
#: ``Config.nonz_len``: expressed genes per cell fed to the model.
MAX_GENES = 2048
#: Cells are rescaled to at most this many counts (``read_h5ad`` of the tutorials).
COUNT_CAP = 1e5
#: ``normalize_total`` target of the tutorials.
TARGET_SUM = 1e4
#: MindSpore defaults: ``nn.LeakyReLU(alpha=0.2)``, ``nn.LayerNorm(epsilon=1e-7)``;
#: ``SRMSNorm`` clamps the norm at 1e-12.
LEAKY_SLOPE = 0.2
LN_EPS = 1e-7
SRMS_CLAMP = 1e-12

#: Optimizer state saved next to the weights by MindSpore's ``Model.train``; never read.
OPTIMIZER_KEYS = (
    "global_step",
    "learning_rate",
    "beta1_power",
    "beta2_power",
    "current_iterator_step",
    "last_overflow_iterator_step",
    "scale_sense",
    "epoch_num",
    "step_num",
)
OPTIMIZER_PREFIXES = ("moment1.", "moment2.")
#: Parts of the pretraining model that the embedding does not use (decoders, the
#: masked-value and zero embeddings, CellFM-torch's spatial tokens); ignored by name.
UNUSED_KEYS = ("zero_emb", "value_enc.mask_emb", "ST_emb", "cluster_emb")
UNUSED_PREFIXES = ("value_dec.", "cellwise_dec.", "ST_enc.", "query.", "classifier.", "proj.")
#: Prefixes of the parameters the embedding uses; any other key under them is an error.
_USED_PREFIXES = ("gene_emb", "cls_token", "value_enc.value_enc.", "encoder.")
_LAYER_RE = re.compile(r"^encoder\.(\d+)\.")
_MAX_LISTED = 12


class CellFMCheckpointError(ScevalError, ValueError):
    """A CellFM checkpoint folder does not match the official format."""


# --------------------------------------------------------------------------- config


def gene_rows(n_genes: int) -> int:
    """Rows of ``gene_emb`` for ``n_genes`` vocabulary genes: one padding row, rounded
    up to a multiple of 8 (``n_genes + 1 + (-n_genes - 1) % 8`` in ``model.py``)."""
    return n_genes + 1 + (-n_genes - 1) % 8


@dataclass(frozen=True)
class CellFMConfig:
    """Architecture of a CellFM checkpoint (read from its tensor shapes).

    Attributes
    ----------
    n_genes
        Vocabulary genes (rows of the vocabulary csv).
    d_model
        ``enc_dims`` (1536 in both official models).
    nlayers
        ``enc_nlayers`` (2 for the 80M model, 40 for the 800M one).
    nheads
        ``enc_num_heads`` (48).
    value_hidden
        Width of the value encoder (256).
    """

    n_genes: int
    d_model: int
    nlayers: int
    nheads: int
    value_hidden: int = 256

    @property
    def alpha(self) -> float:
        """Residual scale ``(2 * enc_nlayers) ** 0.25`` (``RetentionLayer``)."""
        return (2 * self.nlayers) ** 0.25

    @property
    def head_dim(self) -> int:
        """``d_model // nheads``."""
        return self.d_model // self.nheads

    @property
    def rows(self) -> int:
        """Rows of ``gene_emb``."""
        return gene_rows(self.n_genes)


@dataclass(frozen=True)
class CellFMCoverage(GeneCoverage):
    """Gene coverage plus what CellFM's preprocessing did to the cells.

    Attributes
    ----------
    n_cells
        Cells embedded.
    n_subsampled
        Cells with more than ``max_genes`` expressed vocabulary genes (randomly
        subsampled, seeded).
    max_genes
        Genes per cell fed to the model.
    n_empty
        Cells without any expressed vocabulary gene (embedded from ``[CLS]`` alone).
    n_alias
        Genes matched through HGNC alias or previous symbols.
    """

    n_cells: int = 0
    n_subsampled: int = 0
    max_genes: int = MAX_GENES
    n_empty: int = 0
    n_alias: int = 0

    @property
    def message(self) -> str:
        """One line for the results ``message`` column."""
        parts = [super().message]
        if self.n_alias:
            parts.append(
                f"{self.n_alias} genes matched through HGNC alias/previous symbols ({HGNC_FILE})"
            )
        if self.n_subsampled:
            parts.append(
                f"{self.n_subsampled} of {self.n_cells} cells had > {self.max_genes} "
                f"expressed genes and were subsampled to {self.max_genes} (weighted by "
                "log1p, seeded by seed + cell index)"
            )
        if self.n_empty:
            parts.append(
                f"{self.n_empty} cells had no expressed vocabulary gene (embedded from [CLS] alone)"
            )
        return "; ".join(parts)


# --------------------------------------------------------------------------- torch modules


@functools.cache
def _nn() -> types.SimpleNamespace:
    """Define the torch modules on first use (torch is an optional dependency)."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    def srms_norm(x: torch.Tensor) -> torch.Tensor:
        """``SRMSNorm``: ``x / max(||x / sqrt(d)||_2, 1e-12)`` in float32."""
        dtype = x.dtype
        x = x.float()
        norm = torch.linalg.vector_norm(x * (1.0 / math.sqrt(x.shape[-1])), dim=-1, keepdim=True)
        return (x / norm.clamp(min=SRMS_CLAMP)).to(dtype)

    class MSLayerNorm(nn.Module):
        """MindSpore ``nn.LayerNorm`` (parameters ``gamma``/``beta``, epsilon 1e-7)."""

        def __init__(self, d: int, eps: float = LN_EPS) -> None:
            super().__init__()
            self.gamma = nn.Parameter(torch.ones(d))
            self.beta = nn.Parameter(torch.zeros(d))
            self.eps = eps

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return F.layer_norm(x, (x.shape[-1],), self.gamma, self.beta, self.eps)

    class ValueFFN(nn.Module):
        """``FFN(1, d)`` of ``model.py``: ``softmax(w3(h) + a h) @ table``,
        ``h = LeakyReLU_0.2(w1 x)``."""

        def __init__(self, d: int, hidden: int) -> None:
            super().__init__()
            self.w1 = nn.Linear(1, hidden, bias=False)
            self.w3 = nn.Linear(hidden, hidden, bias=False)
            self.table = nn.Linear(hidden, d, bias=False)
            self.a = nn.Parameter(torch.zeros(1, 1))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = F.leaky_relu(self.w1(x), LEAKY_SLOPE)
            h = self.w3(h) + h * self.a
            return self.table(torch.softmax(h, dim=-1))

    class ValueEncoder(nn.Module):
        """``value_enc`` (unmasked input: the value FFN of each expression value)."""

        def __init__(self, d: int, hidden: int) -> None:
            super().__init__()
            self.value_enc = ValueFFN(d, hidden)

        def forward(self, values: torch.Tensor) -> torch.Tensor:
            return self.value_enc(values.unsqueeze(-1))

    class MHRetention(nn.Module):
        """``MHRetention``: gated multi-head linear attention (no decay)."""

        def __init__(self, d: int, nheads: int) -> None:
            super().__init__()
            self.nheads = nheads
            self.q_proj = nn.Linear(d, d, bias=False)
            self.k_proj = nn.Linear(d, d, bias=False)
            self.v_proj = nn.Linear(d, d, bias=False)
            self.u_proj = nn.Linear(d, d, bias=False)
            self.o_proj = nn.Linear(d, d, bias=False)

        def forward(
            self, x: torch.Tensor, keep: torch.Tensor, v_scale: torch.Tensor, n_query: int | None
        ) -> torch.Tensor:
            b, n, d = x.shape
            h = self.nheads
            dh = d // h
            xq = x if n_query is None else x[:, :n_query]
            nq = xq.shape[1]
            scale = math.sqrt(dh)

            def heads(t: torch.Tensor, length: int) -> torch.Tensor:
                return t.view(b, length, h, dh).transpose(1, 2)

            q = heads(torch.relu(self.q_proj(xq)), nq) / scale
            k = heads(torch.relu(self.k_proj(x)), n) * keep[:, None, :, None] / scale
            v = heads(self.v_proj(x), n) * v_scale
            u = heads(F.silu(self.u_proj(xq)), nq)
            o = torch.matmul(q, torch.matmul(k.transpose(-1, -2), v))
            o = srms_norm(o) * u
            return self.o_proj(o.transpose(1, 2).reshape(b, nq, d))

    class GatedLinearUnit(nn.Module):
        """``GatedLinearUnit``: ``o_proj(u_proj(x) * v_proj(x))`` (no activation)."""

        def __init__(self, d: int) -> None:
            super().__init__()
            self.u_proj = nn.Linear(d, d, bias=False)
            self.v_proj = nn.Linear(d, d, bias=False)
            self.o_proj = nn.Linear(d, d, bias=False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.o_proj(self.u_proj(x) * self.v_proj(x))

    class RetentionLayer(nn.Module):
        """``RetentionLayer``: post-norm residuals scaled by ``alpha``."""

        def __init__(self, d: int, nheads: int, alpha: float) -> None:
            super().__init__()
            self.attn = MHRetention(d, nheads)
            self.ffn = GatedLinearUnit(d)
            self.post_norm1 = MSLayerNorm(d)
            self.post_norm2 = MSLayerNorm(d)
            self.alpha = alpha

        def forward(
            self,
            x: torch.Tensor,
            keep: torch.Tensor,
            v_scale: torch.Tensor,
            n_query: int | None = None,
        ) -> torch.Tensor:
            out = self.attn(x, keep, v_scale, n_query)
            if n_query is not None:
                x = x[:, :n_query]
            x = self.post_norm1(x * self.alpha + out)
            return self.post_norm2(x * self.alpha + self.ffn(x))

    class CellFMNet(nn.Module):
        """The CellFM encoder with the official parameter names (``gene_emb``,
        ``cls_token``, ``value_enc.value_enc.*``, ``encoder.{i}.*``)."""

        def __init__(self, config: CellFMConfig) -> None:
            super().__init__()
            c = config
            self.config = c
            self.gene_emb = nn.Parameter(torch.zeros(c.rows, c.d_model))
            self.cls_token = nn.Parameter(torch.zeros(1, 1, c.d_model))
            self.value_enc = ValueEncoder(c.d_model, c.value_hidden)
            self.encoder = nn.ModuleList(
                RetentionLayer(c.d_model, c.nheads, c.alpha) for _ in range(c.nlayers)
            )

        def encode(
            self,
            genes: torch.Tensor,
            values: torch.Tensor,
            keep: torch.Tensor,
            *,
            cls_only: bool = False,
        ) -> torch.Tensor:
            """Encoder output ``(batch, 1 + n_tokens, d)`` (``[CLS]`` first).

            Parameters
            ----------
            genes, values
                Gene ids (1-based, 0 = padding) and log-normalized values,
                ``(batch, n_tokens)``.
            keep
                ``True`` at gene tokens, ``False`` at padding.
            cls_only
                Evaluate the last layer for ``[CLS]`` only (output ``(batch, 1, d)``;
                the same numbers, less work).
            """
            b = genes.shape[0]
            x = self.value_enc(values) + self.gene_emb[genes]
            x = torch.cat([self.cls_token.expand(b, -1, -1).to(x.dtype), x], dim=1)
            mask = torch.cat([keep.new_ones(b, 1), keep], dim=1).to(x.dtype)
            x = x * mask.unsqueeze(-1)
            n = keep.sum(dim=1).clamp(min=1).to(torch.float32)
            v_scale = torch.rsqrt(n).view(b, 1, 1, 1).to(x.dtype)
            last = len(self.encoder) - 1
            for i, layer in enumerate(self.encoder):
                x = layer(x, mask, v_scale, 1 if cls_only and i == last else None)
            return x

        def cell_embedding(
            self, genes: torch.Tensor, values: torch.Tensor, keep: torch.Tensor
        ) -> torch.Tensor:
            """Final ``[CLS]`` output, ``(batch, d)``."""
            return self.encode(genes, values, keep, cls_only=True)[:, 0]

    return types.SimpleNamespace(
        MSLayerNorm=MSLayerNorm,
        ValueFFN=ValueFFN,
        ValueEncoder=ValueEncoder,
        MHRetention=MHRetention,
        GatedLinearUnit=GatedLinearUnit,
        RetentionLayer=RetentionLayer,
        CellFMNet=CellFMNet,
        srms_norm=srms_norm,
    )


_LAZY_MODULES = (
    "CellFMNet",
    "GatedLinearUnit",
    "MHRetention",
    "MSLayerNorm",
    "RetentionLayer",
    "ValueEncoder",
    "ValueFFN",
)


def __getattr__(name: str) -> Any:
    if name in _LAZY_MODULES:
        return getattr(_nn(), name)
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)


# --------------------------------------------------------------------------- loading


def read_vocab(path: str | Path) -> list[str]:
    """Gene symbols of a CellFM vocabulary csv (``csv/gene_info.csv`` or
    ``csv/expand_gene_info.csv``: header row, symbols in the first column; token id of
    row ``i`` is ``i + 1``).

    Raises
    ------
    CellFMCheckpointError
        Empty file, or a symbol listed twice.
    """
    import pandas as pd

    path = Path(path)
    table = pd.read_csv(path, index_col=0, header=0)
    genes = [str(g) for g in table.index]
    if not genes:
        msg = (
            f"{str(path)!r} lists no genes; expected the official CellFM vocabulary csv "
            "(header 'HGNC_gene,h5_sample_frequency,...', one HGNC symbol per row)."
        )
        raise CellFMCheckpointError(msg)
    seen: set[str] = set()
    dups = [g for g in genes if g in seen or seen.add(g)]  # type: ignore[func-returns-value]
    if dups:
        msg = (
            f"{str(path)!r} lists {len(dups)} symbols more than once (e.g. {dups[:3]}); "
            "expected each gene once. Fix: use the csv shipped with the checkpoint."
        )
        raise CellFMCheckpointError(msg)
    return genes


def read_hgnc_aliases(path: str | Path) -> dict[str, str]:
    """Alias and previous symbol -> approved symbol, from an HGNC download with the
    columns of the official ``csv/updated_hgcn.tsv`` (tab-separated; ``Approved
    symbol`` second, ``Status``, ``Alias symbols``, ``Previous symbols``; lists
    separated by ``", "``).

    As CellFM-torch ``map_gene_list``: only ``Status == "Approved"`` rows; a name that
    is itself an approved symbol is never remapped; previous symbols override aliases.
    """
    import pandas as pd

    table = pd.read_csv(path, sep="\t", header=0, dtype=str)
    need = {"Status", "Alias symbols", "Previous symbols"}
    if table.shape[1] < 2 or not need <= set(table.columns):
        msg = (
            f"{str(path)!r} has columns {list(table.columns)[:8]}; expected an HGNC table "
            "with the approved symbol in the second column and 'Status', 'Alias symbols', "
            "'Previous symbols' (the official csv/updated_hgcn.tsv)."
        )
        raise CellFMCheckpointError(msg)
    table = table[table["Status"] == "Approved"]
    approved = table.iloc[:, 1].astype(str)
    names = set(approved)
    out: dict[str, str] = {}
    for column in ("Alias symbols", "Previous symbols"):
        for sym, field in zip(approved, table[column], strict=True):
            if not isinstance(field, str) or not field:
                continue
            for name in field.split(", "):
                if name and name not in names:
                    out[name] = sym
    return out


def _find_files(folder: Path) -> tuple[Path, Path]:
    present = [name for name in CHECKPOINT_FILES if (folder / name).is_file()]
    if len(present) > 1:
        msg = (
            f"CellFM checkpoint folder {str(folder)!r} holds both {present}; expected one "
            "model per folder. Fix: put CellFM_80M_weight.ckpt + expand_gene_info.csv and "
            "base_weight.ckpt + gene_info.csv in separate folders."
        )
        raise CellFMCheckpointError(msg)
    if present:
        ckpt = folder / present[0]
        vocab = folder / CHECKPOINT_FILES[present[0]]
    else:
        ckpts = sorted(folder.glob("*.ckpt"))
        vocabs = [folder / v for v in CHECKPOINT_FILES.values() if (folder / v).is_file()]
        if len(ckpts) != 1 or len(vocabs) != 1:
            msg = (
                f"CellFM checkpoint folder {str(folder)!r} holds {len(ckpts)} .ckpt files "
                f"and vocabularies {[v.name for v in vocabs]}; expected the official layout: "
                "CellFM_80M_weight.ckpt + expand_gene_info.csv (80M) or base_weight.ckpt + "
                "gene_info.csv (800M). Fix: sceval fetch cellfm.80m, or point "
                "checkpoint= at such a folder."
            )
            raise FileNotFoundError(msg)
        ckpt, vocab = ckpts[0], vocabs[0]
    if not vocab.is_file():
        msg = (
            f"CellFM checkpoint folder {str(folder)!r} has {ckpt.name} but lacks its "
            f"vocabulary {vocab.name} (from csv/ of github.com/biomed-AI/CellFM). Fix: "
            "sceval fetch cellfm.80m (or cellfm.800m), or copy the csv next to the .ckpt."
        )
        raise FileNotFoundError(msg)
    return ckpt, vocab


def _classify(tag: str) -> str:
    if tag in OPTIMIZER_KEYS or tag.startswith(OPTIMIZER_PREFIXES):
        return "optimizer"
    if tag in UNUSED_KEYS or tag.startswith(UNUSED_PREFIXES):
        return "unused"
    if tag.startswith(_USED_PREFIXES):
        return "used"
    return "other"


def _expected_shapes(c: CellFMConfig) -> dict[str, tuple[int, ...]]:
    d, b = c.d_model, c.value_hidden
    out: dict[str, tuple[int, ...]] = {
        "gene_emb": (c.rows, d),
        "cls_token": (1, 1, d),
        "value_enc.value_enc.w1.weight": (b, 1),
        "value_enc.value_enc.w3.weight": (b, b),
        "value_enc.value_enc.table.weight": (d, b),
        "value_enc.value_enc.a": (1, 1),
    }
    for i in range(c.nlayers):
        p = f"encoder.{i}"
        for name in ("q", "k", "v", "u", "o"):
            out[f"{p}.attn.{name}_proj.weight"] = (d, d)
        for name in ("u", "v", "o"):
            out[f"{p}.ffn.{name}_proj.weight"] = (d, d)
        for norm in ("post_norm1", "post_norm2"):
            out[f"{p}.{norm}.gamma"] = (d,)
            out[f"{p}.{norm}.beta"] = (d,)
    return out


def _infer_config(
    shapes: dict[str, tuple[int, ...]], n_genes: int, nheads: int | None, path: Path
) -> CellFMConfig:
    d = None
    for key, axis in (("cls_token", -1), ("gene_emb", -1), ("encoder.0.attn.q_proj.weight", 0)):
        if shapes.get(key):
            d = int(shapes[key][axis])
            break
    if d is None:
        msg = (
            f"{str(path)!r} has no cls_token, gene_emb or encoder.0.* parameter; expected a "
            f"CellFM checkpoint (found keys such as {sorted(shapes)[:5]})."
        )
        raise CellFMCheckpointError(msg)
    layers = {int(m.group(1)) for k in shapes if (m := _LAYER_RE.match(k))}
    nlayers = max(layers) + 1 if layers else 0
    if nlayers == 0:
        msg = f"{str(path)!r} has no encoder.{{i}}.* parameters; expected CellFM layers."
        raise CellFMCheckpointError(msg)
    w1 = shapes.get("value_enc.value_enc.w1.weight")
    hidden = int(w1[0]) if w1 else 256
    heads = int(nheads) if nheads else max(1, d // HEAD_DIM)
    if d % heads:
        msg = (
            f"CellFM: d_model {d} (from {str(path)!r}) is not divisible by {heads} heads. "
            f"Fix: pass nheads= (the official models have {HEAD_DIM}-d heads)."
        )
        raise CellFMCheckpointError(msg)
    return CellFMConfig(
        n_genes=n_genes, d_model=d, nlayers=nlayers, nheads=heads, value_hidden=hidden
    )


def _check_shapes(
    shapes: dict[str, tuple[int, ...]],
    classes: dict[str, str],
    config: CellFMConfig,
    ckpt: Path,
    vocab: Path,
) -> None:
    from sceval.models._safe_load import describe_key_mismatch

    expected = _expected_shapes(config)
    missing = sorted(k for k in expected if k not in shapes)
    unexpected = sorted(k for k, c in classes.items() if c == "used" and k not in expected)
    bad = sorted(
        f"{k}: checkpoint {shapes[k]} vs expected {expected[k]}"
        for k in expected
        if k in shapes and tuple(shapes[k]) != expected[k]
    )
    if not (missing or unexpected or bad):
        return
    hint = ""
    rows = shapes.get("gene_emb")
    if rows and rows[0] != config.rows:
        lo, hi = max(rows[0] - 8, 0), rows[0] - 1
        hint = (
            f" {vocab.name} lists {config.n_genes} genes, so gene_emb should have "
            f"{config.rows} rows ({config.n_genes} + 1 padding row, rounded up to a multiple "
            f"of 8); the checkpoint's {rows[0]} rows fit a vocabulary of {lo}..{hi} genes. "
            "The vocabulary csv does not belong to this checkpoint: use expand_gene_info.csv "
            "(27,855 genes) with CellFM_80M_weight.ckpt and gene_info.csv (24,078 genes) with "
            "base_weight.ckpt."
        )
    msg = (
        f"{str(ckpt)!r} does not match the CellFM architecture built from its shapes and "
        f"{vocab.name} (d_model={config.d_model}, enc_nlayers={config.nlayers}, "
        f"heads={config.nheads}, vocabulary {config.n_genes} genes): "
        + describe_key_mismatch(missing, unexpected, bad, _MAX_LISTED)
        + "."
        + hint
        + " Expected an official CellFM .ckpt (gene_emb, cls_token, value_enc.value_enc."
        "{w1,w3,table}.weight, value_enc.value_enc.a, encoder.{i}.attn.{q,k,v,u,o}_proj."
        "weight, encoder.{i}.ffn.{u,v,o}_proj.weight, encoder.{i}.post_norm{1,2}.{gamma,beta}; "
        "optimizer moments and decoders are ignored). Fix: make sure the .ckpt and the "
        "vocabulary csv come from the same checkpoint (sceval fetch cellfm.80m)."
    )
    raise CellFMCheckpointError(msg)


def load_cellfm(
    folder: str | Path, *, nheads: int | None = None, weights: bool = True
) -> tuple[Any, dict[str, int], dict[str, Any]]:
    """Load an official CellFM checkpoint folder (no MindSpore needed).

    Parameters
    ----------
    folder
        A folder with ``CellFM_80M_weight.ckpt`` + ``expand_gene_info.csv`` or
        ``base_weight.ckpt`` + ``gene_info.csv`` (any single ``.ckpt`` with one of the
        two csv files also works), optionally ``updated_hgcn.tsv``.
    nheads
        Attention heads (default ``d_model // 32`` as in the official configs).
    weights
        ``False``: build the architecture from the shapes without reading the weights
        (they are left uninitialized; for the ``.random`` control).

    Returns
    -------
    model : CellFMNet
        float32, eval mode, on the CPU; ``model.ignored_keys`` lists the checkpoint keys
        not read (optimizer state, decoders).
    vocab : dict
        Gene symbol -> token id (1-based).
    info : dict
        ``ckpt``, ``vocab`` (paths), ``aliases`` (alias -> approved symbol, empty
        without ``updated_hgcn.tsv``).

    Raises
    ------
    FileNotFoundError
        Missing files.
    CellFMCheckpointError
        A checkpoint whose shapes do not match its vocabulary or the architecture
        (every missing, unexpected and mis-shaped key is listed). The vocabulary length
        is checked through the rows of ``gene_emb``, which are rounded up to a multiple
        of 8: a csv a few genes off within the same multiple cannot be detected.
    sceval.models._mindspore_ckpt.MindSporeCheckpointError
        A malformed ``.ckpt`` file.
    """
    import torch

    from sceval.models._mindspore_ckpt import read_checkpoint, scan_checkpoint

    folder = Path(folder)
    ckpt, vocab_path = _find_files(folder)
    genes = read_vocab(vocab_path)
    entries = scan_checkpoint(ckpt)
    shapes = {e.tag: tuple(e.shape) for e in entries}
    classes = {tag: _classify(tag) for tag in shapes}
    config = _infer_config(shapes, len(genes), nheads, ckpt)
    _check_shapes(shapes, classes, config, ckpt, vocab_path)
    expected = _expected_shapes(config)
    with torch.device("meta"):
        model = _nn().CellFMNet(config)
    if weights:
        arrays, _ = read_checkpoint(ckpt, keep=expected.keys())
        state = {
            k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32))
            for k, v in arrays.items()
        }
        del arrays
        model.load_state_dict(state, strict=True, assign=True)
    else:
        model = model.to_empty(device="cpu")
    model.ignored_keys = sorted(k for k in shapes if k not in expected)
    model.eval()
    aliases: dict[str, str] = {}
    if (folder / HGNC_FILE).is_file():
        aliases = read_hgnc_aliases(folder / HGNC_FILE)
    vocab = {g: i + 1 for i, g in enumerate(genes)}
    return model, vocab, {"ckpt": ckpt, "vocab": vocab_path, "aliases": aliases}


def reset_parameters(model: Any, seed: int) -> Any:
    """Re-initialize every weight of a :class:`CellFMNet` in place, seeded, as the
    official model is initialized (``model.py`` / ``retention.py``, MindSpore 2.2):
    ``gene_emb`` and ``cls_token`` XavierNormal(0.5) with the padding row zeroed;
    attention ``q``/``k`` XavierNormal(1), ``v``/``u``/``o`` and the gated unit
    XavierNormal(``(8 nlayers) ** -0.25``); the value encoder's ``Dense`` layers with
    MindSpore's default HeUniform(sqrt(5)) (uniform in ``±1/sqrt(fan_in)``), ``a`` zero;
    LayerNorm ones/zeros. Only a local generator is used.
    """
    import torch

    gen = torch.Generator().manual_seed(int(seed))
    c = model.config
    beta = (c.nlayers * 8) ** -0.25

    def xavier(t: torch.Tensor, gain: float) -> None:
        if t.ndim == 2:
            fan_out, fan_in = t.shape
        else:  # MindSpore: fan_in = shape[1] * receptive, fan_out = shape[0] * receptive
            receptive = int(np.prod(t.shape[2:]))
            fan_in, fan_out = t.shape[1] * receptive, t.shape[0] * receptive
        std = gain * math.sqrt(2.0 / (fan_in + fan_out))
        with torch.no_grad():
            t.copy_(torch.randn(t.shape, generator=gen) * std)

    def uniform(t: torch.Tensor) -> None:
        bound = 1.0 / math.sqrt(t.shape[1])
        with torch.no_grad():
            t.copy_((torch.rand(t.shape, generator=gen) * 2 - 1) * bound)

    xavier(model.gene_emb, 0.5)
    with torch.no_grad():
        model.gene_emb[0].zero_()
    xavier(model.cls_token, 0.5)
    ffn = model.value_enc.value_enc
    for lin in (ffn.w1, ffn.w3, ffn.table):
        uniform(lin.weight)
    with torch.no_grad():
        ffn.a.zero_()
    for layer in model.encoder:
        for name in ("q", "k", "v", "u", "o"):
            xavier(getattr(layer.attn, f"{name}_proj").weight, 1.0 if name in "qk" else beta)
        for name in ("u", "v", "o"):
            xavier(getattr(layer.ffn, f"{name}_proj").weight, beta)
        for norm in (layer.post_norm1, layer.post_norm2):
            with torch.no_grad():
                norm.gamma.fill_(1.0)
                norm.beta.zero_()
    return model


# --------------------------------------------------------------------------- tokenization


def preprocess(counts: Any, columns: np.ndarray) -> sp.csr_matrix:
    """The tutorials' preprocessing of raw counts, restricted to ``columns``.

    ``round(x / max(1, total / 1e5))`` with the total over all genes (``read_h5ad``),
    then, over the kept columns, ``log1p(x / (total' / 1e4))`` (``normalize_total`` +
    ``log1p``). Returns float32 CSR (cells x ``columns``) without explicit zeros.
    """
    import scipy.sparse as sp

    x = sp.csr_matrix(counts, dtype=np.float32, copy=True)
    totals = np.asarray(x.sum(axis=1), dtype=np.float64).ravel().astype(np.float32)
    scale = np.maximum(np.float32(1), totals / np.float32(COUNT_CAP)).astype(np.float32)
    rows = np.repeat(np.arange(x.shape[0]), np.diff(x.indptr))
    x.data = np.round(x.data / scale[rows]).astype(np.float32)
    x.eliminate_zeros()
    x = sp.csr_matrix(x[:, np.asarray(columns, dtype=np.int64)], dtype=np.float32)
    x.sort_indices()
    kept = np.asarray(x.sum(axis=1), dtype=np.float64).ravel().astype(np.float32)
    per = (kept / np.float32(TARGET_SUM)).astype(np.float32)
    per[per == 0] = 1.0
    rows = np.repeat(np.arange(x.shape[0]), np.diff(x.indptr))
    x.data = np.log1p(x.data / per[rows]).astype(np.float32)
    return x


class CellFMTokenizer:
    """Per-cell CellFM tokens from a preprocessed cells x matched-genes matrix.

    Tokens of cell ``i`` depend on ``(seed, offset + i)`` only, so any batching or
    chunking gives the same tokens.

    Parameters
    ----------
    lognorm
        CSR from :func:`preprocess` (cells x matched genes).
    gene_ids
        Token id (1-based) of each column.
    max_genes
        Expressed genes per cell fed to the model (2,048).
    seed, offset
        Seed of the subsampling and the global index of the first cell.
    """

    def __init__(
        self,
        lognorm: sp.csr_matrix,
        gene_ids: np.ndarray,
        *,
        max_genes: int = MAX_GENES,
        seed: int = 0,
        offset: int = 0,
    ) -> None:
        if max_genes < 1:
            msg = f"max_genes must be >= 1, got {max_genes}"
            raise ValueError(msg)
        self.x = lognorm
        self.gene_ids = np.asarray(gene_ids, dtype=np.int64)
        self.max_genes = int(max_genes)
        self.seed = int(seed)
        self.offset = int(offset)
        self.n_genes = np.diff(lognorm.indptr).astype(np.int64)
        #: tokens per cell including [CLS]
        self.lengths = np.minimum(self.n_genes, self.max_genes) + 1

    @property
    def n_cells(self) -> int:
        """Number of cells."""
        return int(self.x.shape[0])

    @property
    def n_subsampled(self) -> int:
        """Cells with more than ``max_genes`` expressed genes."""
        return int((self.n_genes > self.max_genes).sum())

    @property
    def n_empty(self) -> int:
        """Cells without expressed vocabulary genes."""
        return int((self.n_genes == 0).sum())

    def cell(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Gene ids (int64) and values (float32) of cell ``i``'s tokens (no ``[CLS]``)."""
        lo, hi = self.x.indptr[i], self.x.indptr[i + 1]
        cols = self.x.indices[lo:hi]
        vals = self.x.data[lo:hi]
        if cols.size > self.max_genes:  # Prepare.sample: weighted by log1p, no replacement
            rng = np.random.default_rng((self.seed, self.offset + int(i)))
            w = np.log1p(vals.astype(np.float64))
            sel = np.sort(rng.choice(cols.size, size=self.max_genes, replace=False, p=w / w.sum()))
            cols, vals = cols[sel], vals[sel]
        return self.gene_ids[cols], vals.astype(np.float32)

    def batch(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Cells ``idx`` padded to the longest: gene ids, values, keep mask
        ``(len(idx), L)`` (padding: id 0, value 0, ``False``)."""
        cells = [self.cell(int(i)) for i in idx]
        longest = max(max(g.size for g, _ in cells), 1)
        genes = np.zeros((len(cells), longest), dtype=np.int64)
        values = np.zeros((len(cells), longest), dtype=np.float32)
        keep = np.zeros((len(cells), longest), dtype=bool)
        for row, (g, v) in enumerate(cells):
            genes[row, : g.size] = g
            values[row, : v.size] = v
            keep[row, : g.size] = True
        return genes, values, keep


def _match(
    symbols: np.ndarray, vocab: dict[str, int], aliases: dict[str, str]
) -> tuple[np.ndarray, np.ndarray]:
    """Token id per data gene (-1: unmatched; a token used once) and an alias flag."""
    ids = np.full(symbols.size, -1, dtype=np.int64)
    via_alias = np.zeros(symbols.size, dtype=bool)
    used: set[int] = set()
    for j, s in enumerate(symbols):  # direct matches first, first occurrence wins
        t = vocab.get(str(s), -1) if s else -1
        if t >= 0 and t not in used:
            ids[j] = t
            used.add(t)
    if aliases:
        for j, s in enumerate(symbols):
            if ids[j] >= 0 or not s or str(s) in vocab:
                continue
            t = vocab.get(aliases.get(str(s), ""), -1)
            if t >= 0 and t not in used:
                ids[j] = t
                via_alias[j] = True
                used.add(t)
    return ids, via_alias


def build_tokenizer(
    adata: Any,
    report: Any,
    vocab: dict[str, int],
    *,
    aliases: dict[str, str] | None = None,
    max_genes: int = MAX_GENES,
    seed: int = 0,
    offset: int = 0,
    model_key: str = "cellfm",
) -> tuple[CellFMTokenizer, CellFMCoverage]:
    """Match genes by HGNC symbol, preprocess the counts and build the tokenizer.

    Raises
    ------
    DataContractError
        No gene matches the vocabulary (a ``UserWarning`` below 50% coverage).
    """
    from sceval.data.contract import get_counts
    from sceval.models.foundation import gene_symbols

    symbols = gene_symbols(adata, report)
    ids, via_alias = _match(symbols, vocab, aliases or {})
    matched = ids >= 0
    counts = get_counts(adata, report)
    cov = gene_coverage(matched, counts, model_key)
    cols = np.flatnonzero(matched)
    tok = CellFMTokenizer(
        preprocess(counts, cols), ids[cols], max_genes=max_genes, seed=seed, offset=offset
    )
    cov = CellFMCoverage(
        **dataclasses.asdict(cov),
        n_cells=tok.n_cells,
        n_subsampled=tok.n_subsampled,
        max_genes=tok.max_genes,
        n_empty=tok.n_empty,
        n_alias=int(via_alias.sum()),
    )
    return tok, cov


def _to_device(arrays: tuple[np.ndarray, ...], device: str) -> tuple[Any, ...]:
    import torch

    out = []
    for a in arrays:
        t = torch.from_numpy(a)
        if device.startswith("cuda"):
            t = t.pin_memory().to(device, non_blocking=True)
        out.append(t)
    return tuple(out)


def cell_embeddings(
    model: Any,
    tokenizer: CellFMTokenizer,
    *,
    batch_size: int = 16,
    max_tokens: int | None = None,
    device: str = "cpu",
    precision: str = "auto",
) -> np.ndarray:
    """Final ``[CLS]`` outputs of all cells, in cell order, float32 ``(n_cells, d)``.

    Cells are batched by length (:func:`batches_by_length`), each batch padded to its
    longest cell; padding is masked out of the keys, so the numbers do not depend on
    the batching (up to floating-point summation order).
    """
    n = tokenizer.n_cells
    out = np.zeros((n, model.config.d_model), dtype=np.float32)
    model.eval()
    pending: list[tuple[np.ndarray, Any]] = []

    def flush() -> None:
        for idx, emb in pending:
            out[idx] = emb.float().cpu().numpy()
        pending.clear()

    with inference_context(device, precision):
        for idx in batches_by_length(tokenizer.lengths, batch_size, max_tokens):
            emb = model.cell_embedding(*_to_device(tokenizer.batch(idx), device))
            pending.append((idx, emb))
            if len(pending) >= 32:
                flush()
        flush()
    return out


# --------------------------------------------------------------------------- checkpoints

_HF = "https://huggingface.co/ShangguanNingyuan/CellFM/resolve/69361b50d1814ade0e3749c9d8eb829590c2ce3c"
_GH = "https://raw.githubusercontent.com/biomed-AI/CellFM/76557975c935d6822ddcfd8bb9700d0b95ec7dd7/csv"
_HOME = "https://github.com/biomed-AI/CellFM"
_LICENSE = "CC-BY-NC-ND-4.0 (non-commercial, no derivatives)"
_CITATION = (
    "Zeng, Y., Xie, J., Shangguan, N., Wei, Z., Li, W., Su, Y., Yang, S., Zhang, C., "
    "Zhang, J., Fang, N., Zhang, H., Lu, Y., Zhao, H., Fan, J., Yu, W. & Yang, Y. CellFM: "
    "a large-scale foundation model pre-trained on transcriptomics of 100 million human "
    "cells. Nature Communications 16 (2025). doi:10.1038/s41467-025-59926-5"
)
_NOTES = (
    "Weights: MindSpore .ckpt files of the Hugging Face repository ShangguanNingyuan/CellFM "
    "(revision 69361b5; the files also hold the Adam moments, which sceval skips), license "
    "cc-by-nc-nd-4.0 (model card; LICENSE-cc-by-nc-nd-4.0 of biomed-AI/CellFM). Vocabulary: "
    "csv/ of github.com/biomed-AI/CellFM at commit 7655797 (sha256 pinned). No checksum is "
    "published for the weights; sha256 is recorded at the first download. Optional: copy "
    "csv/updated_hgcn.tsv of the repository (an HGNC table) into the folder to map alias and "
    "previous symbols as CellFM-torch does (the zero-shot tutorials match symbols exactly)."
)


#: sha256 and size of the vocabulary files at the pinned commit (computed from the
#: repository snapshot).
_VOCAB_FILES = {
    "expand_gene_info.csv": (
        "b7aec69e8dc0cff9dee53c7cdef8bb6a6e7c20be4a89e55ef9fb2f745669e882",
        2156084,
    ),
    "gene_info.csv": ("406c5df678f3ff17bbfc3cf9f95326ba311e4536e5c71c2f31dce51e39f7b446", 1970280),
}


def _spec(name: str, ckpt: str, ckpt_mb: float, vocab: str, description: str) -> CheckpointSpec:
    sha, size = _VOCAB_FILES[vocab]
    return CheckpointSpec(
        name=name,
        model="cellfm",
        files=(
            FileSpec(ckpt, f"{_HF}/{ckpt}"),
            FileSpec(vocab, f"{_GH}/{vocab}", sha256=sha, size=size),
        ),
        license=_LICENSE,
        citation=_CITATION,
        homepage=_HOME,
        description=description,
        notes=_NOTES,
        approx_size_mb=ckpt_mb,
    )


register_checkpoint(
    _spec(
        "cellfm.80m",
        "CellFM_80M_weight.ckpt",
        1030,
        "expand_gene_info.csv",
        "CellFM 80M: 2 layers, 1536-d, 48 heads, 27,855-gene vocabulary (the model of the "
        "official zero-shot tutorials and CellFM-torch)",
    )
)
register_checkpoint(
    _spec(
        "cellfm.800m",
        "base_weight.ckpt",
        9660,
        "gene_info.csv",
        "CellFM 800M: 40 layers, 1536-d, 48 heads, 24,078-gene vocabulary, pretrained on "
        "~100 million human cells",
    )
)


# --------------------------------------------------------------------------- models


@dataclass
class _Loaded:
    key: tuple[Any, ...]
    model: Any
    vocab: dict[str, int]
    aliases: dict[str, str]


class _CellFMBase(FoundationModel):
    """Shared implementation of ``cellfm`` and ``cellfm.random``."""

    default_checkpoint = "cellfm.80m"
    random_weights = False

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._loaded: _Loaded | None = None
        self.coverage: CellFMCoverage | None = None

    def _load(self, ctx: EmbedContext) -> _Loaded:
        folder = self.checkpoint_dir()
        device = self._device(ctx)
        random = self.random_weights or bool(self.params.get("random_init", False))
        nheads = self.params.get("nheads")
        key = (str(folder), random, int(ctx.seed) if random else None, device, nheads)
        if self._loaded is not None and self._loaded.key == key:
            return self._loaded
        try:
            model, vocab, info = load_cellfm(folder, nheads=nheads, weights=not random)
        except FileNotFoundError as err:
            raise ModelSkippedError(str(err)) from err
        if random:
            reset_parameters(model, ctx.seed)
        model.to(device)
        aliases = info["aliases"] if self.params.get("remap_aliases", True) else {}
        self._loaded = _Loaded(key, model, vocab, aliases)
        return self._loaded

    def embed_cells(self, adata: Any, ctx: EmbedContext) -> np.ndarray:
        """Final ``[CLS]`` outputs, ``(n_cells, 1536)`` float32 (not normalized)."""
        loaded = self._load(ctx)
        tok, cov = build_tokenizer(
            adata,
            ctx.report,
            loaded.vocab,
            aliases=loaded.aliases,
            max_genes=int(self.params.get("max_genes", MAX_GENES)),
            seed=ctx.seed,
            offset=ctx.cell_offset,
            model_key=self.info.key,
        )
        self.coverage = cov
        return cell_embeddings(
            loaded.model,
            tok,
            batch_size=int(self.params.get("batch_size", 16)),
            max_tokens=self.params.get("max_tokens"),
            device=self._device(ctx),
            precision=self._precision(),
        )

    def merge_coverage(self, covs: list[Any]) -> Any:
        """The chunks' coverage with the cell counts of the message (embedded,
        subsampled, empty) summed over the chunks."""
        return dataclasses.replace(
            super().merge_coverage(covs),
            n_cells=sum(c.n_cells for c in covs),
            n_subsampled=sum(c.n_subsampled for c in covs),
            n_empty=sum(c.n_empty for c in covs),
        )

    def embed_genes(self, genes: list[str], ctx: EmbedContext) -> tuple[np.ndarray, np.ndarray]:
        """Rows of ``gene_emb`` for the genes in the vocabulary (HGNC symbols):
        ``(matrix (n_found, d), found mask (len(genes),))``."""
        loaded = self._load(ctx)
        ids = np.array([loaded.vocab.get(str(g), -1) for g in genes], dtype=np.int64)
        found = ids >= 0
        emb = loaded.model.gene_emb.detach()[ids[found]]
        return emb.float().cpu().numpy(), found


_PARAMS_DOC = """
    Parameters (keyword arguments)
    ----------
    checkpoint
        Registered checkpoint name (``"cellfm.80m"``, default; ``"cellfm.800m"``) or a
        local folder in the official layout (``CellFM_80M_weight.ckpt`` +
        ``expand_gene_info.csv``, or ``base_weight.ckpt`` + ``gene_info.csv``).
    batch_size
        Cells per forward pass (default 16, as the official ``get_embed``).
    max_tokens
        Optional cap on padded tokens per forward pass (memory).
    precision
        ``"auto"`` (bf16 on CUDA when supported, fp32 on CPU), ``"fp32"``, ``"bf16"``,
        ``"fp16"``.
    max_genes
        Expressed genes per cell (default 2,048, ``Config.nonz_len``).
    nheads
        Attention heads (default ``d_model // 32``: 48 for the official models).
    remap_aliases
        Map HGNC alias/previous symbols when the folder has ``updated_hgcn.tsv``
        (default True).
"""


@register_model
class CellFMModel(_CellFMBase):
    """``cellfm``: zero-shot CellFM cell embeddings (final ``[CLS]`` output)."""

    __doc__ = (__doc__ or "") + _PARAMS_DOC
    info = ModelInfo(
        key="cellfm",
        kind="foundation",
        input="counts",
        requires=("torch", "pandas"),
        install="pip install torch pandas",
        description="CellFM zero-shot [CLS] cell embedding (official MindSpore checkpoint read "
        "without MindSpore, plain PyTorch)",
        citation="Zeng et al., Nat. Commun. 2025 (CellFM)",
        license=_LICENSE,
    )


@register_model
class CellFMRandomModel(_CellFMBase):
    """``cellfm.random``: the CellFM architecture, vocabulary and preprocessing of the
    checkpoint with all weights re-initialized (seeded by ``ctx.seed``) as the official
    model initializes them: what the architecture gives without pretraining."""

    __doc__ = (__doc__ or "") + _PARAMS_DOC
    random_weights = True
    info = ModelInfo(
        key="cellfm.random",
        kind="control",
        input="counts",
        requires=("torch", "pandas"),
        install="pip install torch pandas",
        description="control: CellFM architecture with seeded random weights (no pretraining)",
        citation="Zeng et al., Nat. Commun. 2025 (CellFM); randomly initialized",
        license=_LICENSE,
    )
