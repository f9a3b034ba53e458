"""The model contract shared by foundation models, baselines and controls."""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from sceval._errors import MissingDependencyError, ModelSkippedError
from sceval._registry import Registry
from sceval.data.contract import DataReport

__all__ = ["MODELS", "EmbedContext", "Model", "ModelInfo", "get_model", "register_model"]

#: Model kinds, in the order tables list them.
MODEL_KINDS = ("foundation", "baseline", "control", "external")


@dataclass(frozen=True)
class ModelInfo:
    """What a model is and what it needs.

    Attributes
    ----------
    key
        Registry key, the name users type everywhere (CLI, config, R).
    kind
        ``"foundation"``, ``"baseline"``, ``"control"`` or ``"external"``.
    input
        ``"counts"`` (raw counts required) or ``"lognorm"`` (log-normalized values are
        enough; derived from counts when those exist).
    needs_batch, needs_labels
        Whether the model reads the batch or the label column.
    requires
        Importable Python modules the model needs.
    install
        The command that installs ``requires``.
    description, citation
        One line each, shown by ``sceval models``.
    license
        License of the pretrained weights (foundation models; several are
        non-commercial), shown by ``sceval models``.
    """

    key: str
    kind: str
    input: str = "lognorm"
    needs_batch: bool = False
    needs_labels: bool = False
    requires: tuple[str, ...] = ()
    install: str = ""
    description: str = ""
    citation: str = ""
    license: str = ""
    #: ``False`` for task-specific baselines (perturbation predictors, imputers,
    #: generators) that do not embed cells; their ``embed_cells`` raises
    #: :class:`ModelSkippedError` and embedding tasks report them as skipped.
    embeds_cells: bool = True
    #: What else the model offers to tasks, e.g. ``("predict_perturbation",)``.
    provides: tuple[str, ...] = ()

    def requirements(self) -> str:
        """A short human-readable list of requirements."""
        parts = [f"{self.input} input"]
        if not self.embeds_cells:
            parts.append("no cell embedding: " + ", ".join(self.provides))
        if self.needs_batch:
            parts.append("batch key")
        if self.needs_labels:
            parts.append("label key")
        if self.requires:
            parts.append("python: " + ", ".join(self.requires))
        return "; ".join(parts)


@dataclass
class EmbedContext:
    """Everything a model may read besides the AnnData object.

    ``cache`` is shared by all models of one benchmark run on one dataset, so shared
    preprocessing (log-normalization, HVGs, the unintegrated PCA) is done once.
    """

    report: DataReport
    seed: int = 0
    batch_key: str | None = None
    label_key: str | None = None
    device: str = "cpu"
    cache: dict[Any, Any] = field(default_factory=dict)
    #: Index of the first cell of the AnnData being embedded within the full dataset
    #: (non-zero when a large or backed dataset is embedded in chunks), so per-cell
    #: random draws do not depend on the chunking.
    cell_offset: int = 0


class Model(ABC):
    """Base class: a model turns an AnnData object into a cells x d embedding."""

    info: ClassVar[ModelInfo]

    def __init__(self, **params: Any) -> None:
        self.params = params

    def check(self, adata: Any, ctx: EmbedContext) -> None:
        """Raise :class:`ModelSkippedError` when the model cannot run on this input."""
        info = self.info
        for mod in info.requires:
            try:
                importlib.import_module(mod)
            except ImportError as err:
                msg = (
                    f"model {info.key!r} needs the Python package {mod!r}, which is not "
                    f"installed ({err}). Install it with: {info.install or 'pip install ' + mod}"
                )
                raise MissingDependencyError(msg) from err
        rep = ctx.report
        if info.input == "counts" and not rep.has_counts:
            msg = (
                f"model {info.key!r} needs raw counts, but none were found (X looks "
                f"{rep.x_kind}). Store raw UMI counts in adata.layers['counts'] or pass "
                "counts_layer= to run it."
            )
            raise ModelSkippedError(msg)
        if info.needs_batch:
            if ctx.batch_key is None:
                msg = f"model {info.key!r} needs a batch key; pass batch_key=."
                raise ModelSkippedError(msg)
            if rep.n_batches < 2:
                msg = (
                    f"model {info.key!r} corrects batch effects and needs >= 2 batches; "
                    f"obs[{ctx.batch_key!r}] has {rep.n_batches}."
                )
                raise ModelSkippedError(msg)
        if info.needs_labels and ctx.label_key is None:
            msg = f"model {info.key!r} needs a label key; pass label_key=."
            raise ModelSkippedError(msg)

    @abstractmethod
    def embed_cells(self, adata: Any, ctx: EmbedContext) -> np.ndarray:
        """Return a float32 array of shape ``(n_cells, d)``."""


MODELS: Registry[type[Model]] = Registry("model")


def register_model(cls: type[Model]) -> type[Model]:
    """Class decorator: register ``cls`` under ``cls.info.key``."""
    MODELS.register(cls.info.key, cls)
    return cls


def get_model(key: str, **params: Any) -> Model:
    """Instantiate the model registered under ``key`` with ``params``."""
    return MODELS.get(key)(**params)
