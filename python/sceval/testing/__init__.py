"""Helpers for tests (also used by the R package's tests): small seeded datasets."""

from __future__ import annotations

from typing import Any

__all__ = ["small_dataset"]


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
