"""Benchmark: run models x tasks x seeds, the results table and its summary."""

from sceval.benchmark.results import (
    RESULT_COLUMNS,
    SCHEMA_VERSION,
    read_results,
    summarize,
    write_results,
)
from sceval.benchmark.runner import DEFAULT_MODELS, run_benchmark

__all__ = [
    "DEFAULT_MODELS",
    "RESULT_COLUMNS",
    "SCHEMA_VERSION",
    "read_results",
    "run_benchmark",
    "summarize",
    "write_results",
]
