"""sceval.tasks."""
