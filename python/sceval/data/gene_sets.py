"""Gene-function label sets for the gene-embedding tasks.

sceval ships a few human sets built offline from the Gene Ontology annotations in
Bioconductor's org.Hs.eg.db (``inst/scripts/build_gene_sets.R``; provenance in
``inst/extdata/README.md``):

``tf_dna_binding``
    DNA-binding transcription factors (GO:0003700) vs a seeded sample of other genes.
``protein_kinase``
    Protein kinases (GO:0004672) vs a seeded sample of other genes.
``go_bp_5``
    Five biological processes (immune response, cell cycle, translation, synaptic
    signaling, lipid metabolism); genes annotated to exactly one of them.
``go_cc_5``
    Five cellular components (mitochondrial inner membrane, nucleolus, extracellular
    matrix, ER membrane, cytosolic ribosome); genes annotated to exactly one.

Any user table with a gene column and a label column is read by :func:`read_gene_set`
(e.g. Geneformer's dosage-sensitive vs -insensitive transcription factors), and a
``{label: [genes]}`` dict by :func:`gene_set_from_dict`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sceval._errors import DataContractError, UnknownNameError

__all__ = [
    "GENE_SETS_SOURCE",
    "GeneSet",
    "gene_set_from_dict",
    "list_gene_sets",
    "load_gene_set",
    "match_genes",
    "read_gene_set",
    "resolve_gene_set",
]

GENE_SETS_SOURCE = (
    "GO annotations of org.Hs.eg.db 3.16.0 (GO 2022-07-01, NCBI gene2go 2022-09-12), "
    "term names GO.db 3.16.0; built by inst/scripts/build_gene_sets.R"
)
"""Where the shipped sets come from (details in ``inst/extdata/README.md``)."""

_FILE = "gene_sets_human.tsv.gz"
_ENSEMBL_RE = re.compile(r"^(ENS[A-Z]*G\d{11})(\.\d+)?(_PAR_Y)?$")


@dataclass(frozen=True)
class GeneSet:
    """Genes with one label each.

    Attributes
    ----------
    name
        The set's name (shipped name, file stem or ``"custom"``).
    table
        Columns ``gene_symbol``, ``ensembl_id`` (``""`` when unknown) and ``label``; one
        row per gene.
    source
        Provenance (shipped sets) or the file path.
    """

    name: str
    table: pd.DataFrame
    source: str = ""

    @property
    def labels(self) -> list[str]:
        """Sorted distinct labels."""
        return sorted(set(self.table["label"].astype(str)))

    @property
    def n_genes(self) -> int:
        """Number of genes."""
        return len(self.table)

    def groups(self, exclude: Iterable[str] = ("other",)) -> dict[str, list[str]]:
        """Label -> gene symbols (the labels in ``exclude`` are left out), e.g. the
        reference modules of ``gene_network``."""
        skip = set(exclude)
        out: dict[str, list[str]] = {}
        for lab, sub in self.table.groupby("label", sort=True):
            if str(lab) not in skip:
                out[str(lab)] = sub["gene_symbol"].astype(str).tolist()
        return out


@functools.cache
def _shipped() -> pd.DataFrame:
    res = resources.files("sceval") / "extdata" / _FILE
    with res.open("rb") as fh:
        return pd.read_csv(
            fh, sep="\t", dtype=str, keep_default_na=False, compression="gzip", quoting=3
        )


def list_gene_sets() -> pd.DataFrame:
    """The shipped gene sets: ``set``, ``n_genes``, ``n_labels`` and ``labels``
    (``label=count`` pairs)."""
    tab = _shipped()
    rows = []
    for name, sub in tab.groupby("set", sort=True):
        counts = sub["label"].value_counts().sort_index()
        rows.append(
            {
                "set": str(name),
                "n_genes": len(sub),
                "n_labels": int(counts.size),
                "labels": ", ".join(f"{k}={v}" for k, v in counts.items()),
            }
        )
    return pd.DataFrame(rows, columns=["set", "n_genes", "n_labels", "labels"])


def load_gene_set(name: str) -> GeneSet:
    """A shipped gene set by name (see :func:`list_gene_sets`).

    Raises
    ------
    UnknownNameError
        When ``name`` is not shipped (the message lists the names).
    """
    tab = _shipped()
    sub = tab[tab["set"] == name]
    if sub.empty:
        names = sorted(set(tab["set"]))
        msg = (
            f"Unknown gene set {name!r}; expected one of {names} or the path of a table "
            "with a gene column and a label column. Fix: pass one of these names or a path."
        )
        raise UnknownNameError(msg)
    table = sub.loc[:, ["gene_symbol", "ensembl_id", "label"]].reset_index(drop=True)
    return GeneSet(name=name, table=table, source=GENE_SETS_SOURCE)


def _from_pairs(genes: list[str], labels: list[str], name: str, source: str) -> GeneSet:
    genes = [str(g).strip() for g in genes]
    labels = [str(v).strip() for v in labels]
    keep = [i for i, (g, v) in enumerate(zip(genes, labels, strict=True)) if g and v]
    frame = pd.DataFrame({"gene": [genes[i] for i in keep], "label": [labels[i] for i in keep]})
    frame = frame.drop_duplicates()
    dup = frame["gene"][frame["gene"].duplicated()].unique().tolist()
    if dup:
        msg = (
            f"gene set {name!r}: expected one label per gene, found {len(dup)} genes with "
            f"several labels (e.g. {dup[:5]}). Fix: keep one row per gene."
        )
        raise DataContractError(msg)
    if frame.empty:
        msg = f"gene set {name!r} is empty; expected rows of (gene, label)."
        raise DataContractError(msg)
    is_ens = frame["gene"].str.match(_ENSEMBL_RE)
    ensembl = frame["gene"].str.replace(r"\.\d+$", "", regex=True).where(is_ens, "")
    symbols = frame["gene"].where(~is_ens, "")
    try:  # fill the other ID type from the bundled gene tables
        from sceval.data.genes import map_genes

        mapped, _ = map_genes(frame["gene"].tolist())
        symbols = symbols.where(symbols != "", mapped["gene_symbol"].to_numpy())
        ensembl = ensembl.where(ensembl != "", mapped["ensembl_id"].to_numpy())
    except DataContractError:  # unknown species: keep the IDs as given
        pass
    table = pd.DataFrame(
        {
            "gene_symbol": symbols.astype(str).to_numpy(),
            "ensembl_id": ensembl.astype(str).to_numpy(),
            "label": frame["label"].to_numpy(),
        }
    )
    return GeneSet(name=name, table=table.reset_index(drop=True), source=source)


def read_gene_set(
    path: str | Path,
    *,
    gene_column: str | None = None,
    label_column: str | None = None,
    name: str | None = None,
) -> GeneSet:
    """Read a user gene set: any table with a gene column and a label column.

    Parameters
    ----------
    path
        CSV or TSV (optionally gzipped; the separator is sniffed) with a header line.
    gene_column, label_column
        Column names; default the first and the second column. Genes may be symbols or
        Ensembl IDs (versions are dropped); the other ID type is filled from the bundled
        gene tables, so the set matches datasets of either ID type.
    name
        The set's name; default the file name without extensions.

    Returns
    -------
    GeneSet
    """
    p = Path(path)
    if not p.is_file():
        msg = (
            f"gene set file {str(p)!r} not found; expected a shipped set name "
            f"({sorted(set(_shipped()['set']))}) or a CSV/TSV path."
        )
        raise DataContractError(msg)
    frame = pd.read_csv(p, sep=None, engine="python", dtype=str, keep_default_na=False)
    if frame.shape[1] < 2:
        msg = (
            f"gene set file {str(p)!r} has {frame.shape[1]} column(s); expected a gene column "
            "and a label column (comma or tab separated, with a header line)."
        )
        raise DataContractError(msg)
    gcol = gene_column or str(frame.columns[0])
    lcol = label_column or str(frame.columns[1])
    for col in (gcol, lcol):
        if col not in frame.columns:
            msg = (
                f"column {col!r} not in {str(p)!r}; found {list(frame.columns)}. Fix: pass "
                "gene_column= / label_column= naming existing columns."
            )
            raise DataContractError(msg)
    stem = name or p.name.split(".")[0]
    return _from_pairs(frame[gcol].tolist(), frame[lcol].tolist(), stem, str(p))


def gene_set_from_dict(groups: Mapping[str, Iterable[str]], name: str = "custom") -> GeneSet:
    """A gene set from ``{label: [genes]}`` (e.g. Geneformer's
    ``{"dosage_sensitive": [...], "dosage_insensitive": [...]}``)."""
    genes: list[str] = []
    labels: list[str] = []
    for lab, members in groups.items():
        for g in members:
            genes.append(str(g))
            labels.append(str(lab))
    return _from_pairs(genes, labels, name, "dict")


def resolve_gene_set(spec: Any) -> GeneSet:
    """A :class:`GeneSet` from a shipped name, a path, a ``{label: genes}`` dict or a
    GeneSet."""
    if isinstance(spec, GeneSet):
        return spec
    if isinstance(spec, Mapping):
        return gene_set_from_dict(spec)
    if isinstance(spec, Path) or (isinstance(spec, str) and Path(spec).is_file()):
        return read_gene_set(spec)
    if isinstance(spec, str):
        return load_gene_set(spec)
    msg = (
        f"gene_set must be a shipped name, a path or a {{label: genes}} dict; found "
        f"{type(spec).__name__}."
    )
    raise DataContractError(msg)


def match_genes(
    gene_set: GeneSet, symbols: Iterable[str], ensembl_ids: Iterable[str]
) -> np.ndarray:
    """Position of each gene of ``gene_set`` among the dataset genes, -1 when absent.

    A gene matches by Ensembl ID when both sides have one, else by symbol (exact, then
    case-insensitive).

    Parameters
    ----------
    gene_set
        The set.
    symbols, ensembl_ids
        The dataset's gene symbols and Ensembl IDs (``""`` when unknown), same length.
    """
    sym = [str(s) for s in symbols]
    ens = [re.sub(r"\.\d+$", "", str(e)) for e in ensembl_ids]
    by_ens: dict[str, int] = {}
    by_sym: dict[str, int] = {}
    by_upper: dict[str, int] = {}
    for i, (s, e) in enumerate(zip(sym, ens, strict=True)):
        if e:
            by_ens.setdefault(e, i)
        if s:
            by_sym.setdefault(s, i)
            by_upper.setdefault(s.upper(), i)
    out = np.full(gene_set.n_genes, -1, dtype=np.int64)
    for j, (s, e) in enumerate(
        zip(gene_set.table["gene_symbol"], gene_set.table["ensembl_id"], strict=True)
    ):
        s, e = str(s), str(e)
        if e and e in by_ens:
            out[j] = by_ens[e]
        elif s and s in by_sym:
            out[j] = by_sym[s]
        elif s and s.upper() in by_upper:
            out[j] = by_upper[s.upper()]
    return out
