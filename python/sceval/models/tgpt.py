"""tGPT (Shen et al., iScience 2023): a GPT-2 language model over expression-ranked genes.

Each cell is written as a "sentence" of gene symbols ordered by expression, highest
first; tGPT was pretrained autoregressively on 22.3 million such sentences. The network is
Hugging Face ``transformers``' ``GPT2LMHeadModel``; this module reads the official files,
reproduces the official tokenization and pools the last hidden states as the official
feature extraction does.

Checkpoint layout (Hugging Face ``lixiangchun/transcriptome-gpt-1024-8-16-64``)
-------------------------------------------------------------------------------
``config.json`` (a ``GPT2LMHeadModel`` config: ``n_embd`` 1024, ``n_layer`` 8, ``n_head``
16, ``n_positions`` 1024, vocabulary 21,150; the name reads dim-layers-heads-sentence
length), ``pytorch_model.bin`` (502 MB, a ``torch.save`` of the full state dict:
``transformer.wte.weight``, ``transformer.wpe.weight``, ``transformer.h.{i}.ln_1`` /
``attn.c_attn`` / ``attn.c_proj`` / ``ln_2`` / ``mlp.c_fc`` / ``mlp.c_proj`` (``Conv1D``
weights stored ``[in, out]``), ``transformer.ln_f``, plus the old causal-mask buffers
``attn.bias`` / ``attn.masked_bias`` and the tied ``lm_head.weight``), and the tokenizer
files ``tokenizer.json``, ``tokenizer_config.json``, ``special_tokens_map.json`` (the same
files as ``gpt2tokenizer/`` in the GitHub repository ``deeplearningplus/tGPT``). A
``model.safetensors`` is read too when present. Nothing is executed from the files: the
weights go through :func:`sceval.models._safe_load.load_state_dict` and the tokenizer is
parsed as JSON.

Tokenizer (``gpt2tokenizer/tokenizer.json``)
-------------------------------------------
A ``WordLevel`` model (``<pad>`` 0, ``</b>`` 1 = BOS, ``</s>`` 2 = EOS, ``<unk>`` 3, then
gene symbols) behind a ``Whitespace`` pre-tokenizer (words are ``\\w+`` or runs of
punctuation) and the template ``</b> $A </s>``. Symbols in the vocabulary spell ``-`` and
``.`` as ``_`` (``HLA_DRA``); the official example replaces ``[-.]`` by ``_`` before
tokenizing (README, ``LineDataset``), which this module does per gene.

Preprocessing and embedding (README "Extract features"; ``train.py``)
--------------------------------------------------------------------
1. Per cell, the genes with a non-zero count are sorted by count, descending (ties keep
   the data's gene order; the official sentence files come from an unstated sort). The
   ranking does not depend on per-cell normalization or log transforms.
2. The sentence is tokenized: a symbol absent from the vocabulary becomes ``<unk>`` as
   the official tokenizer does (``unknown_genes="drop"`` leaves it out instead); genes
   without any symbol are left out.
3. Truncation to ``max_length`` tokens including ``</b>`` and ``</s>``: the official
   example and training use 64 (62 genes), which the default follows; a folder named
   like the Hugging Face repositories (``...-1024-8-16-128``) uses the length in its name.
4. ``last_hidden_state`` of ``GPT2Model`` (after the final layer norm), averaged over the
   gene positions, i.e. without ``</b>`` and ``</s>``: a 1,024-d embedding. Batches are
   padded on the right, so causal attention makes them equal to one cell at a time.
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from sceval._errors import ModelSkippedError
from sceval.data.contract import get_counts
from sceval.models._safe_load import describe_key_mismatch, load_state_dict
from sceval.models.base import EmbedContext, ModelInfo, register_model
from sceval.models.checkpoints import CheckpointSpec, FileSpec, register_checkpoint
from sceval.models.foundation import (
    FoundationModel,
    GeneCoverage,
    RaggedCells,
    batches_by_length,
    check_precision,
    gene_coverage,
    gene_symbols,
    inference_context,
    torch_device,
)

__all__ = [
    "DEFAULT_MAX_LENGTH",
    "TGPTCheckpoint",
    "TGPTModel",
    "TGPTRandom",
    "TGPTTokens",
    "TGPTVocab",
    "build_gpt2",
    "encode_cells",
    "gene_token_ids",
    "load_checkpoint",
    "load_weights",
    "normalize_symbol",
    "read_tokenizer",
    "tokenize_counts",
]

#: Sentence length (special tokens included) of the official example and training.
DEFAULT_MAX_LENGTH = 64
#: Weight files, in order of preference.
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
#: Tokenizer file (JSON, read without running code).
TOKENIZER_FILE = "tokenizer.json"
_REQUIRED_CONFIG = ("vocab_size", "n_embd", "n_layer", "n_head", "n_positions")
_UNKNOWN_MODES = ("unk", "drop")
#: Hugging Face folder names end in dim-layers-heads-length.
_HF_NAME = re.compile(r"transcriptome-gpt-\d+-\d+-\d+-(\d+)$")
#: What the official example replaces by ``_`` before tokenizing.
_SUB = re.compile(r"[-.]")
#: The ``Whitespace`` pre-tokenizer of the ``tokenizers`` library: words or punctuation runs.
_WORDS = re.compile(r"\w+|[^\w\s]+")
#: Old causal-mask buffers saved by transformers 4.x; transformers rebuilds them.
_BUFFER = re.compile(r"^h\.\d+\.attn\.(bias|masked_bias)$")

_HF = "https://huggingface.co/lixiangchun/transcriptome-gpt-1024-8-16-64"
_CITATION = (
    "Shen, H., Liu, J., Hu, J., Shen, X., Zhang, C., Wu, D., Feng, M., Yang, M., Li, Y., "
    "Yang, Y., Wang, W., Zhang, Q., Yang, J., Chen, K. & Li, X. Generative pretraining from "
    "large-scale transcriptomes for single-cell deciphering. iScience 26, 106536 (2023). "
    "doi:10.1016/j.isci.2023.106536"
)
_LICENSE = "not stated (no license on the Hugging Face model card; code: deeplearningplus/tGPT)"

register_checkpoint(
    CheckpointSpec(
        name="tgpt",
        model="tgpt",
        files=(
            FileSpec("config.json", f"{_HF}/resolve/main/config.json"),
            FileSpec(
                "pytorch_model.bin",
                f"{_HF}/resolve/main/pytorch_model.bin",
                sha256="9b9373ec77bd186fd9d38f09eb5361e8f5c181655b0e0b868fb879a16553f178",
            ),
            FileSpec("tokenizer.json", f"{_HF}/resolve/main/tokenizer.json"),
            FileSpec("tokenizer_config.json", f"{_HF}/resolve/main/tokenizer_config.json"),
            FileSpec("special_tokens_map.json", f"{_HF}/resolve/main/special_tokens_map.json"),
        ),
        license=_LICENSE,
        citation=_CITATION,
        homepage="https://github.com/deeplearningplus/tGPT",
        description="tGPT 1024-8-16-64: GPT-2 (8 layers, 1024-d, 16 heads) pretrained on "
        "22.3 million human single-cell transcriptomes as sentences of the top 62 genes",
        notes="Files from the Hugging Face repository lixiangchun/transcriptome-gpt-1024-8-16-64 "
        "(branch main; the weights' sha256 is the one Hugging Face lists for its LFS object). "
        "The sibling ...-1024-8-16-128 (126 genes) works through checkpoint=<folder>.",
        approx_size_mb=502,
    )
)


# --------------------------------------------------------------------------- tokenizer


@dataclass(frozen=True)
class TGPTVocab:
    """The word-level vocabulary of ``tokenizer.json``.

    Attributes
    ----------
    token
        Word -> token id (special tokens included).
    pad_id, bos_id, eos_id, unk_id
        Ids of ``<pad>``, ``</b>``, ``</s>`` and ``<unk>`` (as the files name them).
    file
        The ``tokenizer.json`` read.
    """

    token: dict[str, int]
    pad_id: int
    bos_id: int
    eos_id: int
    unk_id: int
    file: Path

    def __len__(self) -> int:
        return len(self.token)

    @property
    def special_ids(self) -> frozenset[int]:
        """Ids of the four special tokens."""
        return frozenset((self.pad_id, self.bos_id, self.eos_id, self.unk_id))


def _json(path: Path) -> dict[str, Any]:
    try:
        obj = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        msg = f"cannot read {str(path)!r} as JSON ({err}). Fix: re-download the file."
        raise ModelSkippedError(msg) from err
    if not isinstance(obj, dict):
        msg = f"{str(path)!r} holds a JSON {type(obj).__name__}, expected an object."
        raise ModelSkippedError(msg)
    return obj


def _special_name(value: Any) -> str | None:
    if isinstance(value, dict):  # {"content": "<pad>", ...} in newer files
        value = value.get("content")
    return value if isinstance(value, str) else None


def read_tokenizer(path: str | Path) -> TGPTVocab:
    """Read a tGPT ``tokenizer.json`` (a ``WordLevel`` model behind ``Whitespace``).

    The BOS/EOS tokens come from the post-processor template (``</b> $A </s>``), the
    padding token from ``special_tokens_map.json`` / ``tokenizer_config.json`` next to it
    (default ``<pad>``) and the unknown token from the model's ``unk_token``.

    Raises
    ------
    ModelSkippedError
        When the file is not a word-level tokenizer with those special tokens.
    """
    path = Path(path)
    obj = _json(path)
    model = obj.get("model") or {}
    vocab = model.get("vocab")
    if model.get("type") != "WordLevel" or not isinstance(vocab, dict) or not vocab:
        msg = (
            f"{str(path)!r} is not a tGPT tokenizer: expected a 'WordLevel' model with a "
            f"vocab, found model type {model.get('type')!r}. Fix: use the tokenizer.json of "
            "the tGPT checkpoint (Hugging Face lixiangchun/transcriptome-gpt-1024-8-16-64)."
        )
        raise ModelSkippedError(msg)
    pre = (obj.get("pre_tokenizer") or {}).get("type")
    if pre not in ("Whitespace", None):
        msg = (
            f"{str(path)!r} has pre-tokenizer {pre!r}; tGPT's is 'Whitespace' and sceval "
            "reproduces only that one."
        )
        raise ModelSkippedError(msg)
    token = {str(k): int(v) for k, v in vocab.items()}
    template = (obj.get("post_processor") or {}).get("single") or []
    specials = [t["SpecialToken"]["id"] for t in template if "SpecialToken" in t]
    names: dict[str, str | None] = {"bos": None, "eos": None, "pad": None}
    if len(specials) == 2 and "Sequence" in (template[1] if len(template) == 3 else {}):
        names["bos"], names["eos"] = specials
    for side in ("special_tokens_map.json", "tokenizer_config.json"):
        p = path.parent / side
        if p.is_file():
            extra = _json(p)
            for key in names:
                names[key] = names[key] or _special_name(extra.get(f"{key}_token"))
    names["pad"] = names["pad"] or "<pad>"
    names["bos"] = names["bos"] or "</b>"
    names["eos"] = names["eos"] or "</s>"
    unk = str(model.get("unk_token") or "<unk>")
    absent = [n for n in (names["pad"], names["bos"], names["eos"], unk) if n not in token]
    if absent:
        msg = (
            f"{str(path)!r} lacks the special tokens {absent} in its vocabulary; expected "
            "<pad>, </b>, </s> and <unk> (ids 0-3 in the official file). Fix: use the "
            "tokenizer.json saved with the checkpoint."
        )
        raise ModelSkippedError(msg)
    return TGPTVocab(
        token=token,
        pad_id=token[str(names["pad"])],
        bos_id=token[str(names["bos"])],
        eos_id=token[str(names["eos"])],
        unk_id=token[unk],
        file=path,
    )


def normalize_symbol(symbol: str) -> str:
    """A gene symbol as tGPT's vocabulary spells it: ``-`` and ``.`` become ``_``."""
    return _SUB.sub("_", str(symbol))


def gene_token_ids(symbol: str, vocab: TGPTVocab) -> list[int]:
    """Token ids the official tokenizer gives one gene symbol (usually exactly one).

    The symbol is normalized (:func:`normalize_symbol`) and split like the ``Whitespace``
    pre-tokenizer (runs of word characters or of punctuation); a word absent from the
    vocabulary becomes ``<unk>``. An empty symbol gives no tokens.
    """
    words = _WORDS.findall(normalize_symbol(symbol)) if symbol else []
    return [vocab.token.get(w, vocab.unk_id) for w in words]


# --------------------------------------------------------------------------- checkpoint


@dataclass(frozen=True)
class TGPTCheckpoint:
    """A tGPT checkpoint folder, read (weights are loaded by :meth:`state_dict`).

    Attributes
    ----------
    folder
        The folder.
    config
        ``config.json`` as a dict.
    vocab
        The tokenizer's vocabulary.
    weights_file
        ``model.safetensors`` or ``pytorch_model.bin``.
    max_length
        Default sentence length (special tokens included): from a Hugging Face folder
        name, else :data:`DEFAULT_MAX_LENGTH`; never above ``n_positions``.
    """

    folder: Path
    config: dict[str, Any]
    vocab: TGPTVocab
    weights_file: Path
    max_length: int

    @property
    def n_positions(self) -> int:
        """The model's maximum sequence length."""
        return int(self.config["n_positions"])

    def state_dict(self) -> dict[str, Any]:
        """The checkpoint's tensors (safetensors, or a weights-only ``torch.load``)."""
        return load_state_dict(self.folder, (self.weights_file.name,))


def load_checkpoint(folder: str | Path) -> TGPTCheckpoint:
    """Read a tGPT checkpoint folder: ``config.json``, ``tokenizer.json``, weights file.

    Raises
    ------
    ModelSkippedError
        When a file is missing, the config is not a GPT-2 config, or the tokenizer's
        vocabulary does not have the config's ``vocab_size`` tokens.
    """
    folder = Path(folder)
    cfg_path = folder / "config.json"
    tok_path = folder / TOKENIZER_FILE
    missing = [p.name for p in (cfg_path, tok_path) if not p.is_file()]
    weights = next((folder / n for n in WEIGHT_FILES if (folder / n).is_file()), None)
    if weights is None:
        missing.append(" or ".join(WEIGHT_FILES))
    if missing:
        msg = (
            f"tGPT checkpoint {str(folder)!r} lacks {missing}; expected the files of the "
            "Hugging Face repository lixiangchun/transcriptome-gpt-1024-8-16-64 (config.json, "
            "pytorch_model.bin, tokenizer.json; Git LFS files pulled, not pointers). Fix: "
            "run sceval fetch tgpt, or pass checkpoint=<that folder>."
        )
        raise ModelSkippedError(msg)
    config = _json(cfg_path)
    absent = [k for k in _REQUIRED_CONFIG if k not in config]
    if config.get("model_type") != "gpt2" or absent:
        msg = (
            f"{str(cfg_path)!r} is not a GPT-2 config (model_type={config.get('model_type')!r}"
            f", missing {absent}); expected the GPT2LMHeadModel config.json of a tGPT "
            f"checkpoint with {list(_REQUIRED_CONFIG)}."
        )
        raise ModelSkippedError(msg)
    vocab = read_tokenizer(tok_path)
    vocab_size = int(config["vocab_size"])
    top = max(vocab.token.values())
    if len(vocab) != vocab_size or top >= vocab_size:
        msg = (
            f"the tokenizer {str(tok_path)!r} has {len(vocab)} tokens (ids up to {top}), but "
            f"config.json says vocab_size={vocab_size}; tGPT was built with vocab_size = the "
            "tokenizer's size (21,150 for the released model). Fix: use the tokenizer.json "
            "saved with these weights."
        )
        raise ModelSkippedError(msg)
    n_pos = int(config["n_positions"])
    m = _HF_NAME.search(folder.name)
    max_length = min(int(m.group(1)) if m else DEFAULT_MAX_LENGTH, n_pos)
    return TGPTCheckpoint(
        folder=folder, config=config, vocab=vocab, weights_file=weights, max_length=max_length
    )


def build_gpt2(config: dict[str, Any], *, seed: int = 0) -> Any:
    """A ``transformers`` ``GPT2Model`` (no LM head) from a tGPT ``config.json`` dict.

    Weights are initialized as ``transformers`` does from a generator seeded with
    ``seed`` (the global torch RNG is left untouched); attention uses ``sdpa``.
    """
    import torch
    from transformers import GPT2Config, GPT2Model

    d = {k: v for k, v in config.items() if not k.startswith("_")}
    for k in ("architectures", "transformers_version", "torch_dtype", "dtype"):
        d.pop(k, None)
    d["attn_implementation"] = "sdpa"
    cfg = GPT2Config(**d)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        model = GPT2Model(cfg)
    return model.float()


def load_weights(model: Any, state: dict[str, Any], *, where: str = "") -> Any:
    """Load a tGPT state dict (``GPT2LMHeadModel`` keys ``transformer.*``, or a bare
    ``GPT2Model``'s) into a model from :func:`build_gpt2`.

    The tied ``lm_head.weight`` and the causal-mask buffers old files carry
    (``attn.bias``, ``attn.masked_bias``) are ignored by name. Anything else that does not
    fit raises :class:`ModelSkippedError` listing every missing, unexpected and mis-shaped
    tensor under its name in the file.
    """
    prefixed = any(k.startswith("transformer.") for k in state)
    own = model.state_dict()
    keep: dict[str, Any] = {}
    seen: set[str] = set()
    unexpected: list[str] = []
    shapes: list[str] = []
    for key, value in state.items():
        if key == "lm_head.weight":
            continue
        name = key[len("transformer.") :] if prefixed and key.startswith("transformer.") else key
        if prefixed and not key.startswith("transformer."):
            unexpected.append(key)
        elif _BUFFER.match(name):
            continue
        elif name not in own:
            unexpected.append(key)
        else:
            seen.add(name)
            if tuple(value.shape) == tuple(own[name].shape):
                keep[name] = value
            else:
                shapes.append(
                    f"{key}: checkpoint {tuple(value.shape)} vs config {tuple(own[name].shape)}"
                )
    pre = "transformer." if prefixed else ""
    missing = [pre + k for k in own if k not in seen]
    if missing or unexpected or shapes:
        msg = (
            f"tGPT weights in {where or 'the checkpoint'} do not fit its config.json: "
            + describe_key_mismatch(missing, unexpected, shapes)
            + ". Expected the tensors of a transformers GPT2LMHeadModel with the config's "
            "sizes (transformer.wte, transformer.wpe, transformer.h.N.*, transformer.ln_f). "
            "Fix: use the config.json saved with these weights."
        )
        raise ModelSkippedError(msg)
    model.load_state_dict(keep, strict=True)
    return model


# --------------------------------------------------------------------------- tokenization


@dataclass(frozen=True)
class TGPTTokens(RaggedCells):
    """Tokenized cells (``</b>`` + genes + ``</s>``), stored flat.

    Attributes
    ----------
    ids
        All cells' token ids, concatenated (int64).
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

    def padded(self, idx: Sequence[int] | np.ndarray, pad_id: int) -> tuple[np.ndarray, np.ndarray]:
        """``(input_ids, attention_mask)`` of cells ``idx``, right-padded to the longest."""
        (ids,), mask = self.pad(idx, [(self.ids, pad_id)])
        return ids, mask


def tokenize_counts(
    counts: Any,
    gene_tokens: Sequence[Sequence[int]],
    *,
    bos_id: int,
    eos_id: int,
    max_length: int = DEFAULT_MAX_LENGTH,
) -> TGPTTokens:
    """Expression-ranked sentences of token ids, as the official pipeline builds them.

    Parameters
    ----------
    counts
        Counts (or any expression values), cells x genes, dense or sparse.
    gene_tokens
        Token ids of each gene (:func:`gene_token_ids`; empty: the gene is left out).
    bos_id, eos_id
        ``</b>`` and ``</s>``.
    max_length
        Tokens per cell including ``</b>`` and ``</s>`` (at least 3).

    Returns
    -------
    TGPTTokens
        Per cell: ``</b>``, the tokens of its non-zero genes by value (descending; ties in
        gene order), cut after ``max_length - 2`` tokens, ``</s>``.
    """
    x = sp.csr_matrix(counts if sp.issparse(counts) else np.asarray(counts), dtype=np.float64)
    if x.shape[1] != len(gene_tokens):
        msg = f"counts have {x.shape[1]} genes but token ids were given for {len(gene_tokens)}"
        raise ValueError(msg)
    body = int(max_length) - 2
    if body < 1:
        msg = f"max_length={max_length} leaves no room for genes (need >= 3)"
        raise ValueError(msg)
    n_tok = np.array([len(t) for t in gene_tokens], dtype=np.int64)
    flat = np.array([i for t in gene_tokens for i in t], dtype=np.int64)
    start = np.concatenate([[0], np.cumsum(n_tok)[:-1]]).astype(np.int64)
    usable = np.flatnonzero(n_tok > 0)
    x = sp.csr_matrix(x[:, usable])
    x.data[~(x.data > 0)] = 0.0  # negative or NaN values are not expressed
    x.eliminate_zeros()
    n_cells = x.shape[0]
    per_cell = np.diff(x.indptr)
    rows = np.repeat(np.arange(n_cells), per_cell)
    order = np.lexsort((x.indices, -x.data, rows))  # by cell, value desc, gene order
    rank = np.arange(order.size) - x.indptr[rows]
    keep = rank < body  # every gene has >= 1 token, so body genes are always enough
    genes = usable[x.indices[order[keep]]]
    cell_of = rows[keep]
    reps = n_tok[genes]
    gene_pos = np.repeat(np.arange(genes.size), reps)
    within = np.arange(gene_pos.size) - np.repeat(np.cumsum(reps) - reps, reps)
    toks = flat[start[genes][gene_pos] + within]
    tok_cell = cell_of[gene_pos]
    cell_first = np.searchsorted(tok_cell, np.arange(n_cells))
    pos = np.arange(toks.size) - cell_first[tok_cell]
    toks, tok_cell = toks[pos < body], tok_cell[pos < body]
    n_body = np.bincount(tok_cell, minlength=n_cells).astype(np.int64)
    lengths = n_body + 2
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    ids = np.empty(int(offsets[-1]), dtype=np.int64)
    ids[offsets[:-1]] = bos_id
    ids[offsets[1:] - 1] = eos_id
    inner = np.ones(ids.size, dtype=bool)
    inner[offsets[:-1]] = False
    inner[offsets[1:] - 1] = False
    ids[inner] = toks
    return TGPTTokens(ids=ids, offsets=offsets)


# --------------------------------------------------------------------------- inference


def encode_cells(
    model: Any,
    tokens: TGPTTokens,
    *,
    pad_id: int,
    batch_size: int = 64,
    device: str = "cpu",
    precision: str = "auto",
) -> np.ndarray:
    """Mean of ``last_hidden_state`` over each cell's gene positions (without ``</b>`` and
    ``</s>``), shape ``(n_cells, n_embd)``, float32.

    Cells are batched by length and right-padded; causal attention keeps padding away from
    real positions, so no attention mask is passed. Cells without genes get a zero vector.
    """
    import torch

    lengths = tokens.lengths
    width = int(model.config.n_embd)
    out = np.zeros((len(tokens), width), dtype=np.float32)
    nonempty = np.flatnonzero(lengths > 2)
    if nonempty.size == 0:
        return out
    with inference_context(device, precision):
        for b in batches_by_length(lengths[nonempty], batch_size):
            idx = nonempty[b]
            ids, _ = tokens.padded(idx, pad_id)
            # right padding under causal attention never reaches a real position, so no
            # padding mask is needed (and sdpa can use its fused causal kernels)
            hidden = model(input_ids=torch.from_numpy(ids).to(device)).last_hidden_state.float()
            lens = torch.from_numpy(lengths[idx]).to(device)
            pos = torch.arange(hidden.shape[1], device=hidden.device)
            sel = (pos[None, :] >= 1) & (pos[None, :] < (lens - 1)[:, None])
            pooled = (hidden * sel[:, :, None]).sum(1) / (lens - 2)[:, None].float()
            out[idx] = pooled.cpu().numpy()
    return out


# --------------------------------------------------------------------------- models


class _TGPTBase(FoundationModel):
    """Shared code of ``tgpt`` and ``tgpt.random``.

    Parameters (keyword arguments)
    ----------
    checkpoint
        Registered checkpoint name or local folder (default ``tgpt``).
    batch_size
        Cells per inference batch (default 64, as the official example).
    precision
        ``"auto"`` (bf16/fp16 autocast on CUDA, fp32 on CPU), ``"fp32"``, ``"bf16"``, ``"fp16"``.
    max_length
        Tokens per sentence including ``</b>``/``</s>`` (default: 64, or the length in a
        Hugging Face folder name; at most ``n_positions``).
    unknown_genes
        ``"unk"`` (default, official: a symbol outside the vocabulary becomes ``<unk>``)
        or ``"drop"`` (such genes are left out of the sentence).
    random_init
        Seeded random weights instead of the checkpoint's (``tgpt.random``).
    """

    default_checkpoint = "tgpt"
    random_init: ClassVar[bool] = False

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        check_precision(params.get("precision", "auto"), self.info.key)
        if params.get("unknown_genes", "unk") not in _UNKNOWN_MODES:
            msg = (
                f"model {self.info.key!r}: unknown_genes must be one of {_UNKNOWN_MODES}, "
                f"got {params['unknown_genes']!r}"
            )
            raise ValueError(msg)
        if int(params.get("batch_size", 64)) < 1:
            msg = f"batch_size must be >= 1, got {params['batch_size']}"
            raise ValueError(msg)
        self._random = bool(params.get("random_init", type(self).random_init))
        self._ckpt: TGPTCheckpoint | None = None
        self._models: dict[tuple[str, int, str], Any] = {}

    checkpoint_hint = "config.json, pytorch_model.bin and tokenizer.json"

    def checkpoint(self) -> TGPTCheckpoint:
        """The resolved, read checkpoint (cached)."""
        if self._ckpt is None:
            self._ckpt = load_checkpoint(self.checkpoint_dir())
        return self._ckpt

    def max_length(self) -> int:
        """Sentence length in tokens, special tokens included."""
        ck = self.checkpoint()
        n = int(self.params.get("max_length") or ck.max_length)
        if not 3 <= n <= ck.n_positions:
            msg = (
                f"model {self.info.key!r}: max_length={n} is outside [3, {ck.n_positions}] "
                "(n_positions of the checkpoint). Fix: pass a max_length in that range."
            )
            raise ValueError(msg)
        return n

    def check(self, adata: Any, ctx: EmbedContext) -> None:
        super().check(adata, ctx)
        self.checkpoint()
        self.max_length()

    def _model(self, ctx: EmbedContext) -> Any:
        ck = self.checkpoint()
        seed = int(ctx.seed) if self._random else 0
        device = torch_device(ctx.device, self.info.key)
        key = (str(ck.folder), seed, device)
        if key not in self._models:
            model = build_gpt2(ck.config, seed=seed)
            if not self._random:
                load_weights(model, ck.state_dict(), where=str(ck.weights_file))
            self._models = {key: model.to(device).eval()}
        return self._models[key]

    def tokenize(self, adata: Any, ctx: EmbedContext) -> TGPTTokens:
        """The cells' sentences (cached in ``ctx.cache``, shared with the random control)."""
        ck = self.checkpoint()
        n = self.max_length()
        mode = self.params.get("unknown_genes", "unk")
        key = ("tgpt.tokens", str(ck.vocab.file), n, mode, ctx.cell_offset, adata.n_obs)
        cached = ctx.cache.get(key)
        if cached is not None:
            self.coverage = cached.coverage
            return cached
        symbols = [str(s) for s in gene_symbols(adata, ctx.report)]
        per_gene = [gene_token_ids(s, ck.vocab) for s in symbols]
        matched = np.array([bool(t) and ck.vocab.unk_id not in t for t in per_gene])
        counts = get_counts(adata, ctx.report)
        cov = gene_coverage(matched, counts, self.info.key)
        if mode == "drop":
            per_gene = [t if ok else [] for t, ok in zip(per_gene, matched, strict=True)]
        toks = tokenize_counts(
            counts, per_gene, bos_id=ck.vocab.bos_id, eos_id=ck.vocab.eos_id, max_length=n
        )
        toks = TGPTTokens(ids=toks.ids, offsets=toks.offsets, coverage=cov)
        ctx.cache[key] = toks
        self.coverage = cov
        return toks

    def embed_cells(self, adata: Any, ctx: EmbedContext) -> np.ndarray:
        """Cell embeddings, shape ``(n_cells, n_embd)``, float32 (see the module doc)."""
        toks = self.tokenize(adata, ctx)
        n_empty = int((toks.lengths <= 2).sum())
        if n_empty:
            warnings.warn(
                f"model {self.info.key!r}: {n_empty} cells have no expressed gene to write "
                "in a sentence; their embedding is a zero vector.",
                UserWarning,
                stacklevel=2,
            )
        return encode_cells(
            self._model(ctx),
            toks,
            pad_id=self.checkpoint().vocab.pad_id,
            batch_size=int(self.params.get("batch_size", 64)),
            device=ctx.device,
            precision=self.params.get("precision", "auto"),
        )


_INFO_COMMON: dict[str, Any] = {
    "input": "counts",
    "requires": ("torch", "transformers"),
    "install": "pip install torch transformers",
    "citation": "Shen et al., iScience 2023 (tGPT)",
    "license": _LICENSE,
}


@register_model
class TGPTModel(_TGPTBase):
    """``tgpt``: the pretrained tGPT (``transcriptome-gpt-1024-8-16-64``), zero-shot."""

    info = ModelInfo(
        key="tgpt",
        kind="foundation",
        description="tGPT: GPT-2 over expression-ranked gene symbols (top 62 genes), mean "
        "of the last hidden states over gene tokens",
        **_INFO_COMMON,
    )


@register_model
class TGPTRandom(_TGPTBase):
    """``tgpt.random``: tGPT's architecture and tokenization with weights re-initialized
    from ``ctx.seed``."""

    info = ModelInfo(
        key="tgpt.random",
        kind="control",
        description="control: tGPT architecture and tokenization, random weights (seeded)",
        **_INFO_COMMON,
    )
    random_init = True
