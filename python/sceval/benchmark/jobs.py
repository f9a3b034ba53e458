"""Running one job of the grid (in this process or on a worker).

A job is the cells of one (dataset, model, model parameters, seed). The worker loads
the dataset (kept for the next job on the same dataset), takes the embedding from the
on-disk cache or computes it once, scores every task of the job and writes each
finished cell to ``OUTDIR/cells/<hash>.parquet`` atomically, so a worker that dies
loses only its unfinished cells. Cells whose file already exists are skipped (a job
retried after a lost worker redoes only what is missing).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sceval import __version__
from sceval.benchmark.cache import EmbeddingCache, cacheable, embedding_key
from sceval.benchmark.config import DatasetSpec, SubsampleSpec
from sceval.benchmark.grid import Cell, Job, sha256_json
from sceval.benchmark.record import peak_mb, reset_peak
from sceval.benchmark.results import atomic_write
from sceval.benchmark.runner import LazyEmbedding

__all__ = ["cell_path", "load_dataset", "run_job", "subsample_indices"]

#: Datasets loaded in this process: identity hash -> (adata, report, preprocessing cache).
_DATA: OrderedDict[str, tuple[Any, Any, dict[Any, Any]]] = OrderedDict()
_KEEP = 2


def cell_path(out: str | Path, cell_hash: str) -> Path:
    """``OUTDIR/cells/<hash>.parquet``."""
    return Path(out) / "cells" / f"{cell_hash}.parquet"


def load_dataset(ds: DatasetSpec) -> Any:
    """Read, simulate or fetch a config dataset (``backed: true`` opens the file backed)."""
    if ds.path is not None:
        if ds.backed:
            import anndata as ad

            from sceval._errors import DataContractError

            try:
                return ad.read_h5ad(ds.path, backed="r")
            except Exception as err:
                msg = f"Could not open {ds.path!r} backed ({type(err).__name__}: {err})."
                raise DataContractError(msg) from err
        from sceval.data.io import read_h5ad

        return read_h5ad(ds.path)
    if ds.simulate is not None:
        sim = importlib.import_module("sceval.data.simulate").simulate
        return sim(**dict(ds.simulate))
    registry = importlib.import_module("sceval.data.registry")  # hook: the dataset registry
    if ds.backed:
        return registry.load_dataset(ds.registry, backed=True)
    return registry.load_dataset(ds.registry)


def _dataset(ds: DatasetSpec, data_id: dict[str, Any]) -> tuple[Any, Any, dict[Any, Any]]:
    from sceval.data.contract import validate

    key = sha256_json(data_id)
    if key in _DATA:
        _DATA.move_to_end(key)
        return _DATA[key]
    adata = load_dataset(ds)
    report = validate(
        adata,
        counts_layer=ds.counts_layer,
        batch_key=ds.batch_key,
        label_key=ds.label_key,
        gene_id_column=ds.gene_id_column,
    )
    _DATA[key] = (adata, report, {})
    while len(_DATA) > _KEEP:
        _DATA.popitem(last=False)
    return _DATA[key]


def clear_datasets() -> None:
    """Forget the datasets this process keeps between jobs."""
    _DATA.clear()


def subsample_indices(
    labels: np.ndarray | None, n_obs: int, spec: SubsampleSpec, seed: int
) -> np.ndarray | None:
    """Sorted indices of a seeded subsample of ``spec.n`` cells, or None when all fit.

    With ``stratify="label"`` every label keeps a share proportional to its size
    (largest remainder, at least one cell per label when ``n`` allows).
    """
    if n_obs <= spec.n:
        return None
    rng = np.random.default_rng([seed, 7])
    if spec.stratify != "label" or labels is None:
        return np.sort(rng.choice(n_obs, size=spec.n, replace=False))
    uniq, inv = np.unique(np.asarray(labels).astype(str), return_inverse=True)
    counts = np.bincount(inv, minlength=uniq.size)
    exact = counts * spec.n / n_obs
    take = np.floor(exact).astype(int)
    if spec.n >= uniq.size:
        take = np.maximum(take, np.minimum(counts, 1))
    left = spec.n - int(take.sum())
    if left > 0:
        order = np.argsort(-(exact - np.floor(exact)), kind="stable")
        for j in order:
            if left == 0:
                break
            if take[j] < counts[j]:
                take[j] += 1
                left -= 1
    while take.sum() > spec.n:  # the minimum of one per label overshot: trim the largest
        take[np.argmax(take)] -= 1
    idx = [
        rng.choice(np.flatnonzero(inv == j), size=int(k), replace=False)
        for j, k in enumerate(take)
        if k > 0
    ]
    return np.sort(np.concatenate(idx))


class _JobEmbedding(LazyEmbedding):
    """The job's embedding: from the disk cache, or computed once and stored there.

    ``seconds`` is the embedding's compute time (as recorded when it was computed, also
    when it is read from the cache), so every cell's ``runtime_s`` counts it; ``spent``
    is the time this process actually spent computing it (0 when cached).
    """

    def __init__(
        self,
        model: Any,
        adata: Any,
        ctx: Any,
        cache: EmbeddingCache | None,
        key: str,
        refresh: bool = False,
    ) -> None:
        super().__init__(model, adata, ctx, store=False)
        self.cache, self.key, self.refresh = cache, key, refresh
        self.peak = 0.0

    def _compute(self) -> np.ndarray:
        hit = None if (self.cache is None or self.refresh) else self.cache.get(self.key)
        if hit is not None:
            value, meta = hit
            self.seconds = float(meta.get("seconds", 0.0))
            self.note = str(meta.get("note", ""))
            return value
        try:
            value = super()._compute()
        finally:
            self.peak = peak_mb()
        if self.cache is not None:
            self.cache.put(self.key, value, self.note, self.seconds)
        return value


_ARROW = {
    "string": "string",
    "int64": "int64",
    "Int64": "int64",
    "float64": "float64",
    "boolean": "bool_",
}


@functools.lru_cache(maxsize=1)
def _schema() -> Any:
    import pyarrow as pa

    from sceval.benchmark.results import GRID_COLUMNS, RESULT_COLUMNS

    cols = {**RESULT_COLUMNS, **GRID_COLUMNS}
    return pa.schema([(c, getattr(pa, _ARROW[t])()) for c, t in cols.items()])


def _rows(cell: Cell, kind: str, results: list[tuple], peak: float, n_cells: int, sub: str) -> Any:
    """One cell's rows as an Arrow table in the results schema plus the grid columns
    (built directly: a pandas frame per cell would cost more than many tasks)."""
    import pyarrow as pa

    from sceval.metrics import METRICS

    n = len(results)
    metrics = [r[0] for r in results]
    hib = [METRICS.get(m).higher_is_better if m in METRICS else None for m in metrics]
    const = {
        "dataset": cell.dataset.name,
        "task": cell.task.key,
        "model": cell.model.name,
        "model_kind": kind,
        "seed": cell.seed,
        "sceval_version": __version__,
        "cell": cell.hash,
        "params": cell.params_json,
        "peak_mem_mb": float(peak),
        "n_cells": int(n_cells),
        "subsample": sub,
    }
    data = {
        **{k: [v] * n for k, v in const.items()},
        "metric": metrics,
        "value": [float(r[1]) for r in results],
        "higher_is_better": hib,
        "status": [str(r[2]) for r in results],
        "message": [str(r[3] or "") for r in results],
        "runtime_s": [float(r[4]) for r in results],
    }
    schema = _schema()
    return pa.table({f.name: pa.array(data[f.name], type=f.type) for f in schema}, schema=schema)


def write_cell(out: str | Path, cell_hash: str, table: Any) -> Path:
    """Write one cell's rows (an Arrow table or a DataFrame) to
    ``OUTDIR/cells/<hash>.parquet`` atomically (temp file + rename)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from sceval.benchmark.results import SCHEMA_VERSION

    if isinstance(table, pd.DataFrame):
        table = pa.Table.from_pandas(table, preserve_index=False)
    meta = dict(table.schema.metadata or {})
    meta[b"sceval_schema_version"] = SCHEMA_VERSION.encode()
    meta[b"sceval_version"] = __version__.encode()
    table = table.replace_schema_metadata(meta)
    return atomic_write(cell_path(out, cell_hash), lambda fh: pq.write_table(table, fh), mode="wb")


def _failed_frame(cell: Cell, kind: str, err: BaseException, t0: float) -> Any:
    from sceval.tasks.base import TASKS

    try:
        metrics = TASKS.get(cell.task.key)(**cell.task_params).metric_keys()
    except Exception:
        metrics = TASKS.get(cell.task.key).info.metric_keys
    msg = f"{type(err).__name__}: {err}"
    rt = time.perf_counter() - t0
    return _rows(cell, kind, [(m, np.nan, "failed", msg, rt) for m in metrics], peak_mb(), 0, "")


def run_job(
    job: Job, on_cell: Callable[[dict[str, Any]], None] | None = None
) -> list[dict[str, Any]]:
    """Run the unfinished cells of ``job`` and write each cell's file when it finishes.

    Parameters
    ----------
    job
        The job (see :func:`sceval.benchmark.grid.group_jobs`).
    on_cell
        Called after each cell with the summary below (progress bars).

    Returns
    -------
    list of dict
        Per cell run: ``cell`` (hash), ``status``, ``embed_s`` (time spent computing the
        embedding for this cell, 0 when cached or computed for an earlier cell),
        ``task_s`` (the task's own time), ``embedding_calls`` and ``load_s`` (time spent
        loading and validating the dataset, on the job's first cell; 0 when this process
        had it loaded already).
    """
    from sceval.benchmark.runner import _resolve_device, score_task
    from sceval.models.base import MODELS, EmbedContext
    from sceval.tasks.base import TASKS

    for mod in job.plugins:
        importlib.import_module(mod)
    todo = [c for c in job.cells if not cell_path(job.out, c.hash).exists()]
    if job.extra.get("overwrite"):
        todo = list(job.cells)
    summary: list[dict[str, Any]] = []
    if not todo:
        return summary
    model_cls = MODELS.get(job.model.key)
    kind = model_cls.info.kind
    reset_peak()
    t_load = time.perf_counter()
    try:
        adata, report, prep = _dataset(job.dataset, job.data_id)
        load_s = time.perf_counter() - t_load
        model = model_cls(**job.model_params)
    except Exception as err:  # unreadable data: every cell of the job fails, with the reason
        for cell in todo:
            write_cell(job.out, cell.hash, _failed_frame(cell, kind, err, t_load))
            item = {"cell": cell.hash, "status": "failed", "embed_s": 0.0, "task_s": 0.0}
            summary.append(item)
            if on_cell:
                on_cell(item)
        return summary
    ds = job.dataset
    ctx = EmbedContext(
        report=report,
        seed=job.seed,
        batch_key=ds.batch_key,
        label_key=ds.label_key,
        device=_resolve_device(job.device),
        cache=prep,
    )
    cache = EmbeddingCache(Path(job.out) / "cache") if job.cache and cacheable(model) else None
    key = embedding_key(job.data_id, job.model_id, job.model_params, job.seed)
    emb = _JobEmbedding(model, adata, ctx, cache, key, refresh=bool(job.extra.get("overwrite")))
    subsets: dict[str, tuple[Any, Any, np.ndarray]] = {}
    for cell in todo:
        reset_peak()
        spent_before = emb.spent
        t0 = time.perf_counter()
        task = TASKS.get(cell.task.key)(**cell.task_params)
        data, c, lazy, n_scored, tag = adata, ctx, emb, adata.n_obs, ""
        if cell.subsample is not None:
            labels = adata.obs[ds.label_key].to_numpy() if ds.label_key else None
            idx = subsample_indices(labels, adata.n_obs, cell.subsample, cell.seed)
            if idx is not None:
                tag = cell.subsample.tag(cell.seed)
                if tag not in subsets:
                    sub = adata[idx]
                    sub = sub.to_memory() if getattr(adata, "isbacked", False) else sub.copy()
                    subsets[tag] = (sub, dataclasses.replace(ctx, cache={}), idx)
                data, c, idx = subsets[tag]
                lazy = _Subset(emb, idx)
                n_scored = int(idx.size)
        results, status = score_task(task, data, model, c, lazy)
        task_s = time.perf_counter() - t0 - (emb.spent - spent_before)
        peak = max(peak_mb(), emb.peak if emb.spent > spent_before else 0.0)
        write_cell(job.out, cell.hash, _rows(cell, kind, results, peak, n_scored, tag))
        item = {
            "cell": cell.hash,
            "status": status,
            "embed_s": emb.spent - spent_before,
            "task_s": task_s,
            "embedding_calls": emb.calls,
            "load_s": load_s,
        }
        load_s = 0.0
        summary.append(item)
        if on_cell:
            on_cell(item)
    return summary


class _Subset:
    """The rows ``idx`` of a job embedding, with its ``seconds`` and ``note``."""

    def __init__(self, emb: _JobEmbedding, idx: np.ndarray) -> None:
        self.emb, self.idx = emb, idx

    @property
    def seconds(self) -> float:
        return self.emb.seconds

    @property
    def spent(self) -> float:
        return self.emb.spent

    @property
    def note(self) -> str:
        return self.emb.note

    def __call__(self) -> np.ndarray:
        return self.emb()[self.idx]
