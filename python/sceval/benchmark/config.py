"""Benchmark configs: YAML -> frozen dataclasses, validated with errors that name the
offending key and its line.

A config names datasets (an h5ad ``path``, ``simulate`` keyword arguments or a
``registry`` name, each with its batch/label/other keys), models (with checkpoints,
parameters and hyperparameter grids), tasks (with parameters and grids), seeds, an
optional metric ``subsample`` and the executor. Example (``inst/examples/``)::

    seeds: [0, 1]
    datasets:
      - name: sim
        simulate: {n_cells: 600, n_genes: 300, seed: 0}
        batch_key: batch
        label_key: cell_type
    models:
      - key: pca
        grid: {n_comps: [10, 30]}
      - key: unintegrated
    tasks:
      - key: integration
      - key: annotation
        params: {test_size: 0.3}

Errors look like ``bench.yaml line 12: models[1].key: unknown model 'pcaa'; did you
mean 'pca'? Valid models: ...``.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import inspect
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sceval._errors import ScevalError

__all__ = [
    "Config",
    "ConfigError",
    "DatasetSpec",
    "ExecutorSpec",
    "ModelSpec",
    "SubsampleSpec",
    "TaskSpec",
    "load_config",
    "parse_config",
]

EXECUTORS = ("inline", "processes", "dask")
DEVICES = ("auto", "cpu", "cuda")
_FLOAT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)$")


class ConfigError(ScevalError, ValueError):
    """A benchmark config is invalid; the message names the key and its line."""


@dataclass(frozen=True)
class SubsampleSpec:
    """A seeded subsample of the cells the metrics see.

    Attributes
    ----------
    n
        Number of cells kept (the whole dataset when it has no more cells).
    stratify
        ``"label"`` (proportional per cell-type label, every label kept) or ``"none"``.
    """

    n: int
    stratify: str = "label"

    def tag(self, seed: int) -> str:
        """The value of the results' ``subsample`` column, e.g. ``stratified:20000:seed0``."""
        kind = "stratified" if self.stratify == "label" else "random"
        return f"{kind}:{self.n}:seed{seed}"

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (for the resolved config and hashes)."""
        return {"n": self.n, "stratify": self.stratify}


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset of the grid; exactly one of ``path``, ``simulate``, ``registry``.

    Attributes
    ----------
    name
        Name in the results (default: file stem, registry name or ``sim<i>``).
    path
        Absolute path of an ``.h5ad`` file (relative paths are resolved against the
        config file's folder).
    simulate
        Keyword arguments of :func:`sceval.data.simulate.simulate`.
    registry
        Name of a dataset in :mod:`sceval.data.registry`.
    backed
        Open ``path`` backed (``X`` stays on disk; streaming models read it in chunks).
    batch_key, label_key, counts_layer, gene_id_column
        As in :func:`sceval.data.validate`.
    task_params
        Task key -> parameters that hold for this dataset (e.g. ``annotation:
        {split_key: split}``), merged under the task's own parameters.
    tasks
        Restrict the tasks run on this dataset (default: every task of the config).
    subsample
        Metric subsample for this dataset (overrides the config's).
    """

    name: str
    path: str | None = None
    simulate: Mapping[str, Any] | None = None
    registry: str | None = None
    backed: bool = False
    batch_key: str | None = None
    label_key: str | None = None
    counts_layer: str | None = None
    gene_id_column: str | None = None
    task_params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    tasks: tuple[str, ...] | None = None
    subsample: SubsampleSpec | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form, without defaults."""
        return _plain(self)


@dataclass(frozen=True)
class ModelSpec:
    """One model entry: a registered model with parameters and a hyperparameter grid.

    Attributes
    ----------
    key
        Registry key (see ``sceval models``).
    name
        Name in the results' ``model`` column (default ``key``; set it to run one model
        twice, e.g. with two checkpoints).
    checkpoint
        Foundation models: a registered checkpoint name or a local folder.
    params
        Keyword arguments of the model.
    grid
        Parameter -> values; every combination is a separate grid cell.
    """

    key: str
    name: str
    checkpoint: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    grid: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form, without defaults."""
        return _plain(self)


@dataclass(frozen=True)
class TaskSpec:
    """One task entry.

    Attributes
    ----------
    key
        Registry key (see ``sceval tasks``).
    params
        Keyword arguments of the task.
    grid
        Parameter -> values (e.g. ``finetune_lr: [1e-4, 1e-3]``).
    subsample
        Metric subsample for this task (overrides dataset and config).
    """

    key: str
    params: Mapping[str, Any] = field(default_factory=dict)
    grid: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    subsample: SubsampleSpec | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form, without defaults."""
        return _plain(self)


@dataclass(frozen=True)
class ExecutorSpec:
    """Where the grid's jobs run.

    Attributes
    ----------
    kind
        ``"inline"`` (this process), ``"processes"`` (a local process pool) or
        ``"dask"`` (a Dask distributed cluster).
    workers
        Pool size (``processes``) or the number of LocalCluster workers (``dask``
        without ``address``).
    address
        Scheduler address of an existing Dask cluster, e.g. ``tcp://host:8786``.
    """

    kind: str = "inline"
    workers: int | None = None
    address: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form, without defaults."""
        return _plain(self)


@dataclass(frozen=True)
class Config:
    """A validated benchmark config (see the module docstring)."""

    datasets: tuple[DatasetSpec, ...]
    models: tuple[ModelSpec, ...]
    tasks: tuple[TaskSpec, ...]
    seeds: tuple[int, ...] = (0,)
    name: str = "benchmark"
    device: str = "auto"
    out: str | None = None
    executor: ExecutorSpec = field(default_factory=ExecutorSpec)
    subsample: SubsampleSpec | None = None
    plugins: tuple[str, ...] = ()
    cache: bool = True
    #: The file the config was read from (``None`` for a dict).
    source: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The resolved config as plain data (written to ``OUTDIR/config.yaml``)."""
        d = _plain(self)
        d.pop("source", None)
        return d


def _plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out = {}
        for f in dataclasses.fields(obj):
            v = getattr(obj, f.name)
            default = f.default if f.default is not dataclasses.MISSING else None
            if f.default_factory is not dataclasses.MISSING:
                default = f.default_factory()
            if v is None or (v == default and f.name not in ("key", "name", "kind")):
                continue
            out[f.name] = _plain(v)
        return out
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


# --------------------------------------------------------------------------- parsing


def _fmt_path(path: tuple[Any, ...]) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "(top level)"


class _Where:
    """Turns a key path into ``file line N: path`` using the YAML node marks."""

    def __init__(self, source: str | None, lines: dict[tuple[Any, ...], int]) -> None:
        self.source, self.lines = source, lines

    def error(self, path: tuple[Any, ...], problem: str) -> ConfigError:
        line = None
        p = tuple(path)
        while line is None and p:
            line = self.lines.get(p)
            p = p[:-1]
        where = Path(self.source).name if self.source else "config"
        at = f" line {line}" if line is not None else ""
        return ConfigError(f"{where}{at}: {_fmt_path(path)}: {problem}")


def _node_lines(node: Any, path: tuple[Any, ...], out: dict[tuple[Any, ...], int]) -> None:
    import yaml

    out.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            p = (*path, getattr(k, "value", str(k)))
            out[p] = k.start_mark.line + 1
            _node_lines(v, p, out)
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            out[(*path, i)] = v.start_mark.line + 1
            _node_lines(v, (*path, i), out)


def _check_duplicates(node: Any, path: tuple[Any, ...], where: _Where) -> None:
    import yaml

    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for k, v in node.value:
            key = getattr(k, "value", str(k))
            if key in seen:
                where.lines[(*path, key)] = k.start_mark.line + 1
                raise where.error((*path, key), f"key {key!r} appears twice in this mapping")
            seen.add(key)
            _check_duplicates(v, (*path, key), where)
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            _check_duplicates(v, (*path, i), where)


def load_config(path: str | Path) -> Config:
    """Read and validate a YAML benchmark config.

    Parameters
    ----------
    path
        The ``.yaml`` file. Relative dataset paths and checkpoint folders are resolved
        against its folder.

    Returns
    -------
    Config

    Raises
    ------
    ConfigError
        With the file, line and key path of the problem, e.g. ``bench.yaml line 12:
        models[1].key: unknown model 'pcaa'; did you mean 'pca'?``.
    """
    import yaml

    p = Path(path)
    if not p.is_file():
        msg = f"config file {str(p)!r} does not exist; expected a YAML benchmark config."
        raise ConfigError(msg)
    text = p.read_text()
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" line {mark.line + 1}" if mark is not None else ""
        msg = f"{p.name}{at}: not valid YAML ({getattr(err, 'problem', err)})"
        raise ConfigError(msg) from None
    lines: dict[tuple[Any, ...], int] = {}
    if node is not None:
        _node_lines(node, (), lines)
    where = _Where(str(p), lines)
    if node is not None:
        _check_duplicates(node, (), where)
    return _parse(data, where, p.resolve().parent)


def parse_config(data: Mapping[str, Any], base_dir: str | Path | None = None) -> Config:
    """Validate a config given as a dict (same structure as the YAML file).

    Parameters
    ----------
    data
        The config.
    base_dir
        Folder that relative dataset paths and checkpoints are resolved against
        (default: the current folder).
    """
    return _parse(data, _Where(None, {}), Path(base_dir or ".").resolve())


# top-level key -> expected type description
_TOP = {
    "name": "a string",
    "out": "a folder path",
    "seeds": "a list of non-negative integers",
    "device": "one of auto, cpu, cuda",
    "datasets": "a list of datasets",
    "models": "a list of models",
    "tasks": "a list of tasks",
    "executor": "a mapping {kind, workers, address}",
    "subsample": "a mapping {n, stratify}",
    "plugins": "a list of module names",
    "cache": "true or false",
}
_DATASET = (
    "name",
    "path",
    "simulate",
    "registry",
    "backed",
    "batch_key",
    "label_key",
    "counts_layer",
    "gene_id_column",
    "task_params",
    "tasks",
    "subsample",
)
_MODEL = ("key", "name", "checkpoint", "params", "grid")
_TASK = ("key", "params", "grid", "subsample")
_EXECUTOR = ("kind", "workers", "address")
_SUBSAMPLE = ("n", "stratify")


def _unknown_keys(
    data: Mapping[str, Any], valid: tuple[str, ...], path: tuple[Any, ...], where: _Where
) -> None:
    for k in data:
        if k not in valid:
            close = difflib.get_close_matches(str(k), valid, n=1, cutoff=0.6)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            msg = f"unknown key {k!r}.{hint} Valid keys here: {', '.join(valid)}."
            raise where.error((*path, k), msg)


def _mapping(x: Any, path: tuple[Any, ...], where: _Where, what: str) -> Mapping[str, Any]:
    if x is None:
        return {}
    if not isinstance(x, Mapping):
        msg = f"expected {what}, found {type(x).__name__} {x!r}"
        raise where.error(path, msg)
    for k in x:
        if not isinstance(k, str):
            raise where.error(path, f"keys must be strings, found {k!r}")
    return x


def _list(x: Any, path: tuple[Any, ...], where: _Where, what: str) -> list[Any]:
    if not isinstance(x, list):
        msg = f"expected {what}, found {type(x).__name__} {x!r}"
        raise where.error(path, msg)
    return x


def _str(x: Any, path: tuple[Any, ...], where: _Where, optional: bool = True) -> str | None:
    if x is None and optional:
        return None
    if not isinstance(x, str) or not x.strip():
        msg = f"expected a non-empty string, found {type(x).__name__} {x!r}"
        raise where.error(path, msg)
    return x


def _bool(x: Any, path: tuple[Any, ...], where: _Where) -> bool:
    if not isinstance(x, bool):
        msg = f"expected true or false, found {type(x).__name__} {x!r}"
        raise where.error(path, msg)
    return x


def _scalar(x: Any) -> Any:
    """YAML 1.1 reads ``1e-3`` as a string; parameters take it as the float it means."""
    if isinstance(x, str) and _FLOAT.match(x.strip()):
        return float(x)
    if isinstance(x, list):
        return [_scalar(v) for v in x]
    if isinstance(x, Mapping):
        return {k: _scalar(v) for k, v in x.items()}
    return x


def _did_you_mean(kind: str, key: Any, valid: list[str]) -> str:
    close = difflib.get_close_matches(str(key), valid, n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else "."
    return f"unknown {kind} {key!r}{hint} Valid {kind}s: {', '.join(valid)}."


def _params(x: Any, path: tuple[Any, ...], where: _Where) -> dict[str, Any]:
    m = _mapping(x, path, where, "a mapping of parameter -> value")
    return {k: _scalar(v) for k, v in m.items()}


def _grid(
    x: Any, params: Mapping[str, Any], path: tuple[Any, ...], where: _Where
) -> dict[str, tuple[Any, ...]]:
    m = _mapping(x, path, where, "a mapping of parameter -> list of values")
    out = {}
    for k, v in m.items():
        vals = _list(v, (*path, k), where, "a non-empty list of values, e.g. [10, 30]")
        if not vals:
            raise where.error((*path, k), "the list of values is empty; give at least one")
        if k in params:
            msg = f"{k!r} is both a fixed parameter (params) and a grid parameter; keep one"
            raise where.error((*path, k), msg)
        vals = [_scalar(v) for v in vals]
        if len({_canon(v) for v in vals}) != len(vals):
            raise where.error((*path, k), f"values repeat in {vals}")
        out[k] = tuple(vals)
    return out


def _canon(x: Any) -> str:
    import json

    return json.dumps(x, sort_keys=True, default=str)


def _subsample(x: Any, path: tuple[Any, ...], where: _Where) -> SubsampleSpec | None:
    if x is None:
        return None
    if isinstance(x, int) and not isinstance(x, bool):
        x = {"n": x}
    m = _mapping(x, path, where, "a mapping {n: <cells>, stratify: label|none} or a number")
    _unknown_keys(m, _SUBSAMPLE, path, where)
    n = m.get("n")
    if isinstance(n, bool) or not isinstance(n, int) or n < 10:
        raise where.error((*path, "n"), f"expected an integer >= 10 (cells kept), found {n!r}")
    strat = m.get("stratify", "label")
    if strat not in ("label", "none"):
        raise where.error((*path, "stratify"), f"expected 'label' or 'none', found {strat!r}")
    return SubsampleSpec(n=n, stratify=strat)


def _parse(data: Any, where: _Where, base: Path) -> Config:
    import sceval.models
    import sceval.tasks  # noqa: F401
    from sceval.models.base import MODELS
    from sceval.tasks.base import TASKS

    top = _mapping(data, (), where, "a mapping with datasets, models, tasks and seeds")
    _unknown_keys(top, tuple(_TOP), (), where)
    for k in ("datasets", "models", "tasks"):
        if k not in top:
            raise where.error((), f"missing key {k!r}: expected {_TOP[k]}")
    plugins = tuple(
        _str(v, ("plugins", i), where, optional=False) or ""
        for i, v in enumerate(_list(top.get("plugins", []), ("plugins",), where, _TOP["plugins"]))
    )
    for i, mod in enumerate(plugins):
        try:
            importlib.import_module(mod)
        except ImportError as err:
            msg = f"cannot import plugin module {mod!r} ({err}); is it on PYTHONPATH?"
            raise where.error(("plugins", i), msg) from None

    seeds_raw = top.get("seeds", [0])
    if isinstance(seeds_raw, int) and not isinstance(seeds_raw, bool):
        seeds_raw = [seeds_raw]
    seeds_list = _list(seeds_raw, ("seeds",), where, _TOP["seeds"])
    if not seeds_list:
        raise where.error(("seeds",), "the list of seeds is empty; give at least one, e.g. [0]")
    for i, s in enumerate(seeds_list):
        if isinstance(s, bool) or not isinstance(s, int) or s < 0:
            raise where.error(("seeds", i), f"expected a non-negative integer, found {s!r}")
    if len(set(seeds_list)) != len(seeds_list):
        raise where.error(("seeds",), f"seeds repeat in {seeds_list}")

    device = top.get("device", "auto")
    if device not in DEVICES:
        raise where.error(("device",), f"expected one of {', '.join(DEVICES)}, found {device!r}")

    # tasks
    task_keys = TASKS.keys()
    tasks: list[TaskSpec] = []
    for i, t in enumerate(_list(top["tasks"], ("tasks",), where, _TOP["tasks"])):
        p = ("tasks", i)
        if isinstance(t, str):
            t = {"key": t}
        t = _mapping(t, p, where, "a task mapping {key, params, grid, subsample} or a key")
        _unknown_keys(t, _TASK, p, where)
        key = _str(t.get("key"), (*p, "key"), where, optional=False)
        if key not in TASKS:
            raise where.error((*p, "key"), _did_you_mean("task", key, task_keys))
        params = _params(t.get("params"), (*p, "params"), where)
        sub = _subsample(t.get("subsample"), (*p, "subsample"), where)
        cls = TASKS.get(key)
        if sub is not None and not _scores_embedding(cls):
            msg = f"task {key!r} does not score a cell embedding; subsample does not apply to it"
            raise where.error((*p, "subsample"), msg)
        tasks.append(TaskSpec(key, params, _grid(t.get("grid"), params, (*p, "grid"), where), sub))
    if not tasks:
        raise where.error(("tasks",), "the list of tasks is empty; name at least one")
    if len({t.key for t in tasks}) != len(tasks):
        raise where.error(("tasks",), "a task appears twice; use its grid for several settings")

    # models
    models: list[ModelSpec] = []
    for i, m in enumerate(_list(top["models"], ("models",), where, _TOP["models"])):
        p = ("models", i)
        if isinstance(m, str):
            m = {"key": m}
        m = _mapping(m, p, where, "a model mapping {key, checkpoint, params, grid} or a key")
        _unknown_keys(m, _MODEL, p, where)
        key = _str(m.get("key"), (*p, "key"), where, optional=False)
        if key not in MODELS:
            raise where.error((*p, "key"), _did_you_mean("model", key, MODELS.keys()))
        name = _str(m.get("name"), (*p, "name"), where) or key
        params = _params(m.get("params"), (*p, "params"), where)
        ckpt = _str(m.get("checkpoint"), (*p, "checkpoint"), where)
        if ckpt is not None:
            ckpt = _checkpoint(key, ckpt, base, (*p, "checkpoint"), where)
        if "checkpoint" in params:
            msg = "give the checkpoint as the model's 'checkpoint:' key, not in params"
            raise where.error((*p, "params", "checkpoint"), msg)
        models.append(
            ModelSpec(key, name, ckpt, params, _grid(m.get("grid"), params, (*p, "grid"), where))
        )
    if not models:
        raise where.error(("models",), "the list of models is empty; name at least one")
    names = [m.name for m in models]
    for i, n in enumerate(names):
        if names.index(n) != i:
            msg = f"model name {n!r} is used twice; give one entry a different 'name:'"
            raise where.error(("models", i), msg)

    # datasets
    datasets: list[DatasetSpec] = []
    for i, d in enumerate(_list(top["datasets"], ("datasets",), where, _TOP["datasets"])):
        datasets.append(_dataset(d, i, base, tasks, where))
    if not datasets:
        raise where.error(("datasets",), "the list of datasets is empty; name at least one")
    dnames = [d.name for d in datasets]
    for i, n in enumerate(dnames):
        if dnames.index(n) != i:
            msg = f"dataset name {n!r} is used twice; set 'name:' on one of them"
            raise where.error(("datasets", i), msg)

    ex = _mapping(top.get("executor"), ("executor",), where, _TOP["executor"])
    _unknown_keys(ex, _EXECUTOR, ("executor",), where)
    kind = ex.get("kind", "inline")
    if kind not in EXECUTORS:
        raise where.error(("executor", "kind"), _did_you_mean("executor", kind, list(EXECUTORS)))
    workers = ex.get("workers")
    if workers is not None and (
        isinstance(workers, bool) or not isinstance(workers, int) or workers < 1
    ):
        raise where.error(("executor", "workers"), f"expected an integer >= 1, found {workers!r}")
    address = _str(ex.get("address"), ("executor", "address"), where)
    out = _str(top.get("out"), ("out",), where)
    return Config(
        datasets=tuple(datasets),
        models=tuple(models),
        tasks=tuple(tasks),
        seeds=tuple(seeds_list),
        name=_str(top.get("name"), ("name",), where) or "benchmark",
        device=device,
        out=str((base / out).resolve()) if out else None,
        executor=ExecutorSpec(kind, workers, address),
        subsample=_subsample(top.get("subsample"), ("subsample",), where),
        plugins=plugins,
        cache=_bool(top.get("cache", True), ("cache",), where),
        source=where.source,
    )


def _scores_embedding(cls: type) -> bool:
    from sceval.tasks.base import Task

    return getattr(cls, "run", None) is Task.run


def _checkpoint(key: str, ref: str, base: Path, path: tuple[Any, ...], where: _Where) -> str:
    from sceval.models.base import MODELS
    from sceval.models.checkpoints import CHECKPOINTS
    from sceval.models.foundation import FoundationModel

    if not issubclass(MODELS.get(key), FoundationModel):
        raise where.error(path, f"model {key!r} takes no checkpoint (only foundation models do)")
    if ref in CHECKPOINTS:
        return ref
    folder = (base / ref).expanduser()
    if folder.is_dir():
        return str(folder.resolve())
    msg = (
        f"checkpoint {ref!r} is neither a registered checkpoint nor an existing folder "
        f"(looked for {str(folder)!r}). Registered: {', '.join(CHECKPOINTS)}."
    )
    raise where.error(path, msg)


def _dataset(d: Any, i: int, base: Path, tasks: list[TaskSpec], where: _Where) -> DatasetSpec:
    from sceval.tasks.base import TASKS

    p: tuple[Any, ...] = ("datasets", i)
    d = _mapping(d, p, where, "a dataset mapping with one of path, simulate, registry")
    _unknown_keys(d, _DATASET, p, where)
    sources = [k for k in ("path", "simulate", "registry") if k in d]
    if len(sources) != 1:
        found = ", ".join(sources) or "none"
        msg = f"give exactly one of path, simulate, registry (found {found})"
        raise where.error(p, msg)
    path = sim = reg = None
    keys: dict[str, Any] = {}
    if "path" in d:
        raw = _str(d["path"], (*p, "path"), where, optional=False) or ""
        f = (base / raw).expanduser()
        if not f.is_file():
            msg = (
                f"dataset file {raw!r} does not exist (looked for {str(f)!r}); give the path "
                "of an .h5ad file, relative to the config file's folder or absolute"
            )
            raise where.error((*p, "path"), msg)
        path = str(f.resolve())
        default_name = f.stem
    elif "simulate" in d:
        from sceval.data.simulate import simulate as simulate_fn

        sim = _params(d["simulate"], (*p, "simulate"), where)
        valid = [
            n
            for n, prm in inspect.signature(simulate_fn).parameters.items()
            if prm.kind in (prm.POSITIONAL_OR_KEYWORD, prm.KEYWORD_ONLY)
        ]
        _unknown_keys(sim, tuple(valid), (*p, "simulate"), where)
        default_name = f"sim{i}"
        keys = {"batch_key": "batch", "label_key": "cell_type"}
    else:
        reg = _str(d["registry"], (*p, "registry"), where, optional=False)
        keys = _registry_keys(reg or "", (*p, "registry"), where)
        default_name = reg or f"data{i}"
    backed = _bool(d.get("backed", False), (*p, "backed"), where)
    if backed and path is None and reg is None:
        msg = "backed: true needs a path: (an .h5ad file) or registry: dataset"
        raise where.error((*p, "backed"), msg)
    for k in ("batch_key", "label_key", "counts_layer", "gene_id_column"):
        if k in d:
            keys[k] = _str(d[k], (*p, k), where)
    tparams_raw = _mapping(d.get("task_params"), (*p, "task_params"), where, "task -> parameters")
    tparams: dict[str, dict[str, Any]] = {
        k: dict(v) for k, v in keys.pop("task_params", {}).items()
    }
    for tk, tv in tparams_raw.items():
        if tk not in TASKS:
            raise where.error((*p, "task_params", tk), _did_you_mean("task", tk, TASKS.keys()))
        tparams[tk] = {**tparams.get(tk, {}), **_params(tv, (*p, "task_params", tk), where)}
    only = None
    if d.get("tasks") is not None:
        only = tuple(_list(d["tasks"], (*p, "tasks"), where, "a list of task keys"))
        config_tasks = [t.key for t in tasks]
        for j, tk in enumerate(only):
            if tk not in config_tasks:
                msg = _did_you_mean("task", tk, config_tasks).replace("Valid tasks", "Config tasks")
                raise where.error((*p, "tasks", j), msg)
    spec = DatasetSpec(
        name=_str(d.get("name"), (*p, "name"), where) or default_name,
        path=path,
        simulate=sim,
        registry=reg,
        backed=backed,
        batch_key=keys.get("batch_key"),
        label_key=keys.get("label_key"),
        counts_layer=keys.get("counts_layer"),
        gene_id_column=keys.get("gene_id_column"),
        task_params=tparams,
        tasks=only,
        subsample=_subsample(d.get("subsample"), (*p, "subsample"), where),
    )
    for t in tasks:
        if only is not None and t.key not in only:
            continue
        info = TASKS.get(t.key).info
        for needed, arg in ((info.needs_batch, "batch_key"), (info.needs_labels, "label_key")):
            if needed and getattr(spec, arg) is None:
                msg = (
                    f"task {t.key!r} needs {arg}: name the obs column (e.g. {arg}: "
                    f"{'batch' if arg == 'batch_key' else 'cell_type'}) or restrict this "
                    f"dataset's tasks: [...]"
                )
                raise where.error(p, msg)
    return spec


def _registry_keys(name: str, path: tuple[Any, ...], where: _Where) -> dict[str, Any]:
    """Default keys of a registry dataset (hook to :mod:`sceval.data.registry`)."""
    try:
        registry = importlib.import_module("sceval.data.registry")
    except ImportError:
        msg = "the dataset registry (sceval.data.registry) is not available in this install"
        raise where.error(path, msg) from None
    try:
        entry = registry.get_dataset(name)
    except Exception as err:
        raise where.error(path, str(err)) from None
    keys: dict[str, Any] = {
        k: getattr(entry, k, None)
        for k in ("batch_key", "label_key", "counts_layer", "gene_id_column")
        if getattr(entry, k, None) is not None
    }
    pert = {
        k: getattr(entry, k, None)
        for k in ("perturbation_key", "control")
        if getattr(entry, k, None) is not None
    }
    if pert:
        keys["task_params"] = {"perturbation": pert}
    return keys
