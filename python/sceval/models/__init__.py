"""Models: baselines, controls and foundation models, one registry.

Importing registers every model; the R baselines (``sceval.r``) register without
starting R or importing rpy2.
"""

from sceval import r as _r  # noqa: F401  (registration of the R baselines)
from sceval.models import baselines, controls, geneformer, scgpt  # noqa: F401  (registration)
from sceval.models.base import MODELS, EmbedContext, Model, ModelInfo, get_model, register_model
from sceval.models.controls import ExternalEmbedding

__all__ = [
    "MODELS",
    "EmbedContext",
    "ExternalEmbedding",
    "Model",
    "ModelInfo",
    "get_model",
    "register_model",
]
