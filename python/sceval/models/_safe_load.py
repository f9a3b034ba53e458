"""Loading checkpoint files without executing code from them.

* ``.pt`` / ``.bin`` state dicts: ``torch.load(..., weights_only=True)`` only.
* ``.safetensors``: the safetensors reader (no code at all).
* pickled dictionaries (Geneformer's token and gene-median dictionaries): a restricted
  unpickler that builds only plain containers and scalars; any other global (a class,
  a function such as ``os.system``) is refused before it is created.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sceval._errors import ScevalError

__all__ = [
    "UnsafePickleError",
    "describe_key_mismatch",
    "load_pickle_dict",
    "load_state_dict",
    "safe_torch_load",
    "state_mismatch",
]


def _shape(v: Any) -> tuple[int, ...]:
    return tuple(v.shape) if hasattr(v, "shape") else tuple(v)


def state_mismatch(
    own: Mapping[str, Any], state: Mapping[str, Any], label: str = "expected"
) -> tuple[list[str], list[str], list[str]]:
    """Compare a model's state (``own``) with a checkpoint's (``state``): tensors or
    shapes by key. Returns the model keys missing from the checkpoint, the checkpoint
    keys the model lacks, and one ``"key: checkpoint (a, b) vs <label> (c, d)"`` line per
    shape mismatch (model key order), ready for :func:`describe_key_mismatch`."""
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k}: checkpoint {_shape(state[k])} vs {label} {_shape(own[k])}"
        for k in own
        if k in state and _shape(state[k]) != _shape(own[k])
    ]
    return missing, unexpected, shapes


def describe_key_mismatch(
    missing: list[str], unexpected: list[str], shapes: list[str], limit: int = 8
) -> str:
    """One line listing every kind of state-dict mismatch (first ``limit`` of each),
    for the single error a checkpoint loader raises; ``""`` when all match."""

    def listed(keys: list[str]) -> str:
        more = f", ... and {len(keys) - limit} more" if len(keys) > limit else ""
        return f"{len(keys)} [{', '.join(keys[:limit])}{more}]"

    parts = []
    if missing:
        parts.append(f"missing keys {listed(missing)}")
    if unexpected:
        parts.append(f"unexpected keys {listed(unexpected)}")
    if shapes:
        parts.append(f"shape mismatches {listed(shapes)}")
    return "; ".join(parts)


class UnsafePickleError(ScevalError, pickle.UnpicklingError):
    """A pickle asked for something other than plain data."""


#: numpy scalars are pickled through these two globals; allowed so dictionaries whose
#: values are numpy floats/ints load, and checked to be numeric below.
_NUMPY_SCALAR_GLOBALS = {
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "dtype"),
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _NUMPY_SCALAR_GLOBALS:
            import numpy as np

            if name == "dtype":
                return _checked_dtype
            return np.core.multiarray.scalar
        msg = (
            f"refused to unpickle global {module}.{name}: only plain dict/list/str/int/float "
            "data is accepted from dictionary files (a pickle that names a global can run code)"
        )
        raise UnsafePickleError(msg)


def _checked_dtype(spec: Any, *args: Any) -> Any:
    import numpy as np

    dt = np.dtype(spec)
    if dt.kind not in "biuf":
        msg = f"refused numpy dtype {dt!r} in a dictionary pickle (numeric scalars only)"
        raise UnsafePickleError(msg)
    return dt


def _plain(obj: Any, depth: int = 0) -> Any:
    """Convert numpy scalars to Python ones and check every value is plain data."""
    import numpy as np

    if depth > 20:
        msg = "dictionary pickle nests too deeply"
        raise UnsafePickleError(msg)
    if isinstance(obj, dict):
        return {_plain(k, depth + 1): _plain(v, depth + 1) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_plain(v, depth + 1) for v in obj)
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, (str, int, float, bool, bytes)):
        return obj
    msg = f"unexpected {type(obj).__name__} in a dictionary pickle"
    raise UnsafePickleError(msg)


def load_pickle_dict(path: str | Path) -> dict[Any, Any]:
    """Load a pickled dictionary of plain data (str/int/float keys and values).

    Raises
    ------
    UnsafePickleError
        When the pickle references any global other than numpy's numeric scalars.
    """
    with open(path, "rb") as fh:
        obj = _RestrictedUnpickler(fh).load()
    obj = _plain(obj)
    if not isinstance(obj, dict):
        msg = f"{str(path)!r} holds a {type(obj).__name__}, expected a dictionary"
        raise UnsafePickleError(msg)
    return obj


def safe_torch_load(path: str | Path) -> dict[str, Any]:
    """``torch.load(path, map_location="cpu", weights_only=True)``: tensors only."""
    import torch

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        msg = (
            f"{str(path)!r} is not a plain state dict (weights_only loading refused it: "
            f"{err}). sceval never runs code from checkpoint files; re-save it with "
            "torch.save(model.state_dict(), path)."
        )
        raise UnsafePickleError(msg) from err
    if not isinstance(obj, dict):
        msg = f"{str(path)!r} holds a {type(obj).__name__}, expected a state dict"
        raise UnsafePickleError(msg)
    return obj


def load_state_dict(folder: str | Path, names: tuple[str, ...]) -> dict[str, Any]:
    """Load the first existing file of ``names`` in ``folder`` (safetensors preferred)."""
    folder = Path(folder)
    for name in names:
        p = folder / name
        if not p.exists():
            continue
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(p), device="cpu")
        return safe_torch_load(p)
    msg = f"no weights file in {str(folder)!r}; expected one of {list(names)}"
    raise FileNotFoundError(msg)
