"""sceval.models."""
