"""sceval.benchmark."""
