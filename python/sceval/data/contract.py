"""The AnnData contract: where the counts are, what X holds, which gene IDs are used.

Every benchmark validates its input with :func:`validate` before any model work.
The report it returns tells models where to find raw counts and a log-normalized
matrix, so each model takes the input it needs instead of guessing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from sceval._errors import DataContractError

__all__ = ["DataReport", "detect_matrix_kind", "get_counts", "get_lognorm", "validate"]

#: Layer names searched for raw counts, in order, when the caller names none.
COUNT_LAYER_CANDIDATES = ("counts", "raw_counts", "count", "umi", "umis")

_MAX_CHECK_ROWS = 2000


@dataclass(frozen=True)
class DataReport:
    """What :func:`validate` found in an AnnData object.

    Attributes
    ----------
    n_cells, n_genes
        Shape of the object.
    x_kind
        What ``X`` holds: ``"counts"``, ``"lognorm"``, ``"scaled"`` or ``"unknown"``.
    counts_location
        Where raw counts are: ``"X"``, ``"layers/<name>"``, ``"raw"`` or ``None``.
    lognorm_location
        Where a log-normalized matrix is: ``"X"``, ``"raw"``, ``"layers/<name>"`` or ``None``
        (when counts exist a log-normalized matrix can always be derived from them).
    gene_id_type
        ``"symbol"``, ``"ensembl"`` or ``"ensembl_versioned"``.
    gene_id_column
        The ``var`` column holding gene IDs, or ``None`` for ``var_names``.
    batch_key, label_key
        The validated obs columns (``None`` when not requested).
    n_batches, n_labels
        Number of distinct values in those columns (0 when not requested).
    notes
        Human-readable observations (e.g. "X is scaled; using raw for log-normalized input").
    """

    n_cells: int
    n_genes: int
    x_kind: str
    counts_location: str | None
    lognorm_location: str | None
    gene_id_type: str
    gene_id_column: str | None
    batch_key: str | None = None
    label_key: str | None = None
    n_batches: int = 0
    n_labels: int = 0
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def has_counts(self) -> bool:
        """Whether raw counts were found."""
        return self.counts_location is not None

    def as_dict(self) -> dict[str, Any]:
        """A JSON-serializable dictionary of the report."""
        d = dict(self.__dict__)
        d["notes"] = list(self.notes)
        return d


def _in_memory(m: Any) -> bool:
    return sp.issparse(m) or isinstance(m, np.ndarray)


def _row_blocks(m: Any, size: int = 10_000) -> Any:
    """Yield row blocks of a matrix; on-disk (backed) matrices are read block by block."""
    n = m.shape[0]
    if _in_memory(m):
        yield m
        return
    for start in range(0, n, size):
        yield m[start : min(start + size, n)]


def _sample_rows(m: Any, max_rows: int = _MAX_CHECK_ROWS) -> Any:
    n = m.shape[0]
    if n <= max_rows:
        return m[:] if not _in_memory(m) else m
    if not _in_memory(m):  # backed: four evenly spaced contiguous blocks
        step = max_rows // 4
        starts = np.linspace(0, n - step, 4).astype(int)
        blocks = [m[s : s + step] for s in starts]
        return sp.vstack(blocks) if sp.issparse(blocks[0]) else np.vstack(blocks)
    idx = np.linspace(0, n - 1, max_rows).astype(int)
    return m[idx]


def _values(m: Any) -> np.ndarray:
    """The stored values of a (sampled) matrix as a flat float array."""
    if sp.issparse(m):
        return np.asarray(m.tocsr().data, dtype=np.float64)
    return np.asarray(m, dtype=np.float64).ravel()


def _check_finite(m: Any, where: str) -> None:
    n_bad = 0
    for block in _row_blocks(m):
        data = block.data if sp.issparse(block) else np.asarray(block)
        if not np.issubdtype(data.dtype, np.number):
            msg = f"{where} must be numeric, found dtype {data.dtype}."
            raise DataContractError(msg)
        if data.size:
            n_bad += int(np.size(data) - np.count_nonzero(np.isfinite(data)))
    if n_bad:
        msg = (
            f"{where} contains {n_bad} NaN or infinite values; expected finite numbers. "
            "Fix: remove or impute them before benchmarking (e.g. np.nan_to_num on the "
            "matrix, or drop the affected cells/genes)."
        )
        raise DataContractError(msg)


def detect_matrix_kind(m: Any) -> str:
    """Classify a cells x genes matrix as counts, log-normalized or scaled.

    Parameters
    ----------
    m
        Dense or sparse matrix, shape ``(n_cells, n_genes)``.

    Returns
    -------
    str
        ``"counts"`` (non-negative integers), ``"scaled"`` (negative values present,
        as after ``sc.pp.scale``), ``"lognorm"`` (non-negative, non-integer, with
        ``expm1`` row sums nearly constant or values below ~15 typical of ``log1p``),
        or ``"unknown"``.
    """
    sub = _sample_rows(m)
    vals = _values(sub)
    if vals.size == 0:
        return "counts"  # all zeros: consistent with counts
    if vals.min() < 0:
        return "scaled"
    if np.all(np.abs(vals - np.round(vals)) < 1e-6):
        return "counts"
    if vals.max() < 20:
        return "lognorm"
    return "unknown"


def _layer_location(
    adata: Any, counts_layer: str | None, x_kind: str
) -> tuple[str | None, list[str]]:
    """Find raw counts; returns the location and notes. ``X`` was already checked for
    finite values and classified as ``x_kind`` by the caller, so it is not read again."""
    notes: list[str] = []
    if counts_layer is not None:
        if counts_layer == "X":
            m, where = adata.X, "X"
        elif counts_layer == "raw":
            if adata.raw is None:
                msg = "counts_layer='raw' was given but adata.raw is None. Fix: name a layer."
                raise DataContractError(msg)
            m, where = adata.raw.X, "raw"
        else:
            if counts_layer not in adata.layers:
                msg = (
                    f"counts_layer={counts_layer!r} not found; available layers: "
                    f"{sorted(adata.layers.keys()) or '(none)'}. Fix: pass one of them, "
                    "'X' or 'raw', or leave counts_layer=None to detect counts."
                )
                raise DataContractError(msg)
            m, where = adata.layers[counts_layer], f"layers/{counts_layer}"
        if where != "X":
            _check_finite(m, where)
        kind = x_kind if where == "X" else detect_matrix_kind(m)
        if kind != "counts":
            vals = _values(_sample_rows(m))
            found = (
                f"negative values (min {vals.min():.3g}), so it looks {kind}"
                if kind == "scaled"
                else f"non-integer values (e.g. {vals[np.abs(vals - np.round(vals)) > 1e-6][:1]})"
                f", so it looks {kind}"
            )
            msg = (
                f"{where} was named as raw counts but holds {found}. Expected non-negative "
                "integers. Fix: pass counts_layer naming the layer that holds raw UMI counts "
                "(e.g. adata.layers['counts']), or counts_layer=None to let sceval detect "
                "them; models that need counts are skipped when none exist."
            )
            raise DataContractError(msg)
        return where, notes
    for name in COUNT_LAYER_CANDIDATES:
        if name in adata.layers:
            m = adata.layers[name]
            _check_finite(m, f"layers/{name}")
            if detect_matrix_kind(m) == "counts":
                return f"layers/{name}", notes
            notes.append(f"layers/{name} is not integer-valued; not used as counts")
    if x_kind == "counts":
        return "X", notes
    if adata.raw is not None and adata.raw.shape[1] == adata.n_vars:
        if detect_matrix_kind(adata.raw.X) == "counts":
            return "raw", notes
    return None, notes


def _lognorm_location(adata: Any, x_kind: str) -> str | None:
    if x_kind == "lognorm":
        return "X"
    if adata.raw is not None and adata.raw.shape[1] == adata.n_vars:
        _check_finite(adata.raw.X, "raw.X")
        if detect_matrix_kind(adata.raw.X) == "lognorm":
            return "raw"
    for name, m in adata.layers.items():
        if detect_matrix_kind(m) == "lognorm":
            return f"layers/{name}"
    return None


def _check_obs_key(adata: Any, key: str | None, role: str, arg: str) -> int:
    if key is None:
        return 0
    if key not in adata.obs.columns:
        close = [c for c in adata.obs.columns if key.lower() in str(c).lower()]
        hint = f" Did you mean {close[0]!r}?" if close else ""
        msg = (
            f"{arg}={key!r} is not a column of adata.obs.{hint} Expected the column "
            f"holding the {role} of each cell; available columns: "
            f"{list(map(str, adata.obs.columns)) or '(none)'}."
        )
        raise DataContractError(msg)
    col = adata.obs[key]
    n_missing = int(pd.isna(col).sum())
    if n_missing:
        msg = (
            f"adata.obs[{key!r}] ({role}) has {n_missing} missing values; every cell needs "
            f"a {role}. Fix: fill them (e.g. adata.obs[{key!r}] = adata.obs[{key!r}]"
            ".cat.add_categories('unknown').fillna('unknown')) or subset the cells."
        )
        raise DataContractError(msg)
    return int(col.nunique())


def validate(
    adata: Any,
    *,
    counts_layer: str | None = None,
    batch_key: str | None = None,
    label_key: str | None = None,
    gene_id_column: str | None = None,
    require_gene_ids: str | None = None,
) -> DataReport:
    """Check an AnnData object against the sceval contract and describe it.

    Parameters
    ----------
    adata
        AnnData with cells as observations and genes as variables.
    counts_layer
        Where raw counts are: a layer name, ``"X"`` or ``"raw"``. ``None`` detects them
        (layers named ``counts``/``raw_counts``/..., then ``X``, then ``raw``).
    batch_key, label_key
        ``obs`` columns with the batch and the cell-type label of each cell.
    gene_id_column
        ``var`` column with gene IDs; ``None`` uses ``var_names``.
    require_gene_ids
        ``"symbol"`` or ``"ensembl"`` when the caller needs that ID type; a mismatch
        raises with the :func:`sceval.data.harmonize_genes` fix.

    Returns
    -------
    DataReport
        Where counts and log-normalized values are, what ``X`` holds, gene ID type,
        numbers of batches and labels, and notes.

    Raises
    ------
    DataContractError
        Empty object, non-finite or non-numeric values, duplicated gene names, missing
        obs/var columns, counts layer that is not counts, wrong gene ID type.
    """
    from sceval.data.genes import detect_gene_id_type

    if not hasattr(adata, "obs") or not hasattr(adata, "X"):
        msg = f"Expected an anndata.AnnData object, found {type(adata).__name__}."
        raise DataContractError(msg)
    n_cells, n_genes = adata.shape
    if n_cells == 0 or n_genes == 0:
        msg = (
            f"The AnnData object is empty ({n_cells} cells x {n_genes} genes); expected at "
            "least one cell and one gene. Fix: check the filtering that produced it."
        )
        raise DataContractError(msg)
    if adata.X is None:
        msg = "adata.X is None; expected a cells x genes matrix. Fix: set adata.X."
        raise DataContractError(msg)
    _check_finite(adata.X, "adata.X")

    if gene_id_column is not None:
        if gene_id_column not in adata.var.columns:
            msg = (
                f"gene_id_column={gene_id_column!r} is not a column of adata.var; available: "
                f"{list(map(str, adata.var.columns)) or '(none)'}. Fix: pass one of them or "
                "None to use var_names."
            )
            raise DataContractError(msg)
        gene_ids = pd.Index(adata.var[gene_id_column].astype(str))
        where_ids = f"adata.var[{gene_id_column!r}]"
    else:
        gene_ids = pd.Index(adata.var_names.astype(str))
        where_ids = "adata.var_names"
    notes: list[str] = []
    if gene_id_column is not None and (gene_ids.has_duplicates or (gene_ids == "").any()):
        # a mapped ID column (e.g. from harmonize_genes) may share IDs or lack some
        n_empty = int((gene_ids == "").sum())
        n_dup = int(gene_ids[gene_ids != ""].duplicated().sum())
        notes.append(
            f"{where_ids}: {n_empty} genes without an ID and {n_dup} sharing an ID with an "
            "earlier gene; models that match genes by ID use the first occurrence"
        )
    elif gene_ids.has_duplicates:
        dups = gene_ids[gene_ids.duplicated()].unique()[:5].tolist()
        msg = (
            f"{where_ids} has {int(gene_ids.duplicated().sum())} duplicated gene names "
            f"(e.g. {dups}); expected unique IDs. Fix: adata.var_names_make_unique(), or "
            "aggregate the duplicated genes, or pass gene_id_column= with a unique column."
        )
        raise DataContractError(msg)
    id_type = detect_gene_id_type(gene_ids[gene_ids != ""])
    if require_gene_ids is not None:
        want = require_gene_ids
        have_kind = "ensembl" if id_type.startswith("ensembl") else id_type
        if want != have_kind:
            col = "gene_symbol" if want == "symbol" else "ensembl_id"
            msg = (
                f"Expected {want} gene IDs in {where_ids}, found {id_type} IDs "
                f"(e.g. {list(gene_ids[:3])}). Fix: run sceval.data.harmonize_genes(adata) "
                f"to add var[{col!r}] and pass gene_id_column={col!r}."
            )
            raise DataContractError(msg)

    x_kind = detect_matrix_kind(adata.X)
    counts_loc, layer_notes = _layer_location(adata, counts_layer, x_kind)
    notes += layer_notes
    lognorm_loc = _lognorm_location(adata, x_kind)
    if counts_loc is None:
        if x_kind == "scaled":
            notes.append(
                "X is scaled (negative values) and no raw counts were found; models that "
                "need counts will be skipped"
            )
        else:
            notes.append("no raw counts found; models that need counts will be skipped")
    if counts_loc is None and lognorm_loc is None:
        msg = (
            f"Found neither raw counts nor a log-normalized matrix: X looks {x_kind} and no "
            "layer or .raw holds counts. Expected raw counts (non-negative integers) in X, "
            "adata.layers['counts'] or adata.raw. Fix: pass counts_layer='<layer>' or store "
            "the counts in adata.layers['counts']."
        )
        raise DataContractError(msg)

    n_batches = _check_obs_key(adata, batch_key, "batch", "batch_key")
    n_labels = _check_obs_key(adata, label_key, "cell-type label", "label_key")
    if batch_key is not None and n_batches < 2:
        notes.append(f"only one batch in obs[{batch_key!r}]: batch metrics are not applicable")
    if label_key is not None and n_labels < 2:
        notes.append(f"only one label in obs[{label_key!r}]: label metrics are not applicable")
    return DataReport(
        n_cells=int(n_cells),
        n_genes=int(n_genes),
        x_kind=x_kind,
        counts_location=counts_loc,
        lognorm_location=lognorm_loc,
        gene_id_type=id_type,
        gene_id_column=gene_id_column,
        batch_key=batch_key,
        label_key=label_key,
        n_batches=n_batches,
        n_labels=n_labels,
        notes=tuple(notes),
    )


def _get(adata: Any, location: str) -> Any:
    if location == "X":
        return adata.X
    if location == "raw":
        return adata.raw.X
    if location.startswith("layers/"):
        return adata.layers[location.split("/", 1)[1]]
    msg = f"Unknown matrix location {location!r}."
    raise ValueError(msg)


def get_counts(adata: Any, report: DataReport) -> sp.csr_matrix:
    """Raw counts as a float32 CSR matrix (cells x genes).

    Raises
    ------
    DataContractError
        When the report found no counts.
    """
    if report.counts_location is None:
        msg = (
            "This model needs raw counts but none were found (X looks "
            f"{report.x_kind}). Fix: store raw UMI counts in adata.layers['counts'] or pass "
            "counts_layer=."
        )
        raise DataContractError(msg)
    return sp.csr_matrix(_get(adata, report.counts_location), dtype=np.float32)


def get_lognorm(adata: Any, report: DataReport, target_sum: float = 1e4) -> sp.csr_matrix:
    """A log-normalized matrix ``log1p(x / total * target_sum)`` as float32 CSR.

    Derived from raw counts when they exist (so the normalization is known), otherwise
    the log-normalized matrix the report located.
    """
    if report.counts_location is not None:
        c = get_counts(adata, report)
        totals = np.asarray(c.sum(axis=1)).ravel()
        totals[totals == 0] = 1.0
        c = sp.diags((target_sum / totals).astype(np.float32)) @ c
        c.data = np.log1p(c.data)
        return sp.csr_matrix(c, dtype=np.float32)
    if report.lognorm_location is None:
        msg = "No log-normalized matrix or raw counts available."
        raise DataContractError(msg)
    return sp.csr_matrix(_get(adata, report.lognorm_location), dtype=np.float32)
