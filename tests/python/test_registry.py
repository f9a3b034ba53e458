from __future__ import annotations

import pytest

from sceval._errors import UnknownNameError
from sceval._registry import Registry


def test_register_get_and_list():
    reg: Registry[int] = Registry("thing")
    reg.register("alpha", 1)

    @reg.register("beta")
    def beta():  # decorator form
        return 2

    assert reg.get("alpha") == 1
    assert reg.get("beta")() == 2
    assert reg.keys() == ["alpha", "beta"]
    assert "alpha" in reg and len(reg) == 2


def test_unknown_name_lists_valid_and_suggests_closest():
    reg: Registry[int] = Registry("model")
    for k in ("harmony", "pca", "scvi"):
        reg.register(k, 0)
    with pytest.raises(
        UnknownNameError, match=r"Unknown model 'harmny'\. Did you mean 'harmony'\?"
    ):
        reg.get("harmny")
    with pytest.raises(UnknownNameError, match=r"Valid models: harmony, pca, scvi"):
        reg.get("zzz")


def test_duplicate_and_bad_keys_rejected():
    reg: Registry[int] = Registry("task")
    reg.register("a", 1)
    with pytest.raises(ValueError, match="already registered"):
        reg.register("a", 2)
    with pytest.raises(ValueError, match="non-empty string"):
        reg.register(" a ", 3)


def test_one_name_everywhere():
    """Model, task and metric keys are the registry keys used by the CLI and R."""
    import sceval
    from sceval.metrics import METRICS
    from sceval.models import MODELS
    from sceval.tasks import TASKS

    assert set(sceval.list_models()["model"]) == set(MODELS.keys())
    assert set(sceval.list_tasks()["task"]) == set(TASKS.keys())
    for key in TASKS.keys():
        for m in TASKS.get(key).info.metric_keys:
            assert m in METRICS, f"task {key} reports unregistered metric {m}"
    with pytest.raises(UnknownNameError, match="Did you mean 'harmony'"):
        MODELS.get("harmoni")
