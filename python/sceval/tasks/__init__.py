"""Tasks: what is scored on a model's output (integration, annotation, ...)."""

from sceval.tasks import (  # noqa: F401  (registration)
    annotation,
    gene_function,
    gene_network,
    imputation,
    integration,
    multiomics,
    perturbation,
    simulation,
)
from sceval.tasks.base import TASKS, MetricResult, Task, TaskInfo, get_task, register_task

__all__ = ["TASKS", "MetricResult", "Task", "TaskInfo", "get_task", "register_task"]
