"""Shared machinery of foundation models: checkpoint resolution, gene coverage,
length-aware batching and the inference context (inference mode, autocast on CUDA).

A foundation model is an architecture (a torch module in this repo) plus a checkpoint
(a folder in the official on-disk layout, see :mod:`sceval.models.checkpoints`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import warnings
from abc import abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sceval._errors import DataContractError, ModelSkippedError
from sceval.models.base import EmbedContext, Model

__all__ = [
    "PRECISIONS",
    "FoundationModel",
    "GeneCoverage",
    "RaggedCells",
    "autocast_dtype",
    "batches_by_length",
    "check_precision",
    "gene_coverage",
    "gene_symbols",
    "inference_context",
    "torch_device",
]

#: Below this share of matched genes a warning is issued (and put in the message).
LOW_COVERAGE = 0.5


@dataclass(frozen=True)
class GeneCoverage:
    """How well the data's genes match a model's vocabulary.

    Attributes
    ----------
    n_genes
        Genes in the data.
    n_matched
        Genes found in the vocabulary.
    fraction_genes
        ``n_matched / n_genes``.
    fraction_counts
        Share of all counts that fall on matched genes (what the model actually sees).
    """

    n_genes: int
    n_matched: int
    fraction_genes: float
    fraction_counts: float

    @property
    def message(self) -> str:
        """One line for the results ``message`` column."""
        return (
            f"gene coverage: {self.n_matched}/{self.n_genes} genes "
            f"({100 * self.fraction_genes:.1f}%), {100 * self.fraction_counts:.1f}% of counts"
        )


def gene_coverage(matched: np.ndarray, counts: Any, model_key: str) -> GeneCoverage:
    """Coverage report for a boolean ``matched`` mask over genes.

    Raises
    ------
    DataContractError
        When no gene matches (the message names the ID type to use).
    """
    matched = np.asarray(matched, dtype=bool)
    total = float(counts.sum())
    covered = float(counts[:, matched].sum()) if matched.any() else 0.0
    cov = GeneCoverage(
        n_genes=int(matched.size),
        n_matched=int(matched.sum()),
        fraction_genes=float(matched.mean()) if matched.size else 0.0,
        fraction_counts=covered / total if total > 0 else 0.0,
    )
    if cov.n_matched == 0:
        msg = (
            f"model {model_key!r}: none of the {cov.n_genes} genes match its vocabulary. "
            "Expected gene symbols or Ensembl IDs of the model's species. Fix: run "
            "sceval.harmonize_genes(adata) (adds var['gene_symbol'] and var['ensembl_id']) "
            "and check the species."
        )
        raise DataContractError(msg)
    if cov.fraction_genes < LOW_COVERAGE:
        warnings.warn(f"model {model_key!r}: low {cov.message}", UserWarning, stacklevel=3)
    return cov


def gene_symbols(adata: Any, report: Any) -> np.ndarray:
    """Gene symbols of ``adata``'s genes (``""`` when unknown).

    Symbols are taken as they are; Ensembl IDs are translated through
    ``var["gene_symbol"]`` (written by :func:`sceval.data.harmonize_genes`) or, when that
    column is absent, the bundled gene tables (:func:`sceval.data.genes.map_genes`).
    """
    col = getattr(report, "gene_id_column", None)
    ids = adata.var[col] if col else adata.var_names
    ids = np.asarray([str(x) for x in ids], dtype=object)
    if not str(getattr(report, "gene_id_type", "symbol")).startswith("ensembl"):
        return ids
    if "gene_symbol" in adata.var.columns:
        sym = adata.var["gene_symbol"]
        return np.asarray(["" if v is None or v != v else str(v) for v in sym], dtype=object)
    from sceval.data.genes import map_genes

    table, _ = map_genes(list(ids))
    return np.asarray(
        ["" if v is None or v != v else str(v) for v in table["gene_symbol"]], dtype=object
    )


class RaggedCells:
    """Mixin for tokenized cells stored flat: cell ``i`` is ``[offsets[i]:offsets[i + 1]]``
    of each flat per-token array (ids, values, positions, ...)."""

    offsets: np.ndarray

    def __len__(self) -> int:
        return int(self.offsets.size - 1)

    @property
    def lengths(self) -> np.ndarray:
        """Tokens per cell, shape ``(n_cells,)``."""
        return np.diff(self.offsets)

    def pad(
        self,
        idx: Any,
        flats: list[tuple[np.ndarray, Any]],
        pad_to: int | None = None,
    ) -> tuple[list[np.ndarray], np.ndarray]:
        """Cells ``idx`` of each flat array in ``flats`` (``(array, fill value)`` pairs),
        right-padded to the longest cell (or ``pad_to``); returns the padded arrays (dtype
        of each flat array) and the int64 ``(len(idx), width)`` mask of real tokens."""
        idx = np.asarray(idx, dtype=np.int64)
        lens = self.lengths[idx]
        width = int(pad_to if pad_to is not None else max(int(lens.max(initial=0)), 1))
        outs = [np.full((idx.size, width), fill, dtype=flat.dtype) for flat, fill in flats]
        mask = np.zeros((idx.size, width), dtype=np.int64)
        for r, i in enumerate(idx):
            a, n = int(self.offsets[i]), int(lens[r])
            for out, (flat, _) in zip(outs, flats, strict=True):
                out[r, :n] = flat[a : a + n]
            mask[r, :n] = 1
        return outs, mask


def batches_by_length(
    lengths: np.ndarray, batch_size: int, max_tokens: int | None = None
) -> Iterator[np.ndarray]:
    """Yield index batches of cells sorted by token count (descending).

    Sorting before batching means each batch is padded only to its own longest cell,
    not to the model's maximum length, which is what makes inference fast; the caller
    scatters results back with the indices.

    Parameters
    ----------
    lengths
        Tokens per cell, shape ``(n_cells,)``.
    batch_size
        Maximum cells per batch.
    max_tokens
        Optional cap on ``batch_len * longest`` (padded tokens per batch).
    """
    if batch_size < 1:
        msg = f"batch_size must be >= 1, got {batch_size}"
        raise ValueError(msg)
    order = np.argsort(-np.asarray(lengths), kind="stable")
    i = 0
    n = order.size
    while i < n:
        longest = max(int(lengths[order[i]]), 1)
        size = batch_size
        if max_tokens is not None:
            size = max(1, min(batch_size, max_tokens // longest))
        yield order[i : i + size]
        i += size


#: Accepted values of a foundation model's ``precision`` parameter.
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def check_precision(precision: str, model_key: str) -> str:
    """Return ``precision`` if it is one of :data:`PRECISIONS`, else raise ValueError."""
    if precision not in PRECISIONS:
        msg = (
            f"model {model_key!r}: precision={precision!r} is not supported; expected one of "
            f"{list(PRECISIONS)}."
        )
        raise ValueError(msg)
    return precision


def torch_device(device: str, model_key: str) -> str:
    """``device``, or :class:`ModelSkippedError` when CUDA is asked for but absent."""
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            msg = (
                f"model {model_key!r} was asked to run on {device!r}, but torch sees no CUDA "
                "device. Fix: pass device='cpu' or install a CUDA build of torch."
            )
            raise ModelSkippedError(msg)
    return device


def autocast_dtype(device: str, precision: str) -> Any:
    """The CUDA autocast dtype for ``precision`` (``None``: run in float32).

    ``"auto"`` is bf16 where the GPU supports it, else fp16; CPU always runs float32.
    """
    if not device.startswith("cuda") or precision == "fp32":
        return None
    import torch

    if precision == "fp16" or not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16


@contextlib.contextmanager
def inference_context(device: str, precision: str = "auto") -> Iterator[None]:
    """``torch.inference_mode`` plus autocast on CUDA.

    Parameters
    ----------
    device
        ``"cpu"`` or ``"cuda[:i]"``.
    precision
        ``"auto"`` (bf16 on CUDA when supported, else fp16; fp32 on CPU), ``"fp32"``,
        ``"bf16"`` or ``"fp16"``.
    """
    import torch

    dtype = autocast_dtype(device, precision)
    with torch.inference_mode():
        if dtype is not None:
            with torch.autocast("cuda", dtype=dtype):
                yield
        else:
            yield


class FoundationModel(Model):
    """Base of foundation models: a checkpoint folder + an architecture.

    Parameters (all optional keyword arguments)
    ----------
    checkpoint
        A registered checkpoint name (e.g. ``"scgpt.human"``) or a local folder in the
        official layout. Default: the model's ``default_checkpoint``.
    batch_size
        Cells per inference batch.
    precision
        ``"auto"``, ``"fp32"``, ``"bf16"`` or ``"fp16"`` (see :func:`inference_context`).
    random_init
        Build the architecture from the checkpoint's config but with seeded random
        weights (the ``.random`` controls).
    """

    default_checkpoint: str = ""
    #: Gene coverage of the last embedded data (set by subclasses; its message goes into
    #: the results table).
    coverage: GeneCoverage | None = None
    #: Cells per chunk when embedding backed or large data (see :meth:`embed_streaming`).
    chunk_size: int = 20_000

    #: What a checkpoint folder holds (for the "how to get it" message), e.g.
    #: ``"config.json, pytorch_model.bin and tokenizer.json"``.
    checkpoint_hint: str = ""
    #: ``True`` for the ``.random`` controls: weights re-initialized from ``ctx.seed``.
    random_weights: bool = False

    def checkpoint_dir(self) -> Path:
        """The checkpoint folder, or :class:`ModelSkippedError` saying how to get it."""
        from sceval.models.checkpoints import resolve_checkpoint

        ref = self.params.get("checkpoint") or self.default_checkpoint
        try:
            return resolve_checkpoint(ref)
        except FileNotFoundError as err:
            text = str(err)
            if "sceval fetch" not in text and self.checkpoint_hint:
                text = (
                    f"{text}. Get it with: sceval fetch {ref} (or pass checkpoint=<folder "
                    f"with {self.checkpoint_hint}>)"
                )
            raise ModelSkippedError(text) from err

    def check(self, adata: Any, ctx: EmbedContext) -> None:
        """Base checks plus: the checkpoint exists (else :class:`ModelSkippedError`)."""
        super().check(adata, ctx)
        self.checkpoint_dir()

    def _device(self, ctx: EmbedContext) -> str:
        """The torch device: the ``device`` param, else the benchmark's, else CPU."""
        return torch_device(str(self.params.get("device") or ctx.device or "cpu"), self.info.key)

    def _precision(self) -> str:
        """The validated ``precision`` param (default ``"auto"``)."""
        return check_precision(str(self.params.get("precision", "auto")), self.info.key)

    @abstractmethod
    def embed_cells(self, adata: Any, ctx: EmbedContext) -> np.ndarray:
        """Cell embeddings, shape ``(n_cells, d)``."""

    def embed_streaming(self, adata: Any, ctx: EmbedContext) -> np.ndarray:
        """Embed ``adata`` in chunks of ``chunk_size`` cells (param ``chunk_size``).

        For a backed AnnData (``anndata.read_h5ad(path, backed="r")``) each chunk is read
        from disk, tokenized, embedded and dropped, so memory stays flat with the number
        of cells (only the ``n_cells x d`` output grows). Per-cell random draws are keyed
        by the cell's global index (``ctx.cell_offset``), so results do not depend on the
        chunking. In-memory data no larger than one chunk is embedded in one go.
        """
        size = int(self.params.get("chunk_size", self.chunk_size))
        if size < 1:
            msg = f"chunk_size must be >= 1, got {size}"
            raise ValueError(msg)
        backed = bool(getattr(adata, "isbacked", False))
        n = adata.n_obs
        if not backed and n <= size:
            return self.embed_cells(adata, ctx)
        parts: list[np.ndarray] = []
        covs: list[Any] = []
        for start in range(0, n, size):
            stop = min(start + size, n)
            chunk = adata[start:stop]
            chunk = chunk.to_memory() if backed else chunk
            sub_ctx = dataclasses.replace(ctx, cell_offset=ctx.cell_offset + start, cache={})
            parts.append(np.asarray(self.embed_cells(chunk, sub_ctx), dtype=np.float32))
            if self.coverage is not None:
                covs.append(self.coverage)
            del chunk
        if covs:
            self.coverage = self.merge_coverage(covs)
        return np.concatenate(parts, axis=0)

    def merge_coverage(self, covs: list[Any]) -> Any:
        """One coverage report from the chunks of :meth:`embed_streaming`: the genes are
        the same in every chunk, the share of counts is the chunk mean. Subclasses whose
        coverage also counts cells extend this."""
        return dataclasses.replace(
            covs[-1], fraction_counts=float(np.mean([c.fraction_counts for c in covs]))
        )

    def embed_genes(self, genes: list[str], ctx: EmbedContext) -> tuple[np.ndarray, np.ndarray]:
        """Gene embeddings for ``genes``: ``(matrix (n_found, d), found mask (len(genes),))``.

        Subclasses that expose gene embeddings override this.
        """
        msg = f"model {self.info.key!r} does not expose gene embeddings"
        raise NotImplementedError(msg)
