"""sceval.testing."""
