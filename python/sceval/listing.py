"""Tables of what is registered (used by the CLI and by R's list_models()/list_tasks())."""

from __future__ import annotations

import importlib.util
import os

import pandas as pd

__all__ = ["list_checkpoints", "list_metrics", "list_models", "list_tasks"]


def list_models() -> pd.DataFrame:
    """Registered models: key, kind, input, requirements, whether runnable here, description."""
    from sceval.models.base import MODEL_KINDS, MODELS

    rows = []
    for key in MODELS.keys():
        info = MODELS.get(key).info
        missing = [m for m in info.requires if importlib.util.find_spec(m) is None]
        rows.append(
            {
                "model": key,
                "kind": info.kind,
                "input": info.input,
                "requirements": info.requirements(),
                "available": not missing,
                "install": info.install if missing else "",
                "description": info.description,
                "license": info.license,
                "citation": info.citation,
            }
        )
    df = pd.DataFrame(rows)
    order = {k: i for i, k in enumerate(MODEL_KINDS)}
    return df.sort_values(
        ["kind", "model"], key=lambda s: s.map(order).fillna(s) if s.name == "kind" else s
    ).reset_index(drop=True)


def list_tasks() -> pd.DataFrame:
    """Registered tasks: key, requirements, metrics, description."""
    from sceval.tasks.base import TASKS

    rows = []
    for key in TASKS.keys():
        info = TASKS.get(key).info
        rows.append(
            {
                "task": key,
                "requirements": info.requirements(),
                "metrics": ", ".join(info.metric_keys),
                "description": info.description,
            }
        )
    return pd.DataFrame(rows)


def list_metrics() -> pd.DataFrame:
    """Registered metrics: key, category, higher_is_better, description."""
    from sceval.metrics import METRICS

    rows = [
        {
            "metric": k,
            "category": METRICS.get(k).category,
            "higher_is_better": METRICS.get(k).higher_is_better,
            "description": METRICS.get(k).description,
        }
        for k in METRICS.keys()
    ]
    return pd.DataFrame(rows)


def list_checkpoints(home: str | os.PathLike[str] | None = None) -> pd.DataFrame:
    """Registered checkpoints and whether each is installed.

    Parameters
    ----------
    home
        The sceval home (default ``$SCEVAL_HOME`` or the user cache folder).

    Returns
    -------
    pandas.DataFrame
        One row per checkpoint: ``checkpoint``, ``model``, ``species``, ``installed``
        (bool), ``status`` (``"installed"`` / ``"missing"``), ``get`` (how to install it),
        ``size``, ``license``, ``path`` (its folder), ``description``, ``homepage``,
        ``citation``.
    """
    from sceval.models.checkpoints import CHECKPOINTS, checkpoint_dir, is_installed

    rows = []
    for name in CHECKPOINTS.keys():
        spec = CHECKPOINTS.get(name)
        installed = is_installed(name, home=home)
        rows.append(
            {
                "checkpoint": name,
                "model": spec.model,
                "species": spec.species,
                "installed": installed,
                "status": "installed" if installed else "missing",
                "get": "" if installed else spec.how_to_get(),
                "size": spec.size_text(),
                "license": spec.license,
                "path": str(checkpoint_dir(name, home=home)),
                "description": spec.description,
                "homepage": spec.homepage,
                "citation": spec.citation,
            }
        )
    cols = [
        "checkpoint",
        "model",
        "species",
        "installed",
        "status",
        "get",
        "size",
        "license",
        "path",
        "description",
        "homepage",
        "citation",
    ]
    return pd.DataFrame(rows, columns=cols)
