"""sceval: benchmark single-cell foundation models against baselines on your data.

The public API::

    import sceval
    adata = sceval.data.simulate(n_batches=3)
    res = sceval.run_benchmark(adata, models=["pca", "harmony"], tasks=["integration"],
                               batch_key="batch", label_key="cell_type", seeds=[0, 1])
    sceval.summarize(res)
"""

from __future__ import annotations

__version__ = "0.1.0"

from sceval import data, metrics, models, tasks
from sceval._errors import (
    DataContractError,
    MissingDependencyError,
    ModelSkippedError,
    NotApplicableError,
    ScevalError,
    UnknownNameError,
)
from sceval.benchmark import (
    load_config,
    overall_ranking,
    read_results,
    run_benchmark,
    run_grid,
    summarize,
    write_report,
    write_results,
)
from sceval.data import harmonize_genes, simulate, validate
from sceval.data.registry import fetch_dataset, list_datasets, load_dataset
from sceval.listing import list_metrics, list_models, list_tasks

__all__ = [
    "DataContractError",
    "MissingDependencyError",
    "ModelSkippedError",
    "NotApplicableError",
    "ScevalError",
    "UnknownNameError",
    "__version__",
    "data",
    "fetch_dataset",
    "harmonize_genes",
    "list_datasets",
    "list_metrics",
    "list_models",
    "list_tasks",
    "load_config",
    "load_dataset",
    "metrics",
    "models",
    "overall_ranking",
    "read_results",
    "run_benchmark",
    "run_grid",
    "simulate",
    "summarize",
    "tasks",
    "validate",
    "write_report",
    "write_results",
]
