"""Random-weight SCimilarity model folders in the official layout (for tests).

``encoder.ckpt`` (``{"state_dict": ...}``), ``layer_sizes.json`` (every state-dict key
-> shape, as ``training_models.save_all`` writes it), ``gene_order.tsv`` (one symbol per
line), ``hyperparameters.json`` and ``label_ints.csv``; BatchNorm running statistics are
random so that eval-mode inference is exercised.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["write_for_adata", "write_tiny_scimilarity"]


def write_tiny_scimilarity(
    folder: str | Path,
    *,
    genes: list[str],
    hidden: tuple[int, ...] = (32, 16),
    latent: int = 8,
    seed: int = 0,
    n_extra_genes: int = 10,
) -> Path:
    """Write a random SCimilarity encoder folder whose gene order is ``genes`` (in a
    seeded shuffled order) plus ``n_extra_genes`` genes absent from the data."""
    import numpy as np
    import torch

    from sceval.models.scimilarity import build_encoder

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    order = [str(g) for g in dict.fromkeys(genes)] + [f"NOTINDATA{i}" for i in range(n_extra_genes)]
    order = [order[i] for i in rng.permutation(len(order))]
    torch.manual_seed(seed)
    enc = build_encoder(len(order), list(hidden), latent)
    with torch.no_grad():
        for name, buf in enc.named_buffers():
            if name.endswith("running_mean"):
                buf.copy_(torch.randn(buf.shape) * 0.1)
            elif name.endswith("running_var"):
                buf.copy_(torch.rand(buf.shape) + 0.5)
    state = enc.state_dict()
    torch.save({"state_dict": state}, folder / "encoder.ckpt")
    sizes = {k: list(v.shape) for k, v in state.items()}
    (folder / "layer_sizes.json").write_text(json.dumps(sizes))
    (folder / "gene_order.tsv").write_text("\n".join(order) + "\n")
    hp = {"latent_dim": latent, "hidden_dim": list(hidden), "n_genes": len(order)}
    (folder / "hyperparameters.json").write_text(json.dumps(hp))
    (folder / "label_ints.csv").write_text(",0\n0,T cell\n1,B cell\n")
    return folder


def write_for_adata(folder: Path, adata: Any, *, seed: int = 0, size: str = "tiny") -> Path:
    """:func:`sceval.testing.tiny_checkpoint` writer: ``adata``'s symbols in the gene
    order; ``size="official"`` pads the gene order to the released 28,231 genes with
    1024-1024-1024 hidden layers and a 128-d latent."""
    symbols = adata.var["gene_symbol"] if "gene_symbol" in adata.var else adata.var_names
    genes = [str(g) for g in symbols]
    if size == "official":
        extra = max(0, 28231 - len(set(genes)))
        return write_tiny_scimilarity(
            folder,
            genes=genes,
            hidden=(1024, 1024, 1024),
            latent=128,
            seed=seed,
            n_extra_genes=extra,
        )
    return write_tiny_scimilarity(folder, genes=genes, seed=seed)
