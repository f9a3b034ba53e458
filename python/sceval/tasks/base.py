"""The task contract: what a task needs from the data and which metrics it reports."""

from __future__ import annotations

from abc import ABC, abstractmethod
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

    def requirements(self) -> str:
        """A short human-readable list of requirements."""
        parts = ["cell embedding"]
        if self.needs_batch:
            parts.append("batch key")
        if self.needs_labels:
            parts.append("label key")
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

    def metric_keys(self) -> tuple[str, ...]:
        """The metrics this task instance reports (parameters may add some)."""
        return self.info.metric_keys

    @abstractmethod
    def evaluate(
        self, adata: Any, embedding: np.ndarray, ctx: EmbedContext, model: Any = None
    ) -> list[MetricResult]:
        """Score ``embedding`` (``n_cells x d``); one result per key in :meth:`metric_keys`.

        ``model`` is the model that produced the embedding, for tasks that can also use
        the model itself (fine-tuning in ``annotation``).
        """


TASKS: Registry[type[Task]] = Registry("task")


def register_task(cls: type[Task]) -> type[Task]:
    """Class decorator: register ``cls`` under ``cls.info.key``."""
    TASKS.register(cls.info.key, cls)
    return cls


def get_task(key: str, **params: Any) -> Task:
    """Instantiate the task registered under ``key``."""
    return TASKS.get(key)(**params)
