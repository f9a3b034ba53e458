"""Helpers for tests (also used by the R package's tests): small seeded datasets."""

from __future__ import annotations

from typing import Any

__all__ = ["small_dataset", "tiny_checkpoint"]


def small_dataset(
    n_cells: int = 600,
    n_genes: int = 400,
    *,
    n_batches: int = 3,
    n_cell_types: int = 4,
    batch_strength: float = 1.0,
    seed: int = 0,
) -> Any:
    """A small simulated dataset (counts in ``X`` and ``layers['counts']``, ``obs['batch']``,
    ``obs['cell_type']``) that every test can afford to benchmark."""
    from sceval.data.simulate import simulate

    return simulate(
        n_cells=n_cells,
        n_genes=n_genes,
        n_batches=n_batches,
        n_cell_types=n_cell_types,
        batch_strength=batch_strength,
        de_fraction=0.1,
        seed=seed,
    )


def tiny_checkpoint(model_key: str, folder: Any, adata: Any, seed: int = 0) -> Any:
    """Write a tiny random-weight checkpoint in the official layout of ``model_key``'s
    architecture, with a vocabulary covering ``adata``'s genes; returns its folder.

    ``model_key`` may be a control such as ``scgpt.random`` (the architecture is the part
    before the dot). Used by the shared model contract test and by the R tests.
    """
    from pathlib import Path

    arch = model_key.split(".", 1)[0]
    folder = Path(folder)
    if arch == "scgpt":
        from sceval.testing.scgpt import write_tiny_scgpt

        symbols = adata.var["gene_symbol"] if "gene_symbol" in adata.var else adata.var_names
        return write_tiny_scgpt(folder, genes=[str(g) for g in symbols], seed=seed)
    if arch == "geneformer":
        from sceval.testing.geneformer import write_tiny_geneformer

        if "ensembl_id" not in adata.var:
            msg = "tiny_checkpoint('geneformer', ...) needs adata.var['ensembl_id']"
            raise ValueError(msg)
        ids = [str(g) for g in adata.var["ensembl_id"] if str(g)]
        return write_tiny_geneformer(folder, ensembl_ids=ids, seed=seed)
    msg = f"no tiny checkpoint writer for model {model_key!r}"
    raise ValueError(msg)
