"""One Performer (FAVOR+) implementation shared by scBERT and CellLM.

Both models are the ``PerformerLM`` of lucidrains/performer-pytorch as vendored in their
official repositories (TencentAILabHealthcare/scBERT ``performer_pytorch/performer_pytorch.py``;
PharMolix/OpenBioMed ``open_biomed/models/cell/performer_celllm.py``): token embedding
(expression bins) plus a frozen gene2vec "positional" table, a stack of pre-LayerNorm
blocks (FAVOR+ self-attention, GELU feed-forward with 4x width), a final LayerNorm. The
torch modules below carry the official module names, so an official ``state_dict`` loads
with strict key checking.

FAVOR+ (``softmax_kernel`` and the non-causal ``linear_attention`` of the official code),
for one head with ``e``-dimensional queries/keys and the ``m x e`` projection matrix ``W``::

    c      = e ** -0.25                      (data normalizer)
    dash   = (c * x) @ W.T                   (n x m)
    diag   = c**2 * |x|**2 / 2
    phi(x) = m ** -0.5 * (exp(dash - diag - M) + 1e-4)
    out    = (phi(q) @ (phi(k).T @ v)) / (phi(q) @ sum_n phi(k))

The stabiliser ``M`` is the row maximum of ``dash`` for queries (no coupling), but for
keys the official code takes ``torch.max(data_dash)``: one maximum over the WHOLE key
tensor, batch and heads included. Because of the ``+ 1e-4`` term the result depends on
``M``, so a cell's output in the official code depends on the other cells of its batch;
the official inference (scBERT ``predict.py``) runs one cell per forward. Here:

``key_max="cell"``
    The maximum over one cell's keys (all heads, positions, features). For a batch of one
    this is exactly the official computation; for larger batches it gives every cell the
    number it would get alone, so batched inference reproduces batch-1 inference.
``key_max="batch"``
    The official maximum over the whole batch (only for measuring the coupling).

Positions may carry a multiplicity ``weight``: a weight-``w`` position counts as ``w``
identical positions in the key sums (and weight 0 removes a position: batch padding).
CellLM pads every cell to 6,000 tokens with identical ``<pad>`` tokens whose keys take
part in the attention normaliser (the official mask zeroes their values only); all pad
positions stay identical through every layer, so one pad position with weight
``6000 - length`` computes the same numbers as the full padding.

Measured at the official sizes with random weights on simulated cells (64 cells, one
H200, fp32): fast vs exact differ by at most 6e-7 (scBERT) and 2.4e-6 (CellLM) in any
coordinate; batching the official code (batch-wide key maximum, 16 cells) moves them by
up to 0.010 (scBERT) and 0.048 (CellLM), cosine similarity >= 0.9999 with batch-of-one.

The projection matrices are buffers read from the checkpoint; they are never redrawn
(the official code redraws them only in training mode, every 1,000 forward calls).

torch is imported on first use only.
"""

from __future__ import annotations

import contextlib
import functools
import math
import types
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sceval._errors import ModelSkippedError, ScevalError
from sceval.models.base import EmbedContext
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
    "EPS",
    "MODES",
    "PerformerCheckpointError",
    "PerformerConfig",
    "PerformerFoundation",
    "favor_features",
    "linear_attention",
    "load_performer",
    "log2_normalized",
    "read_gene_list",
    "reset_parameters",
]

#: ``eps`` of the official ``softmax_kernel``.
EPS = 1e-4
#: Accepted values of the ``mode`` parameter of scBERT and CellLM.
MODES = ("exact", "fast")
#: Keys of the official ``PerformerLM`` that embeddings do not use: the output head
#: (the masked-token logits of pretraining, or a fine-tuning head such as scBERT's
#: ``Identity``) is dropped by name.
IGNORED_PREFIXES = ("to_out.",)
#: Buffers that a checkpoint may lack (a counter of training calls, unused here).
OPTIONAL_KEYS = ("performer.calls_since_last_redraw",)


class PerformerCheckpointError(ScevalError, ValueError):
    """A scBERT/CellLM checkpoint folder does not match the official format."""


# --------------------------------------------------------------------------- config


@dataclass(frozen=True)
class PerformerConfig:
    """Architecture of an official ``PerformerLM``.

    Attributes
    ----------
    num_tokens
        Rows of ``token_emb`` (expression bins plus special tokens).
    dim, depth, heads, dim_head
        Width, layers, heads and head width (``inner_dim = heads * dim_head``).
    n_positions
        Rows of the gene2vec table ``pos_emb.emb`` (genes plus the extra rows).
    max_seq_len
        Longest sequence the model takes.
    ff_mult
        Feed-forward width / ``dim`` (4 in both models).
    nb_features
        Random features of FAVOR+ (default ``int(dim_head * ln(dim_head))``, 266 for 64).
    qkv_bias
        Whether ``to_q/to_k/to_v`` have biases (``False`` in both models).
    """

    num_tokens: int
    dim: int
    depth: int
    heads: int
    n_positions: int
    max_seq_len: int
    dim_head: int = 64
    ff_mult: int = 4
    nb_features: int | None = None
    qkv_bias: bool = False

    @property
    def n_features(self) -> int:
        """FAVOR+ random features (the rows of each ``projection_matrix``)."""
        if self.nb_features is not None:
            return int(self.nb_features)
        return int(self.dim_head * math.log(self.dim_head))


# --------------------------------------------------------------------------- FAVOR+


def favor_features(
    data: torch.Tensor,
    projection: torch.Tensor,
    *,
    is_query: bool,
    weights: torch.Tensor | None = None,
    key_max: str = "cell",
    eps: float = EPS,
) -> torch.Tensor:
    """FAVOR+ positive random features of queries or keys (official ``softmax_kernel``).

    Parameters
    ----------
    data
        Queries or keys, ``(batch, heads, n, dim_head)``.
    projection
        The ``(nb_features, dim_head)`` projection matrix.
    is_query
        Queries: stabilised by each row's maximum. Keys: by one maximum per cell
        (``key_max="cell"``) or over the whole batch (``"batch"``, the official coupling).
    weights
        ``(batch, n)`` multiplicities; positions with weight 0 are left out of the keys'
        maximum.
    """
    import torch

    normalizer = data.shape[-1] ** -0.25
    ratio = projection.shape[0] ** -0.5
    dash = torch.einsum("bhnd,md->bhnm", normalizer * data, projection.type_as(data))
    diag = torch.sum(data**2, dim=-1)
    diag = ((diag / 2.0) * (normalizer**2)).unsqueeze(-1)
    if is_query:
        stab = torch.amax(dash, dim=-1, keepdim=True)
    else:
        src = dash
        if weights is not None:
            absent = (weights <= 0)[:, None, :, None]
            src = dash.masked_fill(absent, float("-inf"))
        if key_max == "batch":
            stab = torch.amax(src)
        elif key_max == "cell":
            stab = torch.amax(src, dim=(1, 2, 3), keepdim=True)
        else:
            msg = f"key_max must be 'cell' or 'batch', got {key_max!r}"
            raise ValueError(msg)
    return ratio * (torch.exp(dash - diag - stab) + eps)


def linear_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Non-causal linear attention (official ``linear_attention``), with optional
    ``(batch, n)`` key multiplicities."""
    import torch

    if weights is not None:
        k = k * weights[:, None, :, None].to(k.dtype)
    k_sum = k.sum(dim=-2)
    d_inv = 1.0 / torch.einsum("bhnm,bhm->bhn", q, k_sum.type_as(q))
    context = torch.einsum("bhnm,bhne->bhme", k, v)
    return torch.einsum("bhme,bhnm,bhn->bhne", context, q, d_inv)


# --------------------------------------------------------------------------- torch modules


@functools.cache
def _nn() -> types.SimpleNamespace:
    """Define the torch modules on first use (torch is an optional dependency)."""
    import torch
    from torch import nn

    class FastAttention(nn.Module):
        """``fast_attention``: holds the ``projection_matrix`` buffer."""

        def __init__(self, dim_head: int, nb_features: int) -> None:
            super().__init__()
            self.register_buffer("projection_matrix", torch.zeros(nb_features, dim_head))

        def forward(
            self,
            q: torch.Tensor,
            k: torch.Tensor,
            v: torch.Tensor,
            weights: torch.Tensor | None,
            key_max: str,
        ) -> torch.Tensor:
            # the kernel runs in float32 even under autocast (exp of differences)
            dtype = q.dtype
            ctx = (
                torch.autocast(q.device.type, enabled=False)
                if torch.is_autocast_enabled(q.device.type)
                else contextlib.nullcontext()
            )
            with ctx:
                q, k, v = q.float(), k.float(), v.float()
                proj = self.projection_matrix.float()
                qf = favor_features(q, proj, is_query=True)
                kf = favor_features(k, proj, is_query=False, weights=weights, key_max=key_max)
                out = linear_attention(qf, kf, v, weights)
            return out.to(dtype)

    class SelfAttention(nn.Module):
        """``fn`` of the attention block: ``to_q/to_k/to_v`` (no bias), ``to_out``."""

        def __init__(self, c: PerformerConfig) -> None:
            super().__init__()
            inner = c.heads * c.dim_head
            self.heads = c.heads
            self.fast_attention = FastAttention(c.dim_head, c.n_features)
            self.to_q = nn.Linear(c.dim, inner, bias=c.qkv_bias)
            self.to_k = nn.Linear(c.dim, inner, bias=c.qkv_bias)
            self.to_v = nn.Linear(c.dim, inner, bias=c.qkv_bias)
            self.to_out = nn.Linear(inner, c.dim)

        def forward(
            self,
            x: torch.Tensor,
            weights: torch.Tensor | None = None,
            v_keep: torch.Tensor | None = None,
            key_max: str = "cell",
        ) -> torch.Tensor:
            b, n, _ = x.shape
            h = self.heads

            def split(t: torch.Tensor) -> torch.Tensor:
                return t.view(b, n, h, -1).transpose(1, 2)

            q, k, v = split(self.to_q(x)), split(self.to_k(x)), split(self.to_v(x))
            if v_keep is not None:
                v = v.masked_fill(~v_keep[:, None, :, None], 0.0)
            out = self.fast_attention(q, k, v, weights, key_max)
            return self.to_out(out.transpose(1, 2).reshape(b, n, -1))

    class FeedForward(nn.Module):
        """``w1`` -> GELU -> ``w2``."""

        def __init__(self, dim: int, mult: int) -> None:
            super().__init__()
            self.w1 = nn.Linear(dim, dim * mult)
            self.act = nn.GELU()
            self.w2 = nn.Linear(dim * mult, dim)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.w2(self.act(self.w1(x)))

    class Chunk(nn.Module):
        """``Chunk(ff_chunks=1, ...)``: a pass-through wrapper (kept for the key names)."""

        def __init__(self, fn: nn.Module) -> None:
            super().__init__()
            self.fn = fn

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fn(x)

    class PreLayerNorm(nn.Module):
        """``norm`` then ``fn``."""

        def __init__(self, dim: int, fn: nn.Module) -> None:
            super().__init__()
            self.norm = nn.LayerNorm(dim)
            self.fn = fn

        def forward(self, x: torch.Tensor, **kwargs: Any) -> torch.Tensor:
            return self.fn(self.norm(x), **kwargs)

    class SequentialSequence(nn.Module):
        """``net``: ``x = x + attn(x); x = x + ff(x)`` per layer."""

        def __init__(self, c: PerformerConfig) -> None:
            super().__init__()
            self.layers = nn.ModuleList(
                nn.ModuleList(
                    [
                        PreLayerNorm(c.dim, SelfAttention(c)),
                        PreLayerNorm(c.dim, Chunk(FeedForward(c.dim, c.ff_mult))),
                    ]
                )
                for _ in range(c.depth)
            )

        def forward(self, x: torch.Tensor, **attn_kwargs: Any) -> torch.Tensor:
            for attn, ff in self.layers:
                x = x + attn(x, **attn_kwargs)
                x = x + ff(x)
            return x

    class Performer(nn.Module):
        """``performer``: the layer stack and the (unused) redraw counter buffer."""

        def __init__(self, c: PerformerConfig) -> None:
            super().__init__()
            self.net = SequentialSequence(c)
            self.register_buffer("calls_since_last_redraw", torch.tensor(0))

    class Gene2VecEmbedding(nn.Module):
        """``pos_emb``: the frozen gene2vec table ``emb`` (float64 in the checkpoints,
        as ``nn.Embedding.from_pretrained`` of a float64 numpy array)."""

        def __init__(self, n: int, dim: int, dtype: torch.dtype) -> None:
            super().__init__()
            self.emb = nn.Embedding(n, dim, dtype=dtype)
            self.emb.weight.requires_grad_(False)

    class PerformerLM(nn.Module):
        """The official ``PerformerLM`` without its output head (``to_out``)."""

        def __init__(self, c: PerformerConfig, pos_dtype: torch.dtype = torch.float64) -> None:
            super().__init__()
            self.config = c
            self.token_emb = nn.Embedding(c.num_tokens, c.dim)
            self.pos_emb = Gene2VecEmbedding(c.n_positions, c.dim, pos_dtype)
            self.performer = Performer(c)
            self.norm = nn.LayerNorm(c.dim)

        def encode(
            self,
            tokens: torch.Tensor,
            positions: torch.Tensor,
            *,
            weights: torch.Tensor | None = None,
            v_keep: torch.Tensor | None = None,
            key_max: str = "cell",
        ) -> torch.Tensor:
            """Final-LayerNorm outputs ``(batch, n, dim)`` (``return_encodings=True``).

            Parameters
            ----------
            tokens, positions
                Expression tokens and gene2vec rows, ``(batch, n)`` long.
            weights
                Position multiplicities (see the module docstring); ``None``: all 1.
            v_keep
                ``False`` where the official attention mask zeroes the values.
            key_max
                ``"cell"`` or ``"batch"`` (see :func:`favor_features`).
            """
            x = self.token_emb(tokens)
            pos = self.pos_emb.emb(positions)
            # official: x += pos_emb(x) (a float32 tensor plus a float64 one, in place)
            x = (x.to(pos.dtype) + pos).to(x.dtype) if pos.dtype != x.dtype else x + pos
            x = self.performer.net(x, weights=weights, v_keep=v_keep, key_max=key_max)
            return self.norm(x)

    return types.SimpleNamespace(
        Chunk=Chunk,
        FastAttention=FastAttention,
        FeedForward=FeedForward,
        Gene2VecEmbedding=Gene2VecEmbedding,
        Performer=Performer,
        PerformerLM=PerformerLM,
        PreLayerNorm=PreLayerNorm,
        SelfAttention=SelfAttention,
        SequentialSequence=SequentialSequence,
    )


def __getattr__(name: str) -> Any:
    if name in ("PerformerLM", "SelfAttention", "FastAttention"):
        return getattr(_nn(), name)
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)


# --------------------------------------------------------------------------- loading


def _strip_prefix(state: dict[str, Any]) -> dict[str, Any]:
    """Drop a ``module.`` prefix (a model saved under DistributedDataParallel)."""
    if state and all(k.startswith("module.") for k in state):
        return {k[len("module.") :]: v for k, v in state.items()}
    return state


def load_performer(
    state: dict[str, Any], config: PerformerConfig, source: str | Path, *, fix: str
) -> Any:
    """Build a :class:`PerformerLM` for ``config`` and load ``state`` strictly.

    Keys under :data:`IGNORED_PREFIXES` are dropped; every other key must be present
    with the shape ``config`` implies.

    Raises
    ------
    PerformerCheckpointError
        Missing, unexpected or mis-shaped keys, all listed by key, with ``fix``.
    """
    import torch

    from sceval.models._safe_load import describe_key_mismatch

    state = _strip_prefix(dict(state))
    state = {k: v for k, v in state.items() if not k.startswith(IGNORED_PREFIXES)}
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        msg = (
            f"{str(source)!r}: expected tensors in the state dict, found other values at {bad[:5]}."
        )
        raise PerformerCheckpointError(msg)
    pos = state.get("pos_emb.emb.weight")
    pos_dtype = pos.dtype if isinstance(pos, torch.Tensor) and pos.is_floating_point() else None
    model = _nn().PerformerLM(config, pos_dtype or torch.float64)
    expected = model.state_dict()
    missing = [k for k in expected if k not in state and k not in OPTIONAL_KEYS]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k}: checkpoint {list(v.shape)} vs expected {list(expected[k].shape)}"
        for k, v in state.items()
        if k in expected and tuple(v.shape) != tuple(expected[k].shape)
    ]
    problem = describe_key_mismatch(missing, unexpected, shapes)
    if problem:
        msg = (
            f"{str(source)!r} does not match the expected architecture (dim {config.dim}, "
            f"depth {config.depth}, heads {config.heads}, dim_head {config.dim_head}, "
            f"{config.num_tokens} tokens, {config.n_positions} gene2vec rows): {problem}. "
            f"Fix: {fix}"
        )
        raise PerformerCheckpointError(msg)
    model.load_state_dict(state, strict=False)
    model.eval()
    return model


def _orthogonal_projection(
    rows: int, cols: int, gen: torch.Generator, dtype: torch.dtype
) -> torch.Tensor:
    """Official ``gaussian_orthogonal_random_matrix(scaling=0)`` drawn from ``gen``."""
    import torch

    blocks = []
    for _ in range(math.ceil(rows / cols)):
        q, _r = torch.linalg.qr(torch.randn(cols, cols, generator=gen, dtype=torch.float64))
        blocks.append(q.t())
    final = torch.cat(blocks)[:rows]
    multiplier = torch.randn(rows, cols, generator=gen, dtype=torch.float64).norm(dim=1)
    return (torch.diag(multiplier) @ final).to(dtype)


def reset_parameters(model: Any, seed: int) -> Any:
    """Re-initialize ``model`` in place from ``seed`` (the ``.random`` controls).

    Linear layers, LayerNorms and the token embedding get PyTorch's default
    initializations (what the official code starts training from) and every projection
    matrix a fresh Gaussian orthogonal draw. The gene2vec table is kept: it is a frozen
    input featurization that the official models never train (``from_pretrained``), so
    the control differs from the pretrained model by pretraining alone.
    """
    import torch
    from torch import nn

    gen = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        for name, mod in model.named_modules():
            if isinstance(mod, nn.Linear):
                bound = 1.0 / math.sqrt(mod.in_features)
                w = (torch.rand(mod.weight.shape, generator=gen) * 2 - 1) * bound
                mod.weight.copy_(w)
                if mod.bias is not None:
                    mod.bias.copy_((torch.rand(mod.bias.shape, generator=gen) * 2 - 1) * bound)
            elif isinstance(mod, nn.LayerNorm):
                mod.weight.fill_(1.0)
                mod.bias.fill_(0.0)
            elif isinstance(mod, nn.Embedding) and name == "token_emb":
                mod.weight.copy_(torch.randn(mod.weight.shape, generator=gen))
            elif hasattr(mod, "projection_matrix"):
                p = mod.projection_matrix
                p.copy_(_orthogonal_projection(p.shape[0], p.shape[1], gen, p.dtype))
    return model


# --------------------------------------------------------------------------- genes and values


def read_gene_list(path: str | Path) -> list[str]:
    """Gene symbols of a model's gene order.

    ``.h5ad``: the ``var_names`` of the official reference file (read through h5py,
    without the expression matrix). Anything else: a text file with one symbol per line.
    """
    path = Path(path)
    if path.suffix == ".h5ad":
        import h5py

        with h5py.File(path, "r") as fh:
            var = fh["var"]
            key = var.attrs.get("_index", "_index")
            key = key.decode() if isinstance(key, bytes) else str(key)
            raw = var[key][()]
        return [x.decode() if isinstance(x, bytes) else str(x) for x in raw]
    with open(path, encoding="utf-8") as fh:
        return [line.strip() for line in fh if line.strip()]


def log2_normalized(
    adata: Any, report: Any, genes: list[str], model_key: str
) -> tuple[sp.csr_matrix, GeneCoverage]:
    """Counts in the model's gene order, normalized and ``log2(1 + x)``-transformed.

    As the official scBERT ``preprocess.py``: the data's genes are placed in the model's
    gene order by symbol (the first data column of a symbol; model genes absent from the
    data stay 0), each cell is scaled to 10,000 counts over those genes
    (``normalize_total(target_sum=1e4)`` after the reordering), then
    ``log1p(base=2)``. Computed in float32 like scanpy.

    Returns
    -------
    (matrix, coverage)
        A ``cells x len(genes)`` float32 CSR matrix and the coverage report.

    Raises
    ------
    DataContractError
        No gene matches (from :func:`sceval.models.foundation.gene_coverage`).
    """
    import scipy.sparse as sp

    from sceval.data.contract import get_counts
    from sceval.models.foundation import gene_symbols

    symbols = gene_symbols(adata, report)
    first: dict[str, int] = {}
    for i, s in enumerate(symbols):
        if s and s not in first:
            first[str(s)] = i
    model_idx = np.array([j for j, g in enumerate(genes) if g in first], dtype=np.int64)
    data_cols = np.array([first[genes[j]] for j in model_idx], dtype=np.int64)
    in_model = set(genes)
    matched = np.array([bool(s) and str(s) in in_model for s in symbols], dtype=bool)
    counts = sp.csr_matrix(get_counts(adata, report))
    cov = gene_coverage(matched, counts, model_key)
    sub = counts[:, data_cols].tocoo()
    mat = sp.csr_matrix(
        (sub.data.astype(np.float32), (sub.row, model_idx[sub.col])),
        shape=(counts.shape[0], len(genes)),
        dtype=np.float32,
    )
    mat.sum_duplicates()
    mat.sort_indices()
    lib = np.asarray(mat.sum(axis=1), dtype=np.float32).ravel()
    scale = lib / np.float32(1e4)
    scale[scale == 0] = 1.0
    mat.data /= np.repeat(scale, np.diff(mat.indptr))
    mat.data = (np.log1p(mat.data) / np.float32(np.log(2.0))).astype(np.float32)
    return mat, cov


def bin_tokens(values: np.ndarray, n_bins: int) -> np.ndarray:
    """Official binning: values above ``n_bins`` set to ``n_bins``, then ``.long()``
    (truncation toward zero, i.e. floor for the non-negative values here)."""
    v = np.asarray(values, dtype=np.float32).copy()
    v[v > n_bins] = n_bins
    return v.astype(np.int64)


# --------------------------------------------------------------------------- models


@dataclass
class _Loaded:
    key: tuple[Any, ...]
    model: Any
    genes: list[str]
    extra: dict[str, Any]


class PerformerFoundation(FoundationModel):
    """Shared plumbing of scBERT and CellLM (and their ``.random`` controls).

    Subclasses implement :meth:`_read_folder` (config, state dict, gene order) and
    :meth:`_embed` (tokenization and pooling for ``mode``).
    """

    random_weights = False
    #: Cells per forward pass in ``mode="fast"``.
    default_batch_size = 8

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._loaded: _Loaded | None = None
        self.coverage: GeneCoverage | None = None

    # ------------------------------------------------------------------ plumbing
    def _mode(self) -> str:
        mode = str(self.params.get("mode", "exact"))
        if mode not in MODES:
            msg = (
                f"model {self.info.key!r}: mode={mode!r} is not supported; expected one of "
                f"{list(MODES)} ('exact': one cell per forward as the official pipeline; "
                "'fast': batched, with each cell's own kernel stabiliser)."
            )
            raise ValueError(msg)
        return mode

    def _batch_size(self) -> int:
        size = int(self.params.get("batch_size", self.default_batch_size))
        if size < 1:
            msg = f"model {self.info.key!r}: batch_size must be >= 1, got {size}"
            raise ValueError(msg)
        return size

    def check(self, adata: Any, ctx: EmbedContext) -> None:
        """Base checks plus: the checkpoint exists (else :class:`ModelSkippedError`)."""
        super().check(adata, ctx)
        self.checkpoint_dir()
        self._mode()

    def _read_folder(self, folder: Path) -> tuple[Any, list[str], dict[str, Any]]:
        """Load the checkpoint folder: ``(model, gene order, extras)``."""
        raise NotImplementedError

    def _embed(
        self, values: sp.csr_matrix, loaded: _Loaded, *, device: str, mode: str
    ) -> np.ndarray:
        """Cell embeddings from the log2-normalized values in the model's gene order."""
        raise NotImplementedError

    def _load(self, ctx: EmbedContext) -> _Loaded:
        folder = self.checkpoint_dir()
        device = self._device(ctx)
        random = self.random_weights or bool(self.params.get("random_init", False))
        key = (str(folder), random, int(ctx.seed) if random else None, device)
        if self._loaded is not None and self._loaded.key == key:
            return self._loaded
        try:
            model, genes, extra = self._read_folder(folder)
        except FileNotFoundError as err:
            raise ModelSkippedError(str(err)) from err
        if random:
            reset_parameters(model, ctx.seed)
        model.to(device)
        self._loaded = _Loaded(key, model, genes, extra)
        return self._loaded

    def embed_cells(self, adata: Any, ctx: EmbedContext) -> np.ndarray:
        """Cell embeddings, ``(n_cells, dim)`` float32 (see the model's docstring)."""
        mode = self._mode()
        loaded = self._load(ctx)
        values, cov = log2_normalized(adata, ctx.report, loaded.genes, self.info.key)
        self.coverage = cov
        device = self._device(ctx)
        with inference_context(device, self._precision()):
            out = self._embed(values, loaded, device=device, mode=mode)
        return np.asarray(out, dtype=np.float32)
