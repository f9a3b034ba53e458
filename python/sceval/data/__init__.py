"""Data: the AnnData contract, gene IDs, simulation and datasets."""

from sceval.data.contract import DataReport, detect_matrix_kind, get_counts, get_lognorm, validate
from sceval.data.genes import (
    GeneMapping,
    detect_gene_id_type,
    detect_species,
    harmonize_genes,
    load_gene_table,
)
from sceval.data.io import read_h5ad
from sceval.data.simulate import simulate
from sceval.data.simulate_perturbation import read_perturbation_h5ad, simulate_perturbation

__all__ = [
    "DataReport",
    "GeneMapping",
    "detect_gene_id_type",
    "detect_matrix_kind",
    "detect_species",
    "get_counts",
    "get_lognorm",
    "harmonize_genes",
    "load_gene_table",
    "read_h5ad",
    "read_perturbation_h5ad",
    "simulate",
    "simulate_perturbation",
    "validate",
]
