"""The on-disk embedding cache: ``OUTDIR/cache/emb/<key>.npy`` (+ ``.json``).

The key is the sha256 of (data identity, model identity with checkpoint sha256, model
parameters, seed); task parameters are not part of it, so every task scoring the same
(dataset, model, seed) reuses one embedding, across jobs and reruns. Files are written
atomically (temp file + rename), so a killed run never leaves half an embedding.
Models that do not embed cells (``ModelInfo.embeds_cells`` False) or whose embedding is
not a function of these inputs (``external``) are not cached.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from sceval.benchmark.grid import sha256_json
from sceval.benchmark.results import atomic_write

__all__ = ["EmbeddingCache", "cacheable", "embedding_key"]


def embedding_key(
    data_id: dict[str, Any], model_id: dict[str, Any], params: dict[str, Any], seed: int
) -> str:
    """The cache key of an embedding (task parameters are deliberately not part of it)."""
    hashed = {k: v for k, v in params.items() if k != "checkpoint"}
    return sha256_json({"data": data_id, "model": model_id, "params": hashed, "seed": seed})[:32]


def cacheable(model: Any) -> bool:
    """Whether a model's cell embedding may be cached on disk."""
    info = model.info
    if not info.embeds_cells or info.kind == "external":
        return False
    return bool(getattr(model, "cacheable", True))


class EmbeddingCache:
    """Embeddings stored as ``.npy`` with a ``.json`` sidecar (note, compute seconds).

    Parameters
    ----------
    folder
        ``OUTDIR/cache``.
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder) / "emb"

    def _paths(self, key: str) -> tuple[Path, Path]:
        return self.folder / f"{key}.npy", self.folder / f"{key}.json"

    def get(self, key: str) -> tuple[np.ndarray, dict[str, Any]] | None:
        """The cached embedding and its metadata, or None."""
        npy, meta = self._paths(key)
        if not (npy.exists() and meta.exists()):
            return None
        try:
            info = json.loads(meta.read_text())
            return np.load(npy, allow_pickle=False), info
        except (OSError, ValueError):
            return None

    def put(self, key: str, emb: np.ndarray, note: str, seconds: float) -> None:
        """Store an embedding (array first, then the sidecar that marks it complete)."""
        npy, meta = self._paths(key)
        arr = np.asarray(emb)
        # a cache: atomic (never half a file) but not flushed to disk (no fsync)
        atomic_write(npy, lambda fh: np.save(fh, arr, allow_pickle=False), mode="wb", fsync=False)
        info = {"note": note, "seconds": seconds, "shape": list(arr.shape), "time": time.time()}
        atomic_write(meta, lambda fh: json.dump(info, fh), fsync=False)
