"""sceval.metrics (work in progress)."""
