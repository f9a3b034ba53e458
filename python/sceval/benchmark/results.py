"""The results table: one row per (dataset, task, model, seed, metric).

Columns (``RESULT_COLUMNS``) are the contract shared by Python (pandas), R
(data.frame) and files (CSV/Parquet). Files are written atomically: to a temporary
file in the same folder, then renamed, so a reader never sees half a file.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sceval import __version__

__all__ = [
    "GRID_COLUMNS",
    "RESULT_COLUMNS",
    "SCHEMA_VERSION",
    "atomic_write",
    "empty_results",
    "read_results",
    "summarize",
    "write_results",
]

SCHEMA_VERSION = "1"

#: Column -> dtype of the results table.
RESULT_COLUMNS: dict[str, str] = {
    "dataset": "string",
    "task": "string",
    "model": "string",
    "model_kind": "string",
    "seed": "int64",
    "metric": "string",
    "value": "float64",
    "higher_is_better": "boolean",
    "status": "string",
    "message": "string",
    "runtime_s": "float64",
    "sceval_version": "string",
}

#: Columns added by the grid runner (``sceval.benchmark.run_grid``) after
#: ``RESULT_COLUMNS``: the cell hash, its hyperparameters as canonical JSON (``"{}"``
#: when none), the peak resident memory of the cell's work (MiB), the number of cells
#: scored and the metric subsample (``""`` or e.g. ``stratified:20000:seed0``).
GRID_COLUMNS: dict[str, str] = {
    "cell": "string",
    "params": "string",
    "peak_mem_mb": "float64",
    "n_cells": "Int64",
    "subsample": "string",
}

STATUSES = ("ok", "not_applicable", "skipped", "failed")


def empty_results() -> pd.DataFrame:
    """An empty results table with the right columns and dtypes."""
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in RESULT_COLUMNS.items()})


def to_frame(rows: Iterable[dict[str, Any]] | pd.DataFrame) -> pd.DataFrame:
    """Build a results table from row dictionaries (missing keys become NA).

    The grid columns (:data:`GRID_COLUMNS`) are kept, typed, when any of them is
    present; other extra columns are dropped.
    """
    df = rows.copy() if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    grid = any(c in df.columns for c in GRID_COLUMNS)
    if df.empty and not grid:
        return empty_results()
    columns = {**RESULT_COLUMNS, **(GRID_COLUMNS if grid else {})}
    for col, dtype in columns.items():
        if col not in df.columns:
            df[col] = pd.NA
        df[col] = df[col].astype(dtype) if dtype != "string" else df[col].fillna("").astype(dtype)
    return df[list(columns)].reset_index(drop=True)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, write: Any, mode: str = "w", fsync: bool = True) -> Path:
    """Write a file atomically: ``write(handle)`` into a temp file, then ``os.replace``.

    ``fsync=False`` skips flushing to the disk before the rename: still atomic for
    readers and against a killed process, not against a power loss (caches)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; results are shared files
        with os.fdopen(fd, mode) as fh:
            write(fh)
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_results(
    results: pd.DataFrame, out_dir: str | Path, formats: tuple[str, ...] = ("csv", "parquet")
) -> dict[str, Path]:
    """Write ``results.csv`` / ``results.parquet`` and ``results.meta.json`` atomically.

    Returns
    -------
    dict
        Format -> written path.
    """
    out = Path(out_dir)
    written: dict[str, Path] = {}
    for fmt in formats:
        if fmt == "csv":
            written["csv"] = atomic_write(
                out / "results.csv", lambda fh: results.to_csv(fh, index=False)
            )
        elif fmt == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            table = pa.Table.from_pandas(results, preserve_index=False)
            meta = dict(table.schema.metadata or {})
            meta[b"sceval_schema_version"] = SCHEMA_VERSION.encode()
            meta[b"sceval_version"] = __version__.encode()
            table = table.replace_schema_metadata(meta)
            written["parquet"] = atomic_write(
                out / "results.parquet", lambda fh, t=table: pq.write_table(t, fh), mode="wb"
            )
        else:
            msg = f"Unknown results format {fmt!r}; expected 'csv' or 'parquet'."
            raise ValueError(msg)
    columns = {**RESULT_COLUMNS, **{c: t for c, t in GRID_COLUMNS.items() if c in results}}
    meta = {
        "schema_version": SCHEMA_VERSION,
        "sceval_version": __version__,
        "columns": columns,
        "n_rows": len(results),
    }
    written["meta"] = atomic_write(
        out / "results.meta.json", lambda fh: json.dump(meta, fh, indent=2)
    )
    return written


def read_results(path: str | Path) -> pd.DataFrame:
    """Read a results table written by :func:`write_results` or the grid runner (CSV or
    Parquet); grid columns are kept when present."""
    path = Path(path)
    if not path.exists():
        msg = f"Results file {str(path)!r} does not exist."
        raise FileNotFoundError(msg)
    df = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    missing = [c for c in RESULT_COLUMNS if c not in df.columns]
    if missing:
        msg = f"{str(path)!r} is not an sceval results table: columns {missing} are missing."
        raise ValueError(msg)
    if "params" in df.columns and path.suffix != ".parquet":
        df["params"] = df["params"].fillna("{}")
    return to_frame(df)


def summarize(results: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """Mean, sd and a t-based confidence interval over seeds.

    Parameters
    ----------
    results
        A results table.
    level
        Confidence level of the interval (default 0.95).

    Returns
    -------
    pandas.DataFrame
        One row per (dataset, task, model, model_kind, metric) with ``n`` (seeds with
        status ok), ``mean``, ``sd`` (ddof=1; NA for n < 2), ``ci_low``, ``ci_high``
        (NA for n < 2), ``higher_is_better`` and ``status`` (``ok`` when any seed is ok,
        else the first status) with its ``message``.
    """
    from scipy import stats

    keys = ["dataset", "task", "model", "model_kind", "metric"]
    rows = []
    for key, grp in results.groupby(keys, sort=False, dropna=False):
        ok = grp.loc[grp["status"] == "ok", "value"].astype(float).to_numpy()
        n = int(ok.size)
        mean = float(ok.mean()) if n else np.nan
        sd = float(ok.std(ddof=1)) if n > 1 else np.nan
        if n > 1:
            half = float(stats.t.ppf(0.5 + level / 2, n - 1) * sd / np.sqrt(n))
            lo, hi = mean - half, mean + half
        else:
            lo = hi = np.nan
        status = "ok" if n else str(grp["status"].iloc[0])
        message = "" if n else str(grp["message"].iloc[0])
        rows.append(
            dict(
                zip(keys, key, strict=True),
                n=n,
                mean=mean,
                sd=sd,
                ci_low=lo,
                ci_high=hi,
                higher_is_better=grp["higher_is_better"].iloc[0],
                status=status,
                message=message,
            )
        )
    cols = [*keys, "n", "mean", "sd", "ci_low", "ci_high", "higher_is_better", "status", "message"]
    return pd.DataFrame(rows, columns=cols)
