"""Models: baselines, controls and foundation models, one registry.

Importing registers every model: each public submodule of this package (one module per
foundation-model architecture, ``baselines/``, ``controls``) registers its models and
checkpoint specs when imported, so adding a model is adding a module. The R baselines
(``sceval.r``) register without starting R or importing rpy2.
"""

import importlib as _importlib
import pkgutil as _pkgutil

from sceval import r as _r  # noqa: F401  (registration of the R baselines)
from sceval.models.base import MODELS, EmbedContext, Model, ModelInfo, get_model, register_model
from sceval.models.controls import ExternalEmbedding

#: Submodules that hold shared machinery, not models.
_NOT_MODELS = frozenset({"base", "checkpoints", "foundation"})


def _import_model_modules() -> None:
    for mod in sorted(_pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if not mod.name.startswith("_") and mod.name not in _NOT_MODELS:
            _importlib.import_module(f"{__name__}.{mod.name}")


_import_model_modules()

__all__ = [
    "MODELS",
    "EmbedContext",
    "ExternalEmbedding",
    "Model",
    "ModelInfo",
    "get_model",
    "register_model",
]
