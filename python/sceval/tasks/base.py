"""The task contract: what a task needs from the data and which metrics it reports."""

from __future__ import annotations

from abc import ABC
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from sceval._registry import Registry
from sceval.models.base import EmbedContext

__all__ = ["TASKS", "MetricResult", "Task", "TaskInfo", "get_task", "register_task"]


@dataclass(frozen=True)
class TaskInfo:
    """What a task is.

    Attributes
    ----------
    key
        Registry key (same in CLI, config and R).
    needs_batch, needs_labels
        Whether the task needs a batch / label column.
    metric_keys
        The metrics it reports, in display order (each registered in ``sceval.metrics``).
    description
        One line for ``sceval tasks``.
    """

    key: str
    needs_batch: bool
    needs_labels: bool
    metric_keys: tuple[str, ...]
    description: str = ""
    #: Whether ``run_benchmark`` runs the task when the caller names no tasks (tasks
    #: that need task-specific data keys, e.g. ``perturbation_key``, set False).
    default: bool = True
    #: Other data the task needs, shown by ``sceval tasks`` (e.g. "perturbation_key").
    needs: tuple[str, ...] = ()
    #: What the task takes from a model (shown by ``sceval tasks``).
    uses: str = "cell embedding"

    def requirements(self) -> str:
        """A short human-readable list of requirements."""
        parts = [self.uses]
        if self.needs_batch:
            parts.append("batch key")
        if self.needs_labels:
            parts.append("label key")
        parts.extend(self.needs)
        return "; ".join(parts)


@dataclass(frozen=True)
class MetricResult:
    """One metric value, or why it could not be computed."""

    metric: str
    value: float
    status: str = "ok"  # "ok" | "not_applicable"
    message: str = ""


class Task(ABC):
    """Base class: a task scores a cells x d embedding against what the data knows."""

    info: ClassVar[TaskInfo]

    def __init__(self, **params: Any) -> None:
        self.params = params

    def run(
        self, adata: Any, model: Any, ctx: EmbedContext, embedding: Callable[[], np.ndarray]
    ) -> list[MetricResult]:
        """Score ``model`` on ``adata``.

        ``embedding()`` returns the model's cell embedding, computed on first use and
        shared across tasks; it raises :class:`~sceval.ModelSkippedError` when the model
        cannot embed this data. Embedding tasks keep this default (score the embedding);
        tasks that use other model capabilities (predicting expression, gene embeddings)
        override it and never call ``embedding()``.
        """
        return self.evaluate(adata, embedding(), ctx, model)

    def metric_keys(self) -> tuple[str, ...]:
        """The metrics this task instance reports (parameters may add some)."""
        return self.info.metric_keys

    def evaluate(
        self, adata: Any, embedding: np.ndarray, ctx: EmbedContext, model: Any = None
    ) -> list[MetricResult]:
        """Score ``embedding`` (``n_cells x d``); one result per key in :meth:`metric_keys`.

        ``model`` is the model that produced the embedding, for tasks that can also use
        the model itself (fine-tuning in ``annotation``).
        """
        msg = f"task {self.info.key!r} scores models through run(), not an embedding"
        raise NotImplementedError(msg)


TASKS: Registry[type[Task]] = Registry("task")


def register_task(cls: type[Task]) -> type[Task]:
    """Class decorator: register ``cls`` under ``cls.info.key``."""
    TASKS.register(cls.info.key, cls)
    return cls


def get_task(key: str, **params: Any) -> Task:
    """Instantiate the task registered under ``key``."""
    return TASKS.get(key)(**params)
