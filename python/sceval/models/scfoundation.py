"""scFoundation / xTrimoGene (Hao et al., Nature Methods 2024) in plain PyTorch.

The architecture follows ``model/pretrainmodels/`` of biomap-research/scFoundation
(``mae_autobin.py``: ``MaeAutobin`` and ``AutoDiscretizationEmbedding2``;
``transformer.py``: ``pytorchTransformerModule``; ``performer.py``: ``PerformerModule``),
with module names equal to the official state-dict keys, so the official ``models.ckpt``
loads with strict key and shape checking. Inference follows ``model/get_embedding.py``
and ``model/load.py``.

Checkpoint layout
-----------------
A folder with

* ``models.ckpt``: one ``torch.save`` dictionary with three sub-checkpoints, ``"cell"``
  (cell embeddings, the official ``--version ce``), ``"rde"`` (read-depth enhancement,
  ``--version rde``) and ``"gene"`` (gene embeddings, ``--output_type gene``). Each holds
  ``config`` (``{"model": "mae_autobin", "model_config": {"mae_autobin": {...}},
  "dataset_config": {"rnaseq": {...}}}``, merged as ``load.py:convertconfig`` does) and a
  Lightning ``state_dict`` whose keys start with ``model.`` (stripped here). It is read with
  ``torch.load(weights_only=True)`` (:func:`sceval.models._safe_load.safe_torch_load`).
  When that refuses only numpy globals (numpy scalars or small numeric arrays in a
  config), it is retried with numpy's data-only reconstruction functions and numeric
  dtypes added to the ``weights_only`` allowlist; any other global is refused with an
  error naming it, and no code from the file is ever run. (The official file itself could
  not be inspected offline.)
* ``OS_scRNA_gene_index.19264.tsv``: the fixed gene order (tab-separated, columns
  ``gene_name`` and ``index``; 19,264 human gene symbols). A copy of the official ``model/``
  folder (``models/models.ckpt`` one level down) is accepted too.

Released configuration (printed by ``load_model_frommmf``; ``training_hyperparameter.txt``):
encoder ``transformer`` 768-d, 12 layers, 12 heads (``nn.TransformerEncoderLayer``: post-LN,
ReLU, feed-forward 3,072); decoder ``performer`` 512-d, 6 layers, 8 heads of 64, FAVOR+ with
266 random features; ``bin_num`` 100, ``bin_alpha`` 1.0, ``pad_token_id`` 103,
``mask_token_id`` 102, ``seq_len`` 19,266 (19,264 genes + T + S).

Preprocessing (``get_embedding.py``, ``--input_type singlecell --pre_normalized F``)
-----------------------------------------------------------------------------------
1. Genes are matched by symbol to the gene list; list genes absent from the data are zero
   (``main_gene_selection``), data genes absent from the list are dropped. Counts of data
   columns with the same symbol are summed (upstream would produce duplicate columns).
2. ``total`` = the cell's count over the 19,264 list genes; values ``log1p(x / total *
   1e4)``.
3. Two scalars are appended: T (position 19,264) from ``tgthighres`` (``t<v>``: ``v``;
   ``f<v>``: ``log10(total * v)``; ``a<v>``: ``log10(total) + v``; default ``t4``, the
   official default) and S (position 19,265) = ``log10(total)``.
4. The encoder sees only the entries ``> 0`` (``gatherData``; gene order kept; T and S are
   dropped too when not positive), position ids are the gene indices.
5. Values go through the auto-discretization embedding (``softmax(LeakyReLU(0.1)`` MLP
   ``)`` weights over ``bin_num`` bin embeddings; a value equal to ``mask_token_id`` or
   ``pad_token_id`` gets the mask/pad embedding), plus the position embedding.

Cell embedding (``--output_type cell --pool_type all``): the encoder output (after its
final LayerNorm) pooled as ``concat[h_last, h_second_last, max over the other tokens, mean
over the other tokens]``, i.e. ``[S, T, max, mean]`` = 4 x 768 = 3,072-d. ``pool_type="max"``
is the max over all tokens (768-d). The official loop runs one cell at a time; here cells
are sorted by token count and padded per batch, with a key-padding mask and pooling over
each cell's own tokens only, which leaves the numbers unchanged up to summation order.

Gene embeddings (``--output_type gene``, the ``"gene"`` sub-checkpoint): encoder output
written back into the full 19,266-token value embedding at the encoder's positions, plus
position embedding, ``decoder_embed`` (768 -> 512), the Performer decoder and ``norm``;
``to_final`` is dropped. Output ``(19,264, 512)`` per cell. The Performer's key
stabiliser in the official ``softmax_kernel`` is the maximum over the whole batch tensor;
here it is taken per cell, which equals the official batch-of-one computation.

Nothing here is random at inference (no sampling), so results do not depend on chunking.
"""

from __future__ import annotations

import functools
import math
import pickle
import types
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from sceval._errors import ModelSkippedError, ScevalError
from sceval.models._safe_load import (
    UnsafePickleError,
    describe_key_mismatch,
    safe_torch_load,
    state_mismatch,
)
from sceval.models.base import EmbedContext, ModelInfo, register_model
from sceval.models.checkpoints import CheckpointSpec, FileSpec, register_checkpoint
from sceval.models.foundation import (
    FoundationModel,
    GeneCoverage,
    RaggedCells,
    batches_by_length,
    gene_coverage,
    gene_symbols,
    inference_context,
)

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = [
    "CKPT_FILE",
    "GENE_LIST_FILE",
    "MODES",
    "N_GENES",
    "ScFoundationCheckpoint",
    "ScFoundationCheckpointError",
    "ScFoundationConfig",
    "ScFoundationModel",
    "ScFoundationRandom",
    "ScFoundationTokens",
    "build_model",
    "cell_embeddings",
    "decoder_gene_embeddings",
    "load_subcheckpoint",
    "load_weights",
    "parse_resolution",
    "read_checkpoint",
    "read_gene_list",
    "to_gene_order",
    "tokenize",
]

#: Weights file of the official release (``model/models/models.ckpt``).
CKPT_FILE = "models.ckpt"
#: Gene order file (repository root and ``model/``).
GENE_LIST_FILE = "OS_scRNA_gene_index.19264.tsv"
#: Genes of the official gene list.
N_GENES = 19264
#: Sub-checkpoints of ``models.ckpt``: cell embeddings, read-depth enhancement, genes.
MODES = ("cell", "rde", "gene")
#: Normalization target of the official single-cell preprocessing.
TARGET_SUM = 1e4
#: Default T token (``get_embedding.py --tgthighres`` default).
DEFAULT_RESOLUTION = "t4"
_POOLS = ("all", "max")
_PRE_NORMALIZED = ("F", "T", "A")


class ScFoundationCheckpointError(ScevalError, ValueError):
    """A scFoundation checkpoint folder or file does not have the official layout."""


# --------------------------------------------------------------------------- config


@dataclass(frozen=True)
class ScFoundationConfig:
    """Sizes of one ``mae_autobin`` sub-checkpoint (its merged ``config``).

    Attributes
    ----------
    enc_dim, enc_depth, enc_heads
        Encoder (``nn.TransformerEncoderLayer`` stack, feed-forward ``4 * enc_dim``).
    dec_dim, dec_depth, dec_heads, dec_dim_head
        Performer decoder.
    dec_nb_features
        FAVOR+ random features per head (``int(dim_head * ln(dim_head))`` upstream).
    bin_num, bin_alpha
        Auto-discretization bins and the weight of the first MLP layer's output.
    pad_token_id, mask_token_id
        Values that select the pad / mask embedding.
    seq_len
        Genes + 2 (T and S); the position embedding has ``seq_len + 1`` rows.
    """

    enc_dim: int
    enc_depth: int
    enc_heads: int
    dec_dim: int
    dec_depth: int
    dec_heads: int
    dec_dim_head: int
    dec_nb_features: int
    bin_num: int
    bin_alpha: float
    pad_token_id: int
    mask_token_id: int
    seq_len: int
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def n_genes(self) -> int:
        """Genes of the fixed gene order (``seq_len - 2``)."""
        return self.seq_len - 2

    @classmethod
    def from_config(cls, cfg: dict[str, Any], where: str = "") -> ScFoundationConfig:
        """Read the merged config (``convertconfig``) of one sub-checkpoint."""
        try:
            enc, dec = dict(cfg["encoder"]), dict(cfg["decoder"])
            if cfg.get("model", "mae_autobin") != "mae_autobin":
                msg = f"model={cfg.get('model')!r}"
                raise ValueError(msg)
            if enc.get("module_type") != "transformer" or dec.get("module_type") != "performer":
                msg = (
                    f"encoder module_type={enc.get('module_type')!r}, decoder "
                    f"module_type={dec.get('module_type')!r}"
                )
                raise ValueError(msg)
            dim_head = int(dec.get("dim_head", 64))
            return cls(
                enc_dim=int(enc["hidden_dim"]),
                enc_depth=int(enc["depth"]),
                enc_heads=int(enc["heads"]),
                dec_dim=int(dec["hidden_dim"]),
                dec_depth=int(dec["depth"]),
                dec_heads=int(dec["heads"]),
                dec_dim_head=dim_head,
                dec_nb_features=int(dec.get("nb_features") or int(dim_head * math.log(dim_head))),
                bin_num=int(cfg["bin_num"]),
                bin_alpha=float(cfg.get("bin_alpha", 1.0)),
                pad_token_id=int(cfg["pad_token_id"]),
                mask_token_id=int(cfg["mask_token_id"]),
                seq_len=int(cfg["seq_len"]),
                raw=dict(cfg),
            )
        except (KeyError, TypeError, ValueError) as err:
            msg = (
                f"scFoundation config{' in ' + where if where else ''} is not a supported "
                f"mae_autobin config ({type(err).__name__}: {err}); expected keys encoder "
                "{hidden_dim, depth, heads, module_type='transformer'}, decoder {hidden_dim, "
                "depth, heads, dim_head, module_type='performer'}, bin_num, bin_alpha, "
                "pad_token_id, mask_token_id, seq_len. Fix: use the official models.ckpt."
            )
            raise ScFoundationCheckpointError(msg) from err


# --------------------------------------------------------------------------- torch modules


@functools.cache
def _nn() -> types.SimpleNamespace:
    """The torch modules, built on first use (torch is imported lazily)."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    class AutoBinEmbedding(nn.Module):
        """``token_emb``: soft binning of scalar values (``AutoDiscretizationEmbedding2``)."""

        def __init__(self, dim: int, bin_num: int, bin_alpha: float, mask_id: int, pad_id: int):
            super().__init__()
            self.mlp = nn.Linear(1, bin_num)
            self.mlp2 = nn.Linear(bin_num, bin_num)
            self.emb = nn.Embedding(bin_num, dim)
            self.emb_mask = nn.Embedding(1, dim)
            self.emb_pad = nn.Embedding(1, dim)
            self.bin_alpha = float(bin_alpha)
            self.mask_id = float(mask_id)
            self.pad_id = float(pad_id)

        def forward(self, values: torch.Tensor) -> torch.Tensor:
            h = F.leaky_relu(self.mlp(values.unsqueeze(-1)), 0.1)
            h = self.bin_alpha * h + self.mlp2(h)
            out = torch.matmul(torch.softmax(h, dim=-1), self.emb.weight)
            out = torch.where(
                (values == self.mask_id).unsqueeze(-1), self.emb_mask.weight[0].to(out.dtype), out
            )
            return torch.where(
                (values == self.pad_id).unsqueeze(-1), self.emb_pad.weight[0].to(out.dtype), out
            )

    class SelfAttention(nn.Module):
        """``nn.MultiheadAttention``'s parameters (``in_proj_*``, ``out_proj``) on SDPA."""

        def __init__(self, dim: int, heads: int) -> None:
            super().__init__()
            if dim % heads:
                msg = f"encoder hidden_dim {dim} is not divisible by heads {heads}"
                raise ScFoundationCheckpointError(msg)
            self.heads = heads
            self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
            self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))
            self.out_proj = nn.Linear(dim, dim)
            nn.init.xavier_uniform_(self.in_proj_weight)
            nn.init.zeros_(self.out_proj.bias)

        def forward(self, x: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
            b, n, d = x.shape
            qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)
            qkv = qkv.view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
            mask = None if keep is None else keep[:, None, None, :]
            out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], attn_mask=mask)
            return self.out_proj(out.transpose(1, 2).reshape(b, n, d))

    class EncoderLayer(nn.Module):
        """``nn.TransformerEncoderLayer(batch_first=True)``: post-LN, ReLU, FFN ``4 * dim``."""

        def __init__(self, dim: int, heads: int) -> None:
            super().__init__()
            self.self_attn = SelfAttention(dim, heads)
            self.linear1 = nn.Linear(dim, 4 * dim)
            self.linear2 = nn.Linear(4 * dim, dim)
            self.norm1 = nn.LayerNorm(dim)
            self.norm2 = nn.LayerNorm(dim)

        def forward(self, x: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
            x = self.norm1(x + self.self_attn(x, keep))
            return self.norm2(x + self.linear2(F.relu(self.linear1(x))))

    class Encoder(nn.Module):
        """``pytorchTransformerModule``: ``transformer_encoder`` layers + ``norm``."""

        def __init__(self, dim: int, depth: int, heads: int) -> None:
            super().__init__()
            self.transformer_encoder = nn.ModuleList(
                [EncoderLayer(dim, heads) for _ in range(depth)]
            )
            self.norm = nn.LayerNorm(dim)

        def forward(self, x: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
            for layer in self.transformer_encoder:
                x = layer(x, keep)
            return self.norm(x)

    class FastAttention(nn.Module):
        """FAVOR+ softmax-kernel linear attention (``projection_matrix`` from the file)."""

        def __init__(self, dim_head: int, nb_features: int) -> None:
            super().__init__()
            self.register_buffer("projection_matrix", torch.zeros(nb_features, dim_head))

        def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
            # the shared FAVOR+ kernel; upstream takes the keys' maximum over the whole
            # batch tensor, here per cell (= the official one-cell-at-a-time result)
            from sceval.models._performer import favor_features, linear_attention

            proj = self.projection_matrix
            q = favor_features(q, proj, is_query=True)
            k = favor_features(k, proj, is_query=False, key_max="cell")
            return linear_attention(q, k, v)

    class PerformerAttention(nn.Module):
        def __init__(self, dim: int, heads: int, dim_head: int, nb_features: int) -> None:
            super().__init__()
            inner = heads * dim_head
            self.heads = heads
            self.fast_attention = FastAttention(dim_head, nb_features)
            self.to_q = nn.Linear(dim, inner)
            self.to_k = nn.Linear(dim, inner)
            self.to_v = nn.Linear(dim, inner)
            self.to_out = nn.Linear(inner, dim)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            b, n, _ = x.shape

            def split(t: torch.Tensor) -> torch.Tensor:
                return t.view(b, n, self.heads, -1).transpose(1, 2)

            out = self.fast_attention(split(self.to_q(x)), split(self.to_k(x)), split(self.to_v(x)))
            return self.to_out(out.transpose(1, 2).reshape(b, n, -1))

    class FeedForward(nn.Module):
        def __init__(self, dim: int) -> None:
            super().__init__()
            self.w1 = nn.Linear(dim, 4 * dim)
            self.w2 = nn.Linear(4 * dim, dim)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.w2(F.gelu(self.w1(x)))

    class Wrap(nn.Module):
        """A module holding ``fn`` (upstream ``Chunk`` with one chunk)."""

        def __init__(self, fn: nn.Module) -> None:
            super().__init__()
            self.fn = fn

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fn(x)

    class PreNorm(nn.Module):
        """``PreLayerNorm``: ``fn(norm(x))``."""

        def __init__(self, dim: int, fn: nn.Module) -> None:
            super().__init__()
            self.norm = nn.LayerNorm(dim)
            self.fn = fn

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fn(self.norm(x))

    class Sequence(nn.Module):
        """``SequentialSequence``: ``x + f(x)`` then ``x + g(x)`` per layer."""

        def __init__(self, layers: nn.ModuleList) -> None:
            super().__init__()
            self.layers = layers

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            for f, g in self.layers:
                x = x + f(x)
                x = x + g(x)
            return x

    class Performer(nn.Module):
        def __init__(self, cfg: ScFoundationConfig) -> None:
            super().__init__()
            d = cfg.dec_dim
            layers = nn.ModuleList(
                nn.ModuleList(
                    [
                        PreNorm(
                            d,
                            PerformerAttention(
                                d, cfg.dec_heads, cfg.dec_dim_head, cfg.dec_nb_features
                            ),
                        ),
                        PreNorm(d, Wrap(FeedForward(d))),
                    ]
                )
                for _ in range(cfg.dec_depth)
            )
            self.net = Sequence(layers)
            self.register_buffer("calls_since_last_redraw", torch.tensor(0))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x)

    class Decoder(nn.Module):
        """``PerformerModule``: ``performer`` + ``norm``."""

        def __init__(self, cfg: ScFoundationConfig) -> None:
            super().__init__()
            self.performer = Performer(cfg)
            self.norm = nn.LayerNorm(cfg.dec_dim)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.norm(self.performer(x))

    class ScFoundationNet(nn.Module):
        """``MaeAutobin`` with the transformer encoder and the Performer decoder."""

        def __init__(self, cfg: ScFoundationConfig) -> None:
            super().__init__()
            self.config = cfg
            self.token_emb = AutoBinEmbedding(
                cfg.enc_dim, cfg.bin_num, cfg.bin_alpha, cfg.mask_token_id, cfg.pad_token_id
            )
            self.pos_emb = nn.Embedding(cfg.seq_len + 1, cfg.enc_dim)
            self.encoder = Encoder(cfg.enc_dim, cfg.enc_depth, cfg.enc_heads)
            self.decoder = Decoder(cfg)
            self.decoder_embed = nn.Linear(cfg.enc_dim, cfg.dec_dim)
            self.norm = nn.LayerNorm(cfg.dec_dim)
            self.to_final = nn.Linear(cfg.dec_dim, 1)

        def encode(
            self, values: torch.Tensor, positions: torch.Tensor, keep: torch.Tensor | None
        ) -> torch.Tensor:
            """Encoder output ``(B, N, enc_dim)`` for gathered non-zero tokens."""
            x = self.token_emb(values) + self.pos_emb(positions)
            return self.encoder(x, keep)

        def decode(
            self,
            full: torch.Tensor,
            encoded: torch.Tensor,
            positions: torch.Tensor,
            keep: torch.Tensor,
        ) -> torch.Tensor:
            """Decoder gene embeddings ``(B, seq_len, dec_dim)`` (``to_final`` dropped).

            ``full`` holds all ``seq_len`` values per cell; the encoder output of each
            kept token replaces the value embedding at its position.
            """
            dec = self.token_emb(full)
            rows = torch.arange(full.shape[0], device=full.device)[:, None].expand_as(positions)
            dec[rows[keep], positions[keep]] = encoded[keep].to(dec.dtype)
            pos = torch.arange(full.shape[1], device=full.device)
            dec = self.decoder_embed(dec + self.pos_emb(pos)[None])
            return self.norm(self.decoder(dec))

    def gaussian_orthogonal(rows: int, cols: int) -> torch.Tensor:
        """Upstream ``gaussian_orthogonal_random_matrix`` (scaling 0) from the global RNG."""
        blocks = []
        for _ in range(math.ceil(rows / cols)):
            q, _r = torch.linalg.qr(torch.randn(cols, cols), mode="reduced")
            blocks.append(q.t())
        mat = torch.cat(blocks)[:rows]
        return torch.diag(torch.randn(rows, cols).norm(dim=1)) @ mat

    return types.SimpleNamespace(
        ScFoundationNet=ScFoundationNet, gaussian_orthogonal=gaussian_orthogonal
    )


def __getattr__(name: str) -> Any:
    if name == "ScFoundationNet":
        return _nn().ScFoundationNet
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)


def build_model(config: ScFoundationConfig, seed: int = 0) -> Any:
    """An ``ScFoundationNet`` with seeded default initialization (torch's module defaults,
    xavier-uniform attention projections and a fresh Gaussian orthogonal FAVOR+ matrix per
    decoder layer, as upstream). The global RNG state is left untouched."""
    import torch

    ns = _nn()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        model = ns.ScFoundationNet(config)
        for name, buf in model.named_buffers():
            if name.endswith("projection_matrix"):
                buf.copy_(ns.gaussian_orthogonal(buf.shape[0], buf.shape[1]))
    return model.float().eval()


# --------------------------------------------------------------------------- checkpoint


def read_gene_list(path: str | Path, expected: int = N_GENES) -> list[str]:
    """The gene order of ``OS_scRNA_gene_index.19264.tsv`` (column ``gene_name``).

    Raises
    ------
    ScFoundationCheckpointError
        When the file has no ``gene_name`` column, repeats a gene or does not list exactly
        ``expected`` genes.
    """
    path = Path(path)
    lines = path.read_text().splitlines()
    header = lines[0].split("\t") if lines else []
    if "gene_name" not in header:
        msg = (
            f"gene list {str(path)!r} has header {header[:4]}; expected a tab-separated file "
            f"with a 'gene_name' column (the official {GENE_LIST_FILE}). Fix: copy that file "
            "from the root of github.com/biomap-research/scFoundation."
        )
        raise ScFoundationCheckpointError(msg)
    col = header.index("gene_name")
    genes = [ln.split("\t")[col].strip() for ln in lines[1:] if ln.strip()]
    if len(genes) != expected:
        msg = (
            f"gene list {str(path)!r} has {len(genes)} genes; expected {expected} (the "
            f"checkpoint's seq_len - 2, the official {GENE_LIST_FILE}). The model's "
            "position ids are indices into this list, so any other list mislabels every "
            f"gene. Fix: use the official {GENE_LIST_FILE} unchanged."
        )
        raise ScFoundationCheckpointError(msg)
    if len(set(genes)) != len(genes):
        seen: set[str] = set()
        dup = [g for g in genes if g in seen or seen.add(g)]  # type: ignore[func-returns-value]
        msg = f"gene list {str(path)!r} repeats genes {dup[:5]}; expected unique symbols."
        raise ScFoundationCheckpointError(msg)
    return genes


@dataclass(frozen=True)
class ScFoundationCheckpoint:
    """A checkpoint folder, located (weights are read by :func:`load_subcheckpoint`).

    Attributes
    ----------
    folder
        The folder given.
    ckpt_path
        ``models.ckpt``.
    gene_list_path
        ``OS_scRNA_gene_index.19264.tsv``.
    """

    folder: Path
    ckpt_path: Path
    gene_list_path: Path


def read_checkpoint(folder: str | Path) -> ScFoundationCheckpoint:
    """Locate ``models.ckpt`` and the gene list in ``folder`` (or ``folder/models/`` and
    ``folder/..``, i.e. a copy of the official ``model/`` folder).

    Raises
    ------
    ModelSkippedError
        When a file is missing (the message says where to get it).
    """
    folder = Path(folder)
    ckpt = next(
        (p for p in (folder / CKPT_FILE, folder / "models" / CKPT_FILE) if p.is_file()), None
    )
    genes = next(
        (p for p in (folder / GENE_LIST_FILE, folder.parent / GENE_LIST_FILE) if p.is_file()),
        None,
    )
    if ckpt is None or genes is None:
        missing = [n for n, p in ((CKPT_FILE, ckpt), (GENE_LIST_FILE, genes)) if p is None]
        msg = (
            f"scFoundation checkpoint folder {str(folder)!r} lacks {missing}; expected "
            f"{CKPT_FILE} (official download: {_SHAREPOINT}) and {GENE_LIST_FILE} (root of "
            "github.com/biomap-research/scFoundation) in it. Fix: run sceval fetch "
            "scfoundation.100m and follow its instructions, or pass checkpoint=<folder>."
        )
        raise ModelSkippedError(msg)
    return ScFoundationCheckpoint(folder=folder, ckpt_path=ckpt, gene_list_path=genes)


def _merged_config(cfg: Any, where: str) -> dict[str, Any]:
    """``load.py:convertconfig``: ``model_config[model]`` then ``dataset_config.rnaseq``."""
    if not isinstance(cfg, dict):
        msg = f"{where}: 'config' is a {type(cfg).__name__}, expected a dictionary"
        raise ScFoundationCheckpointError(msg)
    if "model_config" not in cfg:  # already merged
        return dict(cfg)
    model_type = cfg.get("model", "mae_autobin")
    out: dict[str, Any] = {}
    out.update(dict(cfg["model_config"].get(model_type, {})))
    out.update(dict(cfg.get("dataset_config", {}).get("rnaseq", {})))
    out.setdefault("model", model_type)
    return out


def _strip_prefix(state: dict[str, Any]) -> dict[str, Any]:
    """Drop the Lightning ``model.`` prefix (``convertconfig``)."""
    return {(k[len("model.") :] if k.startswith("model.") else k): v for k, v in state.items()}


def _numpy_globals() -> list[Any]:
    """numpy's data-only pickle globals: scalar and array reconstruction and numeric
    dtypes (what a config holding ``np.float64`` values or small arrays needs)."""
    import importlib

    major = int(np.__version__.split(".")[0])
    multiarray = importlib.import_module(
        "numpy._core.multiarray" if major >= 2 else "numpy.core.multiarray"
    )
    out: list[Any] = [np.dtype, np.ndarray, multiarray.scalar, multiarray._reconstruct]
    out += [type(np.dtype(c)) for c in "?bhilqBHILQefd"]
    return out


def _load_ckpt(path: str | Path) -> dict[str, Any]:
    """``torch.load(weights_only=True)``; if it refuses a numpy global only, once more with
    :func:`_numpy_globals` added to the ``weights_only`` allowlist (never a full unpickle).
    """
    import torch

    try:
        return safe_torch_load(path)
    except UnsafePickleError as err:
        if "GLOBAL numpy" not in str(err):
            msg = (
                f"{err} sceval reads models.ckpt files whose configs are plain "
                "dictionaries, numbers and strings next to tensors; if this file holds other "
                "Python objects (e.g. OmegaConf containers), convert it once where you trust "
                "it: load it and torch.save a copy in which every config value is a plain "
                "dict/list/str/int/float, keeping the 'cell', 'rde', 'gene' layout."
            )
            raise UnsafePickleError(msg) from err
    try:
        with torch.serialization.safe_globals(_numpy_globals()):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        msg = (
            f"{str(path)!r} needs more than tensors and numpy numbers to load (weights_only "
            f"loading refused it: {err}). sceval never runs code from checkpoint files."
        )
        raise UnsafePickleError(msg) from err
    if not isinstance(obj, dict):
        msg = f"{str(path)!r} holds a {type(obj).__name__}, expected a dictionary"
        raise UnsafePickleError(msg)
    return obj


def load_subcheckpoint(path: str | Path, mode: str) -> tuple[ScFoundationConfig, dict[str, Any]]:
    """Config and state dict (prefix stripped, float32) of sub-checkpoint ``mode``.

    Parameters
    ----------
    path
        ``models.ckpt``, read with ``torch.load(weights_only=True)``.
    mode
        ``"cell"``, ``"rde"`` or ``"gene"``.
    """
    import torch

    if mode not in MODES:
        msg = f"mode must be one of {MODES}, got {mode!r}"
        raise ValueError(msg)
    where = str(path)
    obj = _load_ckpt(path)
    if mode not in obj:
        msg = (
            f"{where!r} has no sub-checkpoint {mode!r}: its top-level keys are "
            f"{sorted(map(str, obj))[:8]}; expected the official layout with 'cell', 'rde' and "
            "'gene', each holding 'config' and 'state_dict'. Fix: use the official models.ckpt."
        )
        raise ScFoundationCheckpointError(msg)
    sub = obj[mode]
    state = sub.get("state_dict", sub.get("model_state_dict")) if isinstance(sub, dict) else None
    if not isinstance(state, dict) or "config" not in sub:
        keys = sorted(map(str, sub))[:8] if isinstance(sub, dict) else type(sub).__name__
        msg = (
            f"{where!r}[{mode!r}] holds {keys}; expected a dictionary with 'config' and "
            "'state_dict' (keys 'model.*'). Fix: use the official models.ckpt."
        )
        raise ScFoundationCheckpointError(msg)
    config = ScFoundationConfig.from_config(
        _merged_config(sub["config"], where), f"{where}[{mode}]"
    )
    state = {
        k: (v.float() if torch.is_floating_point(v) else v)
        for k, v in _strip_prefix(state).items()
        if isinstance(v, torch.Tensor)
    }
    return config, state


def load_weights(model: Any, state: dict[str, Any], where: str = "") -> Any:
    """Load ``state`` into ``model`` strictly; one error lists every mismatch by key."""
    missing, unexpected, shapes = state_mismatch(model.state_dict(), state, "config")
    if missing or unexpected or shapes:
        msg = (
            f"scFoundation weights {where or ''} do not fit their config: "
            + describe_key_mismatch(missing, unexpected, shapes)
            + ". Expected the MaeAutobin tensors of the config's sizes (token_emb.*, pos_emb, "
            "encoder.transformer_encoder.N.*, decoder.performer.net.layers.N.*, decoder_embed, "
            "norm, to_final). Fix: use the config saved with these weights (the official "
            "models.ckpt keeps both in each sub-checkpoint)."
        )
        raise ScFoundationCheckpointError(msg)
    model.load_state_dict(state, strict=True)
    return model


# --------------------------------------------------------------------------- tokens


def parse_resolution(spec: str) -> tuple[str, float]:
    """``tgthighres`` (``"t4"``, ``"f1"``, ``"a5"``) as ``(kind, number)``."""
    s = str(spec).strip()
    try:
        kind, num = s[0], float(s[1:])
    except (IndexError, ValueError):
        kind, num = "", math.nan
    if kind not in ("t", "f", "a") or not math.isfinite(num):
        msg = (
            f"tgthighres={spec!r} is not understood; expected 't<number>' (T = number), "
            "'f<number>' (T = log10(total * number)) or 'a<number>' (T = log10(total) + "
            "number), e.g. 't4' (official default) or 'a5'."
        )
        raise ValueError(msg)
    return kind, num


@dataclass(frozen=True)
class ScFoundationTokens(RaggedCells):
    """Encoder inputs of cells, flat.

    Attributes
    ----------
    positions
        Position ids (gene index; ``n_genes`` for T, ``n_genes + 1`` for S), int64.
    values
        Their values (float32), only entries ``> 0`` as the official ``gatherData``.
    offsets
        Cell ``i`` is ``[offsets[i]:offsets[i + 1]]``.
    t_values, s_values
        The T and S scalars of every cell (also when not positive, for the decoder path).
    n_genes
        Size of the gene order.
    coverage
        Gene coverage (``None`` for hand-made inputs).
    """

    positions: np.ndarray
    values: np.ndarray
    offsets: np.ndarray
    t_values: np.ndarray
    s_values: np.ndarray
    n_genes: int
    coverage: GeneCoverage | None = None

    def padded(self, idx: np.ndarray, pad_value: float) -> tuple[np.ndarray, ...]:
        """``(values, positions, keep)`` of cells ``idx`` padded to the longest one."""
        pad_pos = self.n_genes + 2
        (vals, pos), keep = self.pad(idx, [(self.values, pad_value), (self.positions, pad_pos)])
        return vals, pos, keep.astype(bool)

    def full(self, idx: np.ndarray) -> np.ndarray:
        """All ``n_genes + 2`` values of cells ``idx`` (zeros where not expressed)."""
        idx = np.asarray(idx, dtype=np.int64)
        out = np.zeros((idx.size, self.n_genes + 2), dtype=np.float32)
        for r, i in enumerate(idx):
            a, b = self.offsets[i], self.offsets[i + 1]
            out[r, self.positions[a:b]] = self.values[a:b]
        out[:, self.n_genes] = self.t_values[idx]
        out[:, self.n_genes + 1] = self.s_values[idx]
        return out


def tokenize(
    matrix: Any,
    *,
    resolution: str = DEFAULT_RESOLUTION,
    pre_normalized: str = "F",
    totals: np.ndarray | None = None,
) -> ScFoundationTokens:
    """Encoder tokens of cells already in the official gene order.

    Parameters
    ----------
    matrix
        Cells x ``n_genes`` (dense or sparse), columns in the gene-list order (missing genes
        zero). Raw counts for ``pre_normalized="F"``; ``log1p``-normalized values for
        ``"T"`` and ``"A"``.
    resolution
        ``tgthighres`` (see :func:`parse_resolution`).
    pre_normalized
        ``"F"``: ``log1p(x / total * 1e4)`` with ``total`` the row sum; ``"T"``: values
        used as they are and ``total`` their row sum (the upstream quirk); ``"A"``: values
        as they are and ``total`` given in ``totals`` (upstream's appended column).
    totals
        Per-cell totals for ``pre_normalized="A"``.
    """
    kind, num = parse_resolution(resolution)
    if pre_normalized not in _PRE_NORMALIZED:
        msg = f"pre_normalized must be one of {_PRE_NORMALIZED}, got {pre_normalized!r}"
        raise ValueError(msg)
    x = sp.csr_matrix(matrix, dtype=np.float64)
    x.sum_duplicates()
    x.sort_indices()
    n_cells, n_genes = x.shape
    if pre_normalized == "A":
        if totals is None or np.shape(totals) != (n_cells,):
            msg = f"pre_normalized='A' needs totals of shape ({n_cells},), got {totals!r:.40}"
            raise ValueError(msg)
        total = np.asarray(totals, dtype=np.float64)
    else:
        total = np.asarray(x.sum(axis=1), dtype=np.float64).ravel()
    if pre_normalized == "F":
        rows = np.repeat(np.arange(n_cells), np.diff(x.indptr))
        with np.errstate(divide="ignore", invalid="ignore"):
            x.data = np.log1p(x.data / total[rows] * TARGET_SUM)
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.log10(total)
        t = {"t": np.full(n_cells, num), "f": np.log10(total * num), "a": s + num}[kind]
    data32 = x.data.astype(np.float32)
    t32, s32 = t.astype(np.float32), s.astype(np.float32)
    keep = data32 > 0
    pos_parts, val_parts, lens = [], [], np.zeros(n_cells, dtype=np.int64)
    for i in range(n_cells):
        if not total[i] > 0:  # upstream divides 0 by 0 here; such cells get no tokens
            pos_parts.append(np.zeros(0, dtype=np.int64))
            val_parts.append(np.zeros(0, dtype=np.float32))
            continue
        a, b = x.indptr[i], x.indptr[i + 1]
        k = keep[a:b]
        p = x.indices[a:b][k].astype(np.int64)
        v = data32[a:b][k]
        extra_p = [n_genes + j for j, e in enumerate((t32[i], s32[i])) if e > 0]
        extra_v = [e for e in (t32[i], s32[i]) if e > 0]
        pos_parts.append(np.concatenate([p, np.asarray(extra_p, dtype=np.int64)]))
        val_parts.append(np.concatenate([v, np.asarray(extra_v, dtype=np.float32)]))
        lens[i] = pos_parts[-1].size
    offsets = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    return ScFoundationTokens(
        positions=np.concatenate(pos_parts) if pos_parts else np.zeros(0, np.int64),
        values=np.concatenate(val_parts) if val_parts else np.zeros(0, np.float32),
        offsets=offsets,
        t_values=t32,
        s_values=s32,
        n_genes=n_genes,
    )


def to_gene_order(counts: Any, symbols: list[str], genes: list[str]) -> tuple[sp.csr_matrix, Any]:
    """Counts rearranged into the gene order (missing genes zero; same-symbol columns
    summed) and the boolean matched mask over the data's genes."""
    index = {g: i for i, g in enumerate(genes)}
    cols = np.array([index.get(s, -1) for s in symbols], dtype=np.int64)
    matched = cols >= 0
    src = np.flatnonzero(matched)
    agg = sp.csr_matrix((np.ones(src.size), (src, cols[src])), shape=(len(symbols), len(genes)))
    x = sp.csr_matrix(counts)
    return sp.csr_matrix(x @ agg), matched


# --------------------------------------------------------------------------- inference


def _pool(h: torch.Tensor, lens: torch.Tensor, pool: str) -> torch.Tensor:
    import torch

    b, n, _ = h.shape
    ar = torch.arange(n, device=h.device)[None, :]
    if pool == "max":
        return h.masked_fill(~(ar < lens[:, None])[..., None], -math.inf).amax(dim=1)
    rows = torch.arange(b, device=h.device)
    last = h[rows, (lens - 1).clamp(min=0)]
    second = h[rows, (lens - 2).clamp(min=0)]
    genes = (ar < (lens - 2)[:, None])[..., None]
    n_g = (lens - 2).clamp(min=1).to(h.dtype)[:, None]
    mx = h.masked_fill(~genes, -math.inf).amax(dim=1)
    mx = torch.where(torch.isfinite(mx), mx, torch.zeros_like(mx))
    mean = h.masked_fill(~genes, 0.0).sum(dim=1) / n_g
    return torch.cat([last, second, mx, mean], dim=1)


def cell_embeddings(
    model: Any,
    tokens: ScFoundationTokens,
    *,
    pool: str = "all",
    batch_size: int = 8,
    max_tokens: int = 65536,
    device: str = "cpu",
    precision: str = "auto",
) -> np.ndarray:
    """Pooled encoder outputs, ``(n_cells, 4 * enc_dim)`` (``pool="all"``) or
    ``(n_cells, enc_dim)`` (``"max"``), float32; cells with fewer than 3 tokens get zeros
    where the official pooling is undefined."""
    import torch

    if pool not in _POOLS:
        msg = f"pool_type must be one of {_POOLS}, got {pool!r}"
        raise ValueError(msg)
    cfg = model.config
    width = cfg.enc_dim * (4 if pool == "all" else 1)
    out = np.zeros((len(tokens), width), dtype=np.float32)
    lengths = tokens.lengths
    todo = np.flatnonzero(lengths > 0)
    with inference_context(device, precision):
        for b in batches_by_length(lengths[todo], batch_size, max_tokens):
            idx = todo[b]
            vals, pos, keep = tokens.padded(idx, float(cfg.pad_token_id))
            keep_t = torch.from_numpy(keep).to(device)
            h = model.encode(
                torch.from_numpy(vals).to(device),
                torch.from_numpy(pos).to(device),
                None if keep.all() else keep_t,
            )
            lens = torch.from_numpy(lengths[idx]).to(device)
            out[idx] = _pool(h.float(), lens, pool).cpu().numpy()
    return out


def decoder_gene_embeddings(
    model: Any,
    tokens: ScFoundationTokens,
    *,
    genes: np.ndarray | None = None,
    reduce: str = "none",
    batch_size: int = 1,
    device: str = "cpu",
    precision: str = "auto",
) -> np.ndarray:
    """Decoder-path gene embeddings (the official ``--output_type gene``).

    Parameters
    ----------
    genes
        Indices into the gene order to return (default: all ``n_genes``).
    reduce
        ``"none"``: ``(n_cells, n_sel, dec_dim)``; ``"mean"``: averaged over cells,
        ``(n_sel, dec_dim)``.
    """
    import torch

    sel = np.arange(tokens.n_genes) if genes is None else np.asarray(genes, dtype=np.int64)
    cfg = model.config
    n = len(tokens)
    if reduce not in ("none", "mean"):
        msg = f"reduce must be 'none' or 'mean', got {reduce!r}"
        raise ValueError(msg)
    acc = np.zeros((sel.size, cfg.dec_dim), dtype=np.float64)
    out = None if reduce == "mean" else np.zeros((n, sel.size, cfg.dec_dim), dtype=np.float32)
    sel_t = torch.from_numpy(sel).to(device)
    todo = np.flatnonzero(tokens.lengths > 0)  # cells without counts: zeros, not averaged
    with inference_context(device, precision):
        for bb in batches_by_length(tokens.lengths[todo], batch_size):
            b = todo[bb]
            vals, pos, keep = tokens.padded(b, float(cfg.pad_token_id))
            keep_t = torch.from_numpy(keep).to(device)
            pos_t = torch.from_numpy(pos).to(device)
            enc = model.encode(
                torch.from_numpy(vals).to(device), pos_t, None if keep.all() else keep_t
            )
            full = torch.from_numpy(tokens.full(b)).to(device)
            dec = model.decode(full, enc, pos_t, keep_t)[:, sel_t].float().cpu().numpy()
            if out is None:
                acc += dec.sum(axis=0)
            else:
                out[b] = dec
    if out is None:
        return (acc / max(todo.size, 1)).astype(np.float32)
    return out


# --------------------------------------------------------------------------- the models


@dataclass
class _Loaded:
    key: tuple[Any, ...]
    model: Any
    genes: list[str]


class _ScFoundationBase(FoundationModel):
    """Shared implementation of ``scfoundation`` and ``scfoundation.random``."""

    default_checkpoint = "scfoundation.100m"
    random_weights = False

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._loaded: dict[str, _Loaded] = {}
        self.coverage: GeneCoverage | None = None

    def _default_batch(self, ctx: EmbedContext) -> int:
        """32 cells per batch on CUDA (about 1,000 cells/s at 768-d, bf16, on an H200);
        8 on CPU, where the attention scores of a batch are held in memory."""
        return 32 if self._device(ctx).startswith("cuda") else 8

    def checkpoint_dir(self) -> Path:
        """The checkpoint folder, or :class:`ModelSkippedError` saying how to get it."""
        try:
            return super().checkpoint_dir()
        except ModelSkippedError as err:
            text = str(err)
            if "sceval fetch" not in text:
                text += (
                    ". Get it with: sceval fetch scfoundation.100m (or pass checkpoint=<folder "
                    f"with {CKPT_FILE} and {GENE_LIST_FILE}>)"
                )
            raise ModelSkippedError(text) from err

    def check(self, adata: Any, ctx: EmbedContext) -> None:
        """Base checks plus: both checkpoint files exist (else :class:`ModelSkippedError`)."""
        super().check(adata, ctx)
        read_checkpoint(self.checkpoint_dir())

    def _load(self, ctx: EmbedContext, mode: str) -> _Loaded:
        ck = read_checkpoint(self.checkpoint_dir())
        device = self._device(ctx)
        random = self.random_weights or bool(self.params.get("random_init", False))
        key = (str(ck.ckpt_path), mode, random, int(ctx.seed) if random else None, device)
        hit = self._loaded.get(mode)
        if hit is not None and hit.key == key:
            return hit
        config, state = load_subcheckpoint(ck.ckpt_path, mode)
        genes = read_gene_list(ck.gene_list_path, expected=config.n_genes)
        model = build_model(config, seed=int(ctx.seed) if random else 0)
        if not random:
            load_weights(model, state, where=f"{str(ck.ckpt_path)!r}[{mode!r}]")
        del state
        self._loaded[mode] = _Loaded(key, model.to(device).eval(), genes)
        return self._loaded[mode]

    def _mode(self) -> str:
        mode = str(self.params.get("mode", "cell"))
        if mode not in MODES:
            msg = (
                f"model {self.info.key!r}: mode={mode!r} is not a sub-checkpoint of "
                f"{CKPT_FILE}; expected one of {list(MODES)} ('cell' is the official default "
                "for cell embeddings, 'rde' the read-depth-enhancement model)."
            )
            raise ValueError(msg)
        return mode

    def tokenize(self, adata: Any, ctx: EmbedContext, genes: list[str]) -> ScFoundationTokens:
        """Tokens of ``adata``'s cells (raw counts, official ``pre_normalized='F'``)."""
        from sceval.data.contract import get_counts

        counts = get_counts(adata, ctx.report)
        symbols = [str(s) for s in gene_symbols(adata, ctx.report)]
        x, matched = to_gene_order(counts, symbols, genes)
        cov = gene_coverage(matched, counts, self.info.key)
        self.coverage = cov
        toks = tokenize(x, resolution=str(self.params.get("tgthighres", DEFAULT_RESOLUTION)))
        n_empty = int((np.asarray(x.sum(axis=1)).ravel() <= 0).sum())
        if n_empty:
            warnings.warn(
                f"model {self.info.key!r}: {n_empty} cells have no counts on the model's "
                "genes; their embedding is a zero vector.",
                UserWarning,
                stacklevel=2,
            )
        return ScFoundationTokens(
            positions=toks.positions,
            values=toks.values,
            offsets=toks.offsets,
            t_values=toks.t_values,
            s_values=toks.s_values,
            n_genes=toks.n_genes,
            coverage=cov,
        )

    def embed_cells(self, adata: Any, ctx: EmbedContext) -> np.ndarray:
        """Pooled encoder embeddings, ``(n_cells, 3072)`` for the released model."""
        loaded = self._load(ctx, self._mode())
        toks = self.tokenize(adata, ctx, loaded.genes)
        return cell_embeddings(
            loaded.model,
            toks,
            pool=str(self.params.get("pool_type", "all")),
            batch_size=int(self.params.get("batch_size") or self._default_batch(ctx)),
            max_tokens=int(self.params.get("max_tokens", 65536)),
            device=self._device(ctx),
            precision=self._precision(),
        )

    def gene_embeddings(
        self, adata: Any, ctx: EmbedContext, genes: list[str] | None = None
    ) -> np.ndarray:
        """Per-cell decoder gene embeddings of ``adata`` with the ``"gene"`` sub-checkpoint:
        ``(n_cells, n_genes_selected, 512)`` (``genes``: symbols of the gene order,
        default all 19,264). Large: 19,264 x 512 floats per cell."""
        loaded = self._load(ctx, "gene")
        toks = self.tokenize(adata, ctx, loaded.genes)
        index = {g: i for i, g in enumerate(loaded.genes)}
        sel = None
        if genes is not None:
            unknown = [g for g in genes if g not in index]
            if unknown:
                msg = (
                    f"model {self.info.key!r}: {len(unknown)} of the requested genes are not "
                    f"in {GENE_LIST_FILE}, e.g. {unknown[:5]}; expected gene symbols of that "
                    "list. Fix: pass symbols (see sceval.harmonize_genes) or genes=None."
                )
                raise ValueError(msg)
            sel = np.array([index[g] for g in genes], dtype=np.int64)
        return decoder_gene_embeddings(
            loaded.model, toks, genes=sel, device=self._device(ctx), precision=self._precision()
        )

    def embed_genes(self, genes: list[str], ctx: EmbedContext) -> tuple[np.ndarray, np.ndarray]:
        """Decoder-path gene embeddings (``"gene"`` sub-checkpoint), ``(n_found, 512)``.

        The official gene embeddings are contextual (one per gene per cell). This signature
        receives no cells, so the context is the ``gene_context`` parameter (an AnnData with
        raw counts, or an ``.h5ad`` path): the embeddings are averaged over its cells
        (``gene_context_cells``, default 64, a seeded subsample). Without it, the context
        is a cell with no detected gene and T = S = 4 (10,000 counts): every gene then
        enters the decoder as the value-0 embedding plus its position embedding, and the
        encoder sees only T and S. Genes are looked up as symbols (Ensembl IDs through the
        bundled gene tables).
        """
        loaded = self._load(ctx, "gene")
        index = {g: i for i, g in enumerate(loaded.genes)}
        names = [str(g) for g in genes]
        need = [i for i, g in enumerate(names) if g not in index and g.upper().startswith("ENS")]
        if need:
            from sceval.data.genes import map_genes

            table, _ = map_genes([names[i] for i in need])
            for i, s in zip(need, table["gene_symbol"].tolist(), strict=True):
                if isinstance(s, str) and s:
                    names[i] = s
        found = np.array([g in index for g in names], dtype=bool)
        sel = np.array([index[g] for g, f in zip(names, found, strict=True) if f], dtype=np.int64)
        toks = self._gene_context(ctx, loaded)
        mat = decoder_gene_embeddings(
            loaded.model,
            toks,
            genes=sel,
            reduce="mean",
            batch_size=int(self.params.get("gene_batch_size", 1)),
            device=self._device(ctx),
            precision=self._precision(),
        )
        return mat, found

    def _gene_context(self, ctx: EmbedContext, loaded: _Loaded) -> ScFoundationTokens:
        ref = self.params.get("gene_context")
        if ref is None:
            n = len(loaded.genes)
            t, s = np.float32(4.0), np.float32(4.0)
            return ScFoundationTokens(
                positions=np.array([n, n + 1], dtype=np.int64),
                values=np.array([t, s], dtype=np.float32),
                offsets=np.array([0, 2], dtype=np.int64),
                t_values=np.array([t], dtype=np.float32),
                s_values=np.array([s], dtype=np.float32),
                n_genes=n,
            )
        import anndata as ad

        from sceval.data import validate

        adata = ad.read_h5ad(ref) if isinstance(ref, (str, Path)) else ref
        k = int(self.params.get("gene_context_cells", 64))
        if adata.n_obs > k:
            rng = np.random.default_rng(int(ctx.seed))
            adata = adata[np.sort(rng.choice(adata.n_obs, k, replace=False))].copy()
        sub_ctx = EmbedContext(report=validate(adata), seed=ctx.seed, device=ctx.device)
        return self.tokenize(adata, sub_ctx, loaded.genes)


_PARAMS_DOC = """
    Parameters (keyword arguments)
    ----------
    checkpoint
        Registered name or a folder with ``models.ckpt`` and
        ``OS_scRNA_gene_index.19264.tsv``. Default ``"scfoundation.100m"``.
    mode
        Sub-checkpoint for cell embeddings: ``"cell"`` (default, official ``--version ce``),
        ``"rde"`` (read-depth enhancement) or ``"gene"``.
    tgthighres
        The T token: ``"t4"`` (default), ``"f1"``, ``"a5"``, ...
    pool_type
        ``"all"`` (3,072-d, default) or ``"max"`` (768-d).
    batch_size, max_tokens
        Cells per batch (default 32 on CUDA, 8 on CPU) and the cap on padded tokens per
        batch (default 65,536).
    precision
        ``"auto"``, ``"fp32"``, ``"bf16"``, ``"fp16"``.
    gene_context, gene_context_cells
        Cells that give context to :meth:`embed_genes` (see there).
"""

_INFO_COMMON: dict[str, Any] = {
    "input": "counts",
    "requires": ("torch",),
    "install": "pip install torch",
}

_CITATION = (
    "Hao, M. et al. Large-scale foundation model on single-cell transcriptomics. "
    "Nature Methods 21, 1481-1491 (2024). doi:10.1038/s41592-024-02305-7"
)
_LICENSE = "scFoundation Model License (non-commercial research only); code Apache-2.0"


@register_model
class ScFoundationModel(_ScFoundationBase):
    __doc__ = "``scfoundation``: zero-shot scFoundation cell embeddings.\n" + _PARAMS_DOC

    info = ModelInfo(
        key="scfoundation",
        kind="foundation",
        description="scFoundation (xTrimoGene) 100M: encoder over non-zero genes + T/S "
        "tokens, [S, T, max, mean] pooling (3,072-d); decoder gene embeddings",
        citation="Hao et al., Nature Methods 2024 (scFoundation)",
        license=_LICENSE,
        **_INFO_COMMON,
    )


@register_model
class ScFoundationRandom(_ScFoundationBase):
    __doc__ = (
        "``scfoundation.random``: the scFoundation architecture, gene order and "
        "preprocessing of the checkpoint with weights re-initialized from ``ctx.seed``.\n"
        + _PARAMS_DOC
    )

    random_weights = True
    info = ModelInfo(
        key="scfoundation.random",
        kind="control",
        description="control: scFoundation architecture and preprocessing, random weights (seeded)",
        citation="Hao et al., Nature Methods 2024 (scFoundation); randomly initialized",
        license=_LICENSE,
        **_INFO_COMMON,
    )


# --------------------------------------------------------------------------- checkpoints

_SHAREPOINT = (
    "https://hopebio2020.sharepoint.com/:f:/s/PublicSharedfiles/"
    "EmUQnvZMETlDvoCaBduCNeIBQArcOrd8T8iEpiGofFZ9CQ?e=3SpPZU"
)
_GENE_LIST_URL = (
    "https://raw.githubusercontent.com/biomap-research/scFoundation/"
    "d09626a5c1bc30b9c6227378677b61e0b987fe8b/OS_scRNA_gene_index.19264.tsv"
)


register_checkpoint(
    CheckpointSpec(
        name="scfoundation.100m",
        model="scfoundation",
        files=(
            FileSpec(CKPT_FILE, _SHAREPOINT, manual=True),  # a SharePoint folder link
            FileSpec(
                GENE_LIST_FILE,
                _GENE_LIST_URL,
                sha256="bb337ea195d94e7b033543abc02a42e7060d6562eba97deb077f7dcecec62661",
                size=228232,
            ),
        ),
        license=_LICENSE,
        citation=_CITATION,
        homepage="https://github.com/biomap-research/scFoundation",
        description="scFoundation 100M (xTrimoGene): models.ckpt with the 'cell', 'rde' and "
        "'gene' sub-checkpoints, 19,264 human genes",
        notes=(
            "models.ckpt is published in a SharePoint folder linked from model/README.md and "
            "model/models/download.txt of biomap-research/scFoundation (no per-file URL or "
            "checksum; its sha256 is recorded at first use). The gene list is the "
            "repository's OS_scRNA_gene_index.19264.tsv. Weights: 'The scFoundation License' "
            "(MODEL_LICENSE): non-commercial research use only, no redistribution; code "
            "Apache-2.0."
        ),
    )
)
