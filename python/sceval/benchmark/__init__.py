"""Benchmark: run models x tasks x seeds, config-driven grids, the results table and its
summary."""

from sceval.benchmark.analysis import (
    overall_ranking,
    rank_stability,
    scaled_scores,
    seed_ranks,
    seed_summary,
    sensitivity,
    sensitivity_curves,
    usability,
)
from sceval.benchmark.config import Config, ConfigError, load_config, parse_config
from sceval.benchmark.report import load_results, write_report
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
    "load_results",
    "overall_ranking",
    "parse_config",
    "plan_grid",
    "rank_stability",
    "read_results",
    "run_benchmark",
    "run_grid",
    "scaled_scores",
    "seed_ranks",
    "seed_summary",
    "sensitivity",
    "sensitivity_curves",
    "summarize",
    "usability",
    "write_report",
    "write_results",
]
