"""sceval: benchmark single-cell foundation models against baselines on your data."""

from __future__ import annotations

__version__ = "0.1.0"
