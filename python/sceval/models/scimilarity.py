"""SCimilarity: an MLP encoder of log-normalized expression into a 128-d unit sphere.

Heimberg et al., "A cell atlas foundation model for scalable search of similar human
cells", Nature 2024 (Genentech/scimilarity). Facts read from the official repository:

- Model folder (``training_models.py``, ``cell_embedding.py``): ``encoder.ckpt``
  (``torch.save({"state_dict": ...})``), ``layer_sizes.json`` (state-dict key ->
  shape), ``gene_order.tsv`` (one gene symbol per line, the input order), plus
  ``decoder.ckpt``, ``hyperparameters.json``, ``label_ints.csv`` and the cell-search
  indices that sceval does not read.
- Encoder (``nn_models.Encoder``): for each hidden width ``network.{i}`` =
  ``Sequential(Dropout, Linear, BatchNorm1d, PReLU)``, then ``network.{n}`` = ``Linear``
  to the latent width, then L2 normalization. Widths come from the 2-D ``weight`` entries
  of ``layer_sizes.json`` (sorted by key): all but the last are hidden layers, the last
  is the latent layer (released model: 28,231 -> 1024 -> 1024 -> 1024 -> 128).
- Input (``utils.align_dataset`` then ``utils.lognorm_counts``): the data's genes are
  matched by symbol to ``gene_order`` (missing genes are zero; at least 5,000 must
  overlap), **then** raw counts are normalized to 10,000 per cell over the aligned genes
  and ``log1p``-transformed. Inference is in eval mode (BatchNorm running statistics,
  no dropout), in buffers of cells.

The released weights are in Zenodo record 10685499 as ``model_v1.1.tar.gz``, which
also holds the large cell-search index; sceval extracts only the encoder files from it.
"""

from __future__ import annotations

import json
import math
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from sceval._errors import DataContractError, ModelSkippedError
from sceval.models._safe_load import describe_key_mismatch, safe_torch_load, state_mismatch
from sceval.models.base import EmbedContext, ModelInfo, register_model
from sceval.models.checkpoints import CheckpointSpec, FileSpec, register_checkpoint
from sceval.models.foundation import (
    FoundationModel,
    check_precision,
    gene_coverage,
    inference_context,
)

__all__ = [
    "ScimilarityCheckpoint",
    "align_counts",
    "build_encoder",
    "encode",
    "load_checkpoint",
    "lognorm",
]

#: Files the encoder needs, in the official folder layout.
ENCODER_FILES = ("encoder.ckpt", "layer_sizes.json", "gene_order.tsv")
#: The tarball of the release and the folder it unpacks to.
TARBALL = "model_v1.1.tar.gz"
#: Minimum number of overlapping genes in the official ``align_dataset``.
OFFICIAL_MIN_OVERLAP = 5000
TARGET_SUM = 1e4

_ZENODO = "https://zenodo.org/records/10685499/files"
_CITATION = "Heimberg et al., Nature 2024 (SCimilarity)"
_LICENSE = "Apache-2.0 (code); model weights per Zenodo record 10685499 terms"

register_checkpoint(
    CheckpointSpec(
        name="scimilarity.v1.1",
        model="scimilarity",
        files=(FileSpec(TARBALL, f"{_ZENODO}/{TARBALL}"),),
        license=_LICENSE,
        citation=_CITATION,
        homepage="https://github.com/Genentech/scimilarity",
        description="SCimilarity v1.1 (28,231 genes -> 128-d), with its cell-search index",
        notes=(
            "The archive also holds the cell-search (kNN) index of 23M cells; sceval "
            "unpacks only encoder.ckpt, layer_sizes.json and gene_order.tsv from it."
        ),
    )
)


# ----------------------------------------------------------------------------- files


def _member_name(name: str) -> str | None:
    """The encoder file a tar member is (``model_v1.1/encoder.ckpt`` -> ``encoder.ckpt``)."""
    p = PurePosixPath(name)
    if p.is_absolute() or ".." in p.parts or p.name not in ENCODER_FILES:
        return None
    return p.name


def unpack_encoder(tarball: Path, dest: Path) -> Path:
    """Extract the encoder files of an official ``model_v*.tar.gz`` into ``dest``.

    Only regular files named as in :data:`ENCODER_FILES` are read (no links, no paths
    outside ``dest``); each is written to a temporary name and renamed, so an interrupted
    extraction leaves no half file.
    """
    dest.mkdir(parents=True, exist_ok=True)
    found: set[str] = set()
    with tarfile.open(tarball, "r:*") as tar:
        for member in tar:
            name = _member_name(member.name)
            if name is None or not member.isfile() or name in found:
                continue
            src = tar.extractfile(member)
            if src is None:
                continue
            tmp = dest / f".{name}.part"
            with src, open(tmp, "wb") as fh:
                while chunk := src.read(1 << 20):
                    fh.write(chunk)
            tmp.replace(dest / name)
            found.add(name)
    missing = [n for n in ENCODER_FILES if n not in found]
    if missing:
        msg = (
            f"{str(tarball)!r} is not an SCimilarity model archive: it lacks {missing} "
            f"(expected {', '.join(ENCODER_FILES)} in a model_v*/ folder)."
        )
        raise FileNotFoundError(msg)
    return dest


def find_model_folder(folder: str | Path) -> Path:
    """The folder holding ``encoder.ckpt`` & co.: ``folder`` itself, a ``model_v*/``
    subfolder (the unpacked release), or the release tarball (unpacked on first use)."""
    folder = Path(folder)
    if all((folder / n).is_file() for n in ENCODER_FILES):
        return folder
    for sub in sorted(folder.glob("model_v*")):
        if sub.is_dir() and all((sub / n).is_file() for n in ENCODER_FILES):
            return sub
    for tar in sorted(folder.glob("model_v*.tar.gz")):
        return unpack_encoder(tar, folder / tar.name.removesuffix(".tar.gz"))
    have = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    msg = (
        f"{str(folder)!r} is not an SCimilarity model folder: expected "
        f"{', '.join(ENCODER_FILES)} (or the release archive {TARBALL}); found {have[:10]}."
    )
    raise FileNotFoundError(msg)


@dataclass
class ScimilarityCheckpoint:
    """A loaded SCimilarity encoder folder."""

    folder: Path
    gene_order: list[str]
    hidden: list[int]
    latent: int
    state: dict[str, Any]


def _layer_widths(sizes: dict[str, Any], where: Path) -> tuple[list[int], int, int]:
    """(hidden widths, latent width, input width) from ``layer_sizes.json``, as the
    official ``CellEmbedding`` infers them (2-D ``weight`` entries, sorted by key)."""
    layers = [
        (k, v)
        for k, v in sorted(sizes.items())
        if "weight" in k and isinstance(v, list) and len(v) == 2
    ]
    if len(layers) < 2:
        msg = (
            f"{str(where)!r}: expected at least two 2-D 'weight' shapes (hidden and latent "
            f"layers), found {len(layers)}."
        )
        raise ValueError(msg)
    widths = [int(v[0]) for _, v in layers]
    return widths[:-1], widths[-1], int(layers[0][1][1])


def load_checkpoint(folder: str | Path) -> ScimilarityCheckpoint:
    """Read an SCimilarity model folder (weights with ``weights_only=True``)."""
    folder = find_model_folder(folder)
    genes = [ln.strip() for ln in (folder / "gene_order.tsv").read_text().splitlines()]
    genes = [g for g in genes if g]
    try:
        sizes = json.loads((folder / "layer_sizes.json").read_text())
    except ValueError as err:
        msg = f"{str(folder / 'layer_sizes.json')!r} is not valid JSON: {err}"
        raise ValueError(msg) from err
    hidden, latent, n_in = _layer_widths(sizes, folder / "layer_sizes.json")
    if n_in != len(genes):
        msg = (
            f"SCimilarity checkpoint {str(folder)!r}: gene_order.tsv lists {len(genes)} genes "
            f"but the first layer takes {n_in} inputs (layer_sizes.json). The gene list and "
            "the weights come from different models; use the files of one release."
        )
        raise ValueError(msg)
    if len(set(genes)) != len(genes):
        msg = f"{str(folder / 'gene_order.tsv')!r} lists a gene twice."
        raise ValueError(msg)
    obj = safe_torch_load(folder / "encoder.ckpt")
    state = obj.get("state_dict", obj) if isinstance(obj, dict) else obj
    if not isinstance(state, dict):
        msg = f"{str(folder / 'encoder.ckpt')!r} holds no state dict."
        raise ValueError(msg)
    return ScimilarityCheckpoint(folder, genes, hidden, latent, dict(state))


# ----------------------------------------------------------------------------- model


def build_encoder(n_genes: int, hidden: list[int], latent: int) -> Any:
    """The official encoder's module tree (key names and shapes), in eval mode."""
    from torch import nn

    class Encoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            blocks: list[nn.Module] = []
            width = n_genes
            for h in hidden:
                blocks.append(
                    nn.Sequential(nn.Dropout(), nn.Linear(width, h), nn.BatchNorm1d(h), nn.PReLU())
                )
                width = h
            blocks.append(nn.Linear(width, latent))
            self.network = nn.ModuleList(blocks)

        def forward(self, x: Any) -> Any:
            for block in self.network:
                x = block(x)
            return nn.functional.normalize(x, p=2, dim=1)

    return Encoder().eval()


def load_weights(module: Any, state: dict[str, Any], where: str) -> Any:
    """Load ``state`` strictly; every key or shape problem in one error."""
    missing, unexpected, shapes = state_mismatch(module.state_dict(), state, "model")
    problem = describe_key_mismatch(missing, unexpected, shapes)
    if problem:
        msg = (
            f"SCimilarity checkpoint {where} does not fit the encoder described by its "
            f"layer_sizes.json and gene_order.tsv: {problem}. The files come from different "
            "models; use the files of one release."
        )
        raise ValueError(msg)
    module.load_state_dict(state, strict=True)
    return module


def reset_parameters(module: Any, seed: int) -> Any:
    """Seeded re-initialization with the freshly built official encoder's defaults
    (``nn.Linear`` uniform ``±1/sqrt(fan_in)``, BatchNorm ones/zeros with unit running
    variance, PReLU 0.25); the global torch RNG is untouched."""
    import torch
    from torch import nn

    gen = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.Linear):
                bound = 1.0 / math.sqrt(m.in_features)
                m.weight.copy_(torch.empty(m.weight.shape).uniform_(-bound, bound, generator=gen))
                m.bias.copy_(torch.empty(m.bias.shape).uniform_(-bound, bound, generator=gen))
            elif isinstance(m, nn.BatchNorm1d):
                m.reset_parameters()
            elif isinstance(m, nn.PReLU):
                m.weight.fill_(0.25)
    return module


# ----------------------------------------------------------------------------- input


def align_counts(symbols: np.ndarray, counts: Any, gene_order: list[str]) -> tuple[Any, np.ndarray]:
    """Counts re-ordered to ``gene_order`` (CSR, missing genes zero) and the mask of the
    data's genes found in it (the first of duplicated symbols is used)."""
    import scipy.sparse as sp

    index = {g: i for i, g in enumerate(gene_order)}
    target = np.array([index.get(str(s), -1) for s in symbols], dtype=np.int64)
    seen: set[int] = set()
    for j, t in enumerate(target):  # duplicated symbols: keep the first
        if t >= 0 and int(t) in seen:
            target[j] = -1
        seen.add(int(t))
    matched = target >= 0
    cols = np.flatnonzero(matched)
    sel = sp.csr_matrix(counts, dtype=np.float32)[:, cols]
    perm = sp.csr_matrix(
        (np.ones(cols.size, dtype=np.float32), (np.arange(cols.size), target[cols])),
        shape=(cols.size, len(gene_order)),
    )
    return (sel @ perm).tocsr(), matched


def lognorm(aligned: Any, target_sum: float = TARGET_SUM) -> Any:
    """``log1p(x / total * 1e4)`` per cell, totals over the aligned genes (CSR float32)."""
    import scipy.sparse as sp

    x = sp.csr_matrix(aligned, dtype=np.float32, copy=True)
    totals = np.asarray(x.sum(axis=1)).ravel()
    scale = np.divide(target_sum, totals, out=np.zeros_like(totals), where=totals > 0)
    x = sp.diags(scale.astype(np.float32)) @ x
    x = sp.csr_matrix(x, dtype=np.float32)
    x.data = np.log1p(x.data)
    return x


def encode(
    module: Any, x: Any, *, batch_size: int = 1000, device: str = "cpu", precision: str = "fp32"
) -> np.ndarray:
    """Embed the rows of ``x`` (CSR, aligned and log-normalized) in batches."""
    import torch

    module = module.to(device).eval()
    parts = []
    with inference_context(device, precision):
        for start in range(0, x.shape[0], batch_size):
            block = torch.from_numpy(x[start : start + batch_size].toarray()).to(device)
            parts.append(module(block).float().cpu().numpy())
    if not parts:
        return np.zeros((0, 0), dtype=np.float32)
    return np.concatenate(parts).astype(np.float32)


# ----------------------------------------------------------------------------- registry


class _ScimilarityBase(FoundationModel):
    """SCimilarity zero-shot cell embedding.

    Parameters (keyword arguments)
    ----------
    checkpoint
        Registered name (default ``scimilarity.v1.1``) or a folder holding the encoder
        files, an unpacked ``model_v1.1/`` folder, or the release archive.
    batch_size
        Cells per forward pass (default 1,000).
    min_overlap
        Minimum number of the data's genes found in ``gene_order.tsv`` (default: the
        official 5,000, capped at half the model's genes for small test models).
    precision, random_init
        See :class:`FoundationModel`.
    """

    default_checkpoint = "scimilarity.v1.1"
    random_weights = False

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._loaded: tuple[Any, ...] | None = None

    def _load(self, ctx: EmbedContext) -> tuple[Any, ScimilarityCheckpoint]:
        folder = self.checkpoint_dir()
        random = self.random_weights or bool(self.params.get("random_init", False))
        key = (str(folder), random, int(ctx.seed) if random else None)
        if self._loaded is not None and self._loaded[0] == key:
            return self._loaded[1], self._loaded[2]
        try:
            ck = load_checkpoint(folder)
        except FileNotFoundError as err:
            raise ModelSkippedError(str(err)) from err
        module = build_encoder(len(ck.gene_order), ck.hidden, ck.latent)
        load_weights(module, ck.state, repr(str(ck.folder)))
        if random:
            reset_parameters(module, ctx.seed)
        self._loaded = (key, module, ck)
        return module, ck

    def embed_cells(self, adata: Any, ctx: EmbedContext) -> np.ndarray:
        """Unit-norm embeddings ``(n_cells, latent)`` float32."""
        from sceval.data.contract import get_counts
        from sceval.models.foundation import gene_symbols

        module, ck = self._load(ctx)
        symbols = gene_symbols(adata, ctx.report)
        counts = get_counts(adata, ctx.report)
        aligned, matched = align_counts(symbols, counts, ck.gene_order)
        cov = gene_coverage(matched, counts, self.info.key)
        default_min = min(OFFICIAL_MIN_OVERLAP, math.ceil(0.5 * len(ck.gene_order)))
        min_overlap = int(self.params.get("min_overlap", default_min))
        if cov.n_matched < min_overlap:
            msg = (
                f"model {self.info.key!r}: only {cov.n_matched} of the data's genes are in "
                f"its gene_order.tsv ({len(ck.gene_order)} genes); SCimilarity needs at least "
                f"{min_overlap} (the official align_dataset threshold is "
                f"{OFFICIAL_MIN_OVERLAP}). Use human gene symbols in var_names or "
                "var['gene_symbol'] (sceval.harmonize_genes), or lower min_overlap."
            )
            raise DataContractError(msg)
        self.coverage = cov
        precision = check_precision(str(self.params.get("precision", "auto")), self.info.key)
        return encode(
            module,
            lognorm(aligned),
            batch_size=int(self.params.get("batch_size", 1000)),
            device=self._device(ctx),
            precision=precision,
        )


_INFO: dict[str, Any] = {
    "input": "counts",
    "requires": ("torch",),
    "install": "pip install torch",
    "citation": _CITATION,
    "license": _LICENSE,
}


@register_model
class ScimilarityModel(_ScimilarityBase):
    """``scimilarity``: the released SCimilarity encoder, zero-shot."""

    info = ModelInfo(
        key="scimilarity",
        kind="foundation",
        description="SCimilarity MLP encoder (28,231 genes -> 128-d, unit norm), zero-shot",
        **_INFO,
    )


@register_model
class ScimilarityRandom(_ScimilarityBase):
    """``scimilarity.random``: the same encoder and input with seeded random weights."""

    info = ModelInfo(
        key="scimilarity.random",
        kind="control",
        description="control: SCimilarity encoder and input, random weights (seeded)",
        **_INFO,
    )
    random_weights = True
