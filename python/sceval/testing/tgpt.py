"""Random-weight tGPT checkpoints in the official on-disk layout (for tests and timing).

What the official files look like (Hugging Face ``lixiangchun/transcriptome-gpt-1024-8-16-64``,
December 2022, saved by ``GPT2LMHeadModel.save_pretrained`` of transformers 4.x):

* ``config.json``: a ``GPT2LMHeadModel`` config with the defaults of ``GPT2Config`` except
  ``n_embd`` 1024, ``n_layer`` 8, ``n_head`` 16, ``vocab_size`` 21,150 and the token ids
  ``bos`` 1, ``eos`` 2, ``pad`` 0 (``train.py``); the exact field list is inferred.
* ``pytorch_model.bin``: ``torch.save`` of the full state dict, i.e. ``transformer.*``, the
  causal-mask buffers ``transformer.h.{i}.attn.bias`` (uint8, the "ByteStorage" Hugging Face
  lists) and ``attn.masked_bias``, and ``lm_head.weight`` sharing storage with
  ``transformer.wte.weight``.
* ``tokenizer.json`` (``tokenizers`` 0.x format: ``WordLevel`` vocabulary with ``<pad>``,
  ``</b>``, ``</s>``, ``<unk>`` as ids 0-3, ``Whitespace`` pre-tokenizer, template
  ``</b> $A </s>``), ``tokenizer_config.json`` and ``special_tokens_map.json``, as in the
  GitHub repository's ``gpt2tokenizer/``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["write_for_adata", "write_tiny_tgpt"]

_SPECIALS = ("<pad>", "</b>", "</s>", "<unk>")
_OFFICIAL_DIMS = {"hidden": 1024, "layers": 8, "heads": 16}


def _tokenizer_json(vocab: dict[str, int]) -> dict[str, Any]:
    added = [
        {
            "id": i,
            "special": True,
            "content": s,
            "single_word": False,
            "lstrip": False,
            "rstrip": False,
            "normalized": False,
        }
        for i, s in enumerate(_SPECIALS)
    ]
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [
                {"SpecialToken": {"id": "</b>", "type_id": 0}},
                {"Sequence": {"id": "A", "type_id": 0}},
                {"SpecialToken": {"id": "</s>", "type_id": 0}},
            ],
            "pair": [
                {"Sequence": {"id": "A", "type_id": 0}},
                {"Sequence": {"id": "B", "type_id": 1}},
            ],
            "special_tokens": {
                s: {"id": s, "ids": [i], "tokens": [s]} for i, s in enumerate(_SPECIALS)
            },
        },
        "decoder": None,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "<unk>"},
    }


def write_tiny_tgpt(
    folder: str | Path,
    *,
    symbols: list[str],
    hidden: int = 32,
    layers: int = 2,
    heads: int = 4,
    n_positions: int = 1024,
    seed: int = 0,
    weights: str = "bin",
) -> Path:
    """Write a tGPT checkpoint with random weights.

    Parameters
    ----------
    folder
        Where to write (created).
    symbols
        Gene symbols of the vocabulary, in token order after the four special tokens;
        written as the official vocabulary spells them (``-`` and ``.`` as ``_``).
    hidden, layers, heads, n_positions
        GPT-2 sizes (``n_embd``, ``n_layer``, ``n_head``, ``n_positions``).
    seed
        Seeds the weights.
    weights
        ``"bin"`` (``pytorch_model.bin`` as the official file) or ``"safetensors"``
        (``model.safetensors`` without the buffers and the tied head).

    Returns
    -------
    pathlib.Path
        ``folder``.
    """
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from sceval.models.tgpt import normalize_symbol

    if weights not in ("bin", "safetensors"):
        msg = f"weights must be 'bin' or 'safetensors', got {weights!r}"
        raise ValueError(msg)
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    vocab: dict[str, int] = {s: i for i, s in enumerate(_SPECIALS)}
    for s in symbols:
        word = normalize_symbol(s)
        if word and word not in vocab:
            vocab[word] = len(vocab)
    (root / "tokenizer.json").write_text(json.dumps(_tokenizer_json(vocab), separators=(",", ":")))
    special_map = {
        "bos_token": "</b>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "pad_token": "<pad>",
    }
    (root / "special_tokens_map.json").write_text(json.dumps(special_map))
    tok_cfg = {
        "model_max_length": 1024,
        "pad_token": "<pad>",
        "eos_token": "</s>",
        "bos_token": "</b>",
        "unk_token": "<unk>",
        "tokenizer_class": "PreTrainedTokenizerFast",
    }
    (root / "tokenizer_config.json").write_text(json.dumps(tok_cfg))

    config: dict[str, Any] = {
        "activation_function": "gelu_new",
        "architectures": ["GPT2LMHeadModel"],
        "attn_pdrop": 0.1,
        "bos_token_id": 1,
        "embd_pdrop": 0.1,
        "eos_token_id": 2,
        "initializer_range": 0.02,
        "layer_norm_epsilon": 1e-05,
        "model_type": "gpt2",
        "n_embd": int(hidden),
        "n_head": int(heads),
        "n_inner": None,
        "n_layer": int(layers),
        "n_positions": int(n_positions),
        "pad_token_id": 0,
        "reorder_and_upcast_attn": False,
        "resid_pdrop": 0.1,
        "scale_attn_by_inverse_layer_idx": False,
        "scale_attn_weights": True,
        "summary_activation": None,
        "summary_first_dropout": 0.1,
        "summary_proj_to_labels": True,
        "summary_type": "cls_index",
        "summary_use_proj": True,
        "torch_dtype": "float32",
        "transformers_version": "4.25.1",
        "use_cache": True,
        "vocab_size": len(vocab),
    }
    (root / "config.json").write_text(json.dumps(config, indent=2) + "\n")

    cfg = GPT2Config(**{k: v for k, v in config.items() if k != "architectures"})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = GPT2LMHeadModel(cfg)
    # values drawn here (not transformers' initializer, so a checkpoint differs from a
    # seeded re-initialization), scaled so that cells' embeddings differ visibly
    wrng = np.random.default_rng([seed, 2])
    state: dict[str, Any] = {}
    for k, v in sorted(model.state_dict().items()):
        if k == "lm_head.weight":
            continue
        shape = tuple(v.shape)
        if ".ln_" in k and k.endswith("weight"):
            arr = 1.0 + 0.1 * wrng.standard_normal(shape)
        elif k.endswith("bias"):
            arr = 0.1 * wrng.standard_normal(shape)
        elif k.endswith(("wte.weight", "wpe.weight")):
            arr = 0.5 * wrng.standard_normal(shape)
        else:
            arr = wrng.standard_normal(shape) / np.sqrt(shape[0])
        state[k] = torch.from_numpy(arr.astype(np.float32))
    if weights == "safetensors":
        from safetensors.torch import save_file

        save_file(state, str(root / "model.safetensors"), metadata={"format": "pt"})
        return root
    mask = torch.tril(torch.ones((n_positions, n_positions), dtype=torch.uint8))
    for i in range(int(layers)):
        state[f"transformer.h.{i}.attn.bias"] = mask.view(1, 1, n_positions, n_positions)
        state[f"transformer.h.{i}.attn.masked_bias"] = torch.tensor(-1e4)
    state["lm_head.weight"] = state["transformer.wte.weight"]  # tied: shares the storage
    torch.save(state, root / "pytorch_model.bin")
    return root


def write_for_adata(folder: Path, adata: Any, *, seed: int = 0, size: str = "tiny") -> Path:
    """:func:`sceval.testing.tiny_checkpoint` writer: a vocabulary of ``adata``'s gene
    symbols (``var['gene_symbol']``, else ``var_names``); ``size="official"`` uses the
    released dimensions (1024-d, 8 layers, 16 heads, 1,024 positions)."""
    col = adata.var["gene_symbol"] if "gene_symbol" in adata.var else adata.var_names
    symbols = [str(s) for s in col if isinstance(s, str) and s]
    dims: dict[str, Any] = dict(_OFFICIAL_DIMS) if size == "official" else {}
    return write_tiny_tgpt(folder, symbols=symbols, seed=seed, **dims)
