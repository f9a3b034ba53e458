"""Random-weight GeneCompass checkpoints in the official on-disk layout (for tests, timing).

What the official files look like (``xCompass-AI/GeneCompass``; the released
``GeneCompass_Base`` / ``GeneCompass_Small`` folders hold ``config.json``,
``generation_config.json``, ``pytorch_model.bin`` and ``training_args.bin``):

* ``config.json``: ``BertConfig.to_dict()`` of the pretraining script
  (``pretraining/pretrain_genecompass_w_human_mouse_base.py``: hidden 768, 12 layers, 12
  heads, FFN 3072, GELU, LayerNorm eps 1e-12, dropout 0.02, ``max_position_embeddings``
  2048, ``vocab_size`` = len(token dictionary), ``pad_token_id`` = ``<pad>``) plus the
  flags ``use_values``, ``use_promoter``, ``use_co_exp``, ``use_gene_family``,
  ``use_peca_grn``, ``use_cls_token`` and ``warmup_steps`` / ``emb_warmup_steps``.
* ``pytorch_model.bin``: ``torch.save`` of the ``BertForMaskedLM`` state dict, buffers
  included: ``bert.embeddings.{promoter,co_exp,gene_family,peca_grn}_knowledge`` (one row
  per token; zeros for ``<pad>`` and ``<mask>``, as ``genecompass/utils.py`` builds them),
  ``bert.embeddings.homologous_index`` (int64; mouse token -> human homologue token) and
  ``bert.embeddings.position_ids``; the MLM heads ``cls.*`` (decoder tied to the word
  embeddings) and ``cls4value.*``; ``emb_warmup.alpha`` (1.0) and ``emb_warmup.steps``.
* dictionaries (plain pickles): ``human_mouse_tokens.pickle`` (``<pad>`` 0, ``<mask>`` 1,
  then Ensembl IDs of both species) and ``{human,mouse}_gene_median_after_filter.pickle``.
* ``training_args.bin`` (a pickled ``TrainingArguments`` object, not needed for
  inference and never read by sceval) is not written.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["write_for_adata", "write_tiny_genecompass"]

_PRIORS = ("promoter", "co_exp", "gene_family", "peca_grn")
#: Tiny prior widths (distinct, so a swapped table fails loudly); the release uses 768.
_TINY_PRIOR_DIMS = {"promoter": 24, "co_exp": 20, "gene_family": 16, "peca_grn": 12}
_OFFICIAL = {"hidden": 768, "layers": 12, "heads": 12, "intermediate": 3072}


def _encoder_shapes(h: int, inter: int, layers: int) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    for i in range(layers):
        p = f"bert.encoder.layer.{i}."
        for lin in ("attention.self.query", "attention.self.key", "attention.self.value"):
            shapes[f"{p}{lin}.weight"] = (h, h)
            shapes[f"{p}{lin}.bias"] = (h,)
        shapes[f"{p}attention.output.dense.weight"] = (h, h)
        shapes[f"{p}attention.output.dense.bias"] = (h,)
        shapes[f"{p}attention.output.LayerNorm.weight"] = (h,)
        shapes[f"{p}attention.output.LayerNorm.bias"] = (h,)
        shapes[f"{p}intermediate.dense.weight"] = (inter, h)
        shapes[f"{p}intermediate.dense.bias"] = (inter,)
        shapes[f"{p}output.dense.weight"] = (h, inter)
        shapes[f"{p}output.dense.bias"] = (h,)
        shapes[f"{p}output.LayerNorm.weight"] = (h,)
        shapes[f"{p}output.LayerNorm.bias"] = (h,)
    return shapes


def write_tiny_genecompass(
    folder: str | Path,
    *,
    human_ids: list[str],
    mouse_ids: list[str] | None = None,
    homologs: dict[str, str] | None = None,
    hidden: int = 32,
    layers: int = 2,
    heads: int = 4,
    intermediate: int = 64,
    max_len: int = 2048,
    prior_dims: dict[str, int] | None = None,
    seed: int = 0,
    medians: dict[str, float] | None = None,
    layout: str = "flat",
) -> Path:
    """Write a GeneCompass checkpoint with random weights.

    Parameters
    ----------
    folder
        Where to write (created).
    human_ids, mouse_ids
        ``ENSG`` and ``ENSMUSG`` IDs of the vocabulary, in token order after ``<pad>`` (0)
        and ``<mask>`` (1); human first.
    homologs
        Mouse ID -> human ID (fills ``homologous_index``).
    hidden, layers, heads, intermediate, max_len
        BERT sizes (``max_position_embeddings`` = genes per cell).
    prior_dims
        Width of each prior table (default: small distinct widths; the release: 768).
    seed
        Seeds weights, prior tables and default medians.
    medians
        Ensembl ID -> median (default: seeded log-normal values); written to the human and
        mouse median files by prefix.
    layout
        ``"flat"`` (everything in ``folder``) or ``"repo"`` (the repository layout: model in
        ``folder/pretrained_models/GeneCompass_Base``, dictionaries in
        ``folder/prior_knowledge`` and ``folder/prior_knowledge/public``).

    Returns
    -------
    pathlib.Path
        The model folder (with ``config.json``).
    """
    import torch

    if layout not in ("flat", "repo"):
        msg = f"layout must be 'flat' or 'repo', got {layout!r}"
        raise ValueError(msg)
    mouse_ids = list(mouse_ids or [])
    ids = list(human_ids) + mouse_ids
    if len(set(ids)) != len(ids):
        msg = "human_ids and mouse_ids must be unique"
        raise ValueError(msg)
    root = Path(folder)
    model_dir = root / "pretrained_models" / "GeneCompass_Base" if layout == "repo" else root
    tok_dir = root / "prior_knowledge" if layout == "repo" else root
    med_dir = root / "prior_knowledge" / "public" if layout == "repo" else root
    for d in (model_dir, tok_dir, med_dir):
        d.mkdir(parents=True, exist_ok=True)

    token: dict[str, int] = {"<pad>": 0, "<mask>": 1}
    for g in ids:
        token[g] = len(token)
    rng = np.random.default_rng([seed, 3])
    if medians is None:
        medians = {g: float(rng.lognormal(0.0, 0.7)) for g in ids}
    with open(tok_dir / "human_mouse_tokens.pickle", "wb") as fh:
        pickle.dump(token, fh, protocol=4)
    for species, prefix in (("human", "ENSG"), ("mouse", "ENSMUSG")):
        med = {g: float(v) for g, v in medians.items() if g.startswith(prefix)}
        with open(med_dir / f"{species}_gene_median_after_filter.pickle", "wb") as fh:
            pickle.dump(med, fh, protocol=4)

    v = len(token)
    h, inter = int(hidden), int(intermediate)
    dims = dict(prior_dims or _TINY_PRIOR_DIMS)
    config: dict[str, Any] = {
        "architectures": ["BertForMaskedLM"],
        "attention_probs_dropout_prob": 0.02,
        "classifier_dropout": None,
        "emb_warmup_steps": 10000,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.02,
        "hidden_size": h,
        "initializer_range": 0.02,
        "intermediate_size": inter,
        "layer_norm_eps": 1e-12,
        "max_position_embeddings": int(max_len),
        "model_type": "bert",
        "num_attention_heads": int(heads),
        "num_hidden_layers": int(layers),
        "pad_token_id": 0,
        "position_embedding_type": "absolute",
        "torch_dtype": "float32",
        "transformers_version": "4.28.1",
        "type_vocab_size": 2,
        "use_cache": True,
        "use_cls_token": True,
        "use_co_exp": True,
        "use_gene_family": True,
        "use_peca_grn": True,
        "use_promoter": True,
        "use_values": True,
        "vocab_size": v,
        "warmup_steps": 10000,
    }
    (model_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    gen = {"_from_model_config": True, "pad_token_id": 0, "transformers_version": "4.28.1"}
    (model_dir / "generation_config.json").write_text(json.dumps(gen, indent=2) + "\n")

    shapes: dict[str, tuple[int, ...]] = {"bert.embeddings.word_embeddings.weight": (v, h)}
    for p in _PRIORS:
        shapes[f"bert.embeddings.{p}_embeddings.linear1.weight"] = (h, dims[p])
        shapes[f"bert.embeddings.{p}_embeddings.linear1.bias"] = (h,)
    cat = h * (1 + len(_PRIORS)) + 1
    shapes.update(
        {
            "bert.embeddings.concat_embeddings.cat_fc.weight": (h, cat),
            "bert.embeddings.concat_embeddings.cat_fc.bias": (h,),
            "bert.embeddings.concat_embeddings.cat_ln.weight": (h,),
            "bert.embeddings.concat_embeddings.cat_ln.bias": (h,),
            "bert.embeddings.concat_embeddings.cat_proj.weight": (h, h),
            "bert.embeddings.concat_embeddings.cat_proj.bias": (h,),
            "bert.embeddings.position_embeddings.weight": (int(max_len), h),
            "bert.embeddings.token_type_embeddings.weight": (2, h),
            "bert.embeddings.LayerNorm.weight": (h,),
            "bert.embeddings.LayerNorm.bias": (h,),
            "bert.cls_embedding.weight": (2, h),
        }
    )
    shapes.update(_encoder_shapes(h, inter, int(layers)))
    for head, out in (("cls", v), ("cls4value", 1)):
        shapes[f"{head}.predictions.bias"] = (out,)
        shapes[f"{head}.predictions.transform.dense.weight"] = (h, h)
        shapes[f"{head}.predictions.transform.dense.bias"] = (h,)
        shapes[f"{head}.predictions.transform.LayerNorm.weight"] = (h,)
        shapes[f"{head}.predictions.transform.LayerNorm.bias"] = (h,)
        if head == "cls4value":
            shapes["cls4value.predictions.decoder.weight"] = (1, h)

    # values drawn here, scaled so that cells' embeddings differ visibly
    wrng = np.random.default_rng([seed, 4])
    state: dict[str, Any] = {}
    for k, shape in shapes.items():
        if "LayerNorm.weight" in k or "cat_ln.weight" in k:
            arr = 1.0 + 0.1 * wrng.standard_normal(shape)
        elif k.endswith("bias"):
            arr = 0.1 * wrng.standard_normal(shape)
        elif "embeddings.weight" in k or k.endswith("cls_embedding.weight"):
            arr = 0.5 * wrng.standard_normal(shape)
        else:
            arr = wrng.standard_normal(shape) / np.sqrt(shape[-1])
        state[k] = torch.from_numpy(arr.astype(np.float32))
    state["bert.embeddings.word_embeddings.weight"][0] = 0.0  # padding_idx row
    for p in _PRIORS:
        table = wrng.standard_normal((v, dims[p])).astype(np.float32)
        table[:2] = 0.0  # <pad>, <mask>
        state[f"bert.embeddings.{p}_knowledge"] = torch.from_numpy(table)
    hom = np.arange(v, dtype=np.int64)
    for m, hu in (homologs or {}).items():
        if m in token and hu in token:
            hom[token[m]] = token[hu]
    state["bert.embeddings.homologous_index"] = torch.from_numpy(hom)
    state["bert.embeddings.position_ids"] = torch.arange(int(max_len)).expand((1, -1)).clone()
    state["cls.predictions.decoder.weight"] = state["bert.embeddings.word_embeddings.weight"]
    state["cls.predictions.decoder.bias"] = state["cls.predictions.bias"]
    state["cls4value.predictions.decoder.bias"] = state["cls4value.predictions.bias"]
    state["emb_warmup.alpha"] = torch.tensor(1.0)
    state["emb_warmup.steps"] = torch.tensor(250000)
    torch.save(state, model_dir / "pytorch_model.bin")
    return model_dir


def _other_species_ids(symbols: list[str], species: str) -> dict[str, str]:
    """Symbol (upper case) -> Ensembl ID of the other species, from sceval's tables."""
    from sceval.data.genes import load_gene_table

    other = "mouse" if species == "human" else "human"
    tab = load_gene_table(other)
    lookup = {str(s).upper(): str(e) for s, e in zip(tab["symbol"], tab["ensembl_id"], strict=True)}
    return {s.upper(): lookup[s.upper()] for s in symbols if s and s.upper() in lookup}


def write_for_adata(
    folder: Path, adata: Any, *, seed: int = 0, size: str = "tiny", **kwargs: Any
) -> Path:
    """:func:`sceval.testing.tiny_checkpoint` writer: a human+mouse vocabulary holding
    ``adata``'s ``var['ensembl_id']`` and their other-species namesakes (paired as
    homologues); ``size="official"`` uses the Base dimensions (768-d, 12 layers, 12 heads,
    FFN 3072, priors 768-wide). Other keyword arguments go to
    :func:`write_tiny_genecompass` (e.g. ``max_len``)."""
    if "ensembl_id" not in adata.var:
        msg = "tiny_checkpoint('genecompass', ...) needs adata.var['ensembl_id']"
        raise ValueError(msg)
    ids = [str(g) for g in adata.var["ensembl_id"] if isinstance(g, str) and g]
    species = "mouse" if sum(i.startswith("ENSMUSG") for i in ids) > len(ids) / 2 else "human"
    col = adata.var["gene_symbol"] if "gene_symbol" in adata.var else adata.var_names
    symbols = [
        str(s)
        for s, g in zip(col, adata.var["ensembl_id"], strict=True)
        if isinstance(g, str) and g
    ]
    other = _other_species_ids(symbols, species)
    pairs = {g: other[s.upper()] for g, s in zip(ids, symbols, strict=True) if s.upper() in other}
    others = list(dict.fromkeys(v for v in pairs.values() if v not in set(ids)))
    if species == "human":
        human, mouse = ids, others
        homologs = {m: hu for hu, m in pairs.items() if m in set(mouse)}
    else:
        human, mouse = others, ids
        homologs = {m: hu for m, hu in pairs.items() if hu in set(human)}
    kw: dict[str, Any] = {}
    if size == "official":
        kw = dict(_OFFICIAL)
        kw["prior_dims"] = dict.fromkeys(_PRIORS, 768)
    kw.update(kwargs)
    return write_tiny_genecompass(
        folder, human_ids=human, mouse_ids=mouse, homologs=homologs, seed=seed, **kw
    )
