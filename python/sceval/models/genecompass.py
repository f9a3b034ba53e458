"""GeneCompass (Yang et al., Cell Research 2024): a knowledge-informed cross-species BERT.

A BERT encoder over rank-ordered genes of human and mouse cells whose input embedding
mixes each gene token with its expression value and four tables of prior knowledge
(promoter sequence, co-expression, gene family and PECA gene-regulatory-network
embeddings). The encoder is ``transformers``' ``BertEncoder`` (sdpa attention); the
embedding block is written here in plain PyTorch after the official
``genecompass/knowledge_embeddings.py`` and ``genecompass/modeling_bert.py``
(``xCompass-AI/GeneCompass``).

Checkpoint layout
-----------------
The released models (``GeneCompass_Base``: 12 layers, 768-d, as the pretraining script;
``GeneCompass_Small``: 6 layers, its other sizes are not documented and are read from its
``config.json``; scidb.cn, README "Download Checkpoints") are ``save_pretrained`` folders of
the official ``BertForMaskedLM``: ``config.json`` (a ``BertConfig`` with the extra flags
``use_values``, ``use_promoter``, ``use_co_exp``, ``use_gene_family``, ``use_peca_grn``,
``use_cls_token``, ``warmup_steps``, ``emb_warmup_steps``) and ``pytorch_model.bin``. The
state dict holds ``bert.embeddings.*`` (``word_embeddings``, ``{prior}_embeddings.linear1``,
``concat_embeddings.cat_fc``/``cat_ln``/``cat_proj``, ``position_embeddings``,
``token_type_embeddings``, ``LayerNorm``), the prior tables as **buffers**
(``bert.embeddings.promoter_knowledge``, ``co_exp_knowledge``, ``gene_family_knowledge``,
``peca_grn_knowledge``: one row per token; ``homologous_index``: mouse token -> human
homologue token; ``position_ids``), ``bert.cls_embedding`` (``[2, hidden]``, one ``<cls>``
per species), ``bert.encoder.layer.N.*``, the MLM heads ``cls.*`` and ``cls4value.*``
(unused here) and ``emb_warmup.alpha``/``emb_warmup.steps``. There is no pooler
(``add_pooling_layer=False``). Because the prior tables travel inside the weights, the
prior-knowledge pickles (numpy arrays, which a restricted unpickler cannot read) are not
needed: the official ``from_pretrained`` overwrites the tables built from them with these
buffers.

The dictionaries (Google Drive folder ``prior_knowledge`` linked from the README) are
plain pickled dicts read with :func:`sceval.models._safe_load.load_pickle_dict`:

* token dictionary ``human_mouse_tokens.pickle`` (pretraining script; ``h&m_token1000W``
  ``.pickle`` is also accepted): Ensembl ID -> token id, human ``ENSG...`` and mouse
  ``ENSMUSG...`` genes in one vocabulary plus ``<pad>`` and ``<mask>``; the config's
  ``vocab_size`` is its length. Human and mouse genes are told apart by the prefix.
* gene medians ``human_gene_median_after_filter.pickle`` and
  ``mouse_gene_median_after_filter.pickle``: Ensembl ID -> non-zero median.

They are searched in the model folder, its ``prior_knowledge/`` and
``prior_knowledge/public/`` subfolders and those of its parent and grandparent (a model in
``pretrained_models/GeneCompass_Base`` of a copy of the repository).

Preprocessing (official ``preprocess/preprocess.py``)
----------------------------------------------------
1. Genes are matched by Ensembl ID to the tokens of the cells' species (``species``:
   ``"human"`` -> ``ENSG``, ``"mouse"`` -> ``ENSMUSG``; ``"auto"`` reads the data's IDs).
   The script's cell filters (count and mitochondrial z-scores, fewer than 7 coding genes)
   are dataset curation and are not applied: every cell is embedded.
2. ``x / median`` per gene (median 1 for a gene without one, as the script), then
   ``log2(1 + x)``. The released script divides by the median only: its total-count
   scaling (``Parmerters=1e4``) is commented out. ``normalize_total=True`` applies it
   (``x / cell total * 1e4 / median``, the total over the matched genes).
3. Non-zero genes sorted by value, descending (ties keep the data's gene order; the
   official ``np.argsort`` is not stable), the first 2,048 (``max_position_embeddings``)
   kept as ``input_ids`` with their ``values`` (float32); species 0 = human, 1 = mouse.

Forward pass and embeddings
---------------------------
``concat[word_emb(id), value, alpha * Linear_p(table_p[id'])...]`` through ``cat_fc`` ->
LayerNorm (eps 1e-5) -> QuickGELU -> ``cat_proj``, plus token-type 0 and absolute position
(genes from position 0), then LayerNorm; ``id'`` is the human homologue token for mouse
cells. The species ``<cls>`` embedding is prepended after that, the attention mask covers
``<cls>`` and the real genes (as the pretraining collator), and the encoder runs.
``alpha`` is the checkpoint's ``emb_warmup.alpha`` (1 after warm-up). The cell embedding
is the ``<cls>`` output (768-d), not a pooler (none was trained). Gene embeddings
(:meth:`GeneCompassModel.embed_genes`) are token outputs: each gene's output in a cell
that expresses only that gene, at its median (value ``log2(2) = 1``), after the species
``<cls>``.
"""

from __future__ import annotations

import json
import re
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from sceval._errors import ModelSkippedError
from sceval.data.contract import get_counts
from sceval.models._safe_load import describe_key_mismatch, load_pickle_dict, load_state_dict
from sceval.models.base import EmbedContext, ModelInfo, register_model
from sceval.models.checkpoints import CheckpointSpec, FileSpec, register_checkpoint
from sceval.models.foundation import (
    FoundationModel,
    GeneCoverage,
    RaggedCells,
    batches_by_length,
    check_precision,
    gene_coverage,
    inference_context,
    torch_device,
)

__all__ = [
    "MEDIAN_FILES",
    "PRIORS",
    "SPECIES",
    "TOKEN_FILES",
    "GeneCompassCheckpoint",
    "GeneCompassModel",
    "GeneCompassRandom",
    "GeneCompassTokens",
    "build_model",
    "encode_cells",
    "load_checkpoint",
    "load_weights",
    "tokenize_counts",
]

#: Token dictionaries, in order of preference (the one whose size is ``vocab_size`` wins).
TOKEN_FILES = ("human_mouse_tokens.pickle", "h&m_token1000W.pickle")
#: Gene-median dictionaries per species.
MEDIAN_FILES = {
    "human": "human_gene_median_after_filter.pickle",
    "mouse": "mouse_gene_median_after_filter.pickle",
}
#: Species -> (species id of the model, Ensembl prefix of its tokens).
SPECIES: dict[str, tuple[int, str]] = {"human": (0, "ENSG"), "mouse": (1, "ENSMUSG")}
#: Prior-knowledge blocks in the official concatenation order, with their config flags.
PRIORS = (
    ("promoter", "use_promoter"),
    ("co_exp", "use_co_exp"),
    ("gene_family", "use_gene_family"),
    ("peca_grn", "use_peca_grn"),
)
#: Counts per cell of the optional total-count step (the script's ``Parmerters``).
TARGET_SUM = 1e4
#: Weight files, in order of preference.
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")

_REQUIRED_CONFIG = (
    "vocab_size",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "max_position_embeddings",
)
_SPECIES_PARAM = ("auto", "human", "mouse")
_DICT_SUBDIRS = ("", "prior_knowledge", "prior_knowledge/public")
_ENSEMBL_RE = re.compile(r"^(ENS[A-Z]*G\d{11})(\.\d+)?$", re.IGNORECASE)
#: Keys of the official state dict that inference does not use.
_UNUSED_PREFIXES = ("cls.", "cls4value.", "emb_warmup.", "bert.pooler.")
_HARMLESS = ("bert.embeddings.token_type_ids",)
_TOKENIZE_CHUNK = 8192

_HOME = "https://github.com/xCompass-AI/GeneCompass"
_SCIDB = "https://www.scidb.cn/en/anonymous/SUZOdk1y"
_DRIVE = "https://drive.google.com/drive/folders/1a8jhpyw4jmAifK6Ui6u1RJtRFlbsdx08"
_CITATION = (
    "Yang, X., Liu, G., Feng, G., Bu, D., Wang, P., Jiang, J. et al. GeneCompass: "
    "deciphering universal gene regulatory mechanisms with a knowledge-informed "
    "cross-species foundation model. Cell Research 34, 830-845 (2024). "
    "doi:10.1038/s41422-024-01034-y"
)
_LICENSE = "not stated (no LICENSE in xCompass-AI/GeneCompass; weights on scidb.cn)"
_NOTES = (
    "Model files: the scidb.cn page linked from the README of xCompass-AI/GeneCompass "
    "('Download Checkpoints'; a portal page, download by hand). Dictionaries: the Google "
    "Drive folder 'prior_knowledge' linked from the same README (the repository's own "
    "prior_knowledge/*.pickle are Git LFS pointers). Put all files in one folder. The "
    "prior-knowledge embedding pickles are not needed: their tables are buffers inside "
    "pytorch_model.bin."
)


def _genecompass_spec(name: str, model_dir: str, layers: int, approx_mb: float) -> CheckpointSpec:
    files = [
        FileSpec("config.json", _SCIDB, manual=True),
        FileSpec("pytorch_model.bin", _SCIDB, manual=True),
        FileSpec(TOKEN_FILES[0], _DRIVE),
        FileSpec(MEDIAN_FILES["human"], _DRIVE),
        FileSpec(MEDIAN_FILES["mouse"], _DRIVE),
    ]
    return CheckpointSpec(
        name=name,
        model="genecompass",
        files=tuple(files),
        license=_LICENSE,
        citation=_CITATION,
        homepage=_HOME,
        description=f"GeneCompass {model_dir} ({layers} layers, 2,048 genes per cell): "
        "pretrained on ~101 million human and mouse cells with promoter, co-expression, "
        "gene-family and GRN prior knowledge",
        species="human+mouse",
        notes=f"{_NOTES} Folder on scidb.cn: {model_dir}.",
        approx_size_mb=approx_mb,
    )


register_checkpoint(_genecompass_spec("genecompass.base", "GeneCompass_Base", 12, 1100))
register_checkpoint(_genecompass_spec("genecompass.small", "GeneCompass_Small", 6, 680))


# --------------------------------------------------------------------------- checkpoint


@dataclass(frozen=True)
class GeneCompassCheckpoint:
    """A GeneCompass checkpoint folder, read (weights are loaded by :meth:`state_dict`).

    Attributes
    ----------
    folder
        The model folder.
    config
        ``config.json`` as a dict.
    token
        Token dictionary (Ensembl ID -> id, ``<pad>``, ``<mask>``).
    medians
        Species -> gene-median dictionary (only the species whose file was found).
    weights_file
        ``pytorch_model.bin`` (or ``model.safetensors``).
    files
        Which file each dictionary came from.
    """

    folder: Path
    config: dict[str, Any]
    token: dict[str, int]
    medians: dict[str, dict[str, float]]
    weights_file: Path
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def pad_id(self) -> int:
        """Token id of ``<pad>`` (the config's ``pad_token_id``)."""
        return int(self.token.get("<pad>", self.config.get("pad_token_id") or 0))

    @property
    def max_genes(self) -> int:
        """Genes per cell (``max_position_embeddings``; ``<cls>`` has no position)."""
        return int(self.config["max_position_embeddings"])

    def species_tokens(self, species: str) -> dict[str, int]:
        """The tokens of ``species``' genes (by Ensembl prefix)."""
        prefix = SPECIES[species][1]
        other = [p for s, (_, p) in SPECIES.items() if s != species and p.startswith(prefix)]
        return {
            k: v
            for k, v in self.token.items()
            if k.startswith(prefix) and not any(k.startswith(o) for o in other)
        }

    def state_dict(self) -> dict[str, Any]:
        """The checkpoint's tensors (weights-only ``torch.load`` or safetensors)."""
        return load_state_dict(self.folder, (self.weights_file.name,))


def _dict_dirs(folder: Path) -> list[Path]:
    out = []
    for base in (folder, folder.parent, folder.parent.parent):
        for sub in _DICT_SUBDIRS:
            d = base / sub if sub else base
            if d not in out and (sub or base == folder):
                out.append(d)
    return out


def _find(folder: Path, name: str) -> list[Path]:
    return [d / name for d in _dict_dirs(folder) if (d / name).is_file()]


def load_checkpoint(folder: str | Path) -> GeneCompassCheckpoint:
    """Read a GeneCompass checkpoint folder: config, dictionaries, weights file.

    Raises
    ------
    ModelSkippedError
        When a file is missing, the config is not a GeneCompass BERT config, or no token
        dictionary has the config's ``vocab_size`` tokens.
    """
    folder = Path(folder)
    cfg_path = folder / "config.json"
    weights = next((folder / n for n in WEIGHT_FILES if (folder / n).is_file()), None)
    if not cfg_path.is_file() or weights is None:
        msg = (
            f"GeneCompass checkpoint {str(folder)!r} lacks "
            f"{'config.json' if not cfg_path.is_file() else 'pytorch_model.bin'}; expected "
            "a released model folder (GeneCompass_Base or GeneCompass_Small from scidb.cn) "
            "with config.json and pytorch_model.bin. Fix: see sceval fetch genecompass.base, "
            "or pass checkpoint=<that folder>."
        )
        raise ModelSkippedError(msg)
    try:
        config = json.loads(cfg_path.read_text())
    except ValueError as err:
        msg = f"cannot read {str(cfg_path)!r} as JSON ({err}). Fix: re-download it."
        raise ModelSkippedError(msg) from err
    absent = [k for k in _REQUIRED_CONFIG if k not in config]
    if config.get("model_type") != "bert" or absent:
        msg = (
            f"{str(cfg_path)!r} is not a GeneCompass config (model_type="
            f"{config.get('model_type')!r}, missing {absent}); expected the BertConfig "
            f"saved with the weights, with {list(_REQUIRED_CONFIG)}."
        )
        raise ModelSkippedError(msg)
    if not config.get("use_cls_token", False):
        msg = (
            f"{str(cfg_path)!r} has use_cls_token={config.get('use_cls_token')!r}; the "
            "released GeneCompass models prepend a species <cls> token, whose output is the "
            "cell embedding. Fix: use a released checkpoint."
        )
        raise ModelSkippedError(msg)
    vocab_size = int(config["vocab_size"])
    found = [p for name in TOKEN_FILES for p in _find(folder, name)]
    if not found:
        places = ", ".join(str(d) for d in _dict_dirs(folder))
        msg = (
            f"GeneCompass checkpoint {str(folder)!r} has no token dictionary; expected one "
            f"of {list(TOKEN_FILES)} in one of [{places}]. Fix: download "
            "human_mouse_tokens.pickle from the README's prior_knowledge folder and put it "
            "next to config.json."
        )
        raise ModelSkippedError(msg)
    sizes = []
    token: dict[str, int] | None = None
    token_file = found[0]
    for path in found:
        d = {str(k): int(v) for k, v in load_pickle_dict(path).items()}
        sizes.append(len(d))
        if len(d) == vocab_size:
            token, token_file = d, path
            break
    if token is None:
        msg = (
            f"the GeneCompass token dictionaries {[str(p) for p in found]} have "
            f"{sizes} tokens, but config.json says vocab_size={vocab_size}; the model was "
            "built with vocab_size = len(token dictionary). Fix: use the token dictionary "
            "the checkpoint was trained with (human_mouse_tokens.pickle for the released "
            "models)."
        )
        raise ModelSkippedError(msg)
    top = max(token.values())
    if top >= vocab_size:
        msg = (
            f"the token dictionary {str(token_file)!r} uses ids up to {top}, but "
            f"vocab_size={vocab_size}. Fix: use the dictionary saved with the checkpoint."
        )
        raise ModelSkippedError(msg)
    medians: dict[str, dict[str, float]] = {}
    files = {"token": token_file}
    for species, name in MEDIAN_FILES.items():
        paths = _find(folder, name)
        if paths:
            medians[species] = {str(k): float(v) for k, v in load_pickle_dict(paths[0]).items()}
            files[f"median.{species}"] = paths[0]
    return GeneCompassCheckpoint(
        folder=folder,
        config=config,
        token=token,
        medians=medians,
        weights_file=weights,
        files=files,
    )


# --------------------------------------------------------------------------- model


def _nn() -> Any:
    """The torch modules (built lazily so importing sceval does not import torch)."""
    import torch
    from torch import nn

    class QuickGELU(nn.Module):
        """``x * sigmoid(1.702 x)`` (official ``knowledge_embeddings.QuickGELU``)."""

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * torch.sigmoid(1.702 * x)

    class PriorEmbedding(nn.Module):
        """One linear map of a prior-knowledge row to the hidden size."""

        def __init__(self, d_in: int, d_model: int) -> None:
            super().__init__()
            self.linear1 = nn.Linear(d_in, d_model)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.linear1(x)

    class KnowledgeEmbeddings(nn.Module):
        """The official knowledge embedding block (parameter and buffer names kept)."""

        def __init__(self, cfg: Any, prior_dims: dict[str, int]) -> None:
            super().__init__()
            v, h = int(cfg.vocab_size), int(cfg.hidden_size)
            self.word_embeddings = nn.Embedding(v, h, padding_idx=cfg.pad_token_id)
            self.use_values = bool(getattr(cfg, "use_values", False))
            self.priors = [p for p, _ in PRIORS if p in prior_dims]
            for p in self.priors:
                self.register_buffer(f"{p}_knowledge", torch.zeros(v, prior_dims[p]))
                setattr(self, f"{p}_embeddings", PriorEmbedding(prior_dims[p], h))
            width = h * (1 + len(self.priors)) + (1 if self.use_values else 0)
            self.concat_embeddings = nn.Sequential(
                OrderedDict(
                    [
                        ("cat_fc", nn.Linear(width, h)),
                        ("cat_ln", nn.LayerNorm(h)),
                        ("cat_gelu", QuickGELU()),
                        ("cat_proj", nn.Linear(h, h)),
                    ]
                )
            )
            n_pos = int(cfg.max_position_embeddings)
            self.position_embeddings = nn.Embedding(n_pos, h)
            self.token_type_embeddings = nn.Embedding(cfg.type_vocab_size, h)
            self.LayerNorm = nn.LayerNorm(h, eps=cfg.layer_norm_eps)
            self.register_buffer("position_ids", torch.arange(n_pos).expand((1, -1)))
            if self.priors:
                self.register_buffer("homologous_index", torch.arange(v))

        def forward(
            self,
            input_ids: torch.Tensor,
            values: torch.Tensor,
            species: torch.Tensor,
            alpha: float = 1.0,
        ) -> torch.Tensor:
            parts = [self.word_embeddings(input_ids)]
            if self.use_values:
                parts.append(values.unsqueeze(-1).to(parts[0].dtype))
            if self.priors:
                mouse = (species == 1)[:, None]
                shifted = torch.where(mouse, self.homologous_index[input_ids], input_ids)
                for p in self.priors:
                    table = getattr(self, f"{p}_knowledge")[shifted]
                    parts.append(alpha * getattr(self, f"{p}_embeddings")(table.to(parts[0].dtype)))
            x = self.concat_embeddings(torch.cat(parts, dim=2))
            n = input_ids.shape[1]
            x = x + self.token_type_embeddings(torch.zeros_like(input_ids))
            x = x + self.position_embeddings(self.position_ids[:, :n])
            return self.LayerNorm(x)

    class GeneCompassBert(nn.Module):
        """Knowledge embeddings + species ``<cls>`` + ``transformers``' ``BertEncoder``."""

        def __init__(self, cfg: Any, prior_dims: dict[str, int]) -> None:
            super().__init__()
            from transformers.models.bert.modeling_bert import BertEncoder

            self.config = cfg
            self.embeddings = KnowledgeEmbeddings(cfg, prior_dims)
            self.cls_embedding = nn.Embedding(2, int(cfg.hidden_size))
            self.encoder = BertEncoder(cfg)
            self.register_buffer("alpha", torch.tensor(1.0), persistent=False)

        def forward(
            self,
            input_ids: torch.Tensor,
            values: torch.Tensor,
            species: torch.Tensor,
            attention_mask: torch.Tensor,
        ) -> torch.Tensor:
            """Last hidden states ``(batch, 1 + genes, hidden)``; position 0 is ``<cls>``.

            The padding mask is passed as a broadcast ``(batch, 1, 1, 1 + genes)`` boolean
            key mask (no ``L x L`` mask is built), and not at all when no cell of the batch
            is padded, so that sdpa can use its fused kernels.
            """
            emb = self.embeddings(input_ids, values, species, float(self.alpha))
            x = torch.cat([self.cls_embedding(species)[:, None, :], emb], dim=1)
            mask4 = None
            if not bool(attention_mask.bool().all()):
                ones = torch.ones_like(attention_mask[:, :1])
                mask4 = torch.cat([ones, attention_mask], dim=1).bool()[:, None, None, :]
            return self.encoder(x, attention_mask=mask4).last_hidden_state

    return GeneCompassBert


def _bert_config(config: dict[str, Any]) -> Any:
    from transformers import BertConfig

    d = {k: v for k, v in config.items() if not k.startswith("_")}
    for k in ("architectures", "transformers_version", "torch_dtype", "dtype"):
        d.pop(k, None)
    d["attn_implementation"] = "sdpa"
    return BertConfig(**d)


def _prior_dims(config: dict[str, Any], state: dict[str, Any] | None) -> dict[str, int]:
    """Width of each prior table in use (from the state dict; 768 without one)."""
    dims = {}
    for p, flag in PRIORS:
        if config.get(flag, False):
            key = f"bert.embeddings.{p}_knowledge"
            dims[p] = int(state[key].shape[1]) if state is not None and key in state else 768
    return dims


def _init_weights(model: Any, std: float) -> None:
    """BERT's initialization: normal(0, std) weights, zero biases, unit LayerNorms."""
    import torch
    from torch import nn

    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Linear):
                m.weight.normal_(0.0, std)
                if m.bias is not None:
                    m.bias.zero_()
            elif isinstance(m, nn.Embedding):
                m.weight.normal_(0.0, std)
                if m.padding_idx is not None:
                    m.weight[m.padding_idx].zero_()
            elif isinstance(m, nn.LayerNorm):
                m.weight.fill_(1.0)
                m.bias.zero_()


def build_model(
    config: dict[str, Any], *, prior_dims: dict[str, int] | None = None, seed: int = 0
) -> Any:
    """The GeneCompass network (no MLM heads) for a ``config.json`` dict.

    Weights are drawn as BERT's initializer does (normal, sd ``initializer_range``) from
    a generator seeded with ``seed``; the global torch RNG is left untouched. Prior tables
    and ``homologous_index`` start as zeros / identity (they come from the checkpoint).
    """
    import torch

    cfg = _bert_config(config)
    dims = prior_dims if prior_dims is not None else _prior_dims(config, None)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        model = _nn()(cfg, dims)
        _init_weights(model, float(getattr(cfg, "initializer_range", 0.02)))
    return model.float().eval()


def load_weights(
    model: Any, state: dict[str, Any], *, where: str = "", buffers_only: bool = False
) -> Any:
    """Load an official GeneCompass state dict (``BertForMaskedLM`` keys) into a model from
    :func:`build_model`.

    The MLM heads (``cls.*``, ``cls4value.*``), a pooler and the ``emb_warmup`` counters
    are not used (``emb_warmup.alpha`` sets the prior scale). Anything else that does not
    fit raises :class:`ModelSkippedError` listing every missing, unexpected and
    mis-shaped tensor by its key in the file. ``buffers_only`` loads just the prior
    tables, ``homologous_index`` and ``position_ids`` (the ``.random`` control).
    """
    import torch

    own = model.state_dict()
    keep: dict[str, Any] = {}
    seen: set[str] = set()
    unexpected: list[str] = []
    shapes: list[str] = []
    for key, value in state.items():
        if key.startswith(_UNUSED_PREFIXES) or key in _HARMLESS:
            continue
        name = key[len("bert.") :] if key.startswith("bert.") else key
        if name not in own:
            unexpected.append(key)
            continue
        seen.add(name)
        if tuple(value.shape) != tuple(own[name].shape):
            shapes.append(
                f"{key}: checkpoint {tuple(value.shape)} vs config {tuple(own[name].shape)}"
            )
        else:
            keep[name] = value
    missing = [f"bert.{k}" for k in own if k not in seen]
    if missing or unexpected or shapes:
        msg = (
            f"GeneCompass weights in {where or 'the checkpoint'} do not fit its config.json: "
            + describe_key_mismatch(missing, unexpected, shapes)
            + ". Expected the tensors of the official BertForMaskedLM with the config's "
            "sizes and use_* flags (bert.embeddings.*, bert.cls_embedding, "
            "bert.encoder.layer.N.*). Fix: use the config.json saved with these weights."
        )
        raise ModelSkippedError(msg)
    if buffers_only:
        names = {n for n, _ in model.named_buffers()}
        keep = {k: v for k, v in keep.items() if k in names}
    model.load_state_dict(keep, strict=not buffers_only)
    alpha = state.get("emb_warmup.alpha")
    model.alpha.fill_(1.0 if alpha is None or buffers_only else float(torch.as_tensor(alpha)))
    return model


# --------------------------------------------------------------------------- tokenization


@dataclass(frozen=True)
class GeneCompassTokens(RaggedCells):
    """Ranked gene tokens and values of cells, stored flat (no ``<cls>``).

    Attributes
    ----------
    ids, values
        All cells' token ids (int64) and values (float32), concatenated.
    offsets
        Cell ``i`` is ``ids[offsets[i]:offsets[i + 1]]``; shape ``(n_cells + 1,)``.
    species
        Species id of the cells (0 human, 1 mouse).
    coverage
        The data's gene coverage of the vocabulary (``None`` for hand-made inputs).
    """

    ids: np.ndarray
    values: np.ndarray
    offsets: np.ndarray
    species: int = 0
    coverage: GeneCoverage | None = None

    def padded(
        self, idx: Sequence[int] | np.ndarray, pad_id: int = 0
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(input_ids, values, attention_mask)`` of cells ``idx``, right-padded (ids with
        ``pad_id``, values with 0) to the longest."""
        (ids, vals), mask = self.pad(idx, [(self.ids, pad_id), (self.values, 0.0)])
        return ids, vals, mask


def tokenize_counts(
    counts: Any,
    tokens: Sequence[int] | np.ndarray,
    medians: Sequence[float] | np.ndarray,
    *,
    max_genes: int = 2048,
    normalize_total: bool = False,
    species: int = 0,
) -> GeneCompassTokens:
    """Rank-value encoding as the official ``preprocess.py``.

    Parameters
    ----------
    counts
        Raw counts, cells x genes (dense or sparse).
    tokens
        Token id of each gene (``-1``: not in the vocabulary, left out).
    medians
        Gene median of each gene (1 where the dictionary has none, as the script).
    max_genes
        Genes kept per cell (``max_position_embeddings``).
    normalize_total
        Scale each cell to :data:`TARGET_SUM` over its matched genes before the median
        division (the step the released script leaves commented out).
    species
        0 human, 1 mouse (stored with the tokens).

    Returns
    -------
    GeneCompassTokens
        Per cell, the non-zero matched genes by ``log2(1 + x / median)``, descending (ties
        in gene order), at most ``max_genes``; values as float32.
    """
    x = sp.csr_matrix(counts if sp.issparse(counts) else np.asarray(counts))
    tokens = np.asarray(tokens, dtype=np.int64)
    medians = np.asarray(medians, dtype=np.float64)
    if not x.shape[1] == tokens.size == medians.size:
        msg = (
            f"counts have {x.shape[1]} genes but {tokens.size} tokens and {medians.size} "
            "medians were given"
        )
        raise ValueError(msg)
    if max_genes < 1:
        msg = f"max_genes must be >= 1, got {max_genes}"
        raise ValueError(msg)
    if np.any(~(medians > 0)):
        msg = "gene medians must be positive (use 1 for genes without one)"
        raise ValueError(msg)
    keep = np.flatnonzero(tokens >= 0)
    tok_k, med_k = tokens[keep], medians[keep]
    parts_ids: list[np.ndarray] = []
    parts_vals: list[np.ndarray] = []
    kept: list[np.ndarray] = []
    for start in range(0, x.shape[0], _TOKENIZE_CHUNK):
        block = sp.csr_matrix(x[start : start + _TOKENIZE_CHUNK][:, keep], dtype=np.float64)
        block.data[~(block.data > 0)] = 0.0
        block.eliminate_zeros()
        block.sort_indices()
        n = block.shape[0]
        per_cell = np.diff(block.indptr)
        rows = np.repeat(np.arange(n), per_cell)
        v = block.data / med_k[block.indices]
        if normalize_total:
            totals = np.asarray(block.sum(axis=1)).ravel()
            v = v / totals[rows] * TARGET_SUM
        v = np.log2(1.0 + v)
        order = np.lexsort((block.indices, -v, rows))
        rank = np.arange(order.size) - block.indptr[rows]
        sel = order[rank < max_genes]
        parts_ids.append(tok_k[block.indices[sel]])
        parts_vals.append(v[sel].astype(np.float32))
        kept.append(np.minimum(per_cell, max_genes))
    ids = np.concatenate(parts_ids) if parts_ids else np.zeros(0, dtype=np.int64)
    vals = np.concatenate(parts_vals) if parts_vals else np.zeros(0, dtype=np.float32)
    n_kept = np.concatenate(kept) if kept else np.zeros(0, dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(n_kept)]).astype(np.int64)
    return GeneCompassTokens(
        ids=ids.astype(np.int64), values=vals, offsets=offsets, species=species
    )


def _strip_ensembl(name: Any) -> str:
    m = _ENSEMBL_RE.match(str(name).strip()) if isinstance(name, str) else None
    return m.group(1).upper() if m else ""


def data_ensembl_ids(adata: Any, report: Any, species: str) -> list[str]:
    """The Ensembl ID of each gene of ``adata`` (``""`` when unknown).

    Ensembl IDs are used as they are (version dropped); symbols go through
    ``var['ensembl_id']`` (from :func:`sceval.harmonize_genes`), else the bundled gene
    table of ``species``.
    """
    col = getattr(report, "gene_id_column", None)
    names = [str(v) for v in (adata.var[col] if col else adata.var_names)]
    if str(getattr(report, "gene_id_type", "")).startswith("ensembl"):
        return [_strip_ensembl(n) for n in names]
    if "ensembl_id" in adata.var.columns:
        return [_strip_ensembl(v) for v in adata.var["ensembl_id"].tolist()]
    from sceval.data.genes import map_genes

    table, _ = map_genes(names, species=species)
    return [_strip_ensembl(v) for v in table["ensembl_id"].tolist()]


def _species_of_ids(ids: Sequence[str]) -> str | None:
    n_mouse = sum(1 for i in ids if i.startswith("ENSMUSG"))
    n_human = sum(1 for i in ids if i.startswith("ENSG"))
    if n_mouse == n_human == 0:
        return None
    return "mouse" if n_mouse > n_human else "human"


# --------------------------------------------------------------------------- inference


def encode_cells(
    model: Any,
    tokens: GeneCompassTokens,
    *,
    pad_id: int = 0,
    batch_size: int = 16,
    device: str = "cpu",
    precision: str = "auto",
) -> np.ndarray:
    """``<cls>`` outputs of cells, shape ``(n_cells, hidden)``, float32.

    Cells are batched by length and right-padded under an attention mask. Cells without
    any vocabulary gene get a zero vector.
    """
    import torch

    lengths = tokens.lengths
    out = np.zeros((len(tokens), int(model.config.hidden_size)), dtype=np.float32)
    nonempty = np.flatnonzero(lengths > 0)
    if nonempty.size == 0:
        return out
    with inference_context(device, precision):
        for b in batches_by_length(lengths[nonempty], batch_size):
            idx = nonempty[b]
            ids, vals, mask = tokens.padded(idx, pad_id)
            sp_t = torch.full((idx.size,), int(tokens.species), dtype=torch.long, device=device)
            hidden = model(
                torch.from_numpy(ids).to(device),
                torch.from_numpy(vals).to(device),
                sp_t,
                torch.from_numpy(mask).to(device),
            )
            out[idx] = hidden[:, 0].float().cpu().numpy()
    return out


# --------------------------------------------------------------------------- models


class _GeneCompassBase(FoundationModel):
    """Shared code of ``genecompass`` and ``genecompass.random``.

    Parameters (keyword arguments)
    ----------
    checkpoint
        Registered checkpoint name or local model folder (default ``genecompass.base``).
    species
        ``"auto"`` (default: from the data's Ensembl IDs), ``"human"`` or ``"mouse"``.
    normalize_total
        ``False`` (default, the released script: ``x / median``) or ``True``
        (``x / total * 1e4 / median``).
    batch_size
        Cells per inference batch (default 16).
    precision
        ``"auto"`` (bf16/fp16 autocast on CUDA, fp32 on CPU), ``"fp32"``, ``"bf16"``, ``"fp16"``.
    random_init
        Seeded random weights (the prior tables, which are inputs rather than learned
        weights, are kept from the checkpoint); ``genecompass.random``.
    """

    default_checkpoint = "genecompass.base"
    random_init: ClassVar[bool] = False

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        check_precision(params.get("precision", "auto"), self.info.key)
        sp_param = params.get("species", "auto")
        if sp_param not in _SPECIES_PARAM:
            msg = (
                f"model {self.info.key!r}: species={sp_param!r} is not supported; GeneCompass "
                f"has tokens for {list(SPECIES)} only (use one of {list(_SPECIES_PARAM)})."
            )
            raise ValueError(msg)
        if int(params.get("batch_size", 16)) < 1:
            msg = f"batch_size must be >= 1, got {params['batch_size']}"
            raise ValueError(msg)
        self._random = bool(params.get("random_init", type(self).random_init))
        self._ckpt: GeneCompassCheckpoint | None = None
        self._models: dict[tuple[str, int, str], Any] = {}
        #: Species of the data tokenized last (names in ``embed_genes`` default to it).
        self._last_species: str | None = None

    checkpoint_hint = "config.json, pytorch_model.bin and the token/median dictionaries"

    def checkpoint(self) -> GeneCompassCheckpoint:
        """The resolved, read checkpoint (cached)."""
        if self._ckpt is None:
            self._ckpt = load_checkpoint(self.checkpoint_dir())
        return self._ckpt

    def check(self, adata: Any, ctx: EmbedContext) -> None:
        super().check(adata, ctx)
        self.checkpoint()

    def _model(self, ctx: EmbedContext) -> Any:
        ck = self.checkpoint()
        seed = int(ctx.seed) if self._random else 0
        device = torch_device(ctx.device, self.info.key)
        key = (str(ck.folder), seed, device)
        if key not in self._models:
            state = ck.state_dict()
            model = build_model(ck.config, prior_dims=_prior_dims(ck.config, state), seed=seed)
            load_weights(model, state, where=str(ck.weights_file), buffers_only=self._random)
            del state
            self._models = {key: model.to(device).eval()}
        return self._models[key]

    def _species(self, ck: GeneCompassCheckpoint, ids: Sequence[str]) -> str:
        species = self.params.get("species", "auto")
        if species == "auto":
            species = _species_of_ids(ids) or "human"
        if not ck.species_tokens(species):
            have = [s for s in SPECIES if ck.species_tokens(s)]
            msg = (
                f"model {self.info.key!r}: the token dictionary {str(ck.files['token'])!r} has "
                f"no {species} tokens ({SPECIES[species][1]}...); it has tokens for {have}. "
                "Fix: pass species= one of those, or use the human_mouse_tokens.pickle of the "
                "release."
            )
            raise ModelSkippedError(msg)
        return species

    def tokenize(self, adata: Any, ctx: EmbedContext) -> GeneCompassTokens:
        """Rank-value encodings of every cell (cached in ``ctx.cache``, shared with the
        random control)."""
        ck = self.checkpoint()
        sp_param = self.params.get("species", "auto")
        norm = bool(self.params.get("normalize_total", False))
        key = ("genecompass.tokens", str(ck.files["token"]), sp_param, norm, ctx.cell_offset)
        key = (*key, adata.n_obs, ck.max_genes)
        cached = ctx.cache.get(key)
        if cached is not None:
            self.coverage = cached.coverage
            self._last_species = "mouse" if cached.species == 1 else "human"
            return cached
        guess = sp_param if sp_param != "auto" else None
        ids = data_ensembl_ids(adata, ctx.report, guess or _guess_species(adata, ctx.report))
        species = self._species(ck, ids)
        vocab = ck.species_tokens(species)
        tokens = np.array([vocab.get(i, -1) if i else -1 for i in ids], dtype=np.int64)
        counts = get_counts(adata, ctx.report)
        cov = gene_coverage(tokens >= 0, counts, self.info.key)
        med = ck.medians.get(species)
        if med is None:
            msg = (
                f"model {self.info.key!r}: no gene-median dictionary for {species} "
                f"({MEDIAN_FILES[species]}) near {str(ck.folder)!r}. Fix: download it from the "
                "README's prior_knowledge folder and put it next to config.json."
            )
            raise ModelSkippedError(msg)
        medians = np.array([med.get(i, 1.0) if i else 1.0 for i in ids], dtype=np.float64)
        medians[~(medians > 0)] = 1.0
        toks = tokenize_counts(
            counts,
            tokens,
            medians,
            max_genes=ck.max_genes,
            normalize_total=norm,
            species=SPECIES[species][0],
        )
        toks = GeneCompassTokens(
            ids=toks.ids,
            values=toks.values,
            offsets=toks.offsets,
            species=toks.species,
            coverage=cov,
        )
        ctx.cache[key] = toks
        self.coverage = cov
        self._last_species = species
        return toks

    def embed_cells(self, adata: Any, ctx: EmbedContext) -> np.ndarray:
        """``<cls>`` embeddings, shape ``(n_cells, hidden_size)``, float32."""
        toks = self.tokenize(adata, ctx)
        n_empty = int((toks.lengths == 0).sum())
        if n_empty:
            warnings.warn(
                f"model {self.info.key!r}: {n_empty} cells express no gene of the "
                "vocabulary; their embedding is a zero vector.",
                UserWarning,
                stacklevel=2,
            )
        return encode_cells(
            self._model(ctx),
            toks,
            pad_id=self.checkpoint().pad_id,
            batch_size=int(self.params.get("batch_size", 16)),
            device=ctx.device,
            precision=self.params.get("precision", "auto"),
        )

    def embed_genes(self, genes: list[str], ctx: EmbedContext) -> tuple[np.ndarray, np.ndarray]:
        """Token outputs of ``genes``, each in a cell expressing only that gene at its
        median (sequence ``<cls> gene``, value 1), shape ``(found.sum(), hidden)``.

        Genes are Ensembl IDs or symbols, mapped with the bundled table of the species:
        the ``species`` param, else that of Ensembl IDs among ``genes``, else that of the
        data embedded last, else guessed from the names (human when unclear).

        Returns
        -------
        (matrix, found)
            ``matrix`` float32 in the order of ``genes``; ``found`` a boolean mask.
        """
        import torch

        ck = self.checkpoint()
        names = [str(g) for g in genes]
        ids = [_strip_ensembl(n) for n in names]
        sp_param = self.params.get("species", "auto")
        species = sp_param if sp_param != "auto" else _species_of_ids([i for i in ids if i])
        species = species or self._last_species
        if species is None:
            from sceval.data.genes import detect_species

            guess = detect_species(names)
            species = guess if guess in SPECIES else "human"
        need = [i for i, e in enumerate(ids) if not e]
        if need:
            from sceval.data.genes import map_genes

            table, _ = map_genes([names[i] for i in need], species=species)
            for i, e in zip(need, table["ensembl_id"].tolist(), strict=True):
                ids[i] = _strip_ensembl(e)
        species = self._species(ck, ids)
        vocab = ck.species_tokens(species)
        tok = np.array([vocab.get(i, -1) if i else -1 for i in ids], dtype=np.int64)
        found = tok >= 0
        model = self._model(ctx)
        hidden = int(model.config.hidden_size)
        rows = tok[found]
        out = np.zeros((rows.size, hidden), dtype=np.float32)
        device = torch_device(ctx.device, self.info.key)
        bs = 256
        with inference_context(device, self.params.get("precision", "auto")):
            for s in range(0, rows.size, bs):
                chunk = torch.from_numpy(rows[s : s + bs, None]).to(device)
                h = model(
                    chunk,
                    torch.ones(chunk.shape, dtype=torch.float32, device=device),
                    torch.full((chunk.shape[0],), SPECIES[species][0], device=device),
                    torch.ones(chunk.shape, dtype=torch.long, device=device),
                )
                out[s : s + bs] = h[:, 1].float().cpu().numpy()
        return out, found


def _guess_species(adata: Any, report: Any) -> str:
    """Species of the data for symbol lookup (``var['ensembl_id']``, else the names)."""
    if "ensembl_id" in adata.var.columns:
        sp_ = _species_of_ids([_strip_ensembl(v) for v in adata.var["ensembl_id"].tolist()])
        if sp_ is not None:
            return sp_
    from sceval.data.genes import detect_species

    col = getattr(report, "gene_id_column", None)
    guess = detect_species([str(v) for v in (adata.var[col] if col else adata.var_names)])
    return guess if guess in SPECIES else "human"


_INFO_COMMON: dict[str, Any] = {
    "input": "counts",
    "requires": ("torch", "transformers"),
    "install": "pip install torch transformers",
    "citation": "Yang et al., Cell Research 2024 (GeneCompass)",
    "license": _LICENSE,
}


@register_model
class GeneCompassModel(_GeneCompassBase):
    """``genecompass``: the pretrained GeneCompass (default Base, 12 layers), zero-shot."""

    info = ModelInfo(
        key="genecompass",
        kind="foundation",
        description="GeneCompass: knowledge-informed human/mouse BERT (promoter, "
        "co-expression, gene family, GRN priors), species <cls> output",
        **_INFO_COMMON,
    )


@register_model
class GeneCompassRandom(_GeneCompassBase):
    """``genecompass.random``: GeneCompass's architecture, prior tables and preprocessing
    with weights re-initialized from ``ctx.seed``."""

    info = ModelInfo(
        key="genecompass.random",
        kind="control",
        description="control: GeneCompass architecture, priors and tokenization, random "
        "weights (seeded)",
        **_INFO_COMMON,
    )
    random_init = True
