"""Seeded simulation of single-cell counts with known ground truth.

The generative model is a gamma-Poisson (negative binomial) in the spirit of
Splatter (Zappia et al., Genome Biol. 2017):

* gene base means ``mu_g`` from a log-normal;
* each cell type has an expression program: a set of genes with log fold changes;
* each batch multiplies every gene by ``exp(b_bg)`` with ``b_bg ~ N(0, (0.25 * batch_strength)^2)``
  and shifts library sizes;
* each cell has a log-normal library-size factor;
* counts ``~ NB(mean = s_c * mu_g * exp(program + batch), dispersion)``;
* dropout sets a count to zero with probability ``dropout / (1 + mean)``, so lowly
  expressed genes drop out more.

Genes are real human (or mouse) symbols with their Ensembl IDs from the table shipped
in ``inst/extdata``; the truth (programs, batch effects, size factors) is stored in
``obs`` and ``uns["sceval"]["simulation"]``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

__all__ = ["simulate"]


def _pick_genes(n_genes: int, species: str, rng: np.random.Generator) -> pd.DataFrame:
    from sceval.data.genes import load_gene_table

    table = load_gene_table(species)
    if "gene_type" in table.columns:
        pc = table[table["gene_type"].astype(str).str.contains("protein", case=False)]
        if len(pc) >= n_genes:
            table = pc
    table = table[table["ensembl_id"].astype(str).str.len() > 0]
    table = table.drop_duplicates("symbol").drop_duplicates("ensembl_id")
    table = table.sort_values("symbol").reset_index(drop=True)
    if n_genes > len(table):
        msg = f"n_genes={n_genes} exceeds the {len(table)} {species} genes available."
        raise ValueError(msg)
    idx = np.sort(rng.choice(len(table), size=n_genes, replace=False))
    return table.iloc[idx].reset_index(drop=True)


def _check_args(
    n_cells: int,
    n_genes: int,
    n_cell_types: int,
    n_batches: int,
    batch_strength: float,
    dropout: float,
) -> None:
    checks = [
        (n_cells >= 10, f"n_cells must be >= 10, got {n_cells}"),
        (n_genes >= 20, f"n_genes must be >= 20, got {n_genes}"),
        (n_cell_types >= 1, f"n_cell_types must be >= 1, got {n_cell_types}"),
        (n_batches >= 1, f"n_batches must be >= 1, got {n_batches}"),
        (batch_strength >= 0, f"batch_strength must be >= 0, got {batch_strength}"),
        (0 <= dropout < 1, f"dropout must be in [0, 1), got {dropout}"),
    ]
    for ok, msg in checks:
        if not ok:
            raise ValueError(msg)


def simulate(
    n_cells: int = 3000,
    n_genes: int = 2000,
    *,
    n_cell_types: int = 6,
    n_batches: int = 3,
    batch_strength: float = 1.0,
    de_fraction: float = 0.08,
    de_lfc: float = 1.5,
    n_lineages: int | None = None,
    library_size: float = 3000.0,
    library_sd: float = 0.4,
    dispersion: float = 0.2,
    dropout: float = 0.3,
    species: str = "human",
    seed: int = 0,
) -> Any:
    """Simulate a multi-batch count matrix with cell-type programs.

    Parameters
    ----------
    n_cells, n_genes
        Size of the matrix.
    n_cell_types
        Number of cell types; each has a program of ``de_fraction * n_genes`` genes.
    n_batches
        Number of batches; cells are split with batch-specific type proportions.
    batch_strength
        Scale of the batch effect: per-gene log fold changes with sd ``0.25 *
        batch_strength`` and a per-batch library-size factor with log-sd ``0.15 *
        batch_strength``. At 1 (default) uncorrected PCA separates the batches (iLISI
        about 0.0 on the default 3,000 cells) while Harmony mixes them (about 0.6); at 2
        the batches share no neighbourhoods and Harmony no longer corrects them.
    de_fraction, de_lfc
        Share of genes in each program and the mean absolute log fold change.
    n_lineages
        When set, cell types are grouped round-robin into this many lineages: each
        lineage has a shared program at ``de_lfc`` and each type a program of its own at
        ``de_lfc / 2``, so sibling types are harder to tell apart (``obs["lineage"]``).
    library_size, library_sd
        Median total count per cell and the log-normal sd of per-cell size factors.
    dispersion
        Negative-binomial dispersion (variance = mean + dispersion * mean^2).
    dropout
        Maximum extra zero-inflation probability (applied as ``dropout / (1 + mean)``).
    species
        ``"human"`` or ``"mouse"``: which gene table the names come from.
    seed
        Seed of every random draw; the same seed gives the same object.

    Returns
    -------
    anndata.AnnData
        ``X`` raw counts (CSR, float32), also in ``layers["counts"]``; ``obs`` with
        ``cell_type``, ``batch`` (categoricals) and ``size_factor``; ``var_names`` gene
        symbols and ``var`` with ``gene_symbol``, ``ensembl_id``, ``program`` (the cell type
        whose program includes the gene, or ``""``); ``uns["sceval"]["simulation"]`` holds
        the parameters, per-type programs (genes and log fold changes) and batch effects.
    """
    import anndata as ad

    _check_args(n_cells, n_genes, n_cell_types, n_batches, batch_strength, dropout)
    rng = np.random.default_rng(seed)
    genes = _pick_genes(n_genes, species, rng)

    # gene base means (normalised to proportions of the library)
    log_mu = rng.normal(-1.0, 1.3, size=n_genes)
    base = np.exp(log_mu)
    base = base / base.sum()

    # cell-type programs
    n_de = max(1, round(de_fraction * n_genes))
    type_names = [f"type_{i + 1}" for i in range(n_cell_types)]
    lfc = np.zeros((n_cell_types, n_genes))
    programs: dict[str, dict[str, list]] = {}
    program_of = np.array([""] * n_genes, dtype=object)
    own_lfc = de_lfc
    lineage_of = np.zeros(n_cell_types, dtype=int)
    if n_lineages is not None:
        if not 1 <= n_lineages <= n_cell_types:
            msg = f"n_lineages must be in [1, n_cell_types={n_cell_types}], got {n_lineages}"
            raise ValueError(msg)
        lineage_of = np.arange(n_cell_types) % n_lineages
        own_lfc = de_lfc / 2
        for lin in range(n_lineages):
            genes_l = rng.choice(n_genes, size=n_de, replace=False)
            effect_l = np.abs(rng.normal(de_lfc, 0.5, size=n_de))
            lfc[np.ix_(lineage_of == lin, genes_l)] += effect_l
    for t in range(n_cell_types):
        genes_t = rng.choice(n_genes, size=n_de, replace=False)
        sign = np.where(rng.random(n_de) < 0.8, 1.0, -1.0)
        effect = sign * np.abs(rng.normal(own_lfc, 0.5 * own_lfc / de_lfc, size=n_de))
        lfc[t, genes_t] += effect
        up = genes_t[effect > 0]
        program_of[up] = np.where(program_of[up] == "", type_names[t], program_of[up])
        programs[type_names[t]] = {
            "genes": genes["symbol"].iloc[genes_t].tolist(),
            "lfc": effect.round(4).tolist(),
        }

    # batches: per-batch type proportions, gene effects, library-size shifts
    batch_names = [f"batch_{i + 1}" for i in range(n_batches)]
    type_p = rng.dirichlet(np.full(n_cell_types, 5.0))
    batch_of = rng.integers(0, n_batches, size=n_cells)
    type_of = np.empty(n_cells, dtype=int)
    for b in range(n_batches):
        idx = np.flatnonzero(batch_of == b)
        p_b = rng.dirichlet(type_p * 20.0)
        type_of[idx] = rng.choice(n_cell_types, size=idx.size, p=p_b)
    b_sd = 0.25 * batch_strength
    batch_lfc = (
        rng.normal(0.0, b_sd, size=(n_batches, n_genes))
        if b_sd > 0
        else np.zeros((n_batches, n_genes))
    )
    batch_lib = np.exp(rng.normal(0.0, 0.15 * batch_strength, size=n_batches))

    size = library_size * np.exp(rng.normal(0.0, library_sd, size=n_cells)) * batch_lib[batch_of]
    rates = base[None, :] * np.exp(lfc[type_of] + batch_lfc[batch_of])
    rates = rates / rates.sum(axis=1, keepdims=True)
    mean = size[:, None] * rates
    # gamma-Poisson: lambda ~ Gamma(shape=1/phi, scale=mean*phi)
    shape = 1.0 / dispersion
    lam = rng.gamma(shape, mean * dispersion)
    counts = rng.poisson(lam)
    if dropout > 0:
        drop = rng.random(counts.shape) < dropout / (1.0 + mean)
        counts[drop] = 0
    X = sp.csr_matrix(counts.astype(np.float32))

    obs = pd.DataFrame(
        {
            "cell_type": pd.Categorical([type_names[i] for i in type_of], categories=type_names),
            "batch": pd.Categorical([batch_names[i] for i in batch_of], categories=batch_names),
            "lineage": pd.Categorical(
                [f"lineage_{lineage_of[i] + 1}" for i in type_of],
                categories=sorted({f"lineage_{v + 1}" for v in lineage_of}),
            ),
            "size_factor": size / library_size,
        },
        index=[f"cell_{i:05d}" for i in range(n_cells)],
    )
    var = pd.DataFrame(
        {
            "gene_symbol": genes["symbol"].astype(str).to_numpy(),
            "ensembl_id": genes["ensembl_id"].astype(str).to_numpy(),
            "program": program_of.astype(str),
            "base_mean": base,
        },
        index=pd.Index(genes["symbol"].astype(str).to_numpy(), name=None),
    )
    adata = ad.AnnData(X=X, obs=obs, var=var)
    adata.layers["counts"] = X.copy()
    adata.varm["program_lfc"] = lfc.T.astype(np.float32)  # genes x cell types
    adata.varm["batch_lfc"] = batch_lfc.T.astype(np.float32)  # genes x batches
    adata.uns["sceval"] = {
        "simulation": {
            "params": {
                "n_cells": n_cells,
                "n_genes": n_genes,
                "n_cell_types": n_cell_types,
                "n_batches": n_batches,
                "batch_strength": batch_strength,
                "de_fraction": de_fraction,
                "de_lfc": de_lfc,
                "n_lineages": n_lineages,
                "library_size": library_size,
                "library_sd": library_sd,
                "dispersion": dispersion,
                "dropout": dropout,
                "species": species,
                "seed": seed,
            },
            "programs": programs,
            "batch_lfc_sd": b_sd,
            "program_lfc_columns": type_names,
            "batch_lfc_columns": batch_names,
            "batch_library_factor": dict(
                zip(batch_names, batch_lib.round(4).tolist(), strict=True)
            ),
        }
    }
    return adata
