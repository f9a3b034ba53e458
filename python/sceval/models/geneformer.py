"""Geneformer (Theodoris et al., Nature 2023; V2 series, Chen et al. 2024).

A BERT encoder over *rank value encodings*: each cell becomes the list of its expressed
genes, ordered by expression relative to the gene's median across the pretraining corpus.
The architecture is Hugging Face ``transformers``' ``BertForMaskedLM`` (zero-shot) or
``BertForSequenceClassification`` (fine-tuning); this module only reads the official files
and reproduces the official preprocessing and pooling.

Checkpoint layout (the Hugging Face repository ``ctheodoris/Geneformer``)
-------------------------------------------------------------------------
A model folder holds ``config.json`` and ``model.safetensors`` or ``pytorch_model.bin``:
``Geneformer-V1-10M/`` (6 layers, 256 wide, 2,048 positions, vocabulary 25,426) and
``Geneformer-V2-104M/`` (12 layers, 768 wide, 4,096 positions, vocabulary 20,275). The
pickled dictionaries live in the package folder of that repository:

* V2 (``geneformer/``): ``token_dictionary_gc104M.pkl`` (tokens),
  ``gene_median_dictionary_gc104M.pkl`` (non-zero medians), ``gene_name_id_dict_gc104M.pkl``
  (symbol -> Ensembl ID), ``ensembl_mapping_dict_gc104M.pkl`` (ID collapsing).
* V1 (``geneformer/gene_dictionaries_30m/``): the same four with ``gc30M``.

The pre-2024 V1 names (``token_dictionary.pkl``, ``gene_median_dictionary.pkl``,
``gene_name_id_dict.pkl``) are byte-identical to the gc30M files and are accepted too.
Dictionaries are searched in the checkpoint folder, its ``geneformer/`` and
``geneformer/gene_dictionaries_30m/`` subfolders and the same two subfolders of its parent
(so both a flat folder and a copy of the Hugging Face repository work); when several sets
are found, the one whose size matches the config's ``vocab_size`` is used. They are read
with :func:`sceval.models._safe_load.load_pickle_dict` (no code runs from them).

Preprocessing (official ``geneformer/tokenizer.py``, ``TranscriptomeTokenizer``)
-------------------------------------------------------------------------------
1. Genes are matched by Ensembl ID (upper case, through the ID-collapsing dictionary when
   it exists; counts of IDs that collapse to the same token are summed). Symbols are turned
   into Ensembl IDs with ``var['ensembl_id']`` (:func:`sceval.harmonize_genes`), else with
   the bundled gene tables, and last with the checkpoint's own symbol dictionary.
2. Per cell: ``x / n_counts * 10,000 / median``, where ``n_counts`` is the cell's total
   count over *all* genes of the input (the official ``obs['n_counts']``), not only the
   matched ones. Arithmetic is float64.
3. Non-zero genes are sorted by that value, descending; ties keep the genes' order in the
   data (the official ``np.argsort`` is not stable, so its tie order is unspecified).
4. V1: the first 2,048 genes (the config's ``max_position_embeddings``), no special tokens.
   V2: the first 4,094 genes between ``<cls>`` and ``<eos>``.

Embeddings (official ``geneformer/emb_extractor.py``, ``EmbExtractor``)
-----------------------------------------------------------------------
Hidden states of layer ``n_layers + emb_layer`` (``emb_layer=-1``, the default, is the
second-to-last layer's output; ``0`` is the last), with an attention mask over padding.
V2 takes the ``<cls>`` position (the official default ``emb_mode="cls"``); V1 averages the
non-padding positions (``emb_mode="cell"``; with ``pooling="mean"`` on V2, ``<cls>`` and
``<eos>`` are left out of the mean as the official code does). sceval sorts cells by length
and pads each batch to its own longest cell, as the official extractor does after its
``downsample_and_sort``; sceval embeds every cell (the official default samples 1,000).
Only the layers up to the requested one are run.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from sceval._errors import DataContractError, ModelSkippedError
from sceval.data.contract import DataReport, get_counts
from sceval.models._safe_load import describe_key_mismatch, load_pickle_dict, load_state_dict
from sceval.models.base import EmbedContext, ModelInfo, register_model
from sceval.models.foundation import (
    FoundationModel,
    GeneCoverage,
    RaggedCells,
    autocast_dtype,
    batches_by_length,
    check_precision,
    gene_coverage,
    inference_context,
    torch_device,
)

__all__ = [
    "DICTIONARY_FILES",
    "GeneformerCheckpoint",
    "GeneformerDictionaries",
    "GeneformerModel",
    "GeneformerRandom",
    "GeneformerTokens",
    "build_bert",
    "data_ensembl_ids",
    "encode_cells",
    "find_dictionaries",
    "hidden_states_at",
    "load_checkpoint",
    "load_weights",
    "tokenize_counts",
]

#: Official dictionary file names per model series (see the module docstring).
DICTIONARY_FILES: dict[str, dict[str, str]] = {
    "v2": {
        "token": "token_dictionary_gc104M.pkl",
        "median": "gene_median_dictionary_gc104M.pkl",
        "name_id": "gene_name_id_dict_gc104M.pkl",
        "mapping": "ensembl_mapping_dict_gc104M.pkl",
    },
    "v1": {
        "token": "token_dictionary_gc30M.pkl",
        "median": "gene_median_dictionary_gc30M.pkl",
        "name_id": "gene_name_id_dict_gc30M.pkl",
        "mapping": "ensembl_mapping_dict_gc30M.pkl",
    },
    "v1-legacy": {
        "token": "token_dictionary.pkl",
        "median": "gene_median_dictionary.pkl",
        "name_id": "gene_name_id_dict.pkl",
    },
}

#: Sub-folders searched for dictionaries, relative to the checkpoint folder and its parent.
_DICT_SUBDIRS = ("", "geneformer", "geneformer/gene_dictionaries_30m")

#: Weight files, in order of preference.
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")

#: Counts per cell after normalization (official ``target_sum``).
TARGET_SUM = 10_000.0

#: Input sizes of the official model series.
OFFICIAL_INPUT_SIZE = {"v1": 2048, "v2": 4096}

#: Buffers old checkpoints saved with the weights; transformers recreates them.
_HARMLESS_UNEXPECTED = ("bert.embeddings.position_ids", "bert.embeddings.token_type_ids")
#: The MLM decoder is tied to the word embeddings and the output bias.
_TIED = ("cls.predictions.decoder.weight", "cls.predictions.decoder.bias")

_REQUIRED_CONFIG = (
    "vocab_size",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "max_position_embeddings",
)
_POOLINGS = ("auto", "cls", "mean")
_VERSIONS = ("auto", "v1", "v2")
_PADDINGS = ("sorted", "unsorted", "max")

#: Cells tokenized at once (bounds the float64 copy and the sort).
_TOKENIZE_CHUNK = 8192

_ENSEMBL_RE = re.compile(r"^(ENS[A-Z]*G\d{11})(\.\d+)?$", re.IGNORECASE)


# --------------------------------------------------------------------------- dictionaries


@dataclass(frozen=True)
class GeneformerDictionaries:
    """The pickled dictionaries of one Geneformer model series.

    Attributes
    ----------
    token
        Ensembl ID -> token id; ``<pad>`` = 0, ``<mask>`` = 1, V2 adds ``<cls>`` and ``<eos>``.
    median
        Ensembl ID -> non-zero median of the gene's normalized expression in the corpus.
    name_id
        Gene symbol -> Ensembl ID (empty when the file is absent).
    mapping
        Ensembl ID -> the Ensembl ID whose token it uses (``None`` when the file is
        absent: then IDs map to themselves). Restricted to targets in ``token``.
    files
        Which file each dictionary came from.
    """

    token: dict[str, int]
    median: dict[str, float]
    name_id: dict[str, str] = field(default_factory=dict)
    mapping: dict[str, str] | None = None
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def pad_id(self) -> int:
        """Token id of ``<pad>``."""
        return int(self.token.get("<pad>", 0))

    @property
    def has_special_tokens(self) -> bool:
        """Whether ``<cls>`` and ``<eos>`` are in the vocabulary (the V2 series)."""
        return "<cls>" in self.token and "<eos>" in self.token

    @classmethod
    def load(cls, files: dict[str, Path]) -> GeneformerDictionaries:
        """Load the dictionaries named in ``files`` (keys ``token``, ``median`` and
        optionally ``name_id``, ``mapping``) with the restricted unpickler."""
        token = {str(k): int(v) for k, v in load_pickle_dict(files["token"]).items()}
        median = {str(k): float(v) for k, v in load_pickle_dict(files["median"]).items()}
        name_id: dict[str, str] = {}
        if "name_id" in files:
            name_id = {str(k): str(v) for k, v in load_pickle_dict(files["name_id"]).items()}
        mapping: dict[str, str] | None = None
        if "mapping" in files:
            mapping = {
                str(k): str(v)
                for k, v in load_pickle_dict(files["mapping"]).items()
                if isinstance(v, str) and v in token
            }
        return cls(token=token, median=median, name_id=name_id, mapping=mapping, files=files)


def _dictionary_dirs(folder: Path) -> list[Path]:
    """Where dictionaries are looked for: the folder, its ``geneformer/`` subfolders and
    those of its parent (a model folder inside a copy of the Hugging Face repository)."""
    subs = [s for s in _DICT_SUBDIRS if s]
    return [folder] + [folder / s for s in subs] + [folder.parent / s for s in subs]


def _dictionary_sets(folder: Path) -> list[dict[str, Path]]:
    """Every complete (token + median) dictionary set near ``folder``, nearest first."""
    found: list[dict[str, Path]] = []
    seen: set[Path] = set()
    for d in _dictionary_dirs(folder):
        if not d.is_dir():
            continue
        for names in DICTIONARY_FILES.values():
            tok = d / names["token"]
            med = d / names["median"]
            if not (tok.is_file() and med.is_file()) or tok.resolve() in seen:
                continue
            seen.add(tok.resolve())
            found.append({k: d / v for k, v in names.items() if (d / v).is_file()})
    return found


def find_dictionaries(folder: str | Path, vocab_size: int | None = None) -> dict[str, Path]:
    """Locate the dictionary files of the checkpoint in ``folder``.

    Parameters
    ----------
    folder
        The model folder (with ``config.json``).
    vocab_size
        The config's vocabulary size; picks among several dictionary sets (V1 and V2
        dictionaries both present, as in a copy of the Hugging Face repository).

    Returns
    -------
    dict
        ``{"token": path, "median": path[, "name_id": path][, "mapping": path]}``.

    Raises
    ------
    ModelSkippedError
        When no set is found, or none matches ``vocab_size``.
    """
    folder = Path(folder)
    sets = _dictionary_sets(folder)
    if not sets:
        names = ", ".join(f"{v['token']} + {v['median']}" for v in DICTIONARY_FILES.values())
        places = ", ".join(str(d) for d in _dictionary_dirs(folder))
        msg = (
            f"Geneformer checkpoint {str(folder)!r} has no token and gene-median "
            f"dictionaries; expected one of [{names}] in one of [{places}]. Fix: copy the "
            "dictionaries of the model's series from the geneformer/ folder of the Hugging "
            "Face repository ctheodoris/Geneformer next to config.json, or run sceval fetch."
        )
        raise ModelSkippedError(msg)
    if vocab_size is None or len(sets) == 1:
        return sets[0]
    sizes = []
    for files in sets:
        n = len(load_pickle_dict(files["token"]))
        sizes.append(n)
        if n == vocab_size:
            return files
    msg = (
        f"none of the Geneformer token dictionaries near {str(folder)!r} matches the "
        f"config's vocab_size={vocab_size}: found {[str(f['token']) for f in sets]} with "
        f"{sizes} tokens. Fix: put the dictionaries of this model's series (V1: gc30M, "
        "V2: gc104M) next to config.json."
    )
    raise ModelSkippedError(msg)


# --------------------------------------------------------------------------- checkpoint


@dataclass(frozen=True)
class GeneformerCheckpoint:
    """A Geneformer checkpoint folder, read (weights are loaded by :meth:`state_dict`).

    Attributes
    ----------
    folder
        The model folder.
    config
        ``config.json`` as a dict.
    dicts
        The dictionaries.
    version
        ``"v1"`` (no special tokens, mean pooling) or ``"v2"`` (``<cls>``/``<eos>``).
    input_size
        Maximum tokens per cell, special tokens included (``max_position_embeddings``).
    weights_file
        ``model.safetensors`` or ``pytorch_model.bin``.
    """

    folder: Path
    config: dict[str, Any]
    dicts: GeneformerDictionaries
    version: str
    input_size: int
    weights_file: Path

    @property
    def n_layers(self) -> int:
        """Number of transformer layers."""
        return int(self.config["num_hidden_layers"])

    @property
    def special_tokens(self) -> bool:
        """Whether cells are wrapped in ``<cls>`` ... ``<eos>``."""
        return self.version == "v2"

    def state_dict(self) -> dict[str, Any]:
        """The checkpoint's tensors (safetensors, or a weights-only ``torch.load``)."""
        return load_state_dict(self.folder, (self.weights_file.name,))


def load_checkpoint(folder: str | Path, version: str = "auto") -> GeneformerCheckpoint:
    """Read a Geneformer checkpoint folder: config, dictionaries, model series.

    Parameters
    ----------
    folder
        Folder with ``config.json`` and ``model.safetensors`` or ``pytorch_model.bin``.
    version
        ``"auto"`` (V2 when the token dictionary has ``<cls>`` and ``<eos>``, else V1),
        ``"v1"`` or ``"v2"``.

    Raises
    ------
    ModelSkippedError
        When a file is missing or the config is not a BERT config.
    ValueError
        When ``version`` is unknown, or ``"v2"`` is asked of a dictionary without
        ``<cls>``/``<eos>``.
    """
    if version not in _VERSIONS:
        msg = f"version must be one of {_VERSIONS}, got {version!r}"
        raise ValueError(msg)
    folder = Path(folder)
    cfg_path = folder / "config.json"
    if not cfg_path.is_file():
        msg = (
            f"Geneformer checkpoint {str(folder)!r} has no config.json; expected a Hugging "
            "Face model folder such as Geneformer-V2-104M/. Fix: run sceval fetch, or pass "
            "checkpoint=<the model folder>."
        )
        raise ModelSkippedError(msg)
    config = json.loads(cfg_path.read_text())
    absent = [k for k in _REQUIRED_CONFIG if k not in config]
    if absent:
        msg = (
            f"{str(cfg_path)!r} lacks {absent}; expected a BertForMaskedLM config.json "
            f"with {list(_REQUIRED_CONFIG)}. Fix: use the config.json saved with the weights."
        )
        raise ModelSkippedError(msg)
    if config.get("model_type") != "bert":
        msg = (
            f"{str(cfg_path)!r} has model_type={config.get('model_type')!r}; expected "
            "'bert' (Geneformer is a BertForMaskedLM). Fix: point checkpoint= at a "
            "Geneformer model folder."
        )
        raise ModelSkippedError(msg)
    if config.get("position_embedding_type", "absolute") != "absolute":
        msg = (
            f"{str(cfg_path)!r} has position_embedding_type="
            f"{config['position_embedding_type']!r}; every official Geneformer uses "
            "'absolute' and sceval supports only that."
        )
        raise ModelSkippedError(msg)
    weights = next((folder / n for n in WEIGHT_FILES if (folder / n).is_file()), None)
    if weights is None:
        msg = (
            f"Geneformer checkpoint {str(folder)!r} has no weights; expected one of "
            f"{list(WEIGHT_FILES)} next to config.json (Git LFS files must be pulled, not "
            "left as pointers). Fix: run sceval fetch."
        )
        raise ModelSkippedError(msg)
    vocab_size = int(config["vocab_size"])
    dicts = GeneformerDictionaries.load(find_dictionaries(folder, vocab_size))
    max_token = max(dicts.token.values())
    if max_token >= vocab_size:
        msg = (
            f"the token dictionary {str(dicts.files['token'])!r} uses token ids up to "
            f"{max_token}, but the model's vocab_size is {vocab_size}. Fix: use the "
            "dictionaries of this model's series (V1: gc30M, V2: gc104M)."
        )
        raise ModelSkippedError(msg)
    input_size = int(config["max_position_embeddings"])
    if version == "auto":
        version = "v2" if dicts.has_special_tokens else "v1"
        other = "v1" if version == "v2" else "v2"
        if input_size == OFFICIAL_INPUT_SIZE[other] != OFFICIAL_INPUT_SIZE[version]:
            warnings.warn(
                f"Geneformer checkpoint {str(folder)!r}: the token dictionary looks "
                f"{version.upper()} but max_position_embeddings={input_size} is the "
                f"{other.upper()} input size; using {version.upper()} conventions (pass "
                "version= to choose).",
                UserWarning,
                stacklevel=2,
            )
    elif version == "v2" and not dicts.has_special_tokens:
        msg = (
            f"version='v2' needs <cls> and <eos> in the token dictionary, but "
            f"{str(dicts.files['token'])!r} has neither. Fix: use version='v1' or the gc104M "
            "dictionaries."
        )
        raise ValueError(msg)
    return GeneformerCheckpoint(
        folder=folder,
        config=config,
        dicts=dicts,
        version=version,
        input_size=input_size,
        weights_file=weights,
    )


def build_bert(
    config: dict[str, Any], *, head: str = "mlm", num_labels: int = 2, seed: int = 0
) -> Any:
    """A ``transformers`` BERT built from a Geneformer ``config.json`` dict.

    Weights are initialized as ``transformers`` does (normal, sd ``initializer_range``)
    from a generator seeded with ``seed``; the global torch RNG is left untouched.
    Attention uses ``sdpa`` (fused kernels on CUDA).

    Parameters
    ----------
    config
        The parsed ``config.json``.
    head
        ``"mlm"`` (``BertForMaskedLM``) or ``"classifier"``
        (``BertForSequenceClassification`` with ``num_labels`` classes).
    """
    import torch
    from transformers import BertConfig, BertForMaskedLM, BertForSequenceClassification

    d = {k: v for k, v in config.items() if not k.startswith("_")}
    d.pop("architectures", None)
    d["attn_implementation"] = "sdpa"
    if head == "classifier":
        d["num_labels"] = int(num_labels)
        d.pop("id2label", None)
        d.pop("label2id", None)
    elif head != "mlm":
        msg = f"head must be 'mlm' or 'classifier', got {head!r}"
        raise ValueError(msg)
    cfg = BertConfig(**d)
    cls = BertForMaskedLM if head == "mlm" else BertForSequenceClassification
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        model = cls(cfg)
    return model.float()


def _check_keys(model: Any, state: dict[str, Any], head: str, where: str) -> dict[str, Any]:
    """Drop known-harmless keys; raise one error listing every real problem."""
    if state and not any(k.startswith(("bert.", "cls.", "classifier.")) for k in state):
        state = {f"bert.{k}": v for k, v in state.items()}  # saved from a bare BertModel
    own = model.state_dict()
    unexpected = [k for k in state if k not in own]
    missing = [k for k in own if k not in state]
    harmless_unexpected = set(_HARMLESS_UNEXPECTED)
    if head == "mlm":
        bad_unexpected = [
            k
            for k in unexpected
            if k not in harmless_unexpected and not k.startswith("bert.pooler.")
        ]
        bad_missing = [k for k in missing if k not in _TIED]
    else:  # the MLM head is dropped; pooler and classifier start new (as transformers does)
        bad_unexpected = [
            k for k in unexpected if k not in harmless_unexpected and not k.startswith("cls.")
        ]
        bad_missing = [k for k in missing if not k.startswith(("bert.pooler.", "classifier."))]
    shapes = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs config {tuple(own[k].shape)}"
        for k in state
        if k in own and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    if bad_unexpected or bad_missing or shapes:
        msg = (
            f"Geneformer weights in {where} do not fit its config.json: "
            + describe_key_mismatch(bad_missing, bad_unexpected, shapes)
            + ". Expected the tensors of a transformers BertForMaskedLM with the config's "
            "sizes (keys bert.embeddings.*, bert.encoder.layer.N.*, cls.predictions.*). "
            "Fix: use the config.json that was saved with these weights."
        )
        raise ModelSkippedError(msg)
    # the tied decoder is the word-embedding matrix: never let a stored copy overwrite it
    return {k: v for k, v in state.items() if k in own and k not in _TIED}


def load_weights(model: Any, state: dict[str, Any], *, head: str = "mlm", where: str = "") -> Any:
    """Load a Geneformer state dict into a model from :func:`build_bert`.

    Known-harmless differences are ignored by name: the ``position_ids`` and
    ``token_type_ids`` buffers old checkpoints saved, a pooler in an MLM checkpoint, the
    tied MLM decoder (``cls.predictions.decoder.*``, shared with the word embeddings and
    ``cls.predictions.bias``) and, for ``head="classifier"``, the MLM head in the checkpoint
    and the new pooler and classifier. Anything else raises :class:`ModelSkippedError`
    listing all missing, unexpected and mis-shaped tensors at once.
    """
    keep = _check_keys(model, state, head, where or "the checkpoint")
    model.load_state_dict(keep, strict=False)
    if head == "mlm":
        model.tie_weights()
    return model


# --------------------------------------------------------------------------- tokenization


@dataclass(frozen=True)
class GeneformerTokens(RaggedCells):
    """Rank value encodings of cells, stored flat.

    Attributes
    ----------
    ids
        All cells' token ids, concatenated (int64), special tokens included.
    offsets
        Cell ``i`` is ``ids[offsets[i]:offsets[i + 1]]``; shape ``(n_cells + 1,)``.
    coverage
        The data's gene coverage of the vocabulary (``None`` for hand-made inputs).
    """

    ids: np.ndarray
    offsets: np.ndarray
    coverage: GeneCoverage | None = None

    def cell(self, i: int) -> np.ndarray:
        """Token ids of cell ``i``."""
        return self.ids[self.offsets[i] : self.offsets[i + 1]]

    def padded(
        self, idx: Sequence[int] | np.ndarray, pad_id: int = 0, pad_to: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(input_ids, attention_mask)`` for cells ``idx``, padded to the longest one
        (or to ``pad_to``), int64 arrays of shape ``(len(idx), length)``."""
        (ids,), mask = self.pad(idx, [(self.ids, pad_id)], pad_to)
        return ids, mask


def _collapse(gene_ids: Sequence[str], dicts: GeneformerDictionaries) -> tuple[list, list]:
    """Target Ensembl ID per input gene (``None`` when unmatched) and the output columns.

    Returns ``(targets, columns)`` where ``columns`` is a list of ``(target, [gene
    positions])`` in the official order: genes that map to a unique target in data order,
    then targets shared by several genes (their counts summed) in order of first occurrence.
    """
    targets: list[str | None] = []
    for g in gene_ids:
        u = str(g).upper() if g else ""
        t = dicts.mapping.get(u) if dicts.mapping is not None else u
        ok = bool(t) and t in dicts.token and t in dicts.median and not t.startswith("<")
        targets.append(t if ok else None)
    groups: dict[str, list[int]] = {}
    for j, t in enumerate(targets):
        if t is not None:
            groups.setdefault(t, []).append(j)
    single = [(t, js) for t, js in groups.items() if len(js) == 1]
    single.sort(key=lambda tj: tj[1][0])
    shared = [(t, js) for t, js in groups.items() if len(js) > 1]
    return targets, single + shared


def _rank_block(
    block: sp.csr_matrix,
    agg: sp.csr_matrix | None,
    medians: np.ndarray,
    tokens: np.ndarray,
    n_genes: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Ranked tokens (first ``n_genes`` per cell, concatenated) and their counts per cell."""
    n_cells = block.shape[0]
    n_counts = np.asarray(block.sum(axis=1), dtype=np.float64).ravel()  # over ALL genes
    if agg is None:
        return np.zeros(0, dtype=np.int64), np.zeros(n_cells, dtype=np.int64)
    xk = sp.csr_matrix(block @ agg)
    xk.eliminate_zeros()
    xk.sort_indices()
    per_cell = np.diff(xk.indptr)
    rows = np.repeat(np.arange(n_cells), per_cell)
    with np.errstate(divide="ignore", invalid="ignore"):
        values = xk.data / n_counts[rows] * TARGET_SUM / medians[xk.indices]
    # descending value within each cell; ties keep the data's gene order (stable)
    order = np.lexsort((xk.indices, -values, rows))
    rank = np.arange(order.size) - xk.indptr[rows]
    ranked = tokens[xk.indices[order]][rank < n_genes]
    return ranked, np.minimum(per_cell, n_genes).astype(np.int64)


def tokenize_counts(
    counts: Any,
    gene_ids: Sequence[str],
    dicts: GeneformerDictionaries,
    *,
    special_tokens: bool,
    input_size: int,
) -> GeneformerTokens:
    """Rank value encodings of raw counts, as the official ``TranscriptomeTokenizer``.

    Parameters
    ----------
    counts
        Raw counts, cells x genes (dense or sparse).
    gene_ids
        Ensembl ID of each column (``""`` for none); matched upper-case, through
        ``dicts.mapping`` when present.
    dicts
        The checkpoint's dictionaries.
    special_tokens
        V2: wrap each cell in ``<cls>`` ... ``<eos>`` and keep at most ``input_size - 2``
        genes; V1: no special tokens, at most ``input_size`` genes.
    input_size
        The model's maximum sequence length.

    Returns
    -------
    GeneformerTokens
        Without coverage (the caller adds it).
    """
    x = counts if sp.issparse(counts) else np.asarray(counts)
    x = sp.csr_matrix(x)
    if x.shape[1] != len(gene_ids):
        msg = f"counts have {x.shape[1]} genes but {len(gene_ids)} gene IDs were given"
        raise ValueError(msg)
    n_genes = input_size - 2 if special_tokens else input_size
    if n_genes < 1:
        msg = f"input_size={input_size} leaves no room for genes"
        raise ValueError(msg)
    _, columns = _collapse(gene_ids, dicts)
    agg = None
    if columns:
        rows_a = np.concatenate([np.asarray(js) for _, js in columns])
        cols_a = np.repeat(np.arange(len(columns)), [len(js) for _, js in columns])
        agg = sp.csr_matrix(
            (np.ones(rows_a.size), (rows_a, cols_a)), shape=(x.shape[1], len(columns))
        )
    medians = np.array([dicts.median[t] for t, _ in columns], dtype=np.float64)
    tokens = np.array([dicts.token[t] for t, _ in columns], dtype=np.int64)
    parts: list[np.ndarray] = []
    kept: list[np.ndarray] = []
    for start in range(0, x.shape[0], _TOKENIZE_CHUNK):
        block = sp.csr_matrix(x[start : start + _TOKENIZE_CHUNK], dtype=np.float64)
        ranked, n_kept = _rank_block(block, agg, medians, tokens, n_genes)
        parts.append(ranked)
        kept.append(n_kept)
    ranked = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
    n_kept = np.concatenate(kept) if kept else np.zeros(0, dtype=np.int64)
    if special_tokens:
        cls_id, eos_id = int(dicts.token["<cls>"]), int(dicts.token["<eos>"])
        lengths = n_kept + 2
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        ids = np.empty(int(offsets[-1]), dtype=np.int64)
        ids[offsets[:-1]] = cls_id
        ids[offsets[1:] - 1] = eos_id
        body = np.ones(ids.size, dtype=bool)
        body[offsets[:-1]] = False
        body[offsets[1:] - 1] = False
        ids[body] = ranked
    else:
        offsets = np.concatenate([[0], np.cumsum(n_kept)]).astype(np.int64)
        ids = ranked.astype(np.int64)
    return GeneformerTokens(ids=ids, offsets=offsets)


def _strip_ensembl(name: str) -> str:
    m = _ENSEMBL_RE.match(name.strip())
    return m.group(1).upper() if m else ""


def data_ensembl_ids(
    adata: Any, report: DataReport, dicts: GeneformerDictionaries | None = None
) -> list[str]:
    """The Ensembl ID of each gene of ``adata`` (``""`` when unknown).

    Ensembl IDs are used as they are (version suffix dropped; ``_PAR_Y`` copies are left
    unmatched, as upstream). Symbols use, in order: ``var['ensembl_id']`` (from
    :func:`sceval.harmonize_genes`), the bundled gene tables
    (:func:`sceval.data.genes.map_genes`), and the checkpoint's symbol dictionary.
    """
    col = report.gene_id_column
    names = [str(v) for v in (adata.var[col] if col is not None else adata.var_names)]
    if report.gene_id_type in ("ensembl", "ensembl_versioned"):
        return [_strip_ensembl(n) for n in names]
    if "ensembl_id" in adata.var.columns:
        ids = [
            _strip_ensembl(str(v)) if isinstance(v, str) else ""
            for v in adata.var["ensembl_id"].tolist()
        ]
    else:
        from sceval.data.genes import map_genes

        table, _ = map_genes(names)
        ids = [_strip_ensembl(v) for v in table["ensembl_id"].tolist()]
    if dicts is not None and dicts.name_id:
        ids = [
            i or _strip_ensembl(dicts.name_id.get(n, "")) for i, n in zip(ids, names, strict=True)
        ]
    return ids


# --------------------------------------------------------------------------- inference


class _StopForward(Exception):
    """Carries the requested hidden state out of the forward pass (never escapes)."""

    def __init__(self, hidden: Any) -> None:
        super().__init__()
        self.hidden = hidden


@contextlib.contextmanager
def _stop_after(bert: Any, layer: int) -> Iterator[None]:
    """Stop the forward pass once hidden state ``layer`` (0 = embeddings) is computed."""
    if layer >= len(bert.encoder.layer):
        yield
        return
    module = bert.embeddings if layer == 0 else bert.encoder.layer[layer - 1]

    def hook(_mod: Any, _inp: Any, out: Any) -> None:
        raise _StopForward(out[0] if isinstance(out, tuple) else out)

    handle = module.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def hidden_states_at(bert: Any, input_ids: Any, attention_mask: Any, layer: int) -> Any:
    """Hidden state number ``layer`` of a ``BertModel`` (``0`` = embeddings output,
    ``n_layers`` = last layer), running only the layers needed."""
    with _stop_after(bert, layer):
        try:
            out = bert(input_ids=input_ids, attention_mask=attention_mask)
        except _StopForward as stop:
            return stop.hidden
    return out.last_hidden_state


def _pool(hidden: Any, lengths: Any, pooling: str, special_tokens: bool) -> Any:
    import torch

    h = hidden.float()
    if pooling == "cls":
        return h[:, 0, :]
    start = 1 if special_tokens else 0
    n = lengths - 2 if special_tokens else lengths
    pos = torch.arange(h.shape[1], device=h.device)
    mask = (pos[None, :] >= start) & (pos[None, :] < (start + n)[:, None])
    total = (h * mask[:, :, None]).sum(dim=1)
    return total / n.clamp(min=1)[:, None].float()


def encode_cells(
    model: Any,
    tokens: GeneformerTokens,
    *,
    special_tokens: bool,
    pooling: str = "auto",
    emb_layer: int = -1,
    batch_size: int = 32,
    device: str = "cpu",
    precision: str = "auto",
    pad_id: int = 0,
    padding: str = "sorted",
    pad_to: int | None = None,
) -> np.ndarray:
    """Cell embeddings from a Geneformer model, shape ``(n_cells, hidden)``, float32.

    Parameters
    ----------
    model
        ``BertForMaskedLM`` / ``BertForSequenceClassification`` (or its ``.bert``), on
        ``device``, in eval mode.
    tokens
        Rank value encodings (:func:`tokenize_counts`).
    special_tokens
        Whether cells carry ``<cls>``/``<eos>`` (V2).
    pooling
        ``"cls"``, ``"mean"`` or ``"auto"`` (``cls`` with special tokens, else ``mean``).
    emb_layer
        Hidden state ``n_layers + emb_layer``: ``-1`` second-to-last layer, ``0`` last,
        ``-n_layers`` the embedding layer.
    padding
        ``"sorted"`` (sceval: batches of similar length, each padded to its longest cell),
        ``"unsorted"`` (data order, padded per batch) or ``"max"`` (data order, every
        batch padded to ``pad_to``, default the model's ``max_position_embeddings``).
        All give the same embeddings up to float error.

    Cells with no tokens (V1 cells without any vocabulary gene) get a zero vector.
    """
    import torch

    if pooling not in _POOLINGS:
        msg = f"pooling must be one of {_POOLINGS}, got {pooling!r}"
        raise ValueError(msg)
    if padding not in _PADDINGS:
        msg = f"padding must be one of {_PADDINGS}, got {padding!r}"
        raise ValueError(msg)
    if pooling == "auto":
        pooling = "cls" if special_tokens else "mean"
    if pooling == "cls" and not special_tokens:
        msg = "pooling='cls' needs <cls> tokens (a V2 checkpoint); use pooling='mean' for V1"
        raise ValueError(msg)
    bert = model.bert if hasattr(model, "bert") else model
    n_layers = len(bert.encoder.layer)
    if not -n_layers <= int(emb_layer) <= 0:
        msg = f"emb_layer must be between {-n_layers} and 0 for this model, got {emb_layer}"
        raise ValueError(msg)
    layer = n_layers + int(emb_layer)
    lengths = tokens.lengths
    hidden_size = int(bert.config.hidden_size)
    out = np.zeros((len(tokens), hidden_size), dtype=np.float32)
    nonempty = np.flatnonzero(lengths > 0)
    if nonempty.size == 0:
        return out
    if padding == "sorted":
        batches: Iterator[np.ndarray] = (
            nonempty[b] for b in batches_by_length(lengths[nonempty], batch_size)
        )
    else:
        batches = (nonempty[i : i + batch_size] for i in range(0, nonempty.size, batch_size))
    width = None
    if padding == "max":
        width = int(pad_to or bert.config.max_position_embeddings)
    with inference_context(device, precision):
        for idx in batches:
            ids, mask = tokens.padded(idx, pad_id=pad_id, pad_to=width)
            ids_t = torch.from_numpy(ids).to(device)
            mask_t = torch.from_numpy(mask).to(device)
            hidden = hidden_states_at(bert, ids_t, mask_t, layer)
            lens_t = torch.from_numpy(lengths[idx]).to(device)
            pooled = _pool(hidden, lens_t, pooling, special_tokens)
            out[idx] = pooled.float().cpu().numpy()
    return out


# --------------------------------------------------------------------------- models


class _GeneformerBase(FoundationModel):
    """Shared code of ``geneformer`` and ``geneformer.random``.

    Parameters (keyword arguments)
    ----------
    checkpoint
        Registered checkpoint name or local model folder (default ``geneformer.v2-104m``).
    batch_size
        Cells per inference batch (default 32).
    precision
        ``"auto"`` (bf16/fp16 autocast on CUDA, fp32 on CPU), ``"fp32"``, ``"bf16"``, ``"fp16"``.
    emb_layer
        ``-1`` (default, second-to-last layer, as upstream), ``0`` (last layer), down to
        ``-n_layers`` (the embedding layer).
    pooling
        ``"auto"`` (V2 ``<cls>``, V1 mean), ``"cls"`` or ``"mean"``.
    version
        ``"auto"``, ``"v1"`` or ``"v2"`` (see :func:`load_checkpoint`).
    random_init
        Seeded random weights instead of the checkpoint's (default ``False``;
        ``geneformer.random`` is ``geneformer`` with ``random_init=True``).
    """

    default_checkpoint = "geneformer.v2-104m"
    random_init: ClassVar[bool] = False

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        check_precision(params.get("precision", "auto"), self.info.key)
        if params.get("pooling", "auto") not in _POOLINGS:
            msg = f"pooling must be one of {_POOLINGS}, got {params['pooling']!r}"
            raise ValueError(msg)
        if int(params.get("batch_size", 32)) < 1:
            msg = f"batch_size must be >= 1, got {params['batch_size']}"
            raise ValueError(msg)
        self._random = bool(params.get("random_init", type(self).random_init))
        self._ckpt: GeneformerCheckpoint | None = None
        self._models: dict[tuple[str, int, str], Any] = {}

    # -- checkpoint ---------------------------------------------------------------------

    checkpoint_hint = "config.json, model.safetensors and the token dictionaries"

    def checkpoint(self) -> GeneformerCheckpoint:
        """The resolved, read checkpoint (cached)."""
        if self._ckpt is None:
            self._ckpt = load_checkpoint(
                self.checkpoint_dir(), version=self.params.get("version", "auto")
            )
        return self._ckpt

    def check(self, adata: Any, ctx: EmbedContext) -> None:
        super().check(adata, ctx)
        self.checkpoint()

    def _model(self, ctx: EmbedContext) -> Any:
        """The zero-shot model on ``ctx.device``, eval mode (cached per seed/device)."""
        ck = self.checkpoint()
        seed = int(ctx.seed) if self._random else 0
        key = (str(ck.folder), seed, ctx.device)
        if key not in self._models:
            model = build_bert(ck.config, head="mlm", seed=seed)
            if not self._random:
                load_weights(model, ck.state_dict(), head="mlm", where=str(ck.weights_file))
            self._models = {key: model.to(torch_device(ctx.device, self.info.key)).eval()}
        return self._models[key]

    # -- tokens -------------------------------------------------------------------------

    def tokenize(self, adata: Any, ctx: EmbedContext) -> GeneformerTokens:
        """Rank value encodings of every cell (cached in ``ctx.cache``, shared with the
        random control, which uses the same dictionaries)."""
        ck = self.checkpoint()
        key = (
            "geneformer.tokens",
            str(ck.dicts.files["token"]),
            ck.version,
            ck.input_size,
            ctx.cell_offset,
            adata.n_obs,
        )
        cached = ctx.cache.get(key)
        if cached is not None:
            if cached.coverage is not None and cached.coverage.fraction_genes < 0.5:
                warnings.warn(
                    f"model {self.info.key!r}: low {cached.coverage.message}",
                    UserWarning,
                    stacklevel=2,
                )
            self.coverage = cached.coverage
            return cached
        counts = get_counts(adata, ctx.report)
        ids = data_ensembl_ids(adata, ctx.report, ck.dicts)
        targets, _ = _collapse(ids, ck.dicts)
        matched = np.array([t is not None for t in targets], dtype=bool)
        cov = gene_coverage(matched, counts, self.info.key)
        toks = tokenize_counts(
            counts,
            ids,
            ck.dicts,
            special_tokens=ck.special_tokens,
            input_size=ck.input_size,
        )
        toks = GeneformerTokens(ids=toks.ids, offsets=toks.offsets, coverage=cov)
        ctx.cache[key] = toks
        self.coverage = cov
        return toks

    # -- embeddings ---------------------------------------------------------------------

    def embed_cells(self, adata: Any, ctx: EmbedContext) -> np.ndarray:
        """Cell embeddings, shape ``(n_cells, hidden_size)``, float32 (see module doc)."""
        ck = self.checkpoint()
        toks = self.tokenize(adata, ctx)
        n_empty = int((toks.lengths == 0).sum())
        if n_empty:
            warnings.warn(
                f"model {self.info.key!r}: {n_empty} cells express no gene of the "
                "vocabulary; their embedding is a zero vector.",
                UserWarning,
                stacklevel=2,
            )
        model = self._model(ctx)
        return encode_cells(
            model,
            toks,
            special_tokens=ck.special_tokens,
            pooling=self.params.get("pooling", "auto"),
            emb_layer=int(self.params.get("emb_layer", -1)),
            batch_size=int(self.params.get("batch_size", 32)),
            device=ctx.device,
            precision=self.params.get("precision", "auto"),
            pad_id=ck.dicts.pad_id,
        )

    def embed_genes(self, genes: list[str], ctx: EmbedContext) -> tuple[np.ndarray, np.ndarray]:
        """Input (context-free) token embeddings of ``genes``.

        The rows of the word-embedding matrix, i.e. what the model learned for each gene
        token before any cell context; a contextual mean would depend on the cells it is
        averaged over, which this signature does not receive. Genes are looked up as
        Ensembl IDs (through the ID-collapsing dictionary), else as symbols through the
        bundled gene tables and the checkpoint's symbol dictionary.

        Returns
        -------
        (matrix, found)
            ``matrix`` of shape ``(found.sum(), hidden_size)`` (float32) in the order of
            ``genes``; ``found`` a boolean mask of length ``len(genes)``.
        """
        ck = self.checkpoint()
        names = [str(g) for g in genes]
        ids = [_strip_ensembl(n) for n in names]
        need = [i for i, e in enumerate(ids) if not e]
        if need:
            from sceval.data.genes import map_genes

            table, _ = map_genes([names[i] for i in need])
            for i, e in zip(need, table["ensembl_id"].tolist(), strict=True):
                ids[i] = _strip_ensembl(e) or _strip_ensembl(ck.dicts.name_id.get(names[i], ""))
        targets, _ = _collapse(ids, ck.dicts)
        found = np.array([t is not None for t in targets], dtype=bool)
        weight = self._model(ctx).bert.embeddings.word_embeddings.weight
        rows = [ck.dicts.token[t] for t in targets if t is not None]
        mat = weight.detach()[rows].float().cpu().numpy() if rows else None
        if mat is None:
            mat = np.zeros((0, weight.shape[1]), dtype=np.float32)
        return mat.astype(np.float32, copy=False), found

    # -- fine-tuning --------------------------------------------------------------------

    def fine_tune_annotate(
        self,
        adata: Any,
        labels: Any,
        train_idx: Sequence[int] | np.ndarray,
        test_idx: Sequence[int] | np.ndarray,
        ctx: EmbedContext,
        *,
        lr: float = 5e-5,
        epochs: int = 5,
        batch_size: int = 16,
        val_fraction: float = 0.1,
        patience: int = 2,
    ) -> np.ndarray:
        """Fine-tune a ``BertForSequenceClassification`` and predict the test cells.

        The classifier starts from the checkpoint (the ``.random`` control: from seeded
        random weights); its pooler and linear head are new, as upstream. AdamW (weight
        decay 0.001, as the official ``Classifier``), a linear schedule with 10% warm-up,
        cross-entropy. A validation set (``val_fraction`` of ``train_idx``, stratified when
        every class has two or more cells) is carved from the training cells only; training
        stops when its loss has not improved for ``patience`` epochs and the best epoch's
        weights are restored. Test labels are never read. Seeded by ``ctx.seed`` (bit-for-bit
        repeatable on CPU). On CUDA, bf16 autocast is used when ``precision`` is ``"bf16"``
        or ``"auto"``; otherwise training is fp32.

        Parameters
        ----------
        labels
            Length ``n_cells``; only ``labels[train_idx]`` is read.
        train_idx, test_idx
            Integer positions of the training and test cells.

        Returns
        -------
        numpy.ndarray
            Predicted labels of ``test_idx`` (values of ``labels``).
        """
        import torch

        if epochs < 1 or batch_size < 1 or lr <= 0:
            msg = f"need epochs >= 1, batch_size >= 1, lr > 0; got {epochs}, {batch_size}, {lr}"
            raise ValueError(msg)
        if not 0.0 <= val_fraction < 1.0:
            msg = f"val_fraction must be in [0, 1), got {val_fraction}"
            raise ValueError(msg)
        train_idx = np.asarray(train_idx, dtype=np.int64)
        test_idx = np.asarray(test_idx, dtype=np.int64)
        if train_idx.size == 0:
            msg = "train_idx is empty; fine-tuning needs labelled training cells"
            raise DataContractError(msg)
        classes, y_train = np.unique(np.asarray(labels)[train_idx], return_inverse=True)
        ck = self.checkpoint()
        toks = self.tokenize(adata, ctx)
        seed = int(ctx.seed)
        rng = np.random.default_rng(seed)
        fit_pos, val_pos = _split_validation(y_train, val_fraction, rng)

        device = torch_device(ctx.device, self.info.key)
        model = build_bert(ck.config, head="classifier", num_labels=classes.size, seed=seed)
        if not self._random:
            load_weights(model, ck.state_dict(), head="classifier", where=str(ck.weights_file))
        model.to(device)
        # bf16 autocast only: fp16 fine-tuning would need a GradScaler, so it runs fp32
        use_bf16 = autocast_dtype(device, self.params.get("precision", "auto")) is torch.bfloat16
        no_decay = ("bias", "LayerNorm.weight")
        groups = [
            {
                "params": [
                    p for n, p in model.named_parameters() if not any(s in n for s in no_decay)
                ],
                "weight_decay": 0.001,
            },
            {
                "params": [p for n, p in model.named_parameters() if any(s in n for s in no_decay)],
                "weight_decay": 0.0,
            },
        ]
        opt = torch.optim.AdamW(groups, lr=lr)
        steps = epochs * math.ceil(fit_pos.size / batch_size)
        warm = max(1, int(0.1 * steps))
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: min((s + 1) / warm, max(0.0, (steps - s) / max(1, steps - warm)))
        )
        pad = ck.dicts.pad_id
        y_t = torch.as_tensor(y_train, dtype=torch.long)

        def logits_of(cells: np.ndarray) -> Any:
            ids, mask = toks.padded(cells, pad_id=pad)
            ids[mask.sum(1) == 0, 0] = pad  # empty V1 cells: one masked-out pad token
            mask[mask.sum(1) == 0, 0] = 1
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_bf16):
                out = model(
                    input_ids=torch.from_numpy(ids).to(device),
                    attention_mask=torch.from_numpy(mask).to(device),
                )
            return out.logits.float()

        def val_loss() -> float:
            model.eval()
            total = 0.0
            with torch.inference_mode():
                for b in batches_by_length(toks.lengths[train_idx[val_pos]], batch_size):
                    pos = val_pos[b]
                    lg = logits_of(train_idx[pos])
                    total += float(
                        torch.nn.functional.cross_entropy(lg, y_t[pos].to(device), reduction="sum")
                    )
            return total / max(1, val_pos.size)

        best_loss, best_state, bad = math.inf, None, 0
        cuda_devices = [torch.device(device).index or 0] if device.startswith("cuda") else []
        with torch.random.fork_rng(devices=cuda_devices):
            torch.manual_seed(seed)
            gen = torch.Generator().manual_seed(seed)
            for _epoch in range(epochs):
                model.train()
                perm = fit_pos[torch.randperm(fit_pos.size, generator=gen).numpy()]
                for i in range(0, perm.size, batch_size):
                    pos = perm[i : i + batch_size]
                    loss = torch.nn.functional.cross_entropy(
                        logits_of(train_idx[pos]), y_t[pos].to(device)
                    )
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    sched.step()
                if val_pos.size == 0:
                    continue
                current = val_loss()
                if current < best_loss - 1e-12:
                    best_loss, bad = current, 0
                    best_state = {
                        k: v.detach().cpu().clone() for k, v in model.state_dict().items()
                    }
                else:
                    bad += 1
                    if bad >= patience:
                        break
        if best_state is not None:
            model.load_state_dict(best_state)
        model.eval()
        preds = np.empty(test_idx.size, dtype=np.int64)
        with torch.inference_mode():
            for b in batches_by_length(toks.lengths[test_idx], batch_size):
                preds[b] = logits_of(test_idx[b]).argmax(dim=1).cpu().numpy()
        return classes[preds]


def _split_validation(
    y: np.ndarray, val_fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Positions (into the training cells) to fit on and to validate on."""
    n = y.size
    n_val = round(val_fraction * n)
    if val_fraction <= 0 or n < 2 or n_val < 1:
        return np.arange(n), np.arange(0)
    counts = np.bincount(y)
    if counts.min() >= 2 and n_val >= counts.size:
        val: list[int] = []
        for k in range(counts.size):  # stratified: each class in proportion, at least one
            pos = rng.permutation(np.flatnonzero(y == k))
            take = min(pos.size - 1, max(1, round(val_fraction * pos.size)))
            val.extend(pos[:take].tolist())
        val_arr = np.sort(np.asarray(val, dtype=np.int64))
    else:
        val_arr = np.sort(rng.permutation(n)[: min(n_val, n - 1)])
    fit = np.setdiff1d(np.arange(n), val_arr)
    return fit, val_arr


_INFO_COMMON: dict[str, Any] = {
    "input": "counts",
    "requires": ("torch", "transformers", "safetensors"),
    "install": "pip install torch transformers safetensors",
    "citation": "Theodoris et al., Nature 2023 (Geneformer); Chen et al., bioRxiv 2024 (V2)",
    "license": "Apache-2.0",
}


@register_model
class GeneformerModel(_GeneformerBase):
    """``geneformer``: the pretrained Geneformer (default V2-104M), zero-shot."""

    info = ModelInfo(
        key="geneformer",
        kind="foundation",
        description="Geneformer rank-value BERT (V2-104M by default; V1-10M supported), "
        "second-to-last layer, <cls> (V2) or mean (V1) pooling",
        **_INFO_COMMON,
    )


@register_model
class GeneformerRandom(_GeneformerBase):
    """``geneformer.random``: Geneformer's architecture, dictionaries and preprocessing
    with weights re-initialized from ``ctx.seed`` (what pretraining adds is the gap)."""

    info = ModelInfo(
        key="geneformer.random",
        kind="control",
        description="control: Geneformer architecture and tokenization, random weights (seeded)",
        **_INFO_COMMON,
    )
    random_init = True
