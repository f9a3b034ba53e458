"""Models: baselines, controls and foundation models, one registry."""

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
