"""sceval.cli."""
