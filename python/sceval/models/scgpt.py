"""scGPT (Cui et al., Nat. Methods 2024) in plain PyTorch, loading the official checkpoints.

The architecture follows ``scgpt/model/model.py`` of bowang-lab/scGPT
(``TransformerModel``, ``GeneEncoder``, ``ContinuousValueEncoder``, ``ExprDecoder``,
``ClsDecoder``, ``MVCDecoder``) with module names equal to the official state-dict
keys, so an official ``best_model.pt`` loads with strict key checking. Attention uses
:func:`torch.nn.functional.scaled_dot_product_attention` (fused kernels on CUDA).

Zero-shot cell embeddings follow the official ``scgpt.tasks.cell_emb.embed_data`` /
``get_batch_cell_embeddings`` path:

1. genes are matched to the vocabulary by symbol (Ensembl IDs go through
   ``var["gene_symbol"]`` or :func:`sceval.data.genes.map_genes`);
2. the raw counts are used as they are (``embed_data`` applies no ``normalize_total``
   or ``log1p``; the per-cell quantile binning below is invariant to such per-cell
   monotone transforms anyway);
3. per cell, the non-zero genes are kept, their values binned into ``n_bins - 1``
   levels by the quantiles of that cell's values (``scgpt.preprocess.binning`` with
   its random tie spreading, seeded here), ``<cls>`` is prepended with value
   ``pad_value``;
4. cells longer than ``max_length`` keep ``<cls>`` and a random subset of
   ``max_length - 1`` genes (``DataCollator(sampling=True, keep_first_n_tokens=1)``,
   seeded here per cell);
5. token = ``enc_norm(embedding(gene)) + value_encoder(value)``; post-norm transformer;
   the output at position 0, L2-normalized, is the cell embedding.

Unlike the official loop, which pads each batch of consecutive cells, cells are sorted
by length before batching (:func:`sceval.models.foundation.batches_by_length`) and the
last layer is evaluated for the ``<cls>`` position only; both leave the numbers
unchanged (up to floating-point summation order) and make inference several times faster.

torch is imported on first use only; the torch modules (``ScGPTTransformer`` and its
parts) are available as attributes of this module once torch is installed.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import json
import math
import types
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sceval._errors import DataContractError, ModelSkippedError, ScevalError
from sceval.models.base import EmbedContext, ModelInfo, register_model
from sceval.models.foundation import (
    FoundationModel,
    GeneCoverage,
    autocast_dtype,
    batches_by_length,
    gene_coverage,
    gene_symbols,
    inference_context,
)

if TYPE_CHECKING:  # pragma: no cover
    import scipy.sparse as sp
    import torch

__all__ = [
    "IGNORED_KEY_PREFIXES",
    "SPECIAL_TOKENS",
    "ScGPTCheckpointError",
    "ScGPTConfig",
    "ScGPTModel",
    "ScGPTRandomModel",
    "ScGPTTokenizer",
    "bin_values",
    "build_tokenizer",
    "cell_embeddings",
    "gene_symbols",
    "load_scgpt",
    "read_vocab",
    "reset_parameters",
]

#: Special tokens appended to the vocabulary when missing (official ``embed_data``).
SPECIAL_TOKENS = ("<pad>", "<cls>", "<eoc>")

#: State-dict keys of official modules that the zero-shot and classification paths do
#: not use; they are dropped by name (the official ``embed_data`` builds the model with
#: ``use_batch_labels=False, domain_spec_batchnorm=False, do_dab=False,
#: explicit_zero_prob=False`` and loads non-strictly, so it ignores them too).
IGNORED_KEY_PREFIXES = (
    "flag_encoder.",  # generative-pretraining flag embedding (whole-human checkpoints)
    "batch_encoder.",  # use_batch_labels
    "dsbn.",  # domain-specific batch norm
    "bn.",  # domain_spec_batchnorm="batchnorm"
    "grad_reverse_discriminator.",  # do_dab
    "decoder.zero_logit.",  # explicit_zero_prob
    "mvc_decoder.W_zero_logit.",  # explicit_zero_prob
)

#: Official attention naming (flash-attn ``FlashMHA``) -> torch naming used internally.
_ATTN_RENAMES = (
    (".self_attn._impl.Wqkv.weight", ".self_attn.in_proj_weight"),
    (".self_attn._impl.Wqkv.bias", ".self_attn.in_proj_bias"),
    (".self_attn._impl.out_proj.", ".self_attn.out_proj."),
    (".self_attn.Wqkv.weight", ".self_attn.in_proj_weight"),
    (".self_attn.Wqkv.bias", ".self_attn.in_proj_bias"),
)

#: ``ContinuousValueEncoder(max_value=512)``: values are clipped from above.
MAX_VALUE = 512
_MAX_LISTED = 15


class ScGPTCheckpointError(ScevalError, ValueError):
    """A scGPT checkpoint folder does not match the official format."""


# --------------------------------------------------------------------------- config


@dataclass(frozen=True)
class ScGPTConfig:
    """Architecture of a scGPT checkpoint (from ``args.json``, ``vocab.json`` and the
    shapes of the optional heads in ``best_model.pt``).

    Attributes
    ----------
    ntoken
        Vocabulary size including the special tokens.
    d_model, nhead, d_hid, nlayers
        ``embsize``, ``nheads``, ``d_hid`` and ``nlayers`` of ``args.json``.
    nlayers_cls
        ``n_layers_cls``: hidden blocks of the classification head plus one.
    n_cls
        Outputs of ``cls_decoder.out_layer`` (1 in the pretrained checkpoints).
    dropout
        Dropout (used only when fine-tuning).
    pad_id, cls_id
        Token ids of ``<pad>`` (the embedding's ``padding_idx``) and ``<cls>``.
    pad_value
        Value of ``<cls>`` and padding positions (``-2`` in the official checkpoints).
    n_bins
        Number of bins (values are binned into ``1 .. n_bins - 1``).
    max_seq_len
        Maximum tokens per cell including ``<cls>``.
    decoder_in
        Input width of the expression decoder (``2 * d_model`` with batch labels).
    mvc_style
        ``MVCDecoder`` architecture (``"inner product"``, ``"concat query"``,
        ``"sum query"``) or ``None`` when the checkpoint has no ``mvc_decoder``.
    mvc_in
        Width of the cell embedding the MVC decoder expects.
    """

    ntoken: int
    d_model: int
    nhead: int
    d_hid: int
    nlayers: int
    nlayers_cls: int = 3
    n_cls: int = 1
    dropout: float = 0.2
    pad_id: int = 0
    cls_id: int = 1
    pad_value: float = -2.0
    n_bins: int = 51
    max_seq_len: int = 1200
    decoder_in: int = 0
    mvc_style: str | None = "inner product"
    mvc_in: int = 0


# --------------------------------------------------------------------------- torch modules


def _attention_backends(device: Any) -> contextlib.AbstractContextManager[Any]:
    """On CUDA: flash, memory-efficient or math attention, not cuDNN.

    cuDNN attention builds an execution plan for every new sequence length, which
    length-sorted batches produce by the dozen: measured on an H200 (torch 2.11, bf16,
    512-d 12-layer model, 4,096 cells), it made the first pass 3.3x slower (754 vs 2,509
    cells/s) for a 10% faster second pass.
    """
    if getattr(device, "type", str(device)) != "cuda":
        return contextlib.nullcontext()
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError:  # pragma: no cover - torch < 2.3
        return contextlib.nullcontext()
    backends = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]
    return sdpa_kernel(backends)


@functools.cache
def _nn() -> types.SimpleNamespace:
    """Define the torch modules on first use (torch is an optional dependency)."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    class GeneEncoder(nn.Module):
        """``encoder``: gene embedding followed by LayerNorm."""

        def __init__(self, ntoken: int, d_model: int, padding_idx: int) -> None:
            super().__init__()
            self.embedding = nn.Embedding(ntoken, d_model, padding_idx=padding_idx)
            self.enc_norm = nn.LayerNorm(d_model)

        def forward(self, genes: torch.Tensor) -> torch.Tensor:
            return self.enc_norm(self.embedding(genes))

    class ContinuousValueEncoder(nn.Module):
        """``value_encoder``: value -> Linear(1, d) -> ReLU -> Linear(d, d) -> LayerNorm."""

        def __init__(self, d_model: int, dropout: float, max_value: int = MAX_VALUE) -> None:
            super().__init__()
            self.dropout = nn.Dropout(p=dropout)
            self.linear1 = nn.Linear(1, d_model)
            self.activation = nn.ReLU()
            self.linear2 = nn.Linear(d_model, d_model)
            self.norm = nn.LayerNorm(d_model)
            self.max_value = max_value

        def forward(self, values: torch.Tensor) -> torch.Tensor:
            x = torch.clamp(values.unsqueeze(-1), max=self.max_value)
            x = self.linear2(self.activation(self.linear1(x)))
            return self.dropout(self.norm(x))

    class SelfAttention(nn.Module):
        """Multi-head self-attention with a packed q/k/v projection.

        ``in_proj_weight`` is ``[W_q; W_k; W_v]`` (the layout of both torch's
        ``MultiheadAttention`` and flash-attn's ``Wqkv``, whose output is split as
        ``(three, heads, head_dim)``).
        """

        def __init__(self, d_model: int, nhead: int, dropout: float) -> None:
            super().__init__()
            if d_model % nhead:
                msg = f"embsize ({d_model}) must be divisible by nheads ({nhead})"
                raise ScGPTCheckpointError(msg)
            self.nhead = nhead
            self.attn_dropout = dropout
            self.in_proj_weight = nn.Parameter(torch.empty(3 * d_model, d_model))
            self.in_proj_bias = nn.Parameter(torch.empty(3 * d_model))
            self.out_proj = nn.Linear(d_model, d_model)

        def forward(
            self, x: torch.Tensor, keep: torch.Tensor | None, n_query: int | None = None
        ) -> torch.Tensor:
            b, n, d = x.shape
            h = self.nhead
            if n_query is None:
                qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)
                q, k, v = qkv.view(b, n, 3, h, d // h).permute(2, 0, 3, 1, 4).unbind(0)
            else:  # queries for the first n_query positions only (keys/values for all)
                w_q, w_kv = self.in_proj_weight.split([d, 2 * d])
                b_q, b_kv = self.in_proj_bias.split([d, 2 * d])
                q = F.linear(x[:, :n_query], w_q, b_q).view(b, n_query, h, d // h)
                q = q.transpose(1, 2)
                kv = F.linear(x, w_kv, b_kv).view(b, n, 2, h, d // h)
                k, v = kv.permute(2, 0, 3, 1, 4).unbind(0)
            out = F.scaled_dot_product_attention(
                q, k, v, attn_mask=keep, dropout_p=self.attn_dropout if self.training else 0.0
            )
            return self.out_proj(out.transpose(1, 2).reshape(b, -1, d))

    class EncoderLayer(nn.Module):
        """Post-norm transformer layer (``torch.nn.TransformerEncoderLayer`` defaults:
        ReLU, LayerNorm eps 1e-5; the official ``FlashTransformerEncoderLayer`` with
        ``norm_scheme="post"`` computes the same)."""

        def __init__(self, d_model: int, nhead: int, d_hid: int, dropout: float) -> None:
            super().__init__()
            self.self_attn = SelfAttention(d_model, nhead, dropout)
            self.linear1 = nn.Linear(d_model, d_hid)
            self.dropout = nn.Dropout(dropout)
            self.linear2 = nn.Linear(d_hid, d_model)
            self.norm1 = nn.LayerNorm(d_model, eps=1e-5)
            self.norm2 = nn.LayerNorm(d_model, eps=1e-5)
            self.dropout1 = nn.Dropout(dropout)
            self.dropout2 = nn.Dropout(dropout)

        def forward(
            self, x: torch.Tensor, keep: torch.Tensor | None, n_query: int | None = None
        ) -> torch.Tensor:
            attn = self.self_attn(x, keep, n_query)
            if n_query is not None:
                x = x[:, :n_query]
            x = self.norm1(x + self.dropout1(attn))
            ff = self.linear2(self.dropout(F.relu(self.linear1(x))))
            return self.norm2(x + self.dropout2(ff))

    class TransformerEncoder(nn.Module):
        """``transformer_encoder``: a stack of ``layers``."""

        def __init__(self, d_model: int, nhead: int, d_hid: int, nlayers: int, dropout: float):
            super().__init__()
            self.layers = nn.ModuleList(
                EncoderLayer(d_model, nhead, d_hid, dropout) for _ in range(nlayers)
            )

    class ExprDecoder(nn.Module):
        """``decoder``: ``fc`` = Linear, LeakyReLU, Linear, LeakyReLU, Linear(d, 1)."""

        def __init__(self, d_model: int, d_in: int) -> None:
            super().__init__()
            self.fc = nn.Sequential(
                nn.Linear(d_in, d_model),
                nn.LeakyReLU(),
                nn.Linear(d_model, d_model),
                nn.LeakyReLU(),
                nn.Linear(d_model, 1),
            )

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x).squeeze(-1)

    class ClsDecoder(nn.Module):
        """``cls_decoder``: ``_decoder`` = (Linear, ReLU, LayerNorm) x (nlayers - 1),
        then ``out_layer``."""

        def __init__(self, d_model: int, n_cls: int, nlayers: int = 3) -> None:
            super().__init__()
            self._decoder = nn.ModuleList()
            for _ in range(nlayers - 1):
                self._decoder.append(nn.Linear(d_model, d_model))
                self._decoder.append(nn.ReLU())
                self._decoder.append(nn.LayerNorm(d_model))
            self.out_layer = nn.Linear(d_model, n_cls)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            for layer in self._decoder:
                x = layer(x)
            return self.out_layer(x)

    class MVCDecoder(nn.Module):
        """``mvc_decoder`` (masked value prediction from the cell embedding)."""

        def __init__(self, d_model: int, style: str, d_in: int) -> None:
            super().__init__()
            self.style = style
            self.query_activation = nn.Sigmoid()
            if style == "inner product":
                self.gene2query = nn.Linear(d_model, d_model)
                self.W = nn.Linear(d_model, d_in, bias=False)
            elif style == "concat query":
                self.gene2query = nn.Linear(d_model, 64)
                self.fc1 = nn.Linear(d_model + 64, 64)
                self.hidden_activation = nn.PReLU()
                self.fc2 = nn.Linear(64, 1)
            else:  # "sum query"
                self.gene2query = nn.Linear(d_model, d_model)
                self.fc1 = nn.Linear(d_model, 64)
                self.hidden_activation = nn.PReLU()
                self.fc2 = nn.Linear(64, 1)

        def forward(self, cell_emb: torch.Tensor, gene_embs: torch.Tensor) -> torch.Tensor:
            query = self.query_activation(self.gene2query(gene_embs))
            if self.style == "inner product":
                return torch.bmm(self.W(query), cell_emb.unsqueeze(2)).squeeze(2)
            if self.style == "concat query":
                cell = cell_emb.unsqueeze(1).expand(-1, gene_embs.shape[1], -1)
                return self.fc2(self.hidden_activation(self.fc1(torch.cat([cell, query], 2))))
            h = self.hidden_activation(self.fc1(cell_emb.unsqueeze(1) + query))
            return self.fc2(h).squeeze(2)

    class ScGPTTransformer(nn.Module):
        """The official ``TransformerModel`` (continuous value input, ``<cls>`` cell
        embedding, post-norm), with the official module names."""

        def __init__(self, config: ScGPTConfig) -> None:
            super().__init__()
            c = config
            self.config = c
            self.encoder = GeneEncoder(c.ntoken, c.d_model, c.pad_id)
            self.value_encoder = ContinuousValueEncoder(c.d_model, c.dropout)
            self.transformer_encoder = TransformerEncoder(
                c.d_model, c.nhead, c.d_hid, c.nlayers, c.dropout
            )
            self.decoder = ExprDecoder(c.d_model, c.decoder_in or c.d_model)
            self.cls_decoder = ClsDecoder(c.d_model, c.n_cls, c.nlayers_cls)
            if c.mvc_style is not None:
                self.mvc_decoder = MVCDecoder(c.d_model, c.mvc_style, c.mvc_in or c.d_model)

        def encode(
            self,
            genes: torch.Tensor,
            values: torch.Tensor,
            pad_mask: torch.Tensor | None = None,
            *,
            cls_only: bool = False,
        ) -> torch.Tensor:
            """Transformer output, ``(batch, seq, d)`` (official ``_encode``).

            Parameters
            ----------
            genes, values
                Token ids (long) and values (float), ``(batch, seq)``.
            pad_mask
                ``True`` at padding positions, or ``None`` when nothing is padded.
            cls_only
                Evaluate the last layer for position 0 only (output ``(batch, 1, d)``);
                identical numbers for the ``<cls>`` embedding, less work.
            """
            x = self.encoder(genes) + self.value_encoder(values)
            keep = None if pad_mask is None else (~pad_mask)[:, None, None, :]
            layers = self.transformer_encoder.layers
            with _attention_backends(x.device):
                for i, layer in enumerate(layers):
                    last = cls_only and i == len(layers) - 1
                    x = layer(x, keep, 1 if last else None)
            return x

        def cell_embedding(
            self, genes: torch.Tensor, values: torch.Tensor, pad_mask: torch.Tensor | None
        ) -> torch.Tensor:
            """Un-normalized ``<cls>`` output, ``(batch, d)``."""
            return self.encode(genes, values, pad_mask, cls_only=True)[:, 0]

        def classify(
            self, genes: torch.Tensor, values: torch.Tensor, pad_mask: torch.Tensor | None
        ) -> torch.Tensor:
            """``cls_decoder`` logits of the ``<cls>`` output (official ``CLS=True``)."""
            return self.cls_decoder(self.cell_embedding(genes, values, pad_mask))

        def gene_embeddings(self, genes: torch.Tensor) -> torch.Tensor:
            """``enc_norm(embedding(genes))``."""
            return self.encoder(genes)

    return types.SimpleNamespace(
        GeneEncoder=GeneEncoder,
        ContinuousValueEncoder=ContinuousValueEncoder,
        SelfAttention=SelfAttention,
        EncoderLayer=EncoderLayer,
        TransformerEncoder=TransformerEncoder,
        ExprDecoder=ExprDecoder,
        ClsDecoder=ClsDecoder,
        MVCDecoder=MVCDecoder,
        ScGPTTransformer=ScGPTTransformer,
    )


_LAZY_MODULES = (
    "ClsDecoder",
    "ContinuousValueEncoder",
    "EncoderLayer",
    "ExprDecoder",
    "GeneEncoder",
    "MVCDecoder",
    "ScGPTTransformer",
    "SelfAttention",
    "TransformerEncoder",
)


def __getattr__(name: str) -> Any:
    if name in _LAZY_MODULES:
        return getattr(_nn(), name)
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)


# --------------------------------------------------------------------------- loading


def read_vocab(path: str | Path) -> dict[str, int]:
    """Read ``vocab.json`` (token -> id) and append missing special tokens.

    As the official ``embed_data``: ``<pad>``, ``<cls>`` and ``<eoc>`` are appended (in
    that order, with the next free ids) when missing.

    Raises
    ------
    ScGPTCheckpointError
        When the file is not a mapping of tokens to consecutive ids ``0 .. n-1``.
    """
    path = Path(path)
    with open(path, encoding="utf-8") as fh:
        raw = json.load(fh)
    if not isinstance(raw, dict) or not raw:
        msg = (
            f"{str(path)!r} holds a {type(raw).__name__}; expected a non-empty JSON object "
            "mapping gene symbols to token ids (the official scGPT vocab.json)."
        )
        raise ScGPTCheckpointError(msg)
    bad = [k for k, v in raw.items() if not isinstance(v, int) or isinstance(v, bool)]
    ids = sorted(v for v in raw.values() if isinstance(v, int))
    if bad or ids != list(range(len(raw))):
        msg = (
            f"{str(path)!r}: expected token ids to be the integers 0..{len(raw) - 1}, each "
            f"once; found {len(bad)} non-integer ids (e.g. {bad[:3]}) and ids ranging "
            f"{ids[:1]}..{ids[-1:]} with {len(ids) - len(set(ids))} duplicates. Fix: use the "
            "vocab.json shipped with the checkpoint."
        )
        raise ScGPTCheckpointError(msg)
    vocab = dict(raw)
    for tok in SPECIAL_TOKENS:
        if tok not in vocab:
            vocab[tok] = len(vocab)
    return vocab


def _read_args(path: Path) -> dict[str, Any]:
    with open(path, encoding="utf-8") as fh:
        args = json.load(fh)
    if not isinstance(args, dict):
        msg = f"{str(path)!r} holds a {type(args).__name__}; expected a JSON object."
        raise ScGPTCheckpointError(msg)
    missing = [k for k in ("embsize", "nheads", "d_hid", "nlayers") if k not in args]
    if missing:
        msg = (
            f"{str(path)!r} lacks {missing}; expected the scGPT training arguments "
            "(embsize, nheads, d_hid, nlayers, n_layers_cls, pad_token, pad_value, n_bins, "
            "max_seq_len, ...). Fix: use the args.json shipped with the checkpoint."
        )
        raise ScGPTCheckpointError(msg)
    style = args.get("input_emb_style", "continuous")
    if style != "continuous":
        msg = (
            f"{str(path)!r} has input_emb_style={style!r}; sceval implements the "
            "'continuous' value encoder of the released scGPT checkpoints only."
        )
        raise ScGPTCheckpointError(msg)
    if args.get("pre_norm", False):
        msg = (
            f"{str(path)!r} sets pre_norm=true; sceval implements the post-norm scGPT that "
            "the official embed_data builds (pre_norm=False)."
        )
        raise ScGPTCheckpointError(msg)
    return args


def _normalize_keys(state: dict[str, Any], path: Path) -> tuple[dict[str, Any], list[str]]:
    """Rename flash-attn keys to the torch layout and drop unused modules by name."""
    import torch

    if state and all(k.startswith("module.") for k in state):  # saved from DataParallel
        state = {k[len("module.") :]: v for k, v in state.items()}
    out: dict[str, Any] = {}
    ignored: list[str] = []
    not_tensors: list[str] = []
    for key, value in state.items():
        if key.startswith(IGNORED_KEY_PREFIXES):
            ignored.append(key)
            continue
        if not isinstance(value, torch.Tensor):
            not_tensors.append(key)
            continue
        new = key
        for old, rep in _ATTN_RENAMES:
            if old in new:
                new = new.replace(old, rep)
                break
        if new in out:
            msg = (
                f"{str(path)!r} holds the attention weights of {new!r} twice (in the "
                "flash-attn 'Wqkv' and the torch 'in_proj' naming); expected one of them."
            )
            raise ScGPTCheckpointError(msg)
        out[new] = value
    if not_tensors:
        msg = (
            f"{str(path)!r}: entries {not_tensors[:5]} are not tensors; expected a plain "
            "state dict (torch.save(model.state_dict(), path))."
        )
        raise ScGPTCheckpointError(msg)
    return out, ignored


def _config(args: dict[str, Any], vocab: dict[str, int], state: dict[str, Any]) -> ScGPTConfig:
    d = int(args["embsize"])
    pad_token = str(args.get("pad_token", "<pad>"))
    if pad_token not in vocab:
        msg = f"args.json names pad_token={pad_token!r}, which is not in vocab.json."
        raise ScGPTCheckpointError(msg)
    out_layer = state.get("cls_decoder.out_layer.weight")
    fc0 = state.get("decoder.fc.0.weight")
    mvc_style: str | None = None
    mvc_in = d
    if "mvc_decoder.W.weight" in state:
        mvc_style = "inner product"
        mvc_in = int(state["mvc_decoder.W.weight"].shape[0])
    elif "mvc_decoder.fc1.weight" in state:
        fc1_in = int(state["mvc_decoder.fc1.weight"].shape[1])
        mvc_style = "concat query" if fc1_in == d + 64 else "sum query"
    elif any(k.startswith("mvc_decoder.") for k in state):
        mvc_style = "inner product"  # incomplete: the key check reports what is missing
    return ScGPTConfig(
        ntoken=len(vocab),
        d_model=d,
        nhead=int(args["nheads"]),
        d_hid=int(args["d_hid"]),
        nlayers=int(args["nlayers"]),
        nlayers_cls=int(args.get("n_layers_cls", 3)),
        n_cls=int(out_layer.shape[0]) if out_layer is not None and out_layer.ndim == 2 else 1,
        dropout=float(args.get("dropout", 0.2)),
        pad_id=int(vocab[pad_token]),
        cls_id=int(vocab["<cls>"]),
        pad_value=float(args.get("pad_value", -2)),
        n_bins=int(args.get("n_bins", 51)),
        max_seq_len=int(args.get("max_seq_len", 1200)),
        decoder_in=int(fc0.shape[1]) if fc0 is not None and fc0.ndim == 2 else d,
        mvc_style=mvc_style,
        mvc_in=mvc_in,
    )


def _check_keys(model: Any, state: dict[str, Any], path: Path, config: ScGPTConfig) -> None:
    from sceval.models._safe_load import describe_key_mismatch, state_mismatch

    missing, unexpected, shapes = (sorted(x) for x in state_mismatch(model.state_dict(), state))
    if not (missing or unexpected or shapes):
        return
    msg = (
        f"{str(path)!r} does not match the scGPT architecture built from args.json and "
        f"vocab.json (embsize={config.d_model}, nheads={config.nhead}, d_hid={config.d_hid}, "
        f"nlayers={config.nlayers}, n_layers_cls={config.nlayers_cls}, "
        f"vocabulary {config.ntoken} tokens): "
        + describe_key_mismatch(missing, unexpected, shapes, _MAX_LISTED)
        + ". Expected an official "
        "scGPT best_model.pt (keys encoder.*, value_encoder.*, transformer_encoder.layers.N."
        "{self_attn.Wqkv|self_attn.in_proj_*, self_attn.out_proj, linear1, linear2, norm1, "
        "norm2}, decoder.fc.*, cls_decoder.*, mvc_decoder.*; unused modules "
        f"{list(IGNORED_KEY_PREFIXES)} are ignored). Fix: make sure args.json, vocab.json "
        "and best_model.pt come from the same checkpoint folder."
    )
    raise ScGPTCheckpointError(msg)


def load_scgpt(folder: str | Path) -> tuple[Any, dict[str, int], dict[str, Any]]:
    """Load an official scGPT checkpoint folder.

    Parameters
    ----------
    folder
        A folder with ``args.json``, ``vocab.json`` and ``best_model.pt`` (a plain
        state dict, loaded with ``weights_only=True``).

    Returns
    -------
    model : ScGPTTransformer
        In eval mode on the CPU, float32. ``model.ignored_keys`` lists the checkpoint
        keys dropped by name (:data:`IGNORED_KEY_PREFIXES`).
    vocab : dict
        Token -> id, special tokens included.
    args : dict
        The parsed ``args.json``.

    Raises
    ------
    FileNotFoundError
        A file is missing.
    ScGPTCheckpointError
        Malformed files; missing, unexpected or mis-shaped weights (one message lists
        them all).
    sceval.models._safe_load.UnsafePickleError
        ``best_model.pt`` holds anything but tensors (it is never executed).
    """
    from sceval.models._safe_load import safe_torch_load

    folder = Path(folder)
    files = {name: folder / name for name in ("args.json", "vocab.json", "best_model.pt")}
    absent = [name for name, p in files.items() if not p.is_file()]
    if absent:
        msg = (
            f"scGPT checkpoint folder {str(folder)!r} lacks {absent}; expected args.json, "
            "vocab.json and best_model.pt (the official layout). Fix: fetch the checkpoint "
            "again (sceval fetch scgpt.human) or point checkpoint= at a complete folder."
        )
        raise FileNotFoundError(msg)
    args = _read_args(files["args.json"])
    vocab = read_vocab(files["vocab.json"])
    raw = safe_torch_load(files["best_model.pt"])
    state, ignored = _normalize_keys(raw, files["best_model.pt"])
    config = _config(args, vocab, state)
    model = _nn().ScGPTTransformer(config)
    _check_keys(model, state, files["best_model.pt"], config)
    model.load_state_dict(state, strict=True)
    model.ignored_keys = ignored
    model.eval()
    return model, vocab, args


def reset_parameters(model: Any, seed: int) -> Any:
    """Re-initialize every weight of a :class:`ScGPTTransformer` in place, seeded.

    The initializations are those of the freshly built official model: ``nn.Linear``
    defaults (uniform in ``±1/sqrt(fan_in)``), LayerNorm ones/zeros, the gene embedding
    uniform in ``±0.1`` (``TransformerModel.init_weights``), the attention input
    projection Xavier-uniform with zero biases (``nn.MultiheadAttention``), PReLU 0.25.
    Only a local generator is used; the global torch RNG is untouched.
    """
    import torch
    from torch import nn

    gen = torch.Generator().manual_seed(int(seed))
    done: set[int] = set()

    def uniform(t: torch.Tensor, bound: float) -> None:
        with torch.no_grad():
            t.copy_(torch.empty(t.shape).uniform_(-bound, bound, generator=gen))
        done.add(id(t))

    def const(t: torch.Tensor, value: float) -> None:
        with torch.no_grad():
            t.fill_(value)
        done.add(id(t))

    attn_cls = _nn().SelfAttention
    for _, mod in model.named_modules():
        if isinstance(mod, nn.Linear):
            bound = 1.0 / math.sqrt(mod.in_features)
            uniform(mod.weight, bound)
            if mod.bias is not None:
                uniform(mod.bias, bound)
        elif isinstance(mod, nn.LayerNorm):
            const(mod.weight, 1.0)
            const(mod.bias, 0.0)
        elif isinstance(mod, nn.Embedding):
            uniform(mod.weight, 0.1)
        elif isinstance(mod, nn.PReLU):
            const(mod.weight, 0.25)
        elif isinstance(mod, attn_cls):
            fan_out, fan_in = mod.in_proj_weight.shape
            uniform(mod.in_proj_weight, math.sqrt(6.0 / (fan_in + fan_out)))
            const(mod.in_proj_bias, 0.0)
    for _, mod in model.named_modules():  # MHA zeroes out_proj.bias after its init
        if isinstance(mod, attn_cls):
            const(mod.out_proj.bias, 0.0)
    left = [n for n, p in model.named_parameters() if id(p) not in done]
    if left:  # pragma: no cover - guards a new module type
        msg = f"reset_parameters does not know how to initialize {left}"
        raise RuntimeError(msg)
    return model


# --------------------------------------------------------------------------- tokenization


def bin_values(values: np.ndarray, n_bins: int, rng: np.random.Generator) -> np.ndarray:
    """Bin one cell's values as the official ``scgpt.preprocess.binning``.

    The edges are ``np.quantile(row, np.linspace(0, 1, n_bins - 1))`` over the cell's
    non-zero values; each value gets ``ceil(u * (right - left) + left)`` with ``left =
    digitize(x, edges)``, ``right = digitize(x, edges, right=True)`` and ``u ~ U[0, 1)``
    (official ``_digitize(side="both")``): a value equal to several tied edges is spread
    uniformly over the bins they span. Non-zero values get ``1 .. n_bins - 1``, zeros 0.

    Parameters
    ----------
    values
        One cell's values (any shape-``(n,)`` array).
    n_bins
        ``n_bins`` of the checkpoint (51).
    rng
        Source of the tie-spreading draws (one per non-zero value).

    Returns
    -------
    numpy.ndarray
        float32 bins, shape ``(n,)``.
    """
    row = np.asarray(values, dtype=np.float32)
    out = np.zeros(row.shape, dtype=np.float32)
    if row.size == 0 or row.max() == 0:
        return out
    nz = np.flatnonzero(row)
    x = row[nz]
    edges = np.quantile(x, np.linspace(0, 1, n_bins - 1))
    # np.digitize(x, edges[, right=True]) for increasing edges, without its checks
    left = edges.searchsorted(x, side="right")
    right = edges.searchsorted(x, side="left")
    u = rng.random(x.size)
    out[nz] = np.ceil(u * (right - left) + left).astype(np.int64)
    return out


class ScGPTTokenizer:
    """Per-cell scGPT tokens from a cells x matched-genes count matrix.

    Tokens of cell ``i`` depend on ``(seed, i)`` only (a per-cell generator drives the
    binning ties and the gene subsampling), so any batching gives the same tokens.

    Parameters
    ----------
    counts
        CSR matrix, cells x matched genes (columns in data order).
    gene_ids
        Vocabulary id of each column.
    cls_id, pad_id, pad_value, n_bins
        From the checkpoint.
    max_length
        Maximum tokens per cell, ``<cls>`` included.
    seed
        Seed of the per-cell generators.
    """

    def __init__(
        self,
        counts: sp.csr_matrix,
        gene_ids: np.ndarray,
        *,
        cls_id: int,
        pad_id: int,
        pad_value: float,
        n_bins: int,
        max_length: int,
        seed: int = 0,
        offset: int = 0,
    ) -> None:
        import scipy.sparse as sp

        if max_length < 2:
            msg = f"max_length must be >= 2 (<cls> plus one gene), got {max_length}"
            raise ValueError(msg)
        m = sp.csr_matrix(counts, dtype=np.float32)
        if not m.has_sorted_indices or (m.data == 0).any():
            m = m.copy()  # never modify the caller's matrix
            m.eliminate_zeros()
            m.sort_indices()
        self.counts = m
        self.gene_ids = np.asarray(gene_ids, dtype=np.int64)
        self.cls_id = int(cls_id)
        self.pad_id = int(pad_id)
        self.pad_value = float(pad_value)
        self.n_bins = int(n_bins)
        self.max_length = int(max_length)
        self.seed = int(seed)
        self.offset = int(offset)  # index of the first cell in the full dataset (chunks)
        self.n_genes = np.diff(m.indptr).astype(np.int64)
        self.lengths = np.minimum(self.n_genes + 1, self.max_length)

    @property
    def n_cells(self) -> int:
        """Number of cells."""
        return int(self.counts.shape[0])

    def cell(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Gene ids (int64) and values (float32) of cell ``i``, ``<cls>`` first."""
        m = self.counts
        lo, hi = m.indptr[i], m.indptr[i + 1]
        cols = m.indices[lo:hi]
        rng = np.random.default_rng((self.seed, self.offset + int(i)))
        binned = bin_values(m.data[lo:hi], self.n_bins, rng)
        keep = self.max_length - 1
        if cols.size > keep:  # official: sample (not truncate), keeping <cls>
            sel = np.sort(rng.choice(cols.size, size=keep, replace=False))
            cols, binned = cols[sel], binned[sel]
        genes = np.concatenate([[self.cls_id], self.gene_ids[cols]]).astype(np.int64)
        values = np.concatenate([[self.pad_value], binned]).astype(np.float32)
        return genes, values

    def batch(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Cells ``idx`` padded to the longest of them.

        Returns
        -------
        genes, values, pad_mask
            ``(len(idx), L)`` arrays; ``pad_mask`` is ``True`` at padding and ``None``
            when no cell is padded.
        """
        cells = [self.cell(int(i)) for i in idx]
        longest = max(g.size for g, _ in cells)
        genes = np.full((len(cells), longest), self.pad_id, dtype=np.int64)
        values = np.full((len(cells), longest), self.pad_value, dtype=np.float32)
        mask = np.ones((len(cells), longest), dtype=bool)
        for row, (g, v) in enumerate(cells):
            genes[row, : g.size] = g
            values[row, : v.size] = v
            mask[row, : g.size] = False
        return genes, values, (mask if mask.any() else None)


def build_tokenizer(
    adata: Any,
    report: Any,
    vocab: dict[str, int],
    config: ScGPTConfig,
    *,
    max_length: int | None = None,
    seed: int = 0,
    model_key: str = "scgpt",
    offset: int = 0,
) -> tuple[ScGPTTokenizer, GeneCoverage]:
    """Match genes to the vocabulary and build the per-cell tokenizer.

    Raises
    ------
    DataContractError
        No gene matches the vocabulary (from :func:`gene_coverage`); a ``UserWarning``
        is issued below 50% coverage.
    """
    from sceval.data.contract import get_counts

    symbols = gene_symbols(adata, report)
    specials = set(SPECIAL_TOKENS) | {"<mask>"}
    ids = np.array(
        [vocab.get(s, -1) if s and s not in specials else -1 for s in symbols], dtype=np.int64
    )
    matched = ids >= 0
    counts = get_counts(adata, report)
    cov = gene_coverage(matched, counts, model_key)
    tok = ScGPTTokenizer(
        counts[:, np.flatnonzero(matched)],
        ids[matched],
        cls_id=config.cls_id,
        pad_id=config.pad_id,
        pad_value=config.pad_value,
        n_bins=config.n_bins,
        max_length=int(max_length or config.max_seq_len),
        seed=seed,
        offset=offset,
    )
    return tok, cov


def _to_device(
    arrays: tuple[np.ndarray, np.ndarray, np.ndarray | None], device: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    import torch

    def move(a: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(a)
        if device.startswith("cuda"):  # pinned: the copy does not wait for queued kernels
            return t.pin_memory().to(device, non_blocking=True)
        return t

    g, v, m = arrays
    return move(g), move(v), None if m is None else move(m)


def cell_embeddings(
    model: Any,
    tokenizer: ScGPTTokenizer,
    *,
    batch_size: int = 64,
    device: str = "cpu",
    precision: str = "auto",
    sort_by_length: bool = True,
) -> np.ndarray:
    """L2-normalized ``<cls>`` embeddings of all cells, in cell order.

    Parameters
    ----------
    model
        A :class:`ScGPTTransformer` already on ``device``.
    tokenizer
        Tokens of the cells.
    batch_size
        Cells per forward pass.
    device, precision
        See :func:`sceval.models.foundation.inference_context`.
    sort_by_length
        Batch cells of similar length (default); ``False`` batches consecutive cells.
    """
    n = tokenizer.n_cells
    d = model.config.d_model
    out = np.zeros((n, d), dtype=np.float32)
    if sort_by_length:
        batches = list(batches_by_length(tokenizer.lengths, batch_size))
    else:
        batches = [np.arange(i, min(i + batch_size, n)) for i in range(0, n, batch_size)]
    model.eval()
    pending: list[tuple[np.ndarray, torch.Tensor]] = []

    def flush() -> None:
        for idx, emb in pending:
            out[idx] = emb.float().cpu().numpy()
        pending.clear()

    with inference_context(device, precision):
        for idx in batches:
            emb = model.cell_embedding(*_to_device(tokenizer.batch(idx), device))
            pending.append((idx, emb))  # GPU work stays queued while the next batch tokenizes
            if len(pending) >= 32:
                flush()
        flush()
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.where(norms > 0, norms, 1.0)


# --------------------------------------------------------------------------- models


def _impute_tokens(
    i: int,
    m_cols: np.ndarray,
    counts: Any,
    lognorm: np.ndarray,
    ids: np.ndarray,
    cfg: Any,
    mask_value: float,
    max_len: int,
    ctx: EmbedContext,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, Any]:
    """Tokens of one cell for masked value prediction; returns gene ids, values, the
    positions of the held-out tokens and the bin -> log-normalized inverse map."""
    rng = np.random.default_rng((ctx.seed, ctx.cell_offset + i, 1))
    lo, hi = counts.indptr[i], counts.indptr[i + 1]
    o_cols, o_vals = counts.indices[lo:hi], counts.data[lo:hi]
    keep = (ids[o_cols] >= 0) & (o_vals > 0)
    o_cols, o_vals = o_cols[keep], o_vals[keep]
    bins = bin_values(o_vals, cfg.n_bins, rng)
    room = max_len - 1
    if m_cols.size > room:
        m_cols = m_cols[:room]
    budget = room - m_cols.size
    pick = np.arange(o_cols.size)
    if o_cols.size > budget:
        pick = np.sort(rng.choice(o_cols.size, size=budget, replace=False))
    genes = np.concatenate([[cfg.cls_id], ids[o_cols[pick]], ids[m_cols]])
    values = np.concatenate([[cfg.pad_value], bins[pick], np.full(m_cols.size, mask_value)]).astype(
        np.float32
    )
    pos = np.arange(1 + pick.size, genes.size)
    ln = lognorm[i, o_cols]
    if ln.size:
        uniq = np.unique(bins)
        means = np.array([ln[bins == b].mean() for b in uniq], dtype=np.float64)
    else:
        uniq, means = np.array([0.0]), np.array([0.0])

    def inverse(pred: np.ndarray) -> np.ndarray:
        return np.interp(pred, uniq, means).astype(np.float32)

    return genes.astype(np.int64), values, pos, inverse


@dataclass
class _Loaded:
    key: tuple[Any, ...]
    model: Any
    vocab: dict[str, int]
    args: dict[str, Any]


class _ScGPTBase(FoundationModel):
    """Shared implementation of ``scgpt`` and ``scgpt.random``."""

    default_checkpoint = "scgpt.human"
    random_weights = False

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._loaded: _Loaded | None = None
        #: Gene coverage of the last embedded dataset (its ``message`` goes to results).
        self.coverage: GeneCoverage | None = None

    # ------------------------------------------------------------------ plumbing
    def _load(self, ctx: EmbedContext) -> _Loaded:
        folder = self.checkpoint_dir()
        device = self._device(ctx)
        random = self.random_weights or bool(self.params.get("random_init", False))
        key = (str(folder), random, int(ctx.seed) if random else None, device)
        if self._loaded is not None and self._loaded.key == key:
            return self._loaded
        try:
            model, vocab, args = load_scgpt(folder)
        except FileNotFoundError as err:
            raise ModelSkippedError(str(err)) from err
        if random:
            reset_parameters(model, ctx.seed)
        model.to(device)
        self._loaded = _Loaded(key, model, vocab, args)
        return self._loaded

    def _tokenizer(
        self, adata: Any, ctx: EmbedContext, loaded: _Loaded
    ) -> tuple[ScGPTTokenizer, GeneCoverage]:
        tok, cov = build_tokenizer(
            adata,
            ctx.report,
            loaded.vocab,
            loaded.model.config,
            max_length=self.params.get("max_length"),
            seed=ctx.seed,
            model_key=self.info.key,
            offset=ctx.cell_offset,
        )
        self.coverage = cov
        return tok, cov

    # ------------------------------------------------------------------ API
    def embed_cells(self, adata: Any, ctx: EmbedContext) -> np.ndarray:
        """L2-normalized ``<cls>`` embeddings, ``(n_cells, embsize)`` float32."""
        loaded = self._load(ctx)
        tok, _ = self._tokenizer(adata, ctx, loaded)
        return cell_embeddings(
            loaded.model,
            tok,
            batch_size=int(self.params.get("batch_size", 64)),
            device=self._device(ctx),
            precision=self._precision(),
        )

    def impute(
        self,
        counts_masked: Any,
        mask: Any,
        ctx: EmbedContext,
        *,
        genes: list[str] | None = None,
        **kwargs: Any,
    ) -> np.ndarray:
        """Impute held-out entries through the expression decoder (masked value
        prediction, the scGPT pretraining objective).

        Per cell: the observed non-zero genes are tokens with their binned values, the
        held-out genes are tokens with ``mask_value`` (``args.json``, -1), after
        ``<cls>``; longer cells keep every held-out gene and a seeded random subset of
        observed ones. The decoder predicts a value on the bin scale for each held-out
        token; it is mapped back to ``log1p(x / total * 1e4)`` by interpolating between
        the mean log-normalized value of the cell's observed entries in each bin (the
        inverse of the per-cell quantile binning). Genes outside the vocabulary, and
        entries that are not held out, keep their observed log-normalized value.

        Parameters
        ----------
        counts_masked
            Counts with held-out entries set to 0, CSR ``(cells, genes)``.
        mask
            Boolean CSR, True at held-out entries.
        ctx
            Seed and device.
        genes
            Gene symbols of the columns (required).

        Returns
        -------
        numpy.ndarray
            Dense float32 ``(cells, genes)`` log-normalized values.
        """
        import scipy.sparse as sp

        if genes is None:
            msg = f"model {self.info.key!r}: impute() needs the gene symbols of the columns"
            raise ModelSkippedError(msg)
        loaded = self._load(ctx)
        cfg = loaded.model.config
        mask_value = float(loaded.args.get("mask_value", -1))
        ids = np.array([loaded.vocab.get(str(g), -1) for g in genes], dtype=np.int64)
        counts = sp.csr_matrix(counts_masked, dtype=np.float32)
        held = sp.csr_matrix(mask, dtype=bool)
        totals = np.asarray(counts.sum(axis=1)).ravel()
        totals[totals == 0] = 1.0
        out = counts.multiply(1e4 / totals[:, None]).tocsr()
        out.data = np.log1p(out.data)
        out = out.toarray().astype(np.float32)
        max_len = int(self.params.get("max_length") or cfg.max_seq_len)
        device = self._device(ctx)
        model = loaded.model.to(device).eval()
        cells = []
        for i in range(counts.shape[0]):
            m_cols = held.indices[held.indptr[i] : held.indptr[i + 1]]
            m_cols = m_cols[ids[m_cols] >= 0]
            if m_cols.size:
                cells.append((i, m_cols))
        batch_size = int(self.params.get("batch_size", 64))
        for start in range(0, len(cells), batch_size):
            chunk = cells[start : start + batch_size]
            toks = [
                _impute_tokens(i, m_cols, counts, out, ids, cfg, mask_value, max_len, ctx)
                for i, m_cols in chunk
            ]
            longest = max(t[0].size for t in toks)
            g = np.full((len(toks), longest), cfg.pad_id, dtype=np.int64)
            v = np.full((len(toks), longest), cfg.pad_value, dtype=np.float32)
            for j, (tg, tv, _, _) in enumerate(toks):
                g[j, : tg.size], v[j, : tv.size] = tg, tv
            pad = g == cfg.pad_id
            gt, vt, pt = _to_device((g, v, pad if pad.any() else None), device)
            with inference_context(device, self._precision()):
                pred = model.decoder(model.encode(gt, vt, pt)).float().cpu().numpy()
            for j, (i, m_cols) in enumerate(chunk):
                _, _, pos, inverse = toks[j]
                out[i, m_cols[: pos.size]] = inverse(pred[j, pos])
        return out

    def embed_genes(self, genes: list[str], ctx: EmbedContext) -> tuple[np.ndarray, np.ndarray]:
        """Gene-encoder embeddings ``enc_norm(embedding(gene))`` of the genes in the
        vocabulary: ``(matrix (n_found, embsize), found mask (len(genes),))``."""
        import torch

        loaded = self._load(ctx)
        specials = set(SPECIAL_TOKENS)
        ids = [loaded.vocab.get(str(g), -1) if str(g) not in specials else -1 for g in genes]
        found = np.array([i >= 0 for i in ids], dtype=bool)
        sel = torch.tensor([i for i in ids if i >= 0], dtype=torch.long)
        device = self._device(ctx)
        with inference_context(device, "fp32"):
            emb = loaded.model.gene_embeddings(sel.to(device))
        return emb.float().cpu().numpy(), found

    def fine_tune_annotate(
        self,
        adata: Any,
        labels: Any,
        train_idx: Any,
        test_idx: Any,
        ctx: EmbedContext,
        *,
        lr: float = 1e-4,
        epochs: int = 10,
        batch_size: int = 32,
        val_fraction: float = 0.1,
        patience: int = 3,
    ) -> np.ndarray:
        """Fine-tune the whole model with the classification head; predict ``test_idx``.

        Follows the official annotation fine-tuning (``Tutorial_Annotation``): the
        ``<cls>`` output goes through ``cls_decoder`` (its hidden blocks from the
        checkpoint, a new seeded ``out_layer`` for the training classes), cross-entropy,
        Adam (``eps=1e-4`` under mixed precision, else ``1e-8``), learning rate times 0.9
        per epoch, dropout of the checkpoint. The same tokens as :meth:`embed_cells`.

        A validation split of ``val_fraction`` is carved from ``train_idx`` only
        (stratified when every class has two cells); training stops after ``patience``
        epochs without a lower validation loss and the best-validation weights are
        restored. ``labels[test_idx]`` is never read.

        Parameters
        ----------
        adata
            The data (raw counts, as for :meth:`embed_cells`).
        labels
            A label per cell, ``(n_cells,)``; only ``labels[train_idx]`` is used.
        train_idx, test_idx
            Integer indices of training and test cells.
        ctx
            Run context (seed, device).
        lr, epochs, batch_size, val_fraction, patience
            Optimisation settings.

        Returns
        -------
        numpy.ndarray
            Predicted labels of the ``test_idx`` cells (values of ``labels[train_idx]``).
        """
        import torch
        from torch import nn

        labels = np.asarray(labels)
        train_idx = np.asarray(train_idx, dtype=np.int64)
        test_idx = np.asarray(test_idx, dtype=np.int64)
        n = adata.n_obs
        if labels.shape[0] != n:
            msg = (
                f"labels has {labels.shape[0]} entries; expected one per cell ({n}). Fix: "
                "pass adata.obs[label_key].to_numpy()."
            )
            raise DataContractError(msg)
        if train_idx.size == 0 or test_idx.size == 0:
            msg = "fine_tune_annotate needs non-empty train_idx and test_idx."
            raise DataContractError(msg)
        if np.intersect1d(train_idx, test_idx).size:
            msg = "train_idx and test_idx overlap; expected disjoint cell sets."
            raise DataContractError(msg)
        classes, y_train = np.unique(labels[train_idx], return_inverse=True)
        if classes.size < 2:
            msg = f"training cells carry {classes.size} label; classification needs >= 2."
            raise DataContractError(msg)
        seed = int(ctx.seed)
        fit_pos, val_pos = _validation_split(y_train, val_fraction, seed)

        loaded = self._load(ctx)
        device = self._device(ctx)
        tok, _ = self._tokenizer(adata, ctx, loaded)
        model = copy.deepcopy(loaded.model)
        d = model.config.d_model
        head = nn.Linear(d, classes.size)
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            bound = 1.0 / math.sqrt(d)
            head.weight.copy_(torch.empty(head.weight.shape).uniform_(-bound, bound, generator=gen))
            head.bias.copy_(torch.empty(head.bias.shape).uniform_(-bound, bound, generator=gen))
        model.cls_decoder.out_layer = head
        model.to(device)

        use_cuda = device.startswith("cuda")
        amp_dtype = autocast_dtype(device, self._precision())
        scaler = torch.amp.GradScaler("cuda") if amp_dtype is torch.float16 else None
        opt = torch.optim.Adam(model.parameters(), lr=lr, eps=1e-4 if amp_dtype else 1e-8)
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.9)
        loss_fn = nn.CrossEntropyLoss()
        y_all = torch.from_numpy(y_train.astype(np.int64))

        def autocast() -> Any:
            if amp_dtype is None:
                return torch.autocast("cpu", enabled=False)
            return torch.autocast("cuda", dtype=amp_dtype)

        def val_loss() -> float:
            model.eval()
            total = 0.0
            with torch.no_grad(), autocast():
                for part in batches_by_length(tok.lengths[train_idx[val_pos]], batch_size):
                    pos = val_pos[part]
                    logits = model.classify(*_to_device(tok.batch(train_idx[pos]), device))
                    target = y_all[torch.from_numpy(pos)].to(device)
                    total += float(loss_fn(logits.float(), target)) * pos.size
            return total / val_pos.size

        rng = np.random.default_rng(seed)
        devices = [torch.device(device).index or 0] if use_cuda else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            best = math.inf
            best_state = None
            bad_epochs = 0
            for _ in range(int(epochs)):
                model.train()
                order = rng.permutation(fit_pos)
                for start in range(0, order.size, batch_size):
                    pos = order[start : start + batch_size]
                    inputs = _to_device(tok.batch(train_idx[pos]), device)
                    with autocast():
                        logits = model.classify(*inputs)
                        loss = loss_fn(logits.float(), y_all[torch.from_numpy(pos)].to(device))
                    opt.zero_grad(set_to_none=True)
                    if scaler is not None:
                        scaler.scale(loss).backward()
                        scaler.step(opt)
                        scaler.update()
                    else:
                        loss.backward()
                        opt.step()
                sched.step()
                if val_pos.size == 0:
                    continue
                current = val_loss()
                if current < best:
                    best, bad_epochs = current, 0
                    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                else:
                    bad_epochs += 1
                    if bad_epochs >= patience:
                        break
            if best_state is not None:
                model.load_state_dict(best_state)

        model.eval()
        pred = np.zeros(test_idx.size, dtype=np.int64)
        with torch.no_grad(), autocast():
            for part in batches_by_length(tok.lengths[test_idx], batch_size):
                logits = model.classify(*_to_device(tok.batch(test_idx[part]), device))
                pred[part] = logits.float().argmax(1).cpu().numpy()
        return classes[pred]


def _validation_split(
    y: np.ndarray, val_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Positions (into the training cells) to fit on and to validate on."""
    n = y.size
    n_val = round(val_fraction * n)
    if val_fraction <= 0 or n_val < 1 or n - n_val < 1:
        return np.arange(n), np.zeros(0, dtype=np.int64)
    from sklearn.model_selection import train_test_split

    pos = np.arange(n)
    try:
        fit, val = train_test_split(pos, test_size=n_val, stratify=y, random_state=seed)
    except ValueError:  # a class with one cell, or fewer validation cells than classes
        fit, val = train_test_split(pos, test_size=n_val, random_state=seed)
    return np.sort(fit), np.sort(val)


@register_model
class ScGPTModel(_ScGPTBase):
    """``scgpt``: zero-shot scGPT cell embeddings (L2-normalized ``<cls>`` output).

    Parameters (keyword arguments)
    ----------
    checkpoint
        Registered checkpoint name or a local folder in the official layout
        (``args.json``, ``vocab.json``, ``best_model.pt``). Default ``"scgpt.human"``.
    batch_size
        Cells per forward pass (default 64, as the official ``embed_data``).
    precision
        ``"auto"`` (bf16 on CUDA when supported, fp32 on CPU), ``"fp32"``, ``"bf16"``,
        ``"fp16"``.
    max_length
        Tokens per cell including ``<cls>`` (default: ``max_seq_len`` of ``args.json``,
        1200 for the released checkpoints).
    """

    info = ModelInfo(
        key="scgpt",
        kind="foundation",
        input="counts",
        requires=("torch",),
        install="pip install torch",
        description="scGPT zero-shot <cls> cell embedding (official checkpoint, plain PyTorch)",
        citation="Cui et al., Nat. Methods 2024 (scGPT)",
        license="MIT",
    )


@register_model
class ScGPTRandomModel(_ScGPTBase):
    """``scgpt.random``: the scGPT architecture, vocabulary and tokenization of the
    checkpoint with all weights re-initialized (seeded by ``ctx.seed``): what the
    architecture gives without pretraining. Parameters as :class:`ScGPTModel`.
    """

    random_weights = True
    info = ModelInfo(
        key="scgpt.random",
        kind="control",
        input="counts",
        requires=("torch",),
        install="pip install torch",
        description="control: scGPT architecture with seeded random weights (no pretraining)",
        citation="Cui et al., Nat. Methods 2024 (scGPT); randomly initialized",
        license="MIT",
    )
