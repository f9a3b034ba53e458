"""``run_benchmark``: models x tasks x seeds on one dataset -> the long results table."""

from __future__ import annotations

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

__all__ = ["DEFAULT_MODELS", "compute_embedding", "default_tasks", "run_benchmark"]

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
        self.note = ""
        self._value: np.ndarray | None = None
        self._error: BaseException | None = None

    def __call__(self) -> np.ndarray:
        if self._error is not None:
            raise self._error
        if self._value is None:
            t0 = time.perf_counter()
            try:
                self._value = compute_embedding(self.model, self.adata, self.ctx)
            except BaseException as err:
                self._error = err
                raise
            finally:
                self.seconds = time.perf_counter() - t0
            coverage = getattr(self.model, "coverage", None)
            self.note = coverage.message if coverage is not None else ""
            if self.store:
                self.adata.obsm[f"X_{self.model.info.key}"] = self._value
        return self._value


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
                t1 = time.perf_counter()
                try:
                    res = task.run(adata, model, ctx, lazy)
                    rt = lazy.seconds + time.perf_counter() - t1
                    results = [
                        (r.metric, r.value, r.status, _join(lazy.note, r.message), rt) for r in res
                    ]
                    statuses.add("ok")
                except (ModelSkippedError, MissingDependencyError) as err:
                    rt = lazy.seconds + time.perf_counter() - t1
                    results = [(m, np.nan, "skipped", str(err), rt) for m in task.metric_keys()]
                    statuses.add("skipped")
                except NotApplicableError as err:
                    rt = lazy.seconds + time.perf_counter() - t1
                    results = [
                        (m, np.nan, "not_applicable", str(err), rt) for m in task.metric_keys()
                    ]
                    statuses.add("not_applicable")
                except Exception as err:  # a model's failure must not stop the others
                    rt = lazy.seconds + time.perf_counter() - t1
                    tb = traceback.format_exc(limit=3).splitlines()
                    where = f" | {tb[-2].strip()}" if len(tb) > 1 else ""
                    msg = f"{type(err).__name__}: {err}{where}"
                    results = [(m, np.nan, "failed", msg, rt) for m in task.metric_keys()]
                    statuses.add("failed")
                add_rows(model, seed, task, results)
            if callback:
                callback(f"seed {seed} {model.info.key}: {'/'.join(sorted(statuses))}")
    return to_frame(rows)
