"""``run_benchmark``: models x tasks x seeds on one dataset -> the long results table."""

from __future__ import annotations

import dataclasses
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from sceval import __version__
from sceval._errors import (
    DataContractError,
    MissingDependencyError,
    ModelSkippedError,
    NotApplicableError,
)
from sceval.benchmark.results import to_frame
from sceval.data.contract import validate
from sceval.models.base import MODELS, EmbedContext, Model
from sceval.models.controls import ExternalEmbedding
from sceval.models.foundation import FoundationModel
from sceval.tasks.base import TASKS, Task

__all__ = [
    "DEFAULT_MODELS",
    "compute_embedding",
    "default_tasks",
    "run_benchmark",
    "score_task",
]

#: Models run when the caller names none: every baseline and control.
DEFAULT_MODELS = ("pca", "harmony", "scvi", "combat", "unintegrated", "shuffled", "labels")


def default_tasks(batch_key: str | None, label_key: str | None) -> list[str]:
    """The tasks whose requirements the given keys satisfy."""
    out = []
    for key in TASKS.keys():
        info = TASKS.get(key).info
        if not info.default:
            continue
        if (info.needs_batch and batch_key is None) or (info.needs_labels and label_key is None):
            continue
        out.append(key)
    return out


def _as_list(
    x: str | Sequence[str] | None, what: str, allow_empty: bool = False
) -> list[str] | None:
    if x is None:
        return None
    if isinstance(x, str):
        x = [s.strip() for s in x.split(",") if s.strip()]
    out = list(x)
    if not out and not allow_empty:
        msg = f"{what} is empty; name at least one or pass None for the defaults."
        raise ValueError(msg)
    return out


def _seeds(seeds: int | Sequence[int]) -> list[int]:
    vals = [seeds] if isinstance(seeds, (int, np.integer)) else list(seeds)
    out = []
    for s in vals:
        if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 0:
            msg = f"Seeds must be non-negative integers; got {s!r}."
            raise ValueError(msg)
        out.append(int(s))
    if not out:
        msg = "seeds is empty; pass at least one seed, e.g. seeds=[0]."
        raise ValueError(msg)
    return out


def _resolve_device(device: str) -> str:
    if device != "auto":
        return device
    try:
        import torch
    except ImportError:
        return "cpu"
    return "cuda" if torch.cuda.is_available() else "cpu"


def _check_task_needs(tasks: list[Task], batch_key: str | None, label_key: str | None) -> None:
    for t in tasks:
        info = t.info
        for needed, key, arg in (
            (info.needs_batch, batch_key, "batch_key"),
            (info.needs_labels, label_key, "label_key"),
        ):
            if needed and key is None:
                msg = (
                    f"task {info.key!r} needs {arg}: name the obs column that holds the "
                    f"{'batch' if arg == 'batch_key' else 'cell-type label'} of each cell "
                    f"(e.g. {arg}='{'batch' if arg == 'batch_key' else 'cell_type'}'), or drop "
                    "the task."
                )
                raise DataContractError(msg)


def _check_embedding(emb: Any, n_cells: int, key: str) -> np.ndarray:
    x = np.asarray(emb, dtype=np.float32)
    if x.ndim != 2 or x.shape[0] != n_cells or x.shape[1] < 1:
        msg = f"model {key!r} returned shape {x.shape}; expected ({n_cells}, d)"
        raise RuntimeError(msg)
    if not np.all(np.isfinite(x)):
        msg = f"model {key!r} returned NaN or infinite values"
        raise RuntimeError(msg)
    return x


class LazyEmbedding:
    """A model's cell embedding, computed on first use and shared by the tasks of one
    (model, seed); an error is raised again for every task that asks.

    Attributes
    ----------
    seconds
        Time spent computing the embedding (0 until it is computed).
    note
        The model's gene-coverage line for the results ``message`` (foundation models).
    """

    def __init__(self, model: Model, adata: Any, ctx: EmbedContext, store: bool = True) -> None:
        self.model, self.adata, self.ctx, self.store = model, adata, ctx, store
        self.seconds = 0.0
        #: Time this process spent computing it (0 when it came from a cache).
        self.spent = 0.0
        #: Times it was computed (at most once).
        self.calls = 0
        self.note = ""
        self._value: np.ndarray | None = None
        self._error: BaseException | None = None

    def __call__(self) -> np.ndarray:
        if self._error is not None:
            raise self._error
        if self._value is None:
            self._value = self._compute()
        return self._value

    def _compute(self) -> np.ndarray:
        t0 = time.perf_counter()
        self.calls += 1
        try:
            value = compute_embedding(self.model, self.adata, self.ctx)
        except BaseException as err:
            self._error = err
            raise
        finally:
            self.seconds = self.spent = time.perf_counter() - t0
        coverage = getattr(self.model, "coverage", None)
        self.note = coverage.message if coverage is not None else ""
        if self.store:
            self.adata.obsm[f"X_{self.model.info.key}"] = value
        return value


def compute_embedding(model: Model, adata: Any, ctx: EmbedContext) -> np.ndarray:
    """Check that ``model`` can run, embed (foundation models stream large or backed
    data in chunks) and check the output is a finite ``(n_cells, d)`` float32 array."""
    model.check(adata, ctx)
    if isinstance(model, FoundationModel):
        raw = model.embed_streaming(adata, ctx)
    else:
        raw = model.embed_cells(adata, ctx)
    return _check_embedding(raw, adata.n_obs, model.info.key)


def _join(*parts: str) -> str:
    return "; ".join(p for p in parts if p)


def score_task(
    task: Task, adata: Any, model: Model, ctx: EmbedContext, lazy: Any
) -> tuple[list[tuple[str, float, str, str, float]], str]:
    """Run one task on one model; never raises for a model's or task's failure.

    Parameters
    ----------
    task, model
        The task and the model.
    adata, ctx
        The data and the embedding context.
    lazy
        A callable returning the embedding with ``seconds`` (compute time) and ``note``
        attributes (:class:`LazyEmbedding`).

    Returns
    -------
    results, status
        ``(metric, value, status, message, runtime_s)`` per metric, where ``runtime_s`` is
        the embedding's compute time plus the task's; and the overall status (``ok``,
        ``skipped``, ``not_applicable`` or ``failed``).
    """
    spent0 = _spent(lazy)
    t1 = time.perf_counter()

    def runtime() -> float:
        # the embedding's compute time once, plus the task's own time (an embedding
        # computed inside task.run is not counted twice)
        return lazy.seconds + (time.perf_counter() - t1) - (_spent(lazy) - spent0)

    try:
        res = task.run(adata, model, ctx, lazy)
        rt = runtime()
        return [(r.metric, r.value, r.status, _join(lazy.note, r.message), rt) for r in res], "ok"
    except (ModelSkippedError, MissingDependencyError) as err:
        rt = runtime()
        return [(m, np.nan, "skipped", str(err), rt) for m in task.metric_keys()], "skipped"
    except NotApplicableError as err:
        rt = runtime()
        out = [(m, np.nan, "not_applicable", str(err), rt) for m in task.metric_keys()]
        return out, "not_applicable"
    except Exception as err:  # a model's failure must not stop the others
        rt = runtime()
        tb = traceback.format_exc(limit=3).splitlines()
        where = f" | {tb[-2].strip()}" if len(tb) > 1 else ""
        msg = f"{type(err).__name__}: {err}{where}"
        return [(m, np.nan, "failed", msg, rt) for m in task.metric_keys()], "failed"


def _spent(lazy: Any) -> float:
    """Seconds this process spent computing ``lazy``'s embedding so far."""
    return float(getattr(lazy, "spent", getattr(lazy, "seconds", 0.0)))


def run_benchmark(
    adata: Any,
    models: str | Sequence[str] | None = None,
    tasks: str | Sequence[str] | None = None,
    *,
    seeds: int | Sequence[int] = 0,
    batch_key: str | None = None,
    label_key: str | None = None,
    counts_layer: str | None = None,
    gene_id_column: str | None = None,
    dataset: str = "data",
    embeddings: str | Sequence[str] | None = None,
    model_params: dict[str, dict[str, Any]] | None = None,
    task_params: dict[str, dict[str, Any]] | None = None,
    device: str = "auto",
    store_embeddings: bool = True,
    callback: Callable[[str], None] | None = None,
) -> pd.DataFrame:
    """Run models on one dataset, score them with tasks, over seeds.

    Parameters
    ----------
    adata
        AnnData (cells x genes) satisfying the contract of :func:`sceval.data.validate`.
    models
        Model keys (list or comma-separated string); default :data:`DEFAULT_MODELS`.
    tasks
        Task keys; default every task whose needs the given keys satisfy.
    seeds
        One seed or several; every random step (splits, PCA, models) uses it.
    batch_key, label_key
        ``obs`` columns with batch and cell-type labels.
    counts_layer, gene_id_column
        Passed to :func:`sceval.data.validate`.
    dataset
        Name of the dataset in the results table.
    embeddings
        ``obsm`` keys of embeddings computed elsewhere (e.g. in R); each is scored as a
        model of kind ``external`` named after the key (``X_`` prefix dropped).
    model_params, task_params
        Per-key keyword arguments, e.g. ``{"scvi": {"max_epochs": 50}}``.
    device
        ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``.
    store_embeddings
        Store each model's embedding in ``adata.obsm["X_<model>"]`` (the last seed's).
    callback
        Called with a short description after each (seed, model) step (progress bars).

    Returns
    -------
    pandas.DataFrame
        The long results table (:data:`sceval.benchmark.results.RESULT_COLUMNS`). Models
        that cannot run give rows with ``status`` ``skipped`` or ``failed`` and a message;
        metrics that do not apply give ``not_applicable``.
    """
    from sceval.metrics import METRICS

    # an empty model list is fine when external embeddings are scored on their own
    model_keys = _as_list(models, "models", allow_empty=embeddings is not None)
    model_keys = list(DEFAULT_MODELS) if model_keys is None else model_keys
    for k in model_keys:
        MODELS.get(k)  # unknown names fail before any work
    task_keys = _as_list(tasks, "tasks") or default_tasks(batch_key, label_key)
    if not task_keys:
        msg = (
            "No task can run: every task needs label_key (and integration also batch_key). "
            "Pass label_key= and/or batch_key=."
        )
        raise DataContractError(msg)
    task_objs = [TASKS.get(k)(**(task_params or {}).get(k, {})) for k in task_keys]
    seed_list = _seeds(seeds)
    _check_task_needs(task_objs, batch_key, label_key)
    report = validate(
        adata,
        counts_layer=counts_layer,
        batch_key=batch_key,
        label_key=label_key,
        gene_id_column=gene_id_column,
    )
    model_objs: list[Model] = [MODELS.get(k)(**(model_params or {}).get(k, {})) for k in model_keys]
    model_objs += [ExternalEmbedding(k) for k in (_as_list(embeddings, "embeddings") or [])]
    dev = _resolve_device(device)
    cache: dict[str, Any] = {}
    rows: list[dict[str, Any]] = []

    def add_rows(model: Model, seed: int, task: Task, results: list[tuple]) -> None:
        for metric, value, status, message, runtime in results:
            spec = METRICS.get(metric) if metric in METRICS else None
            rows.append(
                {
                    "dataset": dataset,
                    "task": task.info.key,
                    "model": model.info.key,
                    "model_kind": model.info.kind,
                    "seed": seed,
                    "metric": metric,
                    "value": value,
                    "higher_is_better": spec.higher_is_better if spec else pd.NA,
                    "status": status,
                    "message": message,
                    "runtime_s": runtime,
                    "sceval_version": __version__,
                }
            )

    for seed in seed_list:
        ctx = EmbedContext(
            report=report,
            seed=seed,
            batch_key=batch_key,
            label_key=label_key,
            device=dev,
            cache=cache,
        )
        for model in model_objs:
            lazy = LazyEmbedding(model, adata, ctx, store=store_embeddings)
            statuses = set()
            for task in task_objs:
                results, status = score_task(task, adata, model, ctx, lazy)
                statuses.add(status)
                add_rows(model, seed, task, results)
            if callback:
                callback(f"seed {seed} {model.info.key}: {'/'.join(sorted(statuses))}")
    return to_frame(rows)


# ------------------------------------------------------------------ config-driven grids


def _as_config(config: Any) -> Any:
    from sceval.benchmark.config import Config, load_config, parse_config

    if isinstance(config, Config):
        return config
    if isinstance(config, dict):
        return parse_config(config)
    return load_config(config)


def _out_dir(cfg: Any, out: Any) -> Any:
    from pathlib import Path

    return Path(out if out is not None else (cfg.out or "sceval-out")).resolve()


def plan_grid(config: Any, out: Any = None) -> pd.DataFrame:
    """The grid of a config without running it (``sceval run --config X --dry-run``).

    Parameters
    ----------
    config
        A :class:`~sceval.benchmark.config.Config`, a dict or the path of a YAML file.
    out
        Output folder (default: the config's ``out`` or ``sceval-out``); ``done`` says
        whether a cell's file is already there.

    Returns
    -------
    pandas.DataFrame
        One row per cell: ``dataset``, ``model``, ``task``, ``seed``, ``params``,
        ``subsample``, ``gpu``, ``cell`` (hash), ``done``.
    """
    from sceval.benchmark.grid import expand_grid
    from sceval.benchmark.jobs import cell_path

    cfg = _as_config(config)
    outdir = _out_dir(cfg, out)
    cells, _, _ = expand_grid(cfg, outdir if outdir.exists() else None, _local_gpu(cfg.device))
    return pd.DataFrame(
        {
            "dataset": [c.dataset.name for c in cells],
            "model": [c.model.name for c in cells],
            "task": [c.task.key for c in cells],
            "seed": [c.seed for c in cells],
            "params": [c.params_json for c in cells],
            "subsample": [c.subsample.tag(c.seed) if c.subsample else "" for c in cells],
            "gpu": [c.gpu for c in cells],
            "cell": [c.hash for c in cells],
            "done": [cell_path(outdir, c.hash).exists() for c in cells],
        }
    )


def _local_gpu(device: str) -> bool:
    if device == "cpu":
        return False
    return _resolve_device(device) == "cuda"


def read_cells(out: Any, hashes: Sequence[str] | None = None) -> pd.DataFrame:
    """Concatenate ``OUTDIR/cells/*.parquet`` (only ``hashes`` when given), sorted by
    dataset, task, model, seed, params and metric order."""
    from pathlib import Path

    from sceval.benchmark.results import to_frame

    folder = Path(out) / "cells"
    files = (
        [folder / f"{h}.parquet" for h in hashes]
        if hashes is not None
        else sorted(folder.glob("*.parquet"))
    )
    import pyarrow as pa
    import pyarrow.parquet as pq

    tables = [pq.read_table(f) for f in files if f.exists()]
    if not tables:
        return to_frame([{"cell": ""}]).iloc[0:0]
    table = pa.concat_tables(tables, promote_options="permissive")
    return to_frame(table.to_pandas())


def run_grid(
    config: Any,
    out: Any = None,
    *,
    executor: Any = None,
    workers: int | None = None,
    address: str | None = None,
    resume: bool = True,
    retry_failed: bool = False,
    progress: bool | None = None,
) -> pd.DataFrame:
    """Run a benchmark grid (datasets x models x tasks x seeds x hyperparameters).

    Every finished cell is written to ``OUT/cells/<hash>.parquet`` atomically; a rerun
    skips cells whose file exists, so an interrupted run loses only unfinished cells.
    Embeddings are cached in ``OUT/cache/`` and shared by the tasks of a (dataset,
    model, seed). At the end ``OUT/results.parquet`` and ``OUT/results.csv`` are
    rebuilt from the grid's cells, and ``OUT/run.json`` and ``OUT/config.yaml`` record
    the run.

    Parameters
    ----------
    config
        A :class:`~sceval.benchmark.config.Config`, a dict or a YAML file path.
    out
        Output folder (default: the config's ``out``, else ``sceval-out``).
    executor
        ``"inline"`` (default, or the config's ``executor.kind``), ``"processes"``,
        ``"dask"``, an :class:`~sceval.benchmark.executors.Executor` or a
        ``distributed.Client``.
    workers
        Processes of the pool / workers of a Dask ``LocalCluster``.
    address
        Scheduler address of a running Dask cluster.
    resume
        Skip cells that are already finished (False: run every cell again, ignoring the
        embedding cache).
    retry_failed
        Run cells again whose rows have status ``failed``.
    progress
        Show a progress bar on stderr (default: when stderr is a terminal).

    Returns
    -------
    pandas.DataFrame
        The results of every cell of the grid: the results schema plus ``cell``,
        ``params``, ``peak_mem_mb``, ``n_cells``, ``subsample``.

    Raises
    ------
    RuntimeError
        When jobs did not finish (e.g. their worker was lost); finished cells are kept
        and a rerun completes the grid.
    """
    import sys

    import yaml

    from sceval.benchmark.executors import make_executor
    from sceval.benchmark.grid import expand_grid, group_jobs
    from sceval.benchmark.jobs import cell_path, clear_datasets
    from sceval.benchmark.record import now, run_record
    from sceval.benchmark.results import atomic_write, write_results

    cfg = _as_config(config)
    outdir = _out_dir(cfg, out)
    outdir.mkdir(parents=True, exist_ok=True)
    kind = executor if executor is not None else cfg.executor.kind
    ex = make_executor(
        kind,
        workers=workers if workers is not None else cfg.executor.workers,
        address=address if address is not None else cfg.executor.address,
    )
    owns = not hasattr(kind, "run") and type(kind).__name__ != "Client"
    try:
        # GPU cells: on Dask only where a worker offers the GPU resource (else they would
        # wait forever); elsewhere where this machine has CUDA
        if ex.kind == "dask":
            gpu = cfg.device != "cpu" and ex.gpu_workers()
        else:
            gpu = _local_gpu(cfg.device)
        _check_registry_data(cfg)
        cells, data_ids, model_ids = expand_grid(cfg, outdir, gpu)
        if cfg.device == "cuda" and ex.kind == "dask" and not gpu and _has_foundation(cfg):
            msg = (
                "device: cuda, but no Dask worker offers a GPU; start GPU workers with "
                "`dask worker ADDRESS --resources GPU=1`, or set device: cpu."
            )
            raise ValueError(msg)
        if not resume:
            for c in cells:
                cell_path(outdir, c.hash).unlink(missing_ok=True)
        elif retry_failed:
            for c in cells:
                f = cell_path(outdir, c.hash)
                if (
                    f.exists()
                    and (pd.read_parquet(f, columns=["status"])["status"] == "failed").any()
                ):
                    f.unlink()
        todo = [c for c in cells if not cell_path(outdir, c.hash).exists()]
        jobs = group_jobs(todo, cfg, outdir, data_ids, model_ids)
        if not resume:
            jobs = [dataclasses.replace(j, extra={**j.extra, "overwrite": True}) for j in jobs]
        jobs.sort(key=lambda j: (j.dataset.name, j.gpu, j.model.name, j.seed))
        resolved = cfg.to_dict()
        atomic_write(
            outdir / "config.yaml", lambda fh: yaml.safe_dump(resolved, fh, sort_keys=False)
        )
        started = now()
        record = run_record(
            resolved,
            seeds=list(cfg.seeds),
            data_ids=data_ids,
            model_ids=model_ids,
            executor=ex.describe(),
            n_cells=len(cells),
            n_todo=len(todo),
            started=started,
        )
        record["status"] = "running"
        _write_json(outdir / "run.json", record)
        show = sys.stderr.isatty() if progress is None else progress
        from tqdm.auto import tqdm

        bar = tqdm(
            total=len(cells),
            initial=len(cells) - len(todo),
            desc="grid cells",
            unit="cell",
            file=sys.stderr,
            disable=not show,
        )
        counts: dict[str, int] = {}
        embed_s = task_s = load_s = 0.0

        def on_cell(item: dict[str, Any]) -> None:
            nonlocal embed_s, task_s, load_s
            counts[item["status"]] = counts.get(item["status"], 0) + 1
            embed_s += float(item.get("embed_s", 0.0))
            task_s += float(item.get("task_s", 0.0))
            load_s += float(item.get("load_s", 0.0))
            bar.update(1)

        t0 = time.perf_counter()
        try:
            errors = ex.run(jobs, on_cell)
        except KeyboardInterrupt:
            record.update(status="interrupted", finished=now(), cells_run=sum(counts.values()))
            _write_json(outdir / "run.json", record)
            raise
        finally:
            bar.close()
            if ex.kind == "inline":
                clear_datasets()
        wall = time.perf_counter() - t0
        results = read_cells(outdir, [c.hash for c in cells])
        results = _sorted(results, cells)
        write_results(results, outdir)
        missing = [c.hash for c in cells if not cell_path(outdir, c.hash).exists()]
        record.update(
            status="complete" if not missing else "incomplete",
            finished=now(),
            wall_s=wall,
            cells_run=sum(counts.values()),
            cells_by_status=counts,
            cells_missing=len(missing),
            compute_s={"embedding": embed_s, "tasks": task_s, "data_load": load_s},
            errors=errors,
        )
        _write_json(outdir / "run.json", record)
    finally:
        if owns:
            ex.close()
    if missing:
        msg = (
            f"{len(missing)} of {len(cells)} grid cells did not finish "
            f"({'; '.join(errors[:3]) or 'jobs were lost'}). Finished cells are saved in "
            f"{str(outdir / 'cells')!r}; run the same command again to complete the grid."
        )
        raise RuntimeError(msg)
    return results


def _has_foundation(cfg: Any) -> bool:
    return any(issubclass(MODELS.get(m.key), FoundationModel) for m in cfg.models)


def _check_registry_data(cfg: Any) -> None:
    """Registry datasets must be downloaded before a run (a missing one is an error that
    names the command, not a column of failed cells)."""
    import importlib

    names = [d.registry for d in cfg.datasets if d.registry is not None]
    if not names:
        return
    registry = importlib.import_module("sceval.data.registry")
    for name in names:
        spec = registry.get_dataset(name)
        if getattr(spec, "builtin", False) or not hasattr(registry, "is_downloaded"):
            continue
        if not registry.is_downloaded(name):
            msg = (
                f"dataset {name!r} (registry) is not downloaded; get it with "
                f"`sceval fetch-data {name}`, then run again."
            )
            raise ValueError(msg)


def _sorted(results: pd.DataFrame, cells: Sequence[Any]) -> pd.DataFrame:
    """Rows in grid order (cell order of the config, metrics in task order)."""
    if results.empty:
        return results
    order = {c.hash: i for i, c in enumerate(cells)}
    pos = results["cell"].map(order)
    within = results.groupby("cell", sort=False).cumcount()
    return (
        results.assign(_o=pos.to_numpy(), _w=within.to_numpy())
        .sort_values(["_o", "_w"], kind="stable")
        .drop(columns=["_o", "_w"])
        .reset_index(drop=True)
    )


def _write_json(path: Any, data: dict[str, Any]) -> None:
    import json

    from sceval.benchmark.results import atomic_write

    atomic_write(path, lambda fh: json.dump(data, fh, indent=2, default=str))


def _config_from_r(x: Any) -> dict[str, Any]:
    """An R list config as the YAML structure: whole numbers as ints, and a single key
    where a list is expected (``models = "pca"``) as a one-element list."""
    from sceval.interop import _whole_to_int

    data = dict(_whole_to_int(dict(x)))
    for key in ("models", "tasks", "datasets", "plugins"):
        v = data.get(key)
        if isinstance(v, (str, dict)):
            data[key] = [v]
    for i, ds in enumerate(data.get("datasets") or []):
        if isinstance(ds, dict) and isinstance(ds.get("tasks"), str):
            data["datasets"][i] = {**ds, "tasks": [ds["tasks"]]}
    return data


def run_grid_for_r(
    config: Any,
    out: str | None = None,
    *,
    executor: str | None = None,
    workers: int | None = None,
    address: str | None = None,
    resume: bool = True,
    retry_failed: bool = False,
    progress: bool | None = None,
) -> dict[str, Any]:
    """:func:`run_grid` for R's ``run_benchmark(config = ...)``: the results table as
    :func:`sceval.interop.frame_to_r` pieces. ``config`` is a YAML path or the same
    structure as an R list (R numbers arrive as floats: whole ones are made ints)."""
    from sceval.interop import frame_to_r

    if not isinstance(config, str):
        from sceval.benchmark.config import parse_config

        config = parse_config(_config_from_r(config))
    res = run_grid(
        config,
        out,
        executor=executor,
        workers=int(workers) if workers is not None else None,
        address=address,
        resume=bool(resume),
        retry_failed=bool(retry_failed),
        progress=progress,
    )
    return frame_to_r(res)
