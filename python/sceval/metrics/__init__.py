"""sceval.metrics."""
