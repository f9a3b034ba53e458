"""Exception types shared by every layer of sceval.

Every error raised for bad user input says what was expected, what was
found and how to fix it (``msg = f"..."; raise SomeError(msg)``).
"""

from __future__ import annotations


class ScevalError(Exception):
    """Base class of all sceval errors."""


class DataContractError(ScevalError, ValueError):
    """The input data does not satisfy the AnnData contract (see ``sceval.data.validate``)."""


class UnknownNameError(ScevalError, KeyError):
    """A model, task, metric or dataset key is not registered."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class NotApplicableError(ScevalError):
    """A metric or task cannot be computed on this data (e.g. one batch only).

    The benchmark records such a result as ``status="not_applicable"`` with the
    message instead of failing.
    """


class MissingDependencyError(ScevalError, ImportError):
    """An optional dependency is not installed; the message names the install command."""


class ModelSkippedError(ScevalError):
    """A model cannot run on this input (wrong input type, missing checkpoint, ...).

    The benchmark records ``status="skipped"`` with the message.
    """
