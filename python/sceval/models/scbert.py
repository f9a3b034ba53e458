"""scBERT (Yang et al., Nat. Mach. Intell. 2022) in plain PyTorch, loading the official
pretrained checkpoint.

The architecture is the Performer of TencentAILabHealthcare/scBERT
(``performer_pytorch/performer_pytorch.py``, ``PerformerLM``), implemented once for scBERT
and CellLM in :mod:`sceval.models._performer`: ``PerformerLM(num_tokens=7, dim=200,
depth=6, heads=10, dim_head=64, max_seq_len=16907, g2v_position_emb=True)`` as built by
the official ``finetune.py`` / ``predict.py``.

Input (official ``preprocess.py`` and ``predict.py``):

1. the data's genes are placed in the order of the Panglao reference (the ``var_names``
   of ``panglao_10000.h5ad``, 16,906 gene symbols); reference genes absent from the data
   are 0;
2. ``normalize_total(target_sum=1e4)`` over those genes, ``log1p(base=2)``;
3. values above 5 (``bin_num``) are set to 5 and truncated to integers (``.long()``):
   tokens 0-5 for every one of the 16,906 genes, zeros included;
4. one ``0`` token is appended (sequence length 16,907); the "position" of token ``i``
   is row ``i`` of the frozen gene2vec table (the appended token: its zero last row).

The official preprocessing also drops cells with fewer than 200 genes
(``filter_cells(min_genes=200)``); a benchmark embeds every cell, so that step is left
out.

Cell embedding: scBERT has no official one (its fine-tuning head convolves the per-gene
outputs). As BioLLM (``biollm/loader/scbert.py``, ``cell_emb_type = 'mean'`` in its
cell-embedding configs) the default is the mean of the final-LayerNorm outputs over the
16,906 gene positions; ``pool="cls"`` takes the appended token's output instead. 200-d,
not normalized.

Exact and fast mode: the official Performer's key stabiliser is one maximum over the whole
batch (see :mod:`sceval.models._performer`), so the official pipeline embeds one cell per
forward. ``mode="exact"`` (default) does the same; ``mode="fast"`` runs ``batch_size`` cells
per forward with each cell's own stabiliser, which computes the same numbers (up to
floating-point summation order).

Checkpoint folder (official files): ``panglao_pretrained.pth`` (a dictionary with
``model_state_dict``; ``panglao_pretrain.pth`` is accepted too), ``panglao_10000.h5ad``
(only its ``var_names`` are read; a text file ``genes.txt`` with one symbol per line is
accepted instead) and, optionally, ``scbert.json`` in the format of OpenBioMed's
``configs/ctc/scbert.json`` (``network.structure``: ``num_tokens``, ``dim``, ``depth``,
``heads``, ``gene_num``, ``max_seq_len``); without it the official dimensions above are
used.
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

if TYPE_CHECKING:  # pragma: no cover
    import scipy.sparse as sp

__all__ = [
    "OFFICIAL",
    "POOLS",
    "ScBERTModel",
    "ScBERTRandomModel",
    "load_scbert",
    "scbert_config",
    "scbert_tokens",
]

#: Official dimensions (``finetune.py`` / ``predict.py``; ``bin_num=5``, ``gene_num=16906``).
OFFICIAL = {"num_tokens": 7, "dim": 200, "depth": 6, "heads": 10, "gene_num": 16906}
#: Cell-embedding pooling: mean over gene positions, or the appended token.
POOLS = ("mean", "cls")
WEIGHT_FILES = ("panglao_pretrained.pth", "panglao_pretrain.pth")
GENE_FILES = ("panglao_10000.h5ad", "genes.txt")
CONFIG_FILE = "scbert.json"

_CITATION = (
    "Yang, F., Wang, W., Wang, F., Fang, Y., Tang, D., Huang, J., Lu, H. & Yao, J. scBERT as "
    "a large-scale pretrained deep language model for cell type annotation of single-cell "
    "RNA-seq data. Nature Machine Intelligence 4, 852-866 (2022). "
    "doi:10.1038/s42256-022-00534-z"
)
_LICENSE = "GPL-3.0 (code and weights, per the repository LICENSE)"
_FIX = (
    "use the official panglao_pretrained.pth with the panglao_10000.h5ad gene list (and no "
    "scbert.json, or one whose network.structure matches the checkpoint)."
)

register_checkpoint(
    CheckpointSpec(
        name="scbert",
        model="scbert",
        files=(
            FileSpec(
                "panglao_pretrained.pth",
                "https://drive.weixin.qq.com/s?k=AJEAIQdfAAoUxhXE7r",
                manual=True,
            ),
            FileSpec(
                "panglao_10000.h5ad",
                "https://drive.weixin.qq.com/s?k=AJEAIQdfAAozQt5B8k",
                manual=True,
            ),
        ),
        license=_LICENSE,
        citation=_CITATION,
        homepage="https://github.com/TencentAILabHealthcare/scBERT",
        description=(
            "scBERT pretrained on PanglaoDB (~1.1 million human cells); Performer, 200-d, "
            "6 layers, 10 heads, all 16,906 genes per cell"
        ),
        notes=(
            "Official downloads are WeChat Drive share links from the README of "
            "TencentAILabHealthcare/scBERT ('Checkpoint': panglao_pretrained.pth; 'Data': "
            "the data folder with panglao_10000.h5ad, whose var_names are the model's gene "
            "order; a Google Drive copy of the data is linked there too: "
            "https://drive.google.com/file/d/1fNZbKx6LPeoS0hbVYJFI8jlDlNctZxlU). Download by "
            "hand; sha256 is recorded at the first `sceval fetch scbert`. The repository's "
            "LICENSE (GPL-3.0) states that it covers the model weights too."
        ),
        approx_size_mb=None,
    )
)


def _find(folder: Path, names: tuple[str, ...], what: str) -> Path:
    for name in names:
        if (folder / name).is_file():
            return folder / name
    msg = (
        f"no {what} in {str(folder)!r}: expected one of {list(names)}. Fix: put the official "
        "files in that folder (`sceval fetch scbert` prints where to get them)."
    )
    raise FileNotFoundError(msg)


def scbert_config(folder: str | Path) -> tuple[PerformerConfig, int]:
    """The architecture of a scBERT folder and its ``gene_num``: ``scbert.json`` (OpenBioMed
    format) when present, else the official dimensions."""
    folder = Path(folder)
    fields = dict(OFFICIAL)
    path = folder / CONFIG_FILE
    if path.is_file():
        with open(path, encoding="utf-8") as fh:
            raw = json.load(fh)
        struct = raw.get("network", {}).get("structure") if isinstance(raw, dict) else None
        if not isinstance(struct, dict):
            msg = (
                f"{str(path)!r}: expected an OpenBioMed model config with a "
                "'network': {'structure': {...}} object (configs/ctc/scbert.json); found "
                f"{type(raw).__name__} without it. Fix: remove the file to use the official "
                "scBERT dimensions, or copy OpenBioMed's configs/ctc/scbert.json."
            )
            raise PerformerCheckpointError(msg)
        for key in ("num_tokens", "dim", "depth", "heads", "gene_num"):
            if key in struct:
                fields[key] = int(struct[key])
        if int(struct.get("local_attn_heads", 0)) != 0:
            msg = f"{str(path)!r}: local_attn_heads must be 0 (as every scBERT checkpoint)."
            raise PerformerCheckpointError(msg)
    gene_num = fields["gene_num"]
    config = PerformerConfig(
        num_tokens=fields["num_tokens"],
        dim=fields["dim"],
        depth=fields["depth"],
        heads=fields["heads"],
        n_positions=gene_num + 1,
        max_seq_len=gene_num + 1,
    )
    return config, gene_num


def load_scbert(folder: str | Path) -> tuple[Any, list[str]]:
    """Load a scBERT checkpoint folder: ``(PerformerLM, gene order)``.

    Raises
    ------
    FileNotFoundError
        A file of the official layout is missing.
    PerformerCheckpointError
        The gene list does not have ``gene_num`` genes, or the state dict does not match
        the architecture (listed by key).
    """
    from sceval.models._safe_load import safe_torch_load

    folder = Path(folder)
    config, gene_num = scbert_config(folder)
    weights = _find(folder, WEIGHT_FILES, "scBERT weights file")
    gene_path = _find(folder, GENE_FILES, "gene list")
    genes = read_gene_list(gene_path)
    obj = safe_torch_load(weights)
    state = obj.get("model_state_dict", obj)
    if not isinstance(state, dict):
        msg = f"{str(weights)!r}: 'model_state_dict' holds a {type(state).__name__}, not a dict."
        raise PerformerCheckpointError(msg)
    if len(genes) != gene_num:
        pos = state.get("pos_emb.emb.weight")
        rows = f"{int(pos.shape[0])} rows" if hasattr(pos, "shape") else "no table"
        msg = (
            f"{str(gene_path)!r} lists {len(genes)} genes, but scBERT expects exactly "
            f"{gene_num} genes in the official order (gene_num; the checkpoint's gene2vec "
            f"table pos_emb.emb.weight has {rows}: one per gene plus the appended token). "
            "Fix: use the gene list that came with the checkpoint (the var_names of "
            "panglao_10000.h5ad), unchanged and complete."
        )
        raise PerformerCheckpointError(msg)
    model = load_performer(state, config, weights, fix=_FIX)
    return model, genes


def scbert_tokens(values: sp.csr_matrix, num_tokens: int) -> np.ndarray:
    """Token matrix ``(n_cells, n_genes + 1)``: binned values and the appended ``0``.

    ``values`` holds the log2-normalized expression in the model's gene order
    (:func:`sceval.models._performer.log2_normalized`); ``bin_num = num_tokens - 2``.
    """
    dense = np.asarray(values.toarray(), dtype=np.float32)
    tokens = bin_tokens(dense, num_tokens - 2)
    return np.concatenate([tokens, np.zeros((tokens.shape[0], 1), dtype=np.int64)], axis=1)


class _ScBERTBase(PerformerFoundation):
    """Shared implementation of ``scbert`` and ``scbert.random``."""

    default_checkpoint = "scbert"
    default_batch_size = 4

    def _pool(self) -> str:
        pool = str(self.params.get("pool", "mean"))
        if pool not in POOLS:
            msg = (
                f"model {self.info.key!r}: pool={pool!r} is not supported; expected {list(POOLS)}."
            )
            raise ValueError(msg)
        return pool

    def _read_folder(self, folder: Path) -> tuple[Any, list[str], dict[str, Any]]:
        model, genes = load_scbert(folder)
        return model, genes, {}

    def _embed(
        self, values: sp.csr_matrix, loaded: _Loaded, *, device: str, mode: str
    ) -> np.ndarray:
        import torch

        pool = self._pool()
        model = loaded.model
        cfg = model.config
        n = values.shape[0]
        size = 1 if mode == "exact" else self._batch_size()
        out = np.zeros((n, cfg.dim), dtype=np.float32)
        positions = torch.arange(cfg.max_seq_len, device=device)
        for start in range(0, n, size):
            idx = np.arange(start, min(start + size, n))
            tok = torch.from_numpy(scbert_tokens(values[idx], cfg.num_tokens)).to(device)
            pos = positions[: tok.shape[1]].expand(tok.shape[0], -1)
            h = model.encode(tok, pos, key_max="cell")
            emb = h[:, -1] if pool == "cls" else h[:, :-1].mean(dim=1)
            out[idx] = emb.float().cpu().numpy()
        return out


_PARAMS_DOC = """
    Parameters (keyword arguments)
    ----------
    checkpoint
        Registered checkpoint name or a local folder in the official layout
        (``panglao_pretrained.pth``, ``panglao_10000.h5ad``). Default ``"scbert"``.
    mode
        ``"exact"`` (default): one cell per forward, as the official ``predict.py``.
        ``"fast"``: ``batch_size`` cells per forward, each with its own kernel stabiliser
        (the same numbers up to rounding).
    batch_size
        Cells per forward in fast mode (default 4).
    pool
        ``"mean"`` (default): mean output over the 16,906 gene positions; ``"cls"``: the
        output at the appended token.
    precision
        ``"auto"`` (bf16 on CUDA when supported, fp32 on CPU), ``"fp32"``, ``"bf16"``,
        ``"fp16"``; the FAVOR+ kernel always runs in float32.
"""


@register_model
class ScBERTModel(_ScBERTBase):
    __doc__ = "``scbert``: zero-shot scBERT cell embeddings (mean Performer output).\n" + (
        _PARAMS_DOC
    )

    info = ModelInfo(
        key="scbert",
        kind="foundation",
        input="counts",
        requires=("torch", "h5py"),
        install="pip install torch h5py",
        description="scBERT zero-shot cell embedding (official checkpoint, Performer in PyTorch)",
        citation="Yang et al., Nat. Mach. Intell. 2022 (scBERT)",
        license=_LICENSE,
    )


@register_model
class ScBERTRandomModel(_ScBERTBase):
    __doc__ = (
        "``scbert.random``: the scBERT architecture, gene order, gene2vec table and "
        "tokenization of the checkpoint with all trained weights re-initialized (seeded by "
        "``ctx.seed``).\n" + _PARAMS_DOC
    )

    random_weights = True
    info = ModelInfo(
        key="scbert.random",
        kind="control",
        input="counts",
        requires=("torch", "h5py"),
        install="pip install torch h5py",
        description="control: scBERT architecture with seeded random weights (gene2vec kept)",
        citation="Yang et al., Nat. Mach. Intell. 2022 (scBERT); randomly initialized",
        license=_LICENSE,
    )
