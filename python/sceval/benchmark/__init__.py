"""Benchmark: run models x tasks x seeds, config-driven grids, the results table and its
summary."""

from sceval.benchmark.config import Config, ConfigError, load_config, parse_config
from sceval.benchmark.results import (
    GRID_COLUMNS,
    RESULT_COLUMNS,
    SCHEMA_VERSION,
    read_results,
    summarize,
    write_results,
)
from sceval.benchmark.runner import DEFAULT_MODELS, plan_grid, run_benchmark, run_grid

__all__ = [
    "DEFAULT_MODELS",
    "GRID_COLUMNS",
    "RESULT_COLUMNS",
    "SCHEMA_VERSION",
    "Config",
    "ConfigError",
    "load_config",
    "parse_config",
    "plan_grid",
    "read_results",
    "run_benchmark",
    "run_grid",
    "summarize",
    "write_results",
]
