"""Tiny random-weight Geneformer checkpoints in the official on-disk layout (for tests).

What the official files look like (Hugging Face ``ctheodoris/Geneformer``, June 2025):

* ``config.json``: a ``BertForMaskedLM`` config with ReLU activations, absolute positions,
  ``pad_token_id`` 0 and ``type_vocab_size`` 2. V1 (``Geneformer-V1-10M``) was saved by
  transformers 4.6 with dropout 0.02; V2 (``Geneformer-V2-104M``) by 4.44 with dropout 0.1,
  ``classifier_dropout: null`` and ``torch_dtype: float32``.
* weights: ``model.safetensors`` written by ``save_pretrained`` (the MLM decoder weight and
  bias are tied to the word embeddings and ``cls.predictions.bias`` and so not stored), or an
  older ``pytorch_model.bin`` (``torch.save`` of the full state dict, including the tied
  decoder and the ``bert.embeddings.position_ids`` buffer).
* dictionaries (pickle protocol 4): the V1 gc30M files hold ``{"<pad>": 0, "<mask>": 1}``
  as Python ints and every gene's token as a numpy ``int16`` scalar; gene medians are numpy
  ``float64`` scalars; the symbol dictionary maps ``str`` to ``str``. The V2 gc104M files
  add ``<cls>`` and ``<eos>``; their values are written here as plain Python numbers.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["write_tiny_geneformer"]

_V1_CONFIG: dict[str, Any] = {
    "architectures": ["BertForMaskedLM"],
    "attention_probs_dropout_prob": 0.02,
    "gradient_checkpointing": False,
    "hidden_act": "relu",
    "hidden_dropout_prob": 0.02,
    "initializer_range": 0.02,
    "layer_norm_eps": 1e-12,
    "model_type": "bert",
    "pad_token_id": 0,
    "position_embedding_type": "absolute",
    "transformers_version": "4.6.0",
    "type_vocab_size": 2,
    "use_cache": True,
}
_V2_CONFIG: dict[str, Any] = {
    "architectures": ["BertForMaskedLM"],
    "attention_probs_dropout_prob": 0.1,
    "classifier_dropout": None,
    "hidden_act": "relu",
    "hidden_dropout_prob": 0.1,
    "initializer_range": 0.02,
    "layer_norm_eps": 1e-12,
    "model_type": "bert",
    "pad_token_id": 0,
    "position_embedding_type": "absolute",
    "torch_dtype": "float32",
    "transformers_version": "4.44.2",
    "type_vocab_size": 2,
    "use_cache": True,
}
_MODEL_FOLDER = {"v1": "Geneformer-V1-10M", "v2": "Geneformer-V2-104M"}
_DICT_FOLDER = {"v1": "geneformer/gene_dictionaries_30m", "v2": "geneformer"}


def _gene_names(ensembl_ids: list[str]) -> list[str]:
    """Symbols from sceval's bundled tables (the ID itself when unknown)."""
    try:
        from sceval.data.genes import map_genes

        table, _ = map_genes(ensembl_ids)
        syms = table["gene_symbol"].tolist()
    except Exception:  # any table problem: fall back to the IDs
        syms = [""] * len(ensembl_ids)
    return [s or e for s, e in zip(syms, ensembl_ids, strict=True)]


def write_tiny_geneformer(
    folder: str | Path,
    *,
    ensembl_ids: list[str],
    version: str = "v2",
    hidden: int = 32,
    layers: int = 2,
    heads: int = 4,
    intermediate: int = 64,
    max_len: int | None = None,
    seed: int = 0,
    weights: str = "safetensors",
    medians: dict[str, float] | None = None,
    gene_names: list[str] | None = None,
    layout: str = "flat",
) -> Path:
    """Write a tiny Geneformer checkpoint with random weights.

    Parameters
    ----------
    folder
        Where to write (created).
    ensembl_ids
        The vocabulary's genes, in token order (tokens start at 2 for V1, 4 for V2).
    version
        ``"v1"`` (``<pad>``, ``<mask>``; gc30M file names) or ``"v2"`` (adds ``<cls>`` = 2,
        ``<eos>`` = 3; gc104M file names).
    hidden, layers, heads, intermediate
        BERT sizes.
    max_len
        ``max_position_embeddings`` (default 2,048 for V1, 4,096 for V2).
    seed
        Seeds the weights and the default medians.
    weights
        ``"safetensors"`` (``model.safetensors`` as ``save_pretrained`` writes it) or
        ``"bin"`` (an old-style ``pytorch_model.bin`` with every tensor).
    medians
        Gene -> non-zero median (default: seeded log-normal values around 1).
    gene_names
        Symbols for the symbol -> Ensembl dictionary, aligned with ``ensembl_ids`` (default:
        sceval's gene tables).
    layout
        ``"flat"`` (everything in ``folder``) or ``"repo"`` (the Hugging Face repository
        layout: ``folder/Geneformer-V2-104M/`` or ``folder/Geneformer-V1-10M/`` for the
        model, dictionaries in ``folder/geneformer/`` or
        ``folder/geneformer/gene_dictionaries_30m/``).

    Returns
    -------
    pathlib.Path
        The model folder (with ``config.json``).
    """
    import torch
    from transformers import BertConfig, BertForMaskedLM

    if version not in ("v1", "v2"):
        msg = f"version must be 'v1' or 'v2', got {version!r}"
        raise ValueError(msg)
    if weights not in ("safetensors", "bin"):
        msg = f"weights must be 'safetensors' or 'bin', got {weights!r}"
        raise ValueError(msg)
    if layout not in ("flat", "repo"):
        msg = f"layout must be 'flat' or 'repo', got {layout!r}"
        raise ValueError(msg)
    if len(set(ensembl_ids)) != len(ensembl_ids):
        msg = "ensembl_ids must be unique"
        raise ValueError(msg)
    root = Path(folder)
    model_dir = root / _MODEL_FOLDER[version] if layout == "repo" else root
    dict_dir = root / _DICT_FOLDER[version] if layout == "repo" else root
    model_dir.mkdir(parents=True, exist_ok=True)
    dict_dir.mkdir(parents=True, exist_ok=True)

    # dictionaries, with the value types of the official files
    specials = ["<pad>", "<mask>"] + (["<cls>", "<eos>"] if version == "v2" else [])
    token: dict[str, Any] = {s: i for i, s in enumerate(specials)}
    for i, g in enumerate(ensembl_ids):
        tid = len(specials) + i
        token[g] = np.int16(tid) if version == "v1" and tid < 2**15 else tid
    rng = np.random.default_rng(seed)
    if medians is None:
        medians = {g: float(rng.lognormal(0.0, 0.5)) for g in ensembl_ids}
    median: dict[str, Any] = {
        g: (np.float64(medians[g]) if version == "v1" else float(medians[g])) for g in medians
    }
    names = gene_names if gene_names is not None else _gene_names(list(ensembl_ids))
    name_id = {str(n): str(g) for n, g in zip(names, ensembl_ids, strict=True)}
    mapping = {g: g for g in ensembl_ids}
    tag = "gc30M" if version == "v1" else "gc104M"
    for stem, obj in (
        ("token_dictionary", token),
        ("gene_median_dictionary", median),
        ("gene_name_id_dict", name_id),
        ("ensembl_mapping_dict", mapping),
    ):
        with open(dict_dir / f"{stem}_{tag}.pkl", "wb") as fh:
            pickle.dump(obj, fh, protocol=4)

    # config.json with the official fields
    n_pos = int(max_len if max_len is not None else (2048 if version == "v1" else 4096))
    config = dict(_V1_CONFIG if version == "v1" else _V2_CONFIG)
    config.update(
        hidden_size=int(hidden),
        intermediate_size=int(intermediate),
        max_position_embeddings=n_pos,
        num_attention_heads=int(heads),
        num_hidden_layers=int(layers),
        vocab_size=len(token),
    )
    config = dict(sorted(config.items()))
    (model_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")

    # weights under the official key names; values drawn here (not by transformers' own
    # initializer, so a checkpoint differs from a seeded re-initialization) and scaled so
    # that cells' embeddings differ visibly
    bert_cfg = BertConfig(**{k: v for k, v in config.items() if k != "architectures"})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = BertForMaskedLM(bert_cfg)
    wrng = np.random.default_rng([seed, 1])
    state: dict[str, Any] = {}
    for k, v in sorted(model.state_dict().items()):
        shape = tuple(v.shape)
        if k.endswith("LayerNorm.weight"):
            arr = 1.0 + 0.1 * wrng.standard_normal(shape)
        elif k.endswith("bias"):
            arr = 0.1 * wrng.standard_normal(shape)
        elif "embeddings" in k:
            arr = 0.5 * wrng.standard_normal(shape)
        else:
            arr = wrng.standard_normal(shape) / np.sqrt(shape[-1])
        state[k] = torch.from_numpy(arr.astype(np.float32))
    state["cls.predictions.decoder.weight"] = state["bert.embeddings.word_embeddings.weight"]
    state["cls.predictions.decoder.bias"] = state["cls.predictions.bias"]
    if weights == "safetensors":
        from safetensors.torch import save_file

        for k in ("cls.predictions.decoder.weight", "cls.predictions.decoder.bias"):
            del state[k]  # tied: save_pretrained does not store them
        save_file(state, str(model_dir / "model.safetensors"), metadata={"format": "pt"})
    else:
        state = {k: v.clone() for k, v in state.items()}
        state["bert.embeddings.position_ids"] = torch.arange(n_pos).expand((1, -1)).clone()
        torch.save(state, model_dir / "pytorch_model.bin")
    return model_dir


def write_for_adata(folder: Path, adata: Any, *, seed: int = 0, size: str = "tiny") -> Path:
    """:func:`sceval.testing.tiny_checkpoint` writer: a V2 vocabulary of ``adata``'s
    ``var['ensembl_id']``; ``size="official"`` uses the V2-104M dimensions (768-d, 12
    layers, 12 heads)."""
    if "ensembl_id" not in adata.var:
        msg = "tiny_checkpoint('geneformer', ...) needs adata.var['ensembl_id']"
        raise ValueError(msg)
    ids = [str(g) for g in adata.var["ensembl_id"] if str(g)]
    dims: dict[str, Any] = {}
    if size == "official":
        dims = {"hidden": 768, "layers": 12, "heads": 12, "intermediate": 3072}
    return write_tiny_geneformer(folder, ensembl_ids=ids, seed=seed, **dims)
