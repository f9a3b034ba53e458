"""CellLM (Zhao, Zhang & Nie 2023) in plain PyTorch, loading the official checkpoint.

CellLM is a scBERT-derived Performer from PharMolix/OpenBioMed
(``open_biomed/models/cell/performer_celllm.py``, ``PerformerLM_CellLM``), implemented once
for scBERT and CellLM in :mod:`sceval.models._performer`. The released configuration
(``configs/ctc/cellLM.json``, ``network.structure``): ``num_tokens=8`` (expression bins
0-5, ``<cls>`` = 6, ``<pad>`` = 7), ``dim=512``, ``depth=10``, ``heads=16`` (``dim_head``
64), ``max_seq_len=6000``, ``gene_num=19379``; the frozen gene2vec table has
``gene_num + 2`` rows (row ``gene_num`` = ``<cls>``, all ones; the last = ``<pad>``, zeros).

Input (``PerformerLM_CellLM.forward``):

1. expression in the model's gene order (the 19,379 columns of the official data
   ``zheng68k_hgnc.h5ad``, which the CTC task feeds to the encoder row by row); the
   values are those of scBERT, ``normalize_total(1e4)`` then ``log1p(base=2)``
   (the official data are preprocessed outside the code; scBERT's ``preprocess.py``
   recipe is assumed);
2. the genes with a value > 0, in gene order, values above 5 set to 5 and truncated to
   integers (tokens 0-5);
3. sequence ``[<cls>] + genes``, truncated to 6,000 (the first 5,999 expressed genes),
   padded to exactly 6,000 with ``<pad>`` tokens at the ``<pad>`` gene row; the attention
   mask zeroes the padded positions' values (their keys still enter the normaliser).

Cell embedding: the final-LayerNorm output at ``<cls>`` (position 0), 512-d, not
normalized (the official task heads conv-pool the per-gene outputs instead).

Exact and fast mode: the official Performer's key stabiliser is one maximum over the whole
batch (see :mod:`sceval.models._performer`). ``mode="exact"`` (default) runs one cell per
forward with the full 6,000-token padding, as the official code computes a batch of one.
``mode="fast"`` batches cells of similar length, gives each its own stabiliser and replaces
the identical padding positions by one position counted ``6000 - length`` times: the same
numbers up to floating-point summation order, for a fraction of the work.

Checkpoint folder (official files): ``cellLM.json`` (OpenBioMed ``configs/ctc/cellLM.json``;
without it the released dimensions above are used), the weights named by its ``ckpt_path``
(``checkpoint4_fixed.pth``; ``nocls_fixed.pth`` of ``configs/drp/CellLM.json`` is accepted
too), a dictionary whose ``param_key`` entry (``model_state_dict``) is the state dict, and
the gene order: ``zheng68k_hgnc.h5ad`` (only its ``var_names`` are read) or ``genes.txt``
with one symbol per line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sceval.models._performer import (
    PerformerCheckpointError,
    PerformerConfig,
    PerformerFoundation,
    _Loaded,
    bin_tokens,
    load_performer,
    read_gene_list,
)
from sceval.models.base import ModelInfo, register_model
from sceval.models.checkpoints import CheckpointSpec, FileSpec, register_checkpoint
from sceval.models.foundation import batches_by_length

if TYPE_CHECKING:  # pragma: no cover
    import scipy.sparse as sp

__all__ = [
    "OFFICIAL",
    "CellLMModel",
    "CellLMRandomModel",
    "CellLMTokens",
    "celllm_config",
    "celllm_tokens",
    "load_celllm",
]

#: Released configuration (``configs/ctc/cellLM.json``).
OFFICIAL = {
    "num_tokens": 8,
    "dim": 512,
    "depth": 10,
    "heads": 16,
    "max_seq_len": 6000,
    "gene_num": 19379,
    "param_key": "model_state_dict",
}
CONFIG_FILE = "cellLM.json"
WEIGHT_FILES = ("checkpoint4_fixed.pth", "nocls_fixed.pth")
GENE_FILES = ("zheng68k_hgnc.h5ad", "genes.txt")
#: Padded tokens per forward in fast mode (cells x sequence width).
FAST_MAX_TOKENS = 32_768

_BAIDU = "https://pan.baidu.com/s/1iAMBkuoZnNAylhopP5OgEg?pwd=7a6b"
_CITATION = (
    "Zhao, S., Zhang, J. & Nie, Z. Large-Scale Cell Representation Learning via "
    "Divide-and-Conquer Contrastive Learning. arXiv:2306.04371 (2023)"
)
_LICENSE = "MIT (OpenBioMed repository; no separate license is stated for the weights)"
_FIX = (
    "use the cellLM.json that matches the weights (OpenBioMed configs/ctc/cellLM.json for "
    "checkpoint4_fixed.pth), or remove it to use the released dimensions."
)

register_checkpoint(
    CheckpointSpec(
        name="celllm",
        model="celllm",
        files=(
            FileSpec(
                "cellLM.json",
                "https://raw.githubusercontent.com/PharMolix/OpenBioMed/main/configs/ctc/cellLM.json",
            ),
            FileSpec("checkpoint4_fixed.pth", _BAIDU, manual=True),
            FileSpec("zheng68k_hgnc.h5ad", _BAIDU, manual=True),
        ),
        license=_LICENSE,
        citation=_CITATION,
        homepage="https://github.com/PharMolix/OpenBioMed",
        description=(
            "CellLM pretrained on normal and cancer cells with divide-and-conquer "
            "contrastive learning; Performer, 512-d, 10 layers, 16 heads, <cls> + up to "
            "5,999 expressed genes of 19,379"
        ),
        notes=(
            "From the OpenBioMed README (Baidu Pan, password 7a6b): "
            "ckpts/cell_ckpts/celllm/checkpoint4_fixed.pth (the weights that "
            "configs/ctc/cellLM.json names) and BioMedGPT/data/zheng68k_hgnc.h5ad (docs/ctc.md; "
            "its var_names are the model's 19,379-gene order, which the repository does not "
            "list otherwise). cellLM.json comes from the repository itself. Download the "
            "Baidu files by hand; sha256 is recorded at the first `sceval fetch celllm`. "
            "License: the MIT license of the repository."
        ),
        approx_size_mb=None,
    )
)


def _find(folder: Path, names: tuple[str, ...], what: str) -> Path:
    for name in names:
        if name and (folder / name).is_file():
            return folder / name
    msg = (
        f"no {what} in {str(folder)!r}: expected one of {[n for n in names if n]}. Fix: put "
        "the official files in that folder (`sceval fetch celllm` prints where to get them)."
    )
    raise FileNotFoundError(msg)


def celllm_config(folder: str | Path) -> tuple[PerformerConfig, dict[str, Any]]:
    """The architecture of a CellLM folder (``cellLM.json`` when present, else the
    released configuration) and the raw ``network.structure`` fields."""
    folder = Path(folder)
    fields: dict[str, Any] = dict(OFFICIAL)
    path = folder / CONFIG_FILE
    if path.is_file():
        with open(path, encoding="utf-8") as fh:
            raw = json.load(fh)
        struct = raw.get("network", {}).get("structure") if isinstance(raw, dict) else None
        if not isinstance(struct, dict):
            msg = (
                f"{str(path)!r}: expected an OpenBioMed model config with a "
                "'network': {'structure': {...}} object (configs/ctc/cellLM.json); found "
                f"{type(raw).__name__} without it. Fix: use the file from the OpenBioMed "
                "repository, or remove it to use the released dimensions."
            )
            raise PerformerCheckpointError(msg)
        fields.update(struct)
        if int(struct.get("local_attn_heads", 0)) != 0:
            msg = f"{str(path)!r}: local_attn_heads must be 0 (as the released CellLM)."
            raise PerformerCheckpointError(msg)
    gene_num = int(fields["gene_num"])
    config = PerformerConfig(
        num_tokens=int(fields["num_tokens"]),
        dim=int(fields["dim"]),
        depth=int(fields["depth"]),
        heads=int(fields["heads"]),
        dim_head=int(fields.get("dim_head", 64)),
        n_positions=gene_num + 2,
        max_seq_len=int(fields["max_seq_len"]),
    )
    return config, fields


def load_celllm(folder: str | Path) -> tuple[Any, list[str], dict[str, Any]]:
    """Load a CellLM checkpoint folder: ``(PerformerLM, gene order, config fields)``.

    Raises
    ------
    FileNotFoundError
        A file of the official layout is missing.
    PerformerCheckpointError
        The gene list does not have ``gene_num`` genes, or the state dict does not match
        the configuration (listed by key).
    """
    from sceval.models._safe_load import safe_torch_load

    folder = Path(folder)
    config, fields = celllm_config(folder)
    named = Path(str(fields.get("ckpt_path", ""))).name
    weights = _find(folder, (named, *WEIGHT_FILES), "CellLM weights file")
    gene_path = _find(folder, GENE_FILES, "gene list")
    genes = read_gene_list(gene_path)
    gene_num = int(fields["gene_num"])
    if len(genes) != gene_num:
        msg = (
            f"{str(gene_path)!r} lists {len(genes)} genes, but CellLM expects exactly "
            f"{gene_num} genes in the model's order (gene_num of {CONFIG_FILE} or the "
            f"released 19,379; the gene2vec table has gene_num + 2 rows). Fix: use the gene "
            "order that came with the checkpoint (the var_names of zheng68k_hgnc.h5ad), "
            "unchanged and complete."
        )
        raise PerformerCheckpointError(msg)
    obj = safe_torch_load(weights)
    key = str(fields.get("param_key", "model_state_dict"))
    state = obj.get(key, obj) if key else obj
    if not isinstance(state, dict):
        msg = f"{str(weights)!r}: {key!r} holds a {type(state).__name__}, not a state dict."
        raise PerformerCheckpointError(msg)
    model = load_performer(state, config, weights, fix=_FIX)
    return model, genes, fields


class CellLMTokens:
    """Per-cell CellLM tokens from log2-normalized values in the model's gene order.

    Parameters
    ----------
    values
        ``cells x gene_num`` CSR matrix (:func:`sceval.models._performer.log2_normalized`).
    config
        The model's :class:`~sceval.models._performer.PerformerConfig`.
    """

    def __init__(self, values: sp.csr_matrix, config: PerformerConfig) -> None:
        self.values = values
        self.config = config
        gene_num = config.n_positions - 2
        self.cls_token = config.num_tokens - 2
        self.pad_token = config.num_tokens - 1
        self.cls_gene = gene_num
        self.pad_gene = gene_num + 1
        self.max_len = config.max_seq_len
        nnz = np.array(
            [
                int((values.data[values.indptr[i] : values.indptr[i + 1]] > 0).sum())
                for i in range(values.shape[0])
            ],
            dtype=np.int64,
        )
        #: Real tokens per cell (``<cls>`` plus expressed genes, capped at ``max_seq_len``).
        self.lengths = np.minimum(nnz + 1, self.max_len)

    @property
    def n_cells(self) -> int:
        """Number of cells."""
        return int(self.values.shape[0])

    def cell(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Tokens and gene2vec rows of cell ``i``: ``<cls>`` then its expressed genes in
        gene order, at most ``max_seq_len`` in all (no padding)."""
        lo, hi = self.values.indptr[i], self.values.indptr[i + 1]
        cols, vals = self.values.indices[lo:hi], self.values.data[lo:hi]
        keep = vals > 0
        cols, vals = cols[keep], vals[keep]
        order = np.argsort(cols, kind="stable")
        cols, vals = cols[order], vals[order]
        room = self.max_len - 1
        tok = np.concatenate([[self.cls_token], bin_tokens(vals[:room], self.cls_token - 1)])
        pos = np.concatenate([[self.cls_gene], cols[:room].astype(np.int64)])
        return tok.astype(np.int64), pos

    def padded(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Official layout of cell ``i``: ``max_seq_len`` tokens, gene rows and the mask."""
        tok, pos = self.cell(i)
        n = tok.size
        t = np.full(self.max_len, self.pad_token, dtype=np.int64)
        p = np.full(self.max_len, self.pad_gene, dtype=np.int64)
        t[:n], p[:n] = tok, pos
        mask = np.zeros(self.max_len, dtype=bool)
        mask[:n] = True
        return t, p, mask

    def compact_batch(self, idx: np.ndarray) -> tuple[np.ndarray, ...]:
        """Fast layout of cells ``idx``: real tokens, one ``<pad>`` position with weight
        ``max_seq_len - length`` (when the cell is shorter), and weight-0 batch padding.

        Returns ``(tokens, positions, weights, value_mask)``, each ``(len(idx), width)``.
        """
        cells = [self.cell(int(i)) for i in idx]
        width = max(t.size + (1 if t.size < self.max_len else 0) for t, _ in cells)
        b = len(cells)
        tok = np.full((b, width), self.pad_token, dtype=np.int64)
        pos = np.full((b, width), self.pad_gene, dtype=np.int64)
        w = np.zeros((b, width), dtype=np.float32)
        keep = np.zeros((b, width), dtype=bool)
        for r, (t, p) in enumerate(cells):
            n = t.size
            tok[r, :n], pos[r, :n] = t, p
            w[r, :n] = 1.0
            keep[r, :n] = True
            if n < self.max_len:
                w[r, n] = float(self.max_len - n)
        return tok, pos, w, keep


def celllm_tokens(values: sp.csr_matrix, config: PerformerConfig) -> CellLMTokens:
    """:class:`CellLMTokens` of ``values``."""
    return CellLMTokens(values, config)


class _CellLMBase(PerformerFoundation):
    """Shared implementation of ``celllm`` and ``celllm.random``."""

    default_checkpoint = "celllm"
    default_batch_size = 16

    def _read_folder(self, folder: Path) -> tuple[Any, list[str], dict[str, Any]]:
        return load_celllm(folder)

    def _embed(
        self, values: sp.csr_matrix, loaded: _Loaded, *, device: str, mode: str
    ) -> np.ndarray:
        import torch

        model = loaded.model
        tokens = CellLMTokens(values, model.config)
        n = tokens.n_cells
        out = np.zeros((n, model.config.dim), dtype=np.float32)

        def move(a: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(a).to(device)

        if mode == "exact":
            for i in range(n):
                t, p, m = tokens.padded(i)
                h = model.encode(move(t[None]), move(p[None]), v_keep=move(m[None]))
                out[i] = h[0, 0].float().cpu().numpy()
            return out
        max_tokens = int(self.params.get("max_tokens", FAST_MAX_TOKENS))
        for idx in batches_by_length(tokens.lengths + 1, self._batch_size(), max_tokens):
            t, p, w, m = tokens.compact_batch(idx)
            h = model.encode(move(t), move(p), weights=move(w), v_keep=move(m), key_max="cell")
            out[idx] = h[:, 0].float().cpu().numpy()
        return out


_PARAMS_DOC = """
    Parameters (keyword arguments)
    ----------
    checkpoint
        Registered checkpoint name or a local folder in the official layout
        (``cellLM.json``, ``checkpoint4_fixed.pth``, ``zheng68k_hgnc.h5ad``). Default
        ``"celllm"``.
    mode
        ``"exact"`` (default): one cell per forward, padded to ``max_seq_len`` as the
        official code. ``"fast"``: cells of similar length batched, each with its own
        kernel stabiliser, padding folded into one weighted position (the same numbers up
        to rounding).
    batch_size
        Cells per forward in fast mode (default 16).
    max_tokens
        Cap on cells x sequence width per forward in fast mode (default 32,768).
    precision
        ``"auto"`` (bf16 on CUDA when supported, fp32 on CPU), ``"fp32"``, ``"bf16"``,
        ``"fp16"``; the FAVOR+ kernel always runs in float32.
"""


@register_model
class CellLMModel(_CellLMBase):
    __doc__ = "``celllm``: zero-shot CellLM cell embeddings (``<cls>`` output).\n" + _PARAMS_DOC

    info = ModelInfo(
        key="celllm",
        kind="foundation",
        input="counts",
        requires=("torch", "h5py"),
        install="pip install torch h5py",
        description="CellLM zero-shot <cls> cell embedding (official checkpoint, Performer)",
        citation="Zhao, Zhang & Nie, arXiv:2306.04371 (CellLM)",
        license=_LICENSE,
    )


@register_model
class CellLMRandomModel(_CellLMBase):
    __doc__ = (
        "``celllm.random``: the CellLM architecture, gene order, gene2vec table and "
        "tokenization of the checkpoint with all trained weights re-initialized (seeded by "
        "``ctx.seed``).\n" + _PARAMS_DOC
    )

    random_weights = True
    info = ModelInfo(
        key="celllm.random",
        kind="control",
        input="counts",
        requires=("torch", "h5py"),
        install="pip install torch h5py",
        description="control: CellLM architecture with seeded random weights (gene2vec kept)",
        citation="Zhao, Zhang & Nie, arXiv:2306.04371 (CellLM); randomly initialized",
        license=_LICENSE,
    )
