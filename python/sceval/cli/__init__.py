"""The ``sceval`` command line (click)."""

from sceval.cli.main import cli, main

__all__ = ["cli", "main"]
