"""sceval.models.baselines."""
