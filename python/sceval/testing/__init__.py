"""Helpers for tests (also used by the R package's tests): small seeded datasets."""

from __future__ import annotations

from typing import Any

__all__ = ["run_cli_benchmark", "small_dataset", "tiny_checkpoint", "tiny_checkpoint_archs"]


def small_dataset(
    n_cells: int = 600,
    n_genes: int = 400,
    *,
    n_batches: int = 3,
    n_cell_types: int = 4,
    batch_strength: float = 1.0,
    seed: int = 0,
) -> Any:
    """A small simulated dataset (counts in ``X`` and ``layers['counts']``, ``obs['batch']``,
    ``obs['cell_type']``) that every test can afford to benchmark."""
    from sceval.data.simulate import simulate

    return simulate(
        n_cells=n_cells,
        n_genes=n_genes,
        n_batches=n_batches,
        n_cell_types=n_cell_types,
        batch_strength=batch_strength,
        de_fraction=0.1,
        seed=seed,
    )


def tiny_checkpoint(
    model_key: str, folder: Any, adata: Any, seed: int = 0, size: str = "tiny"
) -> Any:
    """Write a random-weight checkpoint in the official on-disk layout of ``model_key``'s
    architecture, with a vocabulary covering ``adata``'s genes; returns its folder.

    ``model_key`` may be a control such as ``scgpt.random`` (the architecture is the part
    before the dot). ``size="tiny"`` (default) writes a model small enough for tests;
    ``size="official"`` writes the official dimensions (random weights) for throughput
    benchmarks. Used by the shared model contract test, the benchmarks and the R tests.

    Each architecture's writer lives in ``sceval.testing.<arch>`` as
    ``write_for_adata(folder, adata, *, seed, size)``.
    """
    import importlib
    from pathlib import Path

    arch = model_key.split(".", 1)[0]
    if size not in ("tiny", "official"):
        msg = f"size must be 'tiny' or 'official', got {size!r}"
        raise ValueError(msg)
    try:
        module = importlib.import_module(f"sceval.testing.{arch}")
    except ModuleNotFoundError:
        module = None
    writer = getattr(module, "write_for_adata", None)
    if writer is None:
        msg = (
            f"no tiny checkpoint writer for model {model_key!r}; architectures with one: "
            f"{', '.join(tiny_checkpoint_archs())}"
        )
        raise ValueError(msg)
    return writer(Path(folder), adata, seed=seed, size=size)


def tiny_checkpoint_archs() -> list[str]:
    """Architectures with a checkpoint writer in :mod:`sceval.testing`."""
    import importlib
    import pkgutil

    import sceval.testing as pkg

    out = []
    for mod in pkgutil.iter_modules(pkg.__path__):
        if mod.name.startswith("_") or mod.name == "http":
            continue
        if hasattr(importlib.import_module(f"sceval.testing.{mod.name}"), "write_for_adata"):
            out.append(mod.name)
    return sorted(out)


def run_cli_benchmark(
    h5ad: Any, model_key: str, checkpoint: Any, out: Any, tasks: str = "integration,annotation"
) -> Any:
    """``sceval run H5AD --models KEY,KEY.random --checkpoint KEY=CHECKPOINT`` on the
    simulated data's keys (``batch``, ``cell_type``) through click's test runner (the
    checkpoint applies to the ``.random`` control too); returns the click ``Result``.

    The shared CLI check of every foundation model's tests."""
    from click.testing import CliRunner

    from sceval.cli import cli

    args = [
        "run",
        str(h5ad),
        "--batch-key",
        "batch",
        "--label-key",
        "cell_type",
        "--models",
        f"{model_key},{model_key}.random",
        "--tasks",
        tasks,
        "--checkpoint",
        f"{model_key}={checkpoint}",
        "--out",
        str(out),
        "-q",
    ]
    return CliRunner().invoke(cli, args, catch_exceptions=False)
