"""The grid: cells (dataset, model, task, seed, hyperparameters), their stable hashes and
the jobs that run them.

A cell's hash is the sha256 of the canonical JSON (sorted keys, no whitespace) of its
full definition: the dataset's identity (sha256 of the file, the simulator's keyword
arguments or the registry entry, plus its keys), the model (key, name, checkpoint
sha256, parameters), the task (key, parameters, metric subsample), the seed and the
major version of the results schema. It does not depend on dict order, the process
or ``PYTHONHASHSEED``.

Cells sharing (dataset, model entry, model parameters, seed) form one job: the
embedding is computed once per job and every task of the job reuses it.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sceval.benchmark.config import Config, DatasetSpec, ModelSpec, SubsampleSpec, TaskSpec
from sceval.benchmark.results import SCHEMA_VERSION

__all__ = ["Cell", "Job", "canonical_json", "expand_grid", "group_jobs", "sha256_json"]

#: Bumped when a change makes old cell files incomparable; part of every hash.
SCHEMA_MAJOR = SCHEMA_VERSION.split(".")[0]


def canonical_json(x: Any) -> str:
    """JSON with sorted keys and no whitespace (tuples as lists): the hashed form."""
    return json.dumps(_jsonable(x), sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if hasattr(x, "item") and callable(x.item):  # numpy scalars
        return x.item()
    return x


def sha256_json(x: Any) -> str:
    """sha256 (hex) of :func:`canonical_json`."""
    return hashlib.sha256(canonical_json(x).encode()).hexdigest()


@dataclass(frozen=True)
class Cell:
    """One grid cell.

    Attributes
    ----------
    hash
        Stable identity (see the module docstring); ``cells/<hash>.parquet`` holds its rows.
    dataset, model, task
        The config entries.
    seed
        The seed.
    model_params, task_params
        Merged parameters (fixed + this cell's grid values; task parameters include the
        dataset's ``task_params``).
    hparams
        This cell's grid values, ``{"<model or task key>.<param>": value}``.
    subsample
        The metric subsample, if any.
    """

    hash: str
    dataset: DatasetSpec
    model: ModelSpec
    task: TaskSpec
    seed: int
    model_params: dict[str, Any]
    task_params: dict[str, Any]
    hparams: dict[str, Any]
    subsample: SubsampleSpec | None
    job_key: str
    gpu: bool = False

    @property
    def params_json(self) -> str:
        """The results' ``params`` column: canonical JSON of :attr:`hparams`."""
        return canonical_json(self.hparams)


@dataclass(frozen=True)
class Job:
    """Cells sharing (dataset, model, model parameters, seed); run by one worker.

    Everything a worker needs travels in the job (it pickles): the worker loads the
    dataset, computes or loads the embedding and writes each cell's file itself.
    """

    key: str
    dataset: DatasetSpec
    data_id: dict[str, Any]
    model: ModelSpec
    model_params: dict[str, Any]
    model_id: dict[str, Any]
    seed: int
    cells: tuple[Cell, ...]
    out: str
    device: str = "auto"
    plugins: tuple[str, ...] = ()
    cache: bool = True
    gpu: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------- identities


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


class _ShaCache:
    """sha256 of files and folders, remembered in ``OUTDIR/cache/sha256.json`` keyed by
    (path, size, mtime) so a rerun does not hash a large file again."""

    def __init__(self, out: Path | None) -> None:
        self.path = out / "cache" / "sha256.json" if out is not None else None
        self.data: dict[str, str] = {}
        if self.path is not None and self.path.exists():
            try:
                self.data = json.loads(self.path.read_text())
            except (OSError, ValueError):
                self.data = {}
        self.dirty = False

    def file(self, path: Path) -> str:
        st = path.stat()
        key = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
        if key not in self.data:
            self.data[key] = _file_sha256(path)
            self.dirty = True
        return self.data[key]

    def folder(self, path: Path) -> str:
        h = hashlib.sha256()
        for f in sorted(p for p in path.rglob("*") if p.is_file()):
            rel = f.relative_to(path).as_posix()
            if rel.startswith(".") or "/." in rel:
                continue
            h.update(f"{rel}\0{self.file(f)}\n".encode())
        return h.hexdigest()

    def save(self) -> None:
        if self.path is None or not self.dirty:
            return
        from sceval.benchmark.results import atomic_write

        atomic_write(self.path, lambda fh: json.dump(self.data, fh, indent=0))
        self.dirty = False


def dataset_identity(ds: DatasetSpec, shas: _ShaCache) -> dict[str, Any]:
    """What identifies a dataset's content and how it is read (hashed into its cells)."""
    keys = {
        "batch_key": ds.batch_key,
        "label_key": ds.label_key,
        "counts_layer": ds.counts_layer,
        "gene_id_column": ds.gene_id_column,
    }
    if ds.path is not None:
        src: dict[str, Any] = {"sha256": shas.file(Path(ds.path))}
    elif ds.simulate is not None:
        src = {"simulate": dict(ds.simulate)}
    else:
        src = {"registry": ds.registry, "sha256": _registry_sha(ds.registry or "")}
    return {"name": ds.name, **src, **keys}


def _registry_sha(name: str) -> str | None:
    try:
        import importlib

        entry = importlib.import_module("sceval.data.registry").get_dataset(name)
    except Exception:
        return None
    files = [
        f"{getattr(f, 'name', '')}:{getattr(f, 'sha256', None)}"
        for f in getattr(entry, "files", ())
    ]
    return sha256_json(files) if files and all(not f.endswith(":None") for f in files) else None


def checkpoint_identity(model: ModelSpec, shas: _ShaCache) -> dict[str, Any]:
    """Model key, name and the sha256 of its checkpoint folder (foundation models)."""
    from sceval.models.base import MODELS
    from sceval.models.foundation import FoundationModel

    cls = MODELS.get(model.key)
    out: dict[str, Any] = {"key": model.key, "name": model.name}
    if issubclass(cls, FoundationModel):
        ref = model.checkpoint or getattr(cls, "default_checkpoint", "") or ""
        from sceval.models.checkpoints import CHECKPOINTS

        # a folder's location is not its identity (its sha256 is); a registered name is
        out["checkpoint"] = ref if ref in CHECKPOINTS else "<folder>"
        out["checkpoint_sha256"] = None
        if ref:
            from sceval.models.checkpoints import resolve_checkpoint

            try:
                out["checkpoint_sha256"] = shas.folder(resolve_checkpoint(ref))
            except (OSError, ValueError, KeyError):
                out["checkpoint_sha256"] = None  # not installed: the cell is skipped
    return out


def _combos(grid: dict[str, tuple[Any, ...]]) -> list[dict[str, Any]]:
    if not grid:
        return [{}]
    names = sorted(grid)
    return [
        dict(zip(names, vals, strict=True)) for vals in itertools.product(*(grid[n] for n in names))
    ]


def _hashed(params: dict[str, Any]) -> dict[str, Any]:
    """Model parameters as hashed: the checkpoint is identified by its sha256 instead."""
    return {k: v for k, v in params.items() if k != "checkpoint"}


def _is_gpu(model_key: str, device: str, gpu_available: bool) -> bool:
    from sceval.models.base import MODELS
    from sceval.models.foundation import FoundationModel

    if not issubclass(MODELS.get(model_key), FoundationModel):
        return False
    return device == "cuda" or (device == "auto" and gpu_available)


def expand_grid(
    cfg: Config, out: str | Path | None = None, gpu_available: bool = False
) -> tuple[list[Cell], dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """Every cell of the config, in a stable order.

    Parameters
    ----------
    cfg
        The config.
    out
        Output folder (its ``cache/sha256.json`` remembers file hashes).
    gpu_available
        Whether ``device: auto`` resolves to a GPU (marks foundation-model cells).

    Returns
    -------
    cells, data_ids, model_ids
        The cells; dataset name -> identity; model name -> identity.
    """
    from sceval.benchmark.config import _scores_embedding
    from sceval.tasks.base import TASKS

    shas = _ShaCache(Path(out) if out is not None else None)
    data_ids = {ds.name: dataset_identity(ds, shas) for ds in cfg.datasets}
    model_ids = {m.name: checkpoint_identity(m, shas) for m in cfg.models}
    shas.save()
    cells: list[Cell] = []
    for ds in cfg.datasets:
        tasks = [t for t in cfg.tasks if ds.tasks is None or t.key in ds.tasks]
        for m in cfg.models:
            for mgrid in _combos(dict(m.grid)):
                mparams = {**m.params, **mgrid}
                if m.checkpoint is not None:
                    mparams["checkpoint"] = m.checkpoint
                for seed in cfg.seeds:
                    job_key = sha256_json(
                        {
                            "data": data_ids[ds.name],
                            "model": model_ids[m.name],
                            "params": _hashed(mparams),
                            "seed": seed,
                            "schema": SCHEMA_MAJOR,
                        }
                    )[:16]
                    for t in tasks:
                        sub = t.subsample or ds.subsample or cfg.subsample
                        if sub is not None and not _scores_embedding(TASKS.get(t.key)):
                            sub = None
                        for tgrid in _combos(dict(t.grid)):
                            tparams = {**ds.task_params.get(t.key, {}), **t.params, **tgrid}
                            hp = {f"{m.key}.{k}": v for k, v in mgrid.items()}
                            hp.update({f"{t.key}.{k}": v for k, v in tgrid.items()})
                            definition = {
                                "schema": SCHEMA_MAJOR,
                                "dataset": data_ids[ds.name],
                                "model": {**model_ids[m.name], "params": _hashed(mparams)},
                                "task": {
                                    "key": t.key,
                                    "params": tparams,
                                    "subsample": sub.to_dict() if sub else None,
                                },
                                "seed": seed,
                            }
                            cells.append(
                                Cell(
                                    hash=sha256_json(definition)[:32],
                                    dataset=ds,
                                    model=m,
                                    task=t,
                                    seed=seed,
                                    model_params=mparams,
                                    task_params=tparams,
                                    hparams=hp,
                                    subsample=sub,
                                    job_key=job_key,
                                    gpu=_is_gpu(m.key, cfg.device, gpu_available),
                                )
                            )
    hashes = [c.hash for c in cells]
    if len(set(hashes)) != len(hashes):
        msg = "two grid cells have the same definition; remove the repeated entry."
        raise ValueError(msg)
    return cells, data_ids, model_ids


def group_jobs(
    cells: list[Cell],
    cfg: Config,
    out: str | Path,
    data_ids: dict[str, dict[str, Any]],
    model_ids: dict[str, dict[str, Any]],
) -> list[Job]:
    """Group cells into jobs, one per (dataset, model, model parameters, seed)."""
    groups: dict[str, list[Cell]] = {}
    for c in cells:
        groups.setdefault(c.job_key, []).append(c)
    jobs = []
    for key, cs in groups.items():
        c0 = cs[0]
        jobs.append(
            Job(
                key=key,
                dataset=c0.dataset,
                data_id=data_ids[c0.dataset.name],
                model=c0.model,
                model_params=c0.model_params,
                model_id=model_ids[c0.model.name],
                seed=c0.seed,
                cells=tuple(cs),
                out=os.fspath(out),
                device=cfg.device,
                plugins=cfg.plugins,
                cache=cfg.cache,
                gpu=c0.gpu,
            )
        )
    return jobs
