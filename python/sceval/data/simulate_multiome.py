"""Paired RNA + ATAC (multiome) data: a seeded simulator, readers and gene activity.

The simulator draws the RNA counts with :func:`sceval.data.simulate.simulate` and an
ATAC-like binary peak matrix from the *same* cells (same cell types, same barcodes):

* a share ``linked_fraction`` of the peaks is linked to a gene (its promoter/enhancer;
  the known map is ``atac.var["gene"]``, ``""`` for unlinked peaks);
* each peak has a base log-odds of being open, ``N(peak_logit, 1)``;
* a linked peak of gene ``g`` in a cell of type ``t`` gets ``coupling * lfc[g, t]``
  added, where ``lfc`` is the RNA program log fold change (``rna.varm["program_lfc"]``),
  so accessibility follows expression programs;
* each cell has a log-normal accessibility depth that shifts all its log-odds;
* ``atac[c, p] ~ Bernoulli(sigmoid(logit))``.

Readers (:func:`load_multiome`) accept an ``.h5mu`` file / ``MuData`` with modalities
``rna`` and ``atac`` or two AnnData objects (or ``.h5ad`` paths) and align them on their
shared cell barcodes. :func:`gene_activity` sums the peaks linked to each gene into a
cells x genes count matrix, so models that only read RNA can embed ATAC cells.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from sceval._errors import DataContractError

__all__ = [
    "PEAK_GENE_COLUMN",
    "check_atac",
    "gene_activity",
    "load_multiome",
    "simulate_multiome",
    "to_mudata",
]

#: ``atac.var`` column holding the gene each peak is linked to (``""``: none).
PEAK_GENE_COLUMN = "gene"
_RNA_NAMES = ("rna", "gex", "expression")
_ATAC_NAMES = ("atac", "peaks", "chromatin")


def simulate_multiome(
    n_cells: int = 2000,
    n_genes: int = 500,
    n_peaks: int = 2000,
    n_cell_types: int = 5,
    seed: int = 0,
    *,
    linked_fraction: float = 0.7,
    coupling: float = 1.5,
    peak_logit: float = -2.5,
    depth_sd: float = 0.3,
    **rna_kwargs: Any,
) -> tuple[Any, Any]:
    """Simulate paired RNA counts and binary ATAC peaks of the same cells.

    Parameters
    ----------
    n_cells, n_genes, n_peaks
        Matrix sizes.
    n_cell_types
        Cell types shared by both modalities (``obs["cell_type"]``).
    seed
        Seed of every draw (the RNA part uses it too).
    linked_fraction
        Share of peaks linked to a gene (uniformly drawn genes).
    coupling
        Scale from the RNA program log fold change of a gene to the log-odds change of
        its linked peaks.
    peak_logit, depth_sd
        Mean base log-odds of a peak being open; log-sd of per-cell accessibility depth.
    **rna_kwargs
        Passed to :func:`sceval.data.simulate.simulate` (default ``n_batches=1``).

    Returns
    -------
    tuple of anndata.AnnData
        ``(rna, atac)`` with identical ``obs_names`` and ``obs``. ``rna`` is the output of
        ``simulate``; ``atac.X`` is binary (CSR float32, also ``layers["counts"]``),
        ``atac.var`` has ``gene`` (linked gene or ``""``) and ``base_logit``;
        ``atac.uns["sceval"]["multiome"]`` holds the parameters and the name of the
        peak -> gene column.
    """
    import anndata as ad

    from sceval.data.simulate import simulate

    if n_peaks < 10:
        msg = f"n_peaks must be >= 10, got {n_peaks}"
        raise ValueError(msg)
    if not 0 <= linked_fraction <= 1:
        msg = f"linked_fraction must be in [0, 1], got {linked_fraction}"
        raise ValueError(msg)
    rna_kwargs.setdefault("n_batches", 1)
    rna = simulate(n_cells, n_genes, n_cell_types=n_cell_types, seed=seed, **rna_kwargs)
    rng = np.random.default_rng([seed, 7919])
    lfc = np.asarray(rna.varm["program_lfc"], dtype=np.float64)  # genes x types
    types = rna.obs["cell_type"].cat.codes.to_numpy()

    linked = rng.random(n_peaks) < linked_fraction
    gene_idx = np.where(linked, rng.integers(0, n_genes, size=n_peaks), -1)
    base = rng.normal(peak_logit, 1.0, size=n_peaks)
    effect = np.zeros((lfc.shape[1], n_peaks))  # types x peaks
    effect[:, linked] = coupling * lfc[gene_idx[linked]].T
    depth = rng.normal(0.0, depth_sd, size=n_cells)
    chunks = []
    for s in range(0, n_cells, 2000):  # chunks of cells keep memory bounded
        e = min(s + 2000, n_cells)
        logit = base[None, :] + effect[types[s:e]] + depth[s:e, None]
        p_open = 1.0 / (1.0 + np.exp(-logit))
        chunks.append(sp.csr_matrix((rng.random(p_open.shape) < p_open).astype(np.float32)))
    X = sp.csr_matrix(sp.vstack(chunks, format="csr"))

    names = rna.var_names.to_numpy().astype(str)
    var = pd.DataFrame(
        {
            PEAK_GENE_COLUMN: np.where(linked, names[np.maximum(gene_idx, 0)], ""),
            "base_logit": base,
        },
        index=[f"peak_{i:05d}" for i in range(n_peaks)],
    )
    atac = ad.AnnData(X=X, obs=rna.obs.copy(), var=var)
    atac.layers["counts"] = X.copy()
    atac.obs["atac_depth"] = np.exp(depth)
    atac.uns["sceval"] = {
        "multiome": {
            "peak_to_gene_column": PEAK_GENE_COLUMN,
            "params": {
                "n_cells": n_cells,
                "n_genes": n_genes,
                "n_peaks": n_peaks,
                "n_cell_types": n_cell_types,
                "seed": seed,
                "linked_fraction": linked_fraction,
                "coupling": coupling,
                "peak_logit": peak_logit,
                "depth_sd": depth_sd,
            },
        }
    }
    return rna, atac


def to_mudata(rna: Any, atac: Any) -> Any:
    """A ``MuData`` with modalities ``"rna"`` and ``"atac"`` (needs ``mudata``)."""
    try:
        import mudata
    except ImportError as err:
        msg = f"to_mudata needs the 'mudata' package ({err}). Install it with: pip install mudata"
        raise ImportError(msg) from err
    return mudata.MuData({"rna": rna, "atac": atac})


def _pick_mod(mods: Mapping[str, Any], wanted: tuple[str, ...], what: str) -> Any:
    lower = {str(k).lower(): k for k in mods}
    for name in wanted:
        if name in lower:
            return mods[lower[name]]
    msg = (
        f"MuData: expected a {what} modality named one of {list(wanted)}, found modalities "
        f"{list(mods)}. Fix: rename the modality (mdata.mod['{wanted[0]}'] = ...)."
    )
    raise DataContractError(msg)


def _read_one(obj: Any, what: str) -> Any:
    if isinstance(obj, str | Path):
        import anndata as ad

        path = Path(obj)
        if not path.exists():
            msg = f"{what}: expected an existing .h5ad file, found no file at {str(path)!r}"
            raise DataContractError(msg)
        return ad.read_h5ad(path)
    if not hasattr(obj, "obs_names") or not hasattr(obj, "X"):
        msg = f"{what}: expected an AnnData or a .h5ad path, found {type(obj).__name__}"
        raise DataContractError(msg)
    return obj


def check_atac(atac: Any) -> sp.csr_matrix:
    """The binary (0/1) CSR peak matrix of ``atac``; raise on values that are not counts.

    Peak counts (non-negative integers) are binarized; negative or fractional values (e.g.
    TF-IDF or log-transformed data) raise :class:`DataContractError`.
    """
    x = atac.layers["counts"] if "counts" in getattr(atac, "layers", {}) else atac.X
    x = sp.csr_matrix(x, dtype=np.float64)
    x.sum_duplicates()
    data = x.data
    if data.size and not np.all(np.isfinite(data)):
        msg = "ATAC: expected finite peak counts, found NaN/inf. Fix: pass raw peak counts."
        raise DataContractError(msg)
    if data.size and data.min() < 0:
        msg = (
            f"ATAC: expected non-negative peak counts or a binary matrix, found negative "
            f"values (min {data.min():.3g}). Fix: pass raw peak counts or binarize them "
            "(atac.X = (atac.X > 0).astype('float32'))."
        )
        raise DataContractError(msg)
    if data.size and not np.all(data == np.round(data)):
        msg = (
            "ATAC: expected integer peak counts or a binary matrix, found non-integer "
            "values (normalized or TF-IDF data?). Fix: pass raw peak counts or binarize "
            "them (atac.X = (atac.X > 0).astype('float32'))."
        )
        raise DataContractError(msg)
    out = x.astype(np.float32)
    out.data = (data > 0).astype(np.float32)
    out.eliminate_zeros()
    return out


def load_multiome(source: Any, atac: Any = None) -> tuple[Any, Any]:
    """Read paired RNA + ATAC data and align the two on their shared cell barcodes.

    Parameters
    ----------
    source
        An ``.h5mu`` path or ``MuData`` (modalities ``rna``/``gex`` and ``atac``/``peaks``),
        a ``(rna, atac)`` pair, or the RNA part (AnnData or ``.h5ad`` path) when ``atac``
        is given.
    atac
        The ATAC part (AnnData or ``.h5ad`` path) when ``source`` is the RNA part.

    Returns
    -------
    tuple of anndata.AnnData
        ``(rna, atac)`` restricted to the shared barcodes, in RNA order. ATAC values are
        checked (non-negative integers or binary; see :func:`check_atac`).

    Raises
    ------
    DataContractError
        No shared barcodes, duplicated barcodes, missing modality, ATAC values that are
        not counts.
    """
    if atac is not None:
        rna = _read_one(source, "RNA")
        atac = _read_one(atac, "ATAC")
    elif isinstance(source, tuple | list):
        if len(source) != 2:
            msg = f"expected a (rna, atac) pair, found {len(source)} items"
            raise DataContractError(msg)
        rna, atac = _read_one(source[0], "RNA"), _read_one(source[1], "ATAC")
    else:
        mdata = source
        if isinstance(source, str | Path):
            if not str(source).endswith(".h5mu"):
                msg = (
                    f"expected an .h5mu file (or a (rna, atac) pair), found {str(source)!r}. "
                    "Fix: pass load_multiome(rna_path, atac_path) for two .h5ad files."
                )
                raise DataContractError(msg)
            import mudata

            mdata = mudata.read_h5mu(source)
        if not hasattr(mdata, "mod"):
            msg = (
                f"expected MuData, an .h5mu path or a (rna, atac) pair, found "
                f"{type(source).__name__}"
            )
            raise DataContractError(msg)
        rna = _pick_mod(mdata.mod, _RNA_NAMES, "RNA")
        atac = _pick_mod(mdata.mod, _ATAC_NAMES, "ATAC")
    return align_modalities(rna, atac)


def align_modalities(rna: Any, atac: Any) -> tuple[Any, Any]:
    """Restrict ``rna`` and ``atac`` to their shared barcodes (RNA order); check ATAC."""
    for name, obj in (("RNA", rna), ("ATAC", atac)):
        if not obj.obs_names.is_unique:
            msg = (
                f"{name}: expected unique cell barcodes, found duplicates. Fix: "
                "obj.obs_names_make_unique() or drop the duplicated cells."
            )
            raise DataContractError(msg)
    shared = rna.obs_names.intersection(atac.obs_names, sort=False)
    if len(shared) == 0:
        msg = (
            f"RNA and ATAC share no cell barcodes (RNA e.g. {list(rna.obs_names[:2])}, ATAC "
            f"e.g. {list(atac.obs_names[:2])}); expected the same cells in both. Fix: make "
            "the barcodes match (strip prefixes/suffixes such as '-1' or 'atac_')."
        )
        raise DataContractError(msg)
    order = rna.obs_names[rna.obs_names.isin(shared)]
    if len(order) != rna.n_obs:
        rna = rna[order].copy()
    if len(order) != atac.n_obs or not atac.obs_names.equals(order):
        atac = atac[order].copy()
    check_atac(atac)
    return rna, atac


def _peak_genes(atac: Any, peak_to_gene: Any) -> np.ndarray:
    if peak_to_gene is None:
        col = atac.uns.get("sceval", {}).get("multiome", {}).get("peak_to_gene_column")
        peak_to_gene = col or PEAK_GENE_COLUMN
    if isinstance(peak_to_gene, str):
        if peak_to_gene not in atac.var.columns:
            msg = (
                f"gene_activity: expected a peak -> gene column {peak_to_gene!r} in atac.var, "
                f"found columns {list(atac.var.columns)}. Fix: pass peak_to_gene= (a var "
                "column name or a {peak: gene} mapping)."
            )
            raise DataContractError(msg)
        genes = atac.var[peak_to_gene]
    elif isinstance(peak_to_gene, Mapping | pd.Series):
        genes = pd.Series(peak_to_gene).reindex(atac.var_names)
    else:
        msg = (
            f"gene_activity: expected peak_to_gene as a var column name, a mapping or a "
            f"pandas Series, found {type(peak_to_gene).__name__}"
        )
        raise DataContractError(msg)
    out = genes.astype(object).where(genes.notna(), "").astype(str).to_numpy()
    return out


def gene_activity(atac: Any, peak_to_gene: Any = None, genes: Any = None) -> Any:
    """Gene activity: per cell, the number of accessible peaks linked to each gene.

    Parameters
    ----------
    atac
        AnnData cells x peaks (counts or binary; binarized first).
    peak_to_gene
        ``atac.var`` column name (default ``"gene"``, or the column named in
        ``uns["sceval"]["multiome"]``), a ``{peak: gene}`` mapping or a Series indexed
        by peak; unlinked peaks map to ``""`` / missing.
    genes
        Gene order of the output (e.g. the RNA ``var_names``); genes with no linked peak
        are all-zero columns. Default: the linked genes in order of first appearance.

    Returns
    -------
    anndata.AnnData
        Cells x genes, ``X`` counts (CSR float32, also ``layers["counts"]``), ``obs``
        copied from ``atac``.
    """
    import anndata as ad

    x = check_atac(atac)
    peak_genes = _peak_genes(atac, peak_to_gene)
    if genes is None:
        genes = pd.unique(peak_genes[peak_genes != ""])
    genes = pd.Index([str(g) for g in genes])
    col = genes.get_indexer(peak_genes)
    keep = col >= 0
    if not keep.any():
        msg = (
            "gene_activity: no peak is linked to any of the genes; expected peak -> gene "
            "names that match the genes. Fix: check peak_to_gene and the gene names."
        )
        raise DataContractError(msg)
    link = sp.csr_matrix(
        (np.ones(int(keep.sum()), dtype=np.float32), (np.flatnonzero(keep), col[keep])),
        shape=(x.shape[1], len(genes)),
    )
    counts = sp.csr_matrix(x @ link, dtype=np.float32)
    out = ad.AnnData(X=counts, obs=atac.obs.copy(), var=pd.DataFrame(index=genes))
    out.layers["counts"] = counts.copy()
    return out
