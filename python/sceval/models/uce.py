"""UCE, Universal Cell Embeddings (Rosen et al., bioRxiv 2023), in plain PyTorch.

The architecture follows ``model.py`` of snap-stanford/UCE (``TransformerModel``) with
module names equal to the official state-dict keys, so an official ``4layer_model.torch``
or ``33l_8ep_1024t_1280.torch`` loads with strict key checking; the forward pass follows
``evaluate.py`` (``run_eval``) and the cell sentences ``eval_data.py``
(``sample_cell_sentences``).

Checkpoint folder (the official ``model_files/`` layout)
--------------------------------------------------------
* the model weights, ``4layer_model.torch`` or ``33l_8ep_1024t_1280.torch``: a plain
  state dict with ``pe_embedding.weight`` (the token table, 145,469 x 5,120 in the
  release), ``encoder.{0,2}.*`` (Linear 5,120 -> 1,280, GELU, LayerNorm),
  ``pos_encoder.pe`` (sinusoidal, 1,536 positions), ``transformer_encoder.layers.N.*``
  (``torch.nn.TransformerEncoderLayer``: post-norm, ReLU, 20 heads, FFN 5,120),
  ``decoder.*`` (three Linear+LayerNorm+GELU blocks and a Linear, 1,280 out),
  ``binary_decoder.*`` and ``gene_embedding_layer.*`` (pretraining heads, unused here);
* ``all_tokens.torch``: one tensor, the token table without the chromosome tokens: row 0
  padding (zeros), 1 and 2 the chromosome open/close tokens, 3 ``<cls>``, then the ESM2
  protein embeddings of each species in sorted species order (``data_proc/
  generate_reduced_chrom_files.py``);
* ``species_offsets.pkl``: species -> first row of its genes in the token table;
* ``protein_embeddings/<Species>.<assembly>.gene_symbol_to_embedding_ESM2.pt``: per
  species a dict gene symbol -> ESM2 embedding; the dict's order gives the token rows
  (``data_proc/data_utils.py``, ``get_species_to_pe``; the names are in
  :data:`SPECIES_FILES`). The released ``protein_embeddings.tar.gz`` is accepted in place
  of the folder (the needed member is extracted next to it, or read in memory);
* ``species_chrom.csv``: columns ``species``, ``gene_symbol``, ``chromosome``, ``start``.
  The chromosome token of a gene is ``CHROM_TOKEN_OFFSET + code`` where ``code`` is the
  index of ``"<species>_<chromosome>"`` among the sorted categories of the whole file;
* optional ``new_species_protein_embeddings.csv`` (``species,path``) for added species
  (``data_proc/Create New Species Files.ipynb``).

Which token table is used (official ``run_eval``): when ``all_tokens.torch`` has as
many rows as the model's ``pe_embedding`` or as many rows less the chromosome tokens (the
release: 143,574 = 145,469 - 1,895), the model's own ``pe_embedding`` is used; otherwise
(a new-species token file, which carries its own chromosome rows) ``all_tokens.torch``.
``CHROM_TOKEN_OFFSET`` is the table's row count minus the number of chromosome categories
in ``species_chrom.csv`` (143,574 for the release, as the official default).

Cell sentence (official ``sample_cell_sentences``)
-------------------------------------------------
Genes are matched case-insensitively by symbol to the species' protein embeddings and to
its rows of ``species_chrom.csv``; genes lacking either are reported and left out (the
official ``process_raw_anndata`` drops them too). Per cell, 1,024 genes are drawn *with
replacement* with probabilities ``log1p(count) / sum(log1p(count))``; the distinct
chromosomes drawn are put in random order; each chromosome contributes its open token
(``CHROM_TOKEN_OFFSET + code``), its drawn genes sorted by genomic start, and the close
token (row 2); ``<cls>`` (row 3) comes first. The draws use a generator seeded by
``(seed, global cell index)`` (the official code uses numpy's global state, unseeded), so
results do not depend on batching or chunking; genes drawn at the same start are ordered
by their column (the official ``argsort`` leaves such ties unspecified).

Forward (official ``run_eval`` and ``TransformerModel.forward``)
----------------------------------------------------------------
token = ``L2normalize(table[token])``; ``x = encoder(token) * sqrt(1280) + pe[pos]``;
post-norm transformer; ``decoder`` on the ``<cls>`` output, L2-normalized, is the cell
embedding (1,280-d). ``encoder`` acts per token, so it is evaluated once per token of the
vocabulary in float32 and gathered.

Padding: the official code passes ``1 - mask`` (a *float* 0/1 mask) as
``src_key_padding_mask``; torch adds float masks to the attention scores, so padding
tokens are attended to with a +1 bias, and a cell's embedding depends on how much
padding its batch has. ``padding="masked"`` (default) excludes padding, which equals the
official output for a batch of one cell and makes every cell independent of its batch;
``padding="official"`` reproduces the official computation (consecutive cells in batches
of ``batch_size``, +1 bias on padding). The last layer is evaluated for ``<cls>`` only
(the same numbers, less work). Cells are batched in order, each batch sampled just before
its forward pass so that on a GPU sampling overlaps the model (length-sorted batching, as
for scGPT, would gain nothing: every sentence has ``1 + 1,024 + 2 x chromosomes`` tokens).

Measured with random weights at the official sizes on one H200 (simulated cells, sampling
included): 4 layers 2,640 cells/s in bf16 with ``batch_size=128`` (2,010 with 64; 300 in
fp32), 33 layers 284 cells/s in bf16; the model alone runs 2,870 cells/s (4 layers, bf16),
sampling about 3,000 cells/s on one CPU core. bf16 vs fp32 cosine >= 0.998.

Not reproduced: the official script's default ``--filter`` (``sc.pp.filter_genes(
min_cells=10)``, ``sc.pp.filter_cells(min_genes=25)``) changes which cells are returned
and depends on the whole dataset; sceval embeds every cell with all matched genes. A cell
with no counts on matched genes is embedded from ``<cls>`` alone (the official code would
fail on it) and counted in the message.

torch is imported on first use only.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import math
import os
import tarfile
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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

__all__ = [
    "CHROM_RIGHT_ID",
    "CLS_ID",
    "MODEL_FILES",
    "PAD_ID",
    "SPECIES_FILES",
    "UCECheckpointError",
    "UCEConfig",
    "UCEFiles",
    "UCEGeneCoverage",
    "UCEModel",
    "UCERandomModel",
    "UCESpeciesError",
    "UCETokenizer",
    "cell_embeddings",
    "load_uce",
    "read_species_tokens",
    "reset_parameters",
]

#: Official special-token rows (``eval_single_anndata.py`` defaults).
PAD_ID, CHROM_LEFT_ID, CHROM_RIGHT_ID, CLS_ID = 0, 1, 2, 3
#: Genes drawn per cell (``--sample_size``) and the sentence buffer (``--pad_length``).
SAMPLE_SIZE = 1024
PAD_LENGTH = 1536
#: Attention heads (hard-coded ``nhead = 20`` in ``evaluate.py``).
NHEAD = 20
#: Width of the gene input of ``binary_decoder`` (hard-coded 1280 in ``model.py``).
BINARY_DECODER_GENE_WIDTH = 1280
#: Model weight files of the releases, in order of preference.
MODEL_FILES = ("4layer_model.torch", "33l_8ep_1024t_1280.torch")
TOKEN_FILE = "all_tokens.torch"
OFFSETS_FILE = "species_offsets.pkl"
CHROM_FILE = "species_chrom.csv"
PE_DIR = "protein_embeddings"
PE_ARCHIVE = "protein_embeddings.tar.gz"
NEW_SPECIES_FILE = "new_species_protein_embeddings.csv"

#: Protein-embedding file of each species (``data_proc/data_utils.py``,
#: ``get_species_to_pe``).
SPECIES_FILES = {
    "human": "Homo_sapiens.GRCh38.gene_symbol_to_embedding_ESM2.pt",
    "mouse": "Mus_musculus.GRCm39.gene_symbol_to_embedding_ESM2.pt",
    "frog": "Xenopus_tropicalis.Xenopus_tropicalis_v9.1.gene_symbol_to_embedding_ESM2.pt",
    "zebrafish": "Danio_rerio.GRCz11.gene_symbol_to_embedding_ESM2.pt",
    "mouse_lemur": "Microcebus_murinus.Mmur_3.0.gene_symbol_to_embedding_ESM2.pt",
    "pig": "Sus_scrofa.Sscrofa11.1.gene_symbol_to_embedding_ESM2.pt",
    "macaca_fascicularis": (
        "Macaca_fascicularis.Macaca_fascicularis_6.0.gene_symbol_to_embedding_ESM2.pt"
    ),
    "macaca_mulatta": "Macaca_mulatta.Mmul_10.gene_symbol_to_embedding_ESM2.pt",
}

_MAX_LISTED = 12


class UCECheckpointError(ScevalError, ValueError):
    """A UCE checkpoint folder does not match the official format."""


class UCESpeciesError(ModelSkippedError, ValueError):
    """The requested species has no protein embeddings (or offsets, or chromosome
    positions) in the checkpoint folder; the message lists the species that do."""


# --------------------------------------------------------------------------- checkpoints

_FIGSHARE = "https://figshare.com/ndownloader/files"
_HOME = "https://github.com/snap-stanford/UCE"
_CITATION = (
    "Rosen, Y., Roohani, Y., Agrawal, A., Samotorcan, L., Tabula Sapiens Consortium, "
    "Quake, S.R. & Leskovec, J. Universal Cell Embeddings: a foundation model for cell "
    "biology. bioRxiv 2023.11.28.568918 (2023). doi:10.1101/2023.11.28.568918"
)
_LICENSE = "MIT"
#: Shared files (figshare ids from ``evaluate.py``, ``AnndataProcessor.check_paths``).
_SHARED_FILES = (
    FileSpec(CHROM_FILE, f"{_FIGSHARE}/42706558"),
    FileSpec(OFFSETS_FILE, f"{_FIGSHARE}/42706555"),
    FileSpec(TOKEN_FILE, f"{_FIGSHARE}/42706585"),
    FileSpec(PE_ARCHIVE, f"{_FIGSHARE}/42715213"),
)
_NOTES = (
    "Files of the figshare article 'Universal Cell Embedding Model Files' (24320806), at "
    "the URLs the official evaluate.py downloads them from (the 33-layer weights: the "
    "README link). protein_embeddings.tar.gz is read in place (the species file needed "
    "is extracted next to it). No checksums are published; sha256 is recorded at the "
    "first download. License: the MIT license of snap-stanford/UCE."
)

register_checkpoint(
    CheckpointSpec(
        name="uce.4l",
        model="uce",
        files=(FileSpec(MODEL_FILES[0], f"{_FIGSHARE}/42706576"), *_SHARED_FILES),
        license=_LICENSE,
        citation=_CITATION,
        homepage=_HOME,
        description=(
            "UCE 4-layer model (1,280-d, 20 heads, ESM2 protein-embedding tokens); the "
            "default of the official eval_single_anndata.py"
        ),
        notes=_NOTES,
        approx_size_mb=9000,
    )
)
register_checkpoint(
    CheckpointSpec(
        name="uce.33l",
        model="uce",
        files=(FileSpec(MODEL_FILES[1], f"{_FIGSHARE}/43423236"), *_SHARED_FILES),
        license=_LICENSE,
        citation=_CITATION,
        homepage=_HOME,
        description=(
            "UCE 33-layer model (650M parameters; the model of the paper), pretrained on "
            "36 million cells of 8 species"
        ),
        notes=_NOTES,
        approx_size_mb=11500,
    )
)


# --------------------------------------------------------------------------- config


@dataclass(frozen=True)
class UCEConfig:
    """Architecture of a UCE checkpoint (read from the shapes of its state dict).

    Attributes
    ----------
    token_dim
        Width of the token table (5,120, ESM2).
    d_model
        Transformer width (1,280).
    nhead
        Attention heads (20; not recorded in the checkpoint).
    d_hid
        Feed-forward width (5,120).
    nlayers
        Transformer layers (4 or 33).
    output_dim
        Width of the cell embedding (1,280).
    n_tokens
        Rows of the model's ``pe_embedding``.
    max_len
        Positions of the sinusoidal encoding (1,536).
    """

    token_dim: int
    d_model: int
    nhead: int
    d_hid: int
    nlayers: int
    output_dim: int
    n_tokens: int
    max_len: int = PAD_LENGTH


# --------------------------------------------------------------------------- torch modules


@functools.cache
def _nn() -> types.SimpleNamespace:
    """Define the torch modules on first use (torch is an optional dependency)."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    def full_block(n_in: int, n_out: int) -> nn.Sequential:
        """``model.py`` ``full_block``: Linear, LayerNorm, GELU, Dropout."""
        return nn.Sequential(nn.Linear(n_in, n_out), nn.LayerNorm(n_out), nn.GELU(), nn.Dropout())

    class PositionalEncoding(nn.Module):
        """``pos_encoder``: the sinusoidal table ``pe`` of shape ``(max_len, 1, d)``."""

        def __init__(self, d_model: int, max_len: int) -> None:
            super().__init__()
            position = torch.arange(max_len).unsqueeze(1)
            div = torch.exp(torch.arange(0, d_model, 2) * (-math.log(10000.0) / d_model))
            pe = torch.zeros(max_len, 1, d_model)
            pe[:, 0, 0::2] = torch.sin(position * div)
            pe[:, 0, 1::2] = torch.cos(position * div)
            self.register_buffer("pe", pe)

    class SelfAttention(nn.Module):
        """``torch.nn.MultiheadAttention`` weights (packed ``in_proj``), fused attention."""

        def __init__(self, d_model: int, nhead: int) -> None:
            super().__init__()
            if d_model % nhead:
                msg = f"d_model ({d_model}) must be divisible by nhead ({nhead})"
                raise UCECheckpointError(msg)
            self.nhead = nhead
            self.in_proj_weight = nn.Parameter(torch.empty(3 * d_model, d_model))
            self.in_proj_bias = nn.Parameter(torch.empty(3 * d_model))
            self.out_proj = nn.Linear(d_model, d_model)

        def forward(
            self, x: torch.Tensor, bias: torch.Tensor | None, n_query: int | None = None
        ) -> torch.Tensor:
            b, n, d = x.shape
            h = self.nhead
            if n_query is None:
                qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)
                q, k, v = qkv.view(b, n, 3, h, d // h).permute(2, 0, 3, 1, 4).unbind(0)
            else:
                w_q, w_kv = self.in_proj_weight.split([d, 2 * d])
                b_q, b_kv = self.in_proj_bias.split([d, 2 * d])
                q = F.linear(x[:, :n_query], w_q, b_q).view(b, n_query, h, d // h)
                q = q.transpose(1, 2)
                kv = F.linear(x, w_kv, b_kv).view(b, n, 2, h, d // h)
                k, v = kv.permute(2, 0, 3, 1, 4).unbind(0)
            if bias is not None:
                bias = bias.to(q.dtype)
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
            return self.out_proj(out.transpose(1, 2).reshape(b, -1, d))

    class EncoderLayer(nn.Module):
        """``nn.TransformerEncoderLayer(d_model, nhead, d_hid)``: post-norm, ReLU."""

        def __init__(self, d_model: int, nhead: int, d_hid: int) -> None:
            super().__init__()
            self.self_attn = SelfAttention(d_model, nhead)
            self.linear1 = nn.Linear(d_model, d_hid)
            self.linear2 = nn.Linear(d_hid, d_model)
            self.norm1 = nn.LayerNorm(d_model, eps=1e-5)
            self.norm2 = nn.LayerNorm(d_model, eps=1e-5)

        def forward(
            self, x: torch.Tensor, bias: torch.Tensor | None, n_query: int | None = None
        ) -> torch.Tensor:
            attn = self.self_attn(x, bias, n_query)
            if n_query is not None:
                x = x[:, :n_query]
            x = self.norm1(x + attn)
            return self.norm2(x + self.linear2(F.relu(self.linear1(x))))

    class TransformerEncoder(nn.Module):
        """``transformer_encoder``: a stack of ``layers``."""

        def __init__(self, d_model: int, nhead: int, d_hid: int, nlayers: int) -> None:
            super().__init__()
            self.layers = nn.ModuleList(EncoderLayer(d_model, nhead, d_hid) for _ in range(nlayers))

    class UCETransformer(nn.Module):
        """The official ``TransformerModel`` with its module names (eval only)."""

        def __init__(self, config: UCEConfig) -> None:
            super().__init__()
            c = config
            self.config = c
            self.pos_encoder = PositionalEncoding(c.d_model, c.max_len)
            self.encoder = nn.Sequential(
                nn.Linear(c.token_dim, c.d_model), nn.GELU(), nn.LayerNorm(c.d_model)
            )
            self.transformer_encoder = TransformerEncoder(c.d_model, c.nhead, c.d_hid, c.nlayers)
            self.decoder = nn.Sequential(
                full_block(c.d_model, 1024),
                full_block(1024, c.output_dim),
                full_block(c.output_dim, c.output_dim),
                nn.Linear(c.output_dim, c.output_dim),
            )
            self.binary_decoder = nn.Sequential(
                full_block(c.output_dim + BINARY_DECODER_GENE_WIDTH, 2048),
                full_block(2048, 512),
                full_block(512, 128),
                nn.Linear(128, 1),
            )
            self.gene_embedding_layer = nn.Sequential(
                nn.Linear(c.token_dim, c.d_model), nn.GELU(), nn.LayerNorm(c.d_model)
            )
            self.pe_embedding = nn.Embedding(c.n_tokens, c.token_dim)

        def token_features(self, table: torch.Tensor) -> torch.Tensor:
            """``encoder(L2normalize(table)) * sqrt(d_model)`` for rows of a token table."""
            x = F.normalize(table.float(), dim=-1)
            return self.encoder(x) * math.sqrt(self.config.d_model)

        def cell_embedding(
            self, feats: torch.Tensor, tokens: torch.Tensor, bias: torch.Tensor | None
        ) -> torch.Tensor:
            """Un-normalized ``decoder`` output at ``<cls>``, ``(batch, output_dim)``.

            Parameters
            ----------
            feats
                :meth:`token_features` of the (compact) token table.
            tokens
                Rows of ``feats``, ``(batch, seq)``.
            bias
                Additive attention bias ``(batch, 1, 1, seq)`` or ``None``.
            """
            n = tokens.shape[1]
            x = feats[tokens] + self.pos_encoder.pe[:n, 0].to(feats.dtype)
            layers = self.transformer_encoder.layers
            for i, layer in enumerate(layers):
                x = layer(x, bias, 1 if i == len(layers) - 1 else None)
            return self.decoder(x[:, 0])

    return types.SimpleNamespace(
        PositionalEncoding=PositionalEncoding,
        SelfAttention=SelfAttention,
        EncoderLayer=EncoderLayer,
        TransformerEncoder=TransformerEncoder,
        UCETransformer=UCETransformer,
    )


def __getattr__(name: str) -> Any:
    if name in ("PositionalEncoding", "SelfAttention", "EncoderLayer", "UCETransformer"):
        return getattr(_nn(), name)
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)


# --------------------------------------------------------------------------- files


def _torch_load(path: Path, what: str) -> Any:
    """``torch.load(weights_only=True)``, memory-mapped when the file allows it."""
    import pickle

    import torch

    from sceval.models._safe_load import UnsafePickleError

    try:
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as err:  # legacy (non-zip) files cannot be memory-mapped
            if "mmap" not in str(err).lower() and "zip" not in str(err).lower():
                raise
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        msg = (
            f"{str(path)!r} is not plain tensor data (weights_only loading refused it: "
            f"{err}); expected {what}. sceval never runs code from checkpoint files."
        )
        raise UnsafePickleError(msg) from err


def _torch_load_bytes(data: bytes, name: str, what: str) -> Any:
    import pickle

    import torch

    from sceval.models._safe_load import UnsafePickleError

    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        msg = f"{name!r} is not plain tensor data ({err}); expected {what}."
        raise UnsafePickleError(msg) from err


@dataclass(frozen=True)
class UCEFiles:
    """Paths of a UCE checkpoint folder (see the module docstring)."""

    folder: Path
    model: Path
    tokens: Path
    offsets: Path
    chrom: Path

    @classmethod
    def find(cls, folder: str | Path, model_file: str | None = None) -> UCEFiles:
        """Locate the files; :class:`FileNotFoundError` lists what is missing."""
        folder = Path(folder)
        if model_file is not None:
            model = folder / model_file
            models = [model] if model.is_file() else []
        else:
            models = [folder / m for m in MODEL_FILES if (folder / m).is_file()]
            if not models:
                models = sorted(
                    p for p in folder.glob("*.torch") if p.is_file() and p.name != TOKEN_FILE
                )
        absent = [n for n in (TOKEN_FILE, OFFSETS_FILE, CHROM_FILE) if not (folder / n).is_file()]
        if not models:
            absent.insert(0, model_file or f"a model file ({' or '.join(MODEL_FILES)})")
        if not (folder / PE_DIR).is_dir() and not (folder / PE_ARCHIVE).is_file():
            absent.append(f"{PE_DIR}/ (or {PE_ARCHIVE})")
        if absent:
            msg = (
                f"UCE checkpoint folder {str(folder)!r} lacks {absent}; expected the official "
                f"model_files layout: a model file ({', '.join(MODEL_FILES)}), {TOKEN_FILE}, "
                f"{OFFSETS_FILE}, {CHROM_FILE} and {PE_DIR}/ with the species' "
                "*_ESM2.pt files. Fix: `sceval fetch uce.4l` or point checkpoint= at a "
                "complete folder."
            )
            raise FileNotFoundError(msg)
        if len(models) > 1 and model_file is None:
            preferred = [m for m in models if m.name in MODEL_FILES]
            models = preferred[:1] or models
            if len(models) > 1:
                msg = (
                    f"UCE checkpoint folder {str(folder)!r} holds several model files "
                    f"{[m.name for m in models]}; pass model_file= to choose one."
                )
                raise UCECheckpointError(msg)
        return cls(
            folder, models[0], folder / TOKEN_FILE, folder / OFFSETS_FILE, folder / CHROM_FILE
        )

    def species_files(self) -> dict[str, str]:
        """Species -> protein-embedding file name (official names plus any listed in
        ``new_species_protein_embeddings.csv``)."""
        out = dict(SPECIES_FILES)
        extra = self.folder / NEW_SPECIES_FILE
        if extra.is_file():
            import pandas as pd

            table = pd.read_csv(extra)
            if {"species", "path"} <= set(table.columns):
                for sp_name, path in zip(table["species"], table["path"], strict=True):
                    out[str(sp_name)] = str(path)
        return out

    def _pe_candidates(self, fname: str) -> list[Path]:
        p = Path(fname)
        if p.is_absolute():
            return [p]
        return [self.folder / PE_DIR / fname, self.folder / fname, self.folder / PE_DIR / p.name]

    def _archive(self) -> Path | None:
        p = self.folder / PE_ARCHIVE
        return p if p.is_file() else None

    def _archive_members(self) -> dict[str, str]:
        """Base name -> member name of the ``.pt`` files in the archive (if any)."""
        archive = self._archive()
        if archive is None:
            return {}
        return dict(_archive_listing(str(archive), archive.stat().st_mtime))

    def available_species(self) -> list[str]:
        """Species with a protein-embedding file in the folder (or the archive)."""
        members = self._archive_members()
        return sorted(
            sp_name
            for sp_name, fname in self.species_files().items()
            if any(c.is_file() for c in self._pe_candidates(fname)) or Path(fname).name in members
        )

    def protein_embedding_path(self, species: str) -> Path | bytes:
        """Path of the species' file (extracted from the archive when needed), or its
        bytes when the folder is read-only."""
        fname = self.species_files()[species]
        for cand in self._pe_candidates(fname):
            if cand.is_file():
                return cand
        member = self._archive_members().get(Path(fname).name)
        archive = self._archive()
        if member is None or archive is None:
            msg = f"no protein-embedding file {fname!r} for species {species!r}"
            raise FileNotFoundError(msg)
        with tarfile.open(archive, "r:*") as tar:
            fh = tar.extractfile(member)
            if fh is None:
                msg = f"{member!r} in {str(archive)!r} is not a regular file"
                raise UCECheckpointError(msg)
            data = fh.read()
        path = self.folder / PE_DIR / Path(fname).name
        try:  # written to a name of our choosing, never to the member's own path
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
            tmp.write_bytes(data)
            os.replace(tmp, path)
        except OSError:
            return data
        return path


@functools.lru_cache(maxsize=4)
def _archive_listing(archive: str, mtime: float) -> tuple[tuple[str, str], ...]:
    """(base name, member name) of the ``.pt`` files of a tar archive (read once)."""
    with tarfile.open(archive, "r:*") as tar:
        return tuple(
            (Path(m.name).name, m.name)
            for m in tar.getmembers()
            if m.isfile() and m.name.endswith(".pt")
        )


def read_species_tokens(source: Path | bytes, name: str = "") -> list[str]:
    """Upper-case gene symbols of a protein-embedding file, in token-row order.

    As ``get_species_to_pe``: the keys of the dict, upper-cased (a symbol that occurs
    twice after upper-casing keeps its first position).
    """
    import torch

    what = "a dict gene symbol -> ESM2 embedding (official *_ESM2.pt)"
    if isinstance(source, bytes):
        obj = _torch_load_bytes(source, name, what)
    else:
        obj = _torch_load(source, what)
        name = str(source)
    if not isinstance(obj, dict) or not obj:
        msg = f"{name!r} holds a {type(obj).__name__}; expected {what}."
        raise UCECheckpointError(msg)
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        msg = f"{name!r}: entries {bad[:3]} are not gene symbol -> tensor; expected {what}."
        raise UCECheckpointError(msg)
    return list(dict.fromkeys(k.upper() for k in obj))


def _read_offsets(path: Path) -> dict[str, int]:
    from sceval.models._safe_load import load_pickle_dict

    raw = load_pickle_dict(path)
    bad = [k for k, v in raw.items() if not isinstance(k, str) or not isinstance(v, int)]
    if bad:
        msg = (
            f"{str(path)!r}: entries {bad[:3]} are not species -> int; expected the official "
            "species_offsets.pkl (species name -> first token row of its genes)."
        )
        raise UCECheckpointError(msg)
    return {str(k): int(v) for k, v in raw.items()}


def _read_chrom(path: Path) -> Any:
    """``species_chrom.csv`` with ``code`` = index of ``species_chromosome`` among the
    sorted categories of the whole file (``get_spec_chrom_csv``)."""
    import pandas as pd

    table = pd.read_csv(path, dtype={"chromosome": str, "species": str, "gene_symbol": str})
    need = {"species", "gene_symbol", "chromosome", "start"}
    if not need <= set(table.columns):
        msg = (
            f"{str(path)!r} has columns {list(table.columns)}; expected {sorted(need)} (the "
            "official species_chrom.csv: one row per gene with its chromosome and genomic "
            "start). Fix: use the file shipped with the checkpoint."
        )
        raise UCECheckpointError(msg)
    cat = pd.Categorical(table["species"] + "_" + table["chromosome"])
    table["code"] = cat.codes
    table["start"] = pd.to_numeric(table["start"], errors="coerce")
    return table, len(cat.categories)


@functools.lru_cache(maxsize=8)
def _cached_chrom(path: str, mtime: float) -> Any:
    return _read_chrom(Path(path))


@functools.lru_cache(maxsize=8)
def _cached_species_tokens(path: str, mtime: float) -> tuple[str, ...]:
    return tuple(read_species_tokens(Path(path)))


# --------------------------------------------------------------------------- loading


def _config_from_state(state: dict[str, Any], token_dim: int, nhead: int, path: Path) -> UCEConfig:
    def shape(key: str) -> tuple[int, ...]:
        t = state.get(key)
        if t is None or not hasattr(t, "shape"):
            msg = (
                f"{str(path)!r} lacks {key!r}; expected an official UCE state dict "
                "(pe_embedding.weight, encoder.0.weight, pos_encoder.pe, "
                "transformer_encoder.layers.N.*, decoder.*, binary_decoder.*, "
                "gene_embedding_layer.*). Fix: use 4layer_model.torch or "
                "33l_8ep_1024t_1280.torch."
            )
            raise UCECheckpointError(msg)
        return tuple(t.shape)

    layers = {
        int(k.split(".")[2])
        for k in state
        if k.startswith("transformer_encoder.layers.") and k.split(".")[2].isdigit()
    }
    pe = shape("pos_encoder.pe")
    return UCEConfig(
        token_dim=token_dim,
        d_model=shape("encoder.0.weight")[0],
        nhead=nhead,
        d_hid=shape("transformer_encoder.layers.0.linear1.weight")[0],
        nlayers=max(layers) + 1 if layers else 0,
        output_dim=shape("decoder.3.weight")[0],
        n_tokens=shape("pe_embedding.weight")[0],
        max_len=pe[0] if pe else PAD_LENGTH,
    )


def _check_keys(model: Any, state: dict[str, Any], path: Path, cfg: UCEConfig, why: str) -> None:
    from sceval.models._safe_load import describe_key_mismatch, state_mismatch

    missing, unexpected, shapes = (sorted(x) for x in state_mismatch(model.state_dict(), state))
    if not (missing or unexpected or shapes):
        return
    msg = (
        f"{str(path)!r} does not match the UCE architecture expected from {why} "
        f"(token_dim={cfg.token_dim}, d_model={cfg.d_model}, nhead={cfg.nhead}, "
        f"d_hid={cfg.d_hid}, nlayers={cfg.nlayers}, output_dim={cfg.output_dim}, "
        f"{cfg.n_tokens} tokens): "
        + describe_key_mismatch(missing, unexpected, shapes, _MAX_LISTED)
        + ". Fix: make sure the model file, all_tokens.torch and the other files come from "
        "the same UCE release (and that nlayers= matches the model: 4 or 33)."
    )
    raise UCECheckpointError(msg)


@dataclass
class LoadedUCE:
    """A loaded checkpoint: the model plus the files needed for tokenization."""

    model: Any
    files: UCEFiles
    table: Any  # the token table in use (a possibly memory-mapped tensor)
    table_source: str
    chrom_offset: int
    offsets: dict[str, int]
    n_chrom: int


def load_uce(
    folder: str | Path,
    *,
    model_file: str | None = None,
    nlayers: int | None = None,
    nhead: int = NHEAD,
    chrom_token_offset: int | None = None,
) -> LoadedUCE:
    """Load an official UCE checkpoint folder.

    Parameters
    ----------
    folder
        The ``model_files`` folder (see the module docstring).
    model_file
        Name of the weights file when the folder holds several.
    nlayers
        Expected transformer layers (the official ``--nlayers``); by default the count
        found in the state dict. A mismatch is reported key by key.
    nhead
        Attention heads (20 in the releases; not recorded in the checkpoint).
    chrom_token_offset
        Override of ``CHROM_TOKEN_OFFSET`` (default: table rows minus the number of
        chromosome categories in ``species_chrom.csv``).

    Returns
    -------
    LoadedUCE
        The model in eval mode on the CPU (weights memory-mapped where possible).

    Raises
    ------
    FileNotFoundError
        A file is missing.
    UCECheckpointError
        Malformed files or weights that do not fit the architecture (one message lists
        every missing, unexpected and mis-shaped key).
    """
    import torch

    files = UCEFiles.find(folder, model_file)
    tokens = _torch_load(files.tokens, "one tensor (the token table)")
    if not isinstance(tokens, torch.Tensor) or tokens.ndim != 2:
        msg = (
            f"{str(files.tokens)!r} holds a {type(tokens).__name__}; expected one 2-d tensor "
            "(rows: pad, chromosome open/close, <cls>, then every species' protein "
            "embeddings), the official all_tokens.torch."
        )
        raise UCECheckpointError(msg)
    state = _torch_load(files.model, "a plain state dict")
    if not isinstance(state, dict):
        msg = f"{str(files.model)!r} holds a {type(state).__name__}; expected a state dict."
        raise UCECheckpointError(msg)
    if state and all(k.startswith("module.") for k in state):  # saved from DataParallel
        state = {k[len("module.") :]: v for k, v in state.items()}
    token_dim = int(tokens.shape[1])
    cfg = _config_from_state(state, token_dim, nhead, files.model)
    why = f"{TOKEN_FILE} and the model file"
    if nlayers is not None and int(nlayers) != cfg.nlayers:
        cfg = dataclasses.replace(cfg, nlayers=int(nlayers))
        why = f"{TOKEN_FILE} and nlayers={nlayers}"
    # large models are built without memory (meta) and take the loaded tensors as they
    # are; small ones are built on the CPU (the meta machinery costs seconds to import)
    n_params = sum(int(np.prod(t.shape)) for t in state.values() if hasattr(t, "shape"))
    device = "meta" if n_params > 20_000_000 else "cpu"
    with torch.device(device):
        model = _nn().UCETransformer(cfg)
    _check_keys(model, state, files.model, cfg, why)
    model.load_state_dict(state, strict=True, assign=True)
    model.eval()

    _, n_chrom = _cached_chrom(str(files.chrom), files.chrom.stat().st_mtime)
    n_rows = int(tokens.shape[0])
    if n_rows in (cfg.n_tokens, cfg.n_tokens - n_chrom):
        table, source = model.pe_embedding.weight, "pe_embedding.weight of the model file"
    else:
        table, source = tokens, TOKEN_FILE
    offset = int(table.shape[0]) - n_chrom if chrom_token_offset is None else chrom_token_offset
    if offset < CLS_ID + 1 or offset + n_chrom > int(table.shape[0]):
        msg = (
            f"CHROM_TOKEN_OFFSET {offset} with {n_chrom} chromosome categories in "
            f"{CHROM_FILE} does not fit the token table ({source}, {int(table.shape[0])} "
            "rows). Fix: use species_chrom.csv and all_tokens.torch of the same release, "
            "or pass chrom_token_offset=."
        )
        raise UCECheckpointError(msg)
    offsets = _read_offsets(files.offsets)
    return LoadedUCE(model, files, table, source, offset, offsets, n_chrom)


def reset_parameters(model: Any, seed: int) -> Any:
    """Re-initialize every trained weight of a :class:`UCETransformer` in place, seeded.

    As a freshly built official model: ``nn.Linear`` defaults (uniform in
    ``±1/sqrt(fan_in)``), LayerNorm ones/zeros, the attention input projection
    Xavier-uniform with zero biases and a zero ``out_proj`` bias (``nn.MultiheadAttention``).
    The token table (frozen ESM2 protein embeddings, an input of the model rather than a
    trained weight) and the sinusoidal ``pe`` are kept. Only a local generator is used.
    """
    import torch
    from torch import nn

    gen = torch.Generator().manual_seed(int(seed))
    attn_cls = _nn().SelfAttention

    def new(t: torch.Tensor, fill: Any) -> nn.Parameter:
        out = torch.empty(t.shape, dtype=torch.float32)
        if isinstance(fill, float):
            out.fill_(fill)
        else:
            out.uniform_(-fill[0], fill[0], generator=gen)
        return nn.Parameter(out, requires_grad=False)

    for _, mod in model.named_modules():
        if isinstance(mod, nn.Linear):
            bound = 1.0 / math.sqrt(mod.in_features)
            mod.weight = new(mod.weight, (bound,))
            mod.bias = new(mod.bias, (bound,))
        elif isinstance(mod, nn.LayerNorm):
            mod.weight = new(mod.weight, 1.0)
            mod.bias = new(mod.bias, 0.0)
        elif isinstance(mod, attn_cls):
            fan_out, fan_in = mod.in_proj_weight.shape
            mod.in_proj_weight = new(mod.in_proj_weight, (math.sqrt(6.0 / (fan_in + fan_out)),))
            mod.in_proj_bias = new(mod.in_proj_bias, 0.0)
    for _, mod in model.named_modules():
        if isinstance(mod, attn_cls):
            mod.out_proj.bias = new(mod.out_proj.bias, 0.0)
    return model


# --------------------------------------------------------------------------- tokenization


@dataclass(frozen=True)
class UCEGeneCoverage(GeneCoverage):
    """:class:`GeneCoverage` plus what UCE reports: the species, genes without a protein
    embedding, genes without a chromosome position, cells with nothing to sample."""

    species: str = ""
    n_no_protein: int = 0
    no_protein_examples: tuple[str, ...] = ()
    n_no_position: int = 0
    n_empty_cells: int = 0

    @property
    def message(self) -> str:
        """One line for the results ``message`` column."""
        parts = [super().message, f"species {self.species}"]
        if self.n_no_protein:
            ex = ", ".join(self.no_protein_examples)
            parts.append(f"{self.n_no_protein} genes lack a protein embedding (e.g. {ex})")
        if self.n_no_position:
            parts.append(f"{self.n_no_position} genes lack a chromosome position")
        if self.n_empty_cells:
            parts.append(f"{self.n_empty_cells} cells without counts on matched genes")
        return "; ".join(parts)


class UCETokenizer:
    """Seeded UCE cell sentences from a cells x matched-genes count matrix.

    Parameters
    ----------
    counts
        CSR matrix, cells x matched genes.
    gene_tokens
        Token-table row of each column.
    chrom_codes
        Chromosome category code of each column (see :func:`_read_chrom`).
    starts
        Genomic start of each column.
    chrom_offset
        ``CHROM_TOKEN_OFFSET``.
    sample_size
        Genes drawn per cell (1,024).
    seed, offset
        The sentence of cell ``i`` depends on ``(seed, offset + i)`` only.
    """

    def __init__(
        self,
        counts: Any,
        gene_tokens: np.ndarray,
        chrom_codes: np.ndarray,
        starts: np.ndarray,
        *,
        chrom_offset: int,
        sample_size: int = SAMPLE_SIZE,
        seed: int = 0,
        offset: int = 0,
    ) -> None:
        import scipy.sparse as sp

        if sample_size < 1:
            msg = f"sample_size must be >= 1, got {sample_size}"
            raise ValueError(msg)
        m = sp.csr_matrix(counts, dtype=np.float64)
        if not m.has_sorted_indices or (m.data <= 0).any():
            m = m.copy()
            m.data[m.data < 0] = 0
            m.eliminate_zeros()
            m.sort_indices()
        self.counts = m
        self.gene_tokens = np.asarray(gene_tokens, dtype=np.int64)
        self.chrom_codes = np.asarray(chrom_codes, dtype=np.int64)
        self.starts = np.asarray(starts, dtype=np.float64)
        self.chrom_offset = int(chrom_offset)
        self.sample_size = int(sample_size)
        self.seed = int(seed)
        self.offset = int(offset)

    @property
    def n_cells(self) -> int:
        """Number of cells."""
        return int(self.counts.shape[0])

    def sentence(self, i: int) -> np.ndarray:
        """Token rows (int64) of cell ``i``: ``<cls>``, then per chromosome (random order)
        its open token, its drawn genes by genomic start, the close token."""
        m = self.counts
        lo, hi = m.indptr[i], m.indptr[i + 1]
        cols = m.indices[lo:hi]
        if cols.size == 0:
            return np.array([CLS_ID], dtype=np.int64)
        rng = np.random.default_rng((self.seed, self.offset + int(i)))
        # rng.choice(cols.size, size, p=w / w.sum(), replace=True), without its checks:
        # the same cumulative sum and search, hence the same draws
        cdf = np.cumsum(np.log1p(m.data[lo:hi]) / np.log1p(m.data[lo:hi]).sum())
        cdf /= cdf[-1]
        sel = cols[cdf.searchsorted(rng.random(self.sample_size), side="right")]
        chrom = self.chrom_codes[sel]
        uq = np.unique(chrom)
        rng.shuffle(uq)
        rank = np.empty(int(uq.max()) + 1, dtype=np.int64)
        rank[uq] = np.arange(uq.size)
        r = rank[chrom]
        order = np.lexsort((sel, self.starts[sel], r))
        sel, r = sel[order], r[order]
        out = np.empty(1 + sel.size + 2 * uq.size, dtype=np.int64)
        out[0] = CLS_ID
        gene_pos = 2 + np.arange(sel.size) + 2 * r  # after <cls>, the open tokens, closes
        out[gene_pos] = self.gene_tokens[sel]
        first = np.searchsorted(r, np.arange(uq.size), side="left")
        n_per = np.bincount(r, minlength=uq.size)
        open_pos = 1 + first + 2 * np.arange(uq.size)
        out[open_pos] = self.chrom_offset + uq
        out[open_pos + n_per + 1] = CHROM_RIGHT_ID
        return out

    def sentences(self) -> list[np.ndarray]:
        """Sentences of all cells, in cell order."""
        return [self.sentence(i) for i in range(self.n_cells)]


def _species_genes(loaded: LoadedUCE, species: str, model_key: str) -> tuple[list[str], Any]:
    """Upper-case symbols in token order and the species' rows of species_chrom.csv."""
    files = loaded.files
    have_pe = files.available_species()
    chrom_table, _ = _cached_chrom(str(files.chrom), files.chrom.stat().st_mtime)
    have_pos = set(chrom_table["species"].dropna().astype(str))
    usable = [s for s in have_pe if s in loaded.offsets and s in have_pos]
    if species not in usable:
        pe_file = files.species_files().get(species, "<Species>.*_ESM2.pt")
        lacks = [
            what
            for what, ok in (
                (f"protein-embedding file ({PE_DIR}/{pe_file})", species in have_pe),
                (f"entry in {OFFSETS_FILE}", species in loaded.offsets),
                (f"rows in {CHROM_FILE}", species in have_pos),
            )
            if not ok
        ]
        msg = (
            f"model {model_key!r}: species {species!r} has no {' and no '.join(lacks)} in "
            f"the checkpoint folder {str(files.folder)!r}. Species available there: "
            f"{usable or 'none'}. Fix: pass species= one of those (the species of the "
            "data), or add the species' files (data_proc/Create New Species Files.ipynb "
            "of snap-stanford/UCE)."
        )
        raise UCESpeciesError(msg)
    src = files.protein_embedding_path(species)
    if isinstance(src, bytes):
        symbols = read_species_tokens(src, species)
    else:
        symbols = list(_cached_species_tokens(str(src), src.stat().st_mtime))
    start = loaded.offsets[species]
    bounds = [o for o in loaded.offsets.values() if o > start] + [loaded.chrom_offset]
    end = min(bounds)
    if start + len(symbols) != end:
        msg = (
            f"the {species} protein-embedding file lists {len(symbols)} genes, but "
            f"{OFFSETS_FILE} and the token table leave {end - start} rows for {species} "
            f"(rows {start}..{end - 1}; the next block starts at {end}). Expected the "
            "protein-embedding files the token table was built from. Fix: use "
            f"{TOKEN_FILE}, {OFFSETS_FILE} and {PE_DIR}/ of the same release."
        )
        raise UCECheckpointError(msg)
    rows = chrom_table[chrom_table["species"] == species]
    return symbols, rows


def _data_species(adata: Any, report: Any, species: str, model_key: str) -> str:
    if species != "auto":
        return species
    from sceval.data.genes import detect_species

    col = getattr(report, "gene_id_column", None)
    ids = adata.var[col] if col else adata.var_names
    found = detect_species([str(x) for x in ids])
    if found == "unknown":
        msg = (
            f"model {model_key!r}: could not tell the species from the gene names; UCE "
            "matches genes case-insensitively, so the species must be right. Fix: pass "
            "species='human', 'mouse' or another species of the checkpoint."
        )
        raise ModelSkippedError(msg)
    return found


def build_tokenizer(
    adata: Any,
    report: Any,
    loaded: LoadedUCE,
    species: str,
    *,
    sample_size: int = SAMPLE_SIZE,
    seed: int = 0,
    offset: int = 0,
    model_key: str = "uce",
) -> tuple[UCETokenizer, UCEGeneCoverage, np.ndarray]:
    """Match genes (by upper-case symbol) and build the sentence sampler.

    Returns
    -------
    tokenizer, coverage, vocab_rows
        ``vocab_rows``: the token-table rows the sentences can use (specials, matched
        genes, the species' chromosome tokens), sorted.

    Raises
    ------
    UCESpeciesError
        The species lacks files in the checkpoint folder.
    DataContractError
        No gene matches (from :func:`gene_coverage`).
    """
    from sceval.data.contract import get_counts
    from sceval.models.foundation import gene_symbols

    symbols, rows = _species_genes(loaded, species, model_key)
    token_of = {s: loaded.offsets[species] + j for j, s in enumerate(symbols)}
    rows = rows.dropna(subset=["start"])
    rows = rows[rows["code"] >= 0]
    pos = {}
    for sym, code, start in zip(
        rows["gene_symbol"].astype(str).str.upper(), rows["code"], rows["start"], strict=True
    ):
        pos.setdefault(sym, (int(code), float(start)))
    data_syms = [str(s).upper() if s else "" for s in gene_symbols(adata, report)]
    has_pe = np.array([s in token_of for s in data_syms], dtype=bool)
    has_pos = np.array([s in pos for s in data_syms], dtype=bool)
    matched = has_pe & has_pos
    counts = get_counts(adata, report)
    if not matched.any():
        msg = (
            f"model {model_key!r}: none of the {matched.size} genes match the {species} "
            f"protein embeddings and chromosome positions of the checkpoint "
            f"({int((~has_pe).sum())} lack a protein embedding, e.g. "
            f"{[s for s in data_syms if s not in token_of][:3]}; "
            f"{int((has_pe & ~has_pos).sum())} lack a position). Expected {species} gene "
            "symbols. Fix: pass species= the data's species, or run "
            "sceval.harmonize_genes(adata) to add var['gene_symbol']."
        )
        raise DataContractError(msg)
    base = gene_coverage(matched, counts, model_key)
    idx = np.flatnonzero(matched)
    tok_ids = np.array([token_of[data_syms[j]] for j in idx], dtype=np.int64)
    codes = np.array([pos[data_syms[j]][0] for j in idx], dtype=np.int64)
    starts = np.array([pos[data_syms[j]][1] for j in idx], dtype=np.float64)
    tok = UCETokenizer(
        counts[:, idx],
        tok_ids,
        codes,
        starts,
        chrom_offset=loaded.chrom_offset,
        sample_size=sample_size,
        seed=seed,
        offset=offset,
    )
    n_empty = int((np.diff(tok.counts.indptr) == 0).sum())
    missing = [data_syms[j] or "?" for j in np.flatnonzero(~has_pe)]
    cov = UCEGeneCoverage(
        **dataclasses.asdict(base),
        species=species,
        n_no_protein=len(missing),
        no_protein_examples=tuple(missing[:3]),
        n_no_position=int((has_pe & ~has_pos).sum()),
        n_empty_cells=n_empty,
    )
    species_codes = np.unique(rows["code"].to_numpy(dtype=np.int64))
    vocab = np.unique(
        np.concatenate(
            [
                np.arange(CLS_ID + 1),
                tok_ids,
                loaded.chrom_offset + species_codes,
            ]
        )
    )
    return tok, cov, vocab


# --------------------------------------------------------------------------- inference


def cell_embeddings(
    model: Any,
    features: Any,
    vocab_rows: np.ndarray,
    cells: UCETokenizer | list[np.ndarray],
    *,
    batch_size: int = 25,
    device: str = "cpu",
    precision: str = "auto",
    padding: str = "masked",
) -> np.ndarray:
    """L2-normalized cell embeddings, in cell order.

    Cells are batched in order and each batch is tokenized just before its forward pass,
    so on CUDA the sampling of the next batch overlaps the GPU work of the previous ones
    (sampling costs about as much as a 4-layer forward pass in bf16 on an H200). Sorting
    by length would buy nothing: every sentence has ``1 + sample_size + 2 x
    chromosomes`` tokens, within a few percent of each other.

    Parameters
    ----------
    model
        A :class:`UCETransformer` on ``device``.
    features
        ``model.token_features`` of the token rows ``vocab_rows`` (on ``device``).
    vocab_rows
        Sorted token-table rows that ``features`` holds.
    cells
        A :class:`UCETokenizer`, or token rows per cell.
    batch_size
        Cells per forward pass.
    device, precision
        See :func:`sceval.models.foundation.inference_context`.
    padding
        ``"masked"`` (padding excluded: each cell's embedding is independent of its
        batch) or ``"official"`` (padding attended with a +1 bias, as the official code).
    """
    import torch

    if padding not in ("masked", "official"):
        msg = f"padding must be 'masked' or 'official', got {padding!r}"
        raise ValueError(msg)
    if batch_size < 1:
        msg = f"batch_size must be >= 1, got {batch_size}"
        raise ValueError(msg)
    if isinstance(cells, UCETokenizer):
        n, sentence = cells.n_cells, cells.sentence
    else:
        n, sentence = len(cells), cells.__getitem__
    out = np.zeros((n, model.config.output_dim), dtype=np.float32)
    cuda = device.startswith("cuda")

    def move(a: np.ndarray) -> Any:
        t = torch.from_numpy(a)
        return t.pin_memory().to(device, non_blocking=True) if cuda else t

    pending: list[tuple[slice, Any]] = []

    def flush() -> None:
        for rows, emb in pending:
            out[rows] = emb.float().cpu().numpy()
        pending.clear()

    with inference_context(device, precision):
        for start in range(0, n, batch_size):
            rows = slice(start, min(start + batch_size, n))
            sents = [sentence(i) for i in range(rows.start, rows.stop)]
            lengths = np.array([x.size for x in sents], dtype=np.int64)
            longest = int(lengths.max())
            if longest > model.config.max_len:
                msg = (
                    f"a cell sentence has {longest} tokens, more than the "
                    f"{model.config.max_len} positions of the model; lower sample_size."
                )
                raise ValueError(msg)
            toks = np.full((len(sents), longest), PAD_ID, dtype=np.int64)
            for row, x in enumerate(sents):
                toks[row, : x.size] = x
            pad = np.arange(longest)[None, :] >= lengths[:, None]
            bias = None
            if pad.any():
                fill = float("-inf") if padding == "masked" else 1.0
                bias = move(np.where(pad, fill, 0.0).astype(np.float32)[:, None, None, :])
            t = move(np.searchsorted(vocab_rows, toks))
            pending.append((rows, model.cell_embedding(features, t, bias)))
            if len(pending) >= 32:
                flush()
        flush()
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.maximum(norms, 1e-12)


@dataclass
class _Prepared:
    key: tuple[Any, ...]
    loaded: LoadedUCE
    features: dict[str, Any]


class _UCEBase(FoundationModel):
    """Shared implementation of ``uce`` and ``uce.random``."""

    default_checkpoint = "uce.4l"
    random_weights = False

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._prep: _Prepared | None = None
        self.coverage: UCEGeneCoverage | None = None

    def _load(self, ctx: EmbedContext) -> _Prepared:
        folder = self.checkpoint_dir()
        device = self._device(ctx)
        random = self.random_weights or bool(self.params.get("random_init", False))
        p = self.params
        key = (
            str(folder),
            random,
            int(ctx.seed) if random else None,
            device,
            p.get("model_file"),
            p.get("nlayers"),
            p.get("chrom_token_offset"),
        )
        if self._prep is not None and self._prep.key == key:
            return self._prep
        try:
            loaded = load_uce(
                folder,
                model_file=p.get("model_file"),
                nlayers=p.get("nlayers"),
                nhead=int(p.get("nhead", NHEAD)),
                chrom_token_offset=p.get("chrom_token_offset"),
            )
        except FileNotFoundError as err:
            raise ModelSkippedError(str(err)) from err
        if random:
            reset_parameters(loaded.model, ctx.seed)
        self._prep = _Prepared(key, loaded, {})
        return self._prep

    def _features(self, prep: _Prepared, vocab: np.ndarray, device: str) -> Any:
        """Token features of the ``vocab`` rows on ``device`` (cached per vocabulary)."""
        import hashlib

        import torch

        ck = (hashlib.sha1(vocab.tobytes()).hexdigest(), device)
        if ck in prep.features:
            return prep.features[ck]
        model = prep.loaded.model
        for mod in (model.encoder, model.transformer_encoder, model.decoder, model.pos_encoder):
            mod.float().to(device)
        with torch.inference_mode():
            rows = prep.loaded.table[torch.from_numpy(vocab)]
            parts = [
                model.token_features(rows[i : i + 4096].to(device))
                for i in range(0, rows.shape[0], 4096)
            ]
            feats = torch.cat(parts)
        prep.features.clear()
        prep.features[ck] = feats
        return feats

    def embed_cells(self, adata: Any, ctx: EmbedContext) -> np.ndarray:
        """L2-normalized cell embeddings, ``(n_cells, output_dim)`` float32."""
        prep = self._load(ctx)
        species = _data_species(
            adata, ctx.report, str(self.params.get("species", "auto")), self.info.key
        )
        tok, cov, vocab = build_tokenizer(
            adata,
            ctx.report,
            prep.loaded,
            species,
            sample_size=int(self.params.get("sample_size", SAMPLE_SIZE)),
            seed=ctx.seed,
            offset=ctx.cell_offset,
            model_key=self.info.key,
        )
        self.coverage = cov
        device = self._device(ctx)
        cuda = device.startswith("cuda")
        feats = self._features(prep, vocab, device)
        return cell_embeddings(
            prep.loaded.model,
            feats,
            vocab,
            tok,
            batch_size=int(self.params.get("batch_size") or (128 if cuda else 16)),
            device=device,
            precision=self._precision(),
            padding=str(self.params.get("padding", "masked")),
        )


_PARAMS_DOC = """
    Parameters (keyword arguments)
    ----------
    checkpoint
        Registered checkpoint name (``"uce.4l"``, ``"uce.33l"``) or a local folder in the
        official ``model_files`` layout. Default ``"uce.4l"``.
    species
        Species of the data: ``"human"``, ``"mouse"`` or another species with files in the
        checkpoint folder; ``"auto"`` (default) tells human from mouse by the gene names.
    batch_size
        Cells per forward pass (default 128 on CUDA, 16 on the CPU; the official script
        uses 25).
    precision
        ``"auto"`` (bf16 on CUDA when supported, fp32 on CPU), ``"fp32"``, ``"bf16"``,
        ``"fp16"``.
    padding
        ``"masked"`` (default) or ``"official"`` (see the module docstring).
    sample_size
        Genes drawn per cell (default 1,024).
    nlayers, model_file, nhead, chrom_token_offset
        As the official script's ``--nlayers`` (checked against the weights),
        the weights file name, heads (20) and ``--CHROM_TOKEN_OFFSET`` (derived).
"""


@register_model
class UCEModel(_UCEBase):
    __doc__ = "``uce``: UCE cell embeddings (L2-normalized ``<cls>`` output).\n" + _PARAMS_DOC
    info = ModelInfo(
        key="uce",
        kind="foundation",
        input="counts",
        requires=("torch", "pandas"),
        install="pip install torch pandas",
        description=(
            "UCE Universal Cell Embeddings: protein-embedding gene tokens, chromosome-"
            "ordered cell sentences, <cls> output (official 4-layer checkpoint)"
        ),
        citation="Rosen et al., bioRxiv 2023 (Universal Cell Embeddings)",
        license="MIT",
    )


@register_model
class UCERandomModel(_UCEBase):
    __doc__ = (
        "``uce.random``: the UCE architecture, token table and cell sentences of the "
        "checkpoint with the transformer, encoder and decoder weights re-initialized "
        "(seeded by ``ctx.seed``; the ESM2 token table is kept, it is an input).\n" + _PARAMS_DOC
    )
    random_weights = True
    info = ModelInfo(
        key="uce.random",
        kind="control",
        input="counts",
        requires=("torch", "pandas"),
        install="pip install torch pandas",
        description="control: UCE architecture and protein tokens with seeded random weights",
        citation="Rosen et al., bioRxiv 2023 (Universal Cell Embeddings); randomly initialized",
        license="MIT",
    )
