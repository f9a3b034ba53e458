"""Baseline methods: the simpler methods foundation models must beat."""

from sceval.models.baselines.combat import CombatModel
from sceval.models.baselines.harmony import HarmonyModel
from sceval.models.baselines.pca import PCAModel
from sceval.models.baselines.scvi import SCVIModel

__all__ = ["CombatModel", "HarmonyModel", "PCAModel", "SCVIModel"]
