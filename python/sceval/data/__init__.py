"""sceval.data."""
