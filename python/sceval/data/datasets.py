"""Built-in datasets: the embedded defaults of ``sceval run``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["DEFAULT_DATASETS", "DefaultDataset", "load_default_datasets", "pbmc68k_reduced"]


@dataclass(frozen=True)
class DefaultDataset:
    """A dataset with the keys and tasks it is benchmarked on."""

    name: str
    adata: Any
    batch_key: str | None
    label_key: str | None
    tasks: tuple[str, ...]


def pbmc68k_reduced() -> Any:
    """scanpy's ``pbmc68k_reduced``: 700 PBMCs, 765 genes, 10 ``bulk_labels``.

    ``X`` is scaled and ``raw`` holds log-normalized values; there are no raw counts,
    so count-based models are reported as skipped on it (Zheng et al., Nat. Commun. 2017).
    """
    import scanpy as sc

    return sc.datasets.pbmc68k_reduced()


def simulated_batches(seed: int = 0, n_cells: int = 3000) -> Any:
    """The default integration dataset: 3 batches, 6 cell types in 3 lineages, 2,000 genes."""
    from sceval.data.simulate import simulate

    return simulate(
        n_cells=n_cells,
        n_genes=2000,
        n_cell_types=6,
        n_lineages=3,
        de_lfc=1.2,
        n_batches=3,
        seed=seed,
    )


DEFAULT_DATASETS = ("pbmc68k_reduced", "sim_3batch")


def load_default_datasets() -> list[DefaultDataset]:
    """The embedded default: pbmc68k_reduced (annotation) and a 3-batch simulation
    (integration and annotation)."""
    return [
        DefaultDataset("pbmc68k_reduced", pbmc68k_reduced(), None, "bulk_labels", ("annotation",)),
        DefaultDataset(
            "sim_3batch", simulated_batches(), "batch", "cell_type", ("integration", "annotation")
        ),
    ]
