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
from sceval.data.simulate_multiome import gene_activity, load_multiome, simulate_multiome, to_mudata
from sceval.data.simulate_perturbation import read_perturbation_h5ad, simulate_perturbation

__all__ = [
    "DataReport",
    "GeneMapping",
    "detect_gene_id_type",
    "detect_matrix_kind",
    "detect_species",
    "gene_activity",
    "get_counts",
    "get_lognorm",
    "harmonize_genes",
    "load_gene_table",
    "load_multiome",
    "read_h5ad",
    "read_perturbation_h5ad",
    "simulate",
    "simulate_multiome",
    "simulate_perturbation",
    "to_mudata",
    "validate",
]
