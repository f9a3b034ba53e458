"""The run record (``run.json``) and the peak-memory probe of grid cells.

Peak memory is the process's resident high-water mark (``VmHWM`` in
``/proc/self/status``). It is per process, so before each cell the mark is reset by
writing ``5`` to ``/proc/self/clear_refs`` (Linux >= 4.0); the cell's
``peak_mem_mb`` is then the peak RSS of the process while computing that cell (its
embedding, when computed for it, and its task), including what the process already
held (interpreter, loaded data). Where the reset is not permitted, ``peak_mem_mb`` is
the process's high-water mark so far (an upper bound); on systems without ``/proc``
it falls back to ``resource.getrusage`` (also an upper bound).
"""

from __future__ import annotations

import os
import platform
import sys
from datetime import datetime, timezone
from typing import Any

__all__ = ["peak_mb", "reset_peak", "run_record"]

_STATUS = "/proc/self/status"
_CLEAR = "/proc/self/clear_refs"


def reset_peak() -> bool:
    """Reset this process's RSS high-water mark; False where that is not permitted."""
    try:
        with open(_CLEAR, "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def peak_mb() -> float:
    """This process's RSS high-water mark in MiB (since the last :func:`reset_peak`)."""
    try:
        with open(_STATUS) as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    try:
        import resource

        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return rss / (1024.0 * 1024.0) if sys.platform == "darwin" else rss / 1024.0
    except (ImportError, OSError):
        return float("nan")


DEPENDENCIES = (
    "numpy",
    "scipy",
    "pandas",
    "anndata",
    "scanpy",
    "scikit-learn",
    "pyarrow",
    "harmonypy",
    "torch",
    "transformers",
    "scvi-tools",
    "dask",
    "distributed",
    "PyYAML",
)


def _versions() -> dict[str, str | None]:
    from importlib import metadata

    out: dict[str, str | None] = {}
    for name in DEPENDENCIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def _hardware() -> dict[str, Any]:
    hw: dict[str, Any] = {
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "cpu_count": os.cpu_count(),
        "memory_gb": None,
        "gpus": [],
    }
    try:
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        hw["memory_gb"] = round(pages * size / 1024**3, 2)
    except (ValueError, OSError, AttributeError):
        pass
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    hw["processor"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    if "torch" in sys.modules:  # only report GPUs when torch is already loaded (cheap)
        torch = sys.modules["torch"]
        try:
            if torch.cuda.is_available():
                hw["gpus"] = [
                    torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())
                ]
        except Exception:
            pass
    return hw


def now() -> str:
    """UTC time in ISO 8601."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def run_record(
    config: dict[str, Any],
    *,
    seeds: list[int],
    data_ids: dict[str, dict[str, Any]],
    model_ids: dict[str, dict[str, Any]],
    executor: dict[str, Any],
    n_cells: int,
    n_todo: int,
    started: str,
) -> dict[str, Any]:
    """The ``run.json`` record of a grid run (``finished`` and counts are added at the end).

    Returns
    -------
    dict
        ``sceval_version``, ``schema_version``, ``python``, ``platform``, ``hardware``,
        ``dependencies`` (installed versions), ``seeds``, ``datasets`` (name -> identity
        with the data sha256 or simulator arguments), ``checkpoints`` (model name -> key,
        checkpoint and its sha256), ``config``, ``executor``, ``grid_size``,
        ``cells_to_run``, ``started``, ``peak_memory``.
    """
    from sceval import __version__
    from sceval.benchmark.results import SCHEMA_VERSION

    return {
        "sceval_version": __version__,
        "schema_version": SCHEMA_VERSION,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "hardware": _hardware(),
        "dependencies": _versions(),
        "seeds": list(seeds),
        "datasets": data_ids,
        "checkpoints": model_ids,
        "config": config,
        "executor": executor,
        "grid_size": n_cells,
        "cells_to_run": n_todo,
        "started": started,
        "peak_memory": "peak_mem_mb: per-process VmHWM, reset before each cell "
        + ("(reset permitted)" if reset_peak() else "(reset not permitted: running maximum)"),
    }
