"""Executors: the example config gives the same table in-process, in a process pool and
on Dask; a Dask worker killed mid-grid loses no finished cell and a rerun completes."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from sceval.benchmark import parse_config, run_grid
from sceval.benchmark.executors import DaskExecutor, InlineExecutor, ProcessExecutor, make_executor

EXAMPLE = Path(__file__).resolve().parents[2] / "inst" / "examples" / "grid_simulated.yaml"
KEYS = ["dataset", "task", "model", "seed", "params", "metric"]
EXACT = ["status", "message", "model_kind", "higher_is_better", "n_cells", "cell"]

PLUGIN = '''
import time
import numpy as np
from sceval.models.base import MODELS, Model, ModelInfo, register_model

class SleepyModel(Model):
    """Test-only: sleeps ``sleep`` seconds, then one-hot labels plus seeded noise."""
    info = ModelInfo(key="e1_sleepy", kind="baseline", needs_labels=True,
                     description="test-only model")

    def embed_cells(self, adata, ctx):
        time.sleep(float(self.params.get("sleep", 0)))
        labels = adata.obs[ctx.label_key].astype(str).to_numpy()
        onehot = (labels[:, None] == np.unique(labels)[None, :]).astype(np.float32)
        rng = np.random.default_rng(ctx.seed)
        return onehot + rng.normal(scale=0.3, size=onehot.shape).astype(np.float32)

if "e1_sleepy" not in MODELS:
    register_model(SleepyModel)
'''
PLUGIN_NAME = "e1_executor_plugin"


def sort(df: pd.DataFrame) -> pd.DataFrame:
    return df.sort_values(KEYS).reset_index(drop=True)


def assert_same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    a, b = sort(a), sort(b)
    assert len(a) == len(b)
    assert not a.duplicated(KEYS).any() and not b.duplicated(KEYS).any()
    pd.testing.assert_frame_equal(a[KEYS + EXACT], b[KEYS + EXACT])
    pd.testing.assert_series_equal(a["value"], b["value"], rtol=0, atol=1e-12)


@pytest.fixture(scope="module")
def plugin_dir(tmp_path_factory):
    """The test plugin on sys.path and PYTHONPATH (set before any worker starts)."""
    folder = tmp_path_factory.mktemp("plugin")
    (folder / f"{PLUGIN_NAME}.py").write_text(PLUGIN)
    old_path, old_env = list(sys.path), os.environ.get("PYTHONPATH")
    sys.path.insert(0, str(folder))
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(folder), old_env) if p)
    yield folder
    sys.path[:] = old_path
    if old_env is None:
        os.environ.pop("PYTHONPATH", None)
    else:
        os.environ["PYTHONPATH"] = old_env
    from sceval.models.base import MODELS

    if "e1_sleepy" in MODELS:
        MODELS.unregister("e1_sleepy")
    sys.modules.pop(PLUGIN_NAME, None)


@pytest.fixture(scope="module")
def client(plugin_dir):
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    )
    c = distributed.Client(cluster)
    yield c
    c.close()
    cluster.close()


def example_config() -> dict:
    """The shipped example (48 cells)."""
    return yaml.safe_load(EXAMPLE.read_text())


def test_example_config_gives_identical_tables_on_every_executor(tmp_path, client):
    cfg = parse_config(example_config(), EXAMPLE.parent)
    inline = run_grid(cfg, tmp_path / "inline", progress=False)
    assert inline["cell"].nunique() == 48 and (inline["status"] == "ok").all()
    procs = run_grid(cfg, tmp_path / "procs", executor="processes", workers=2, progress=False)
    dask = run_grid(cfg, tmp_path / "dask", executor=client, progress=False)
    assert_same(inline, procs)
    assert_same(inline, dask)
    # the same cells, hashed identically by every executor
    for out in ("procs", "dask"):
        names = {p.stem for p in (tmp_path / out / "cells").glob("*.parquet")}
        assert names == set(inline["cell"])


def test_dask_worker_killed_mid_grid_loses_nothing(tmp_path, client):
    cfg = parse_config(
        {
            "plugins": [PLUGIN_NAME],
            "seeds": [0, 1, 2],
            "device": "cpu",
            "datasets": [
                {"name": "sim", "simulate": {"n_cells": 150, "n_genes": 80, "n_batches": 2}}
            ],
            "models": [{"key": "e1_sleepy", "params": {"sleep": 2.0}}, "unintegrated"],
            "tasks": ["annotation"],
        }
    )
    out = tmp_path / "dask"
    outcome: dict[str, object] = {}

    def first_run() -> None:
        try:
            outcome["result"] = run_grid(cfg, out, executor=client, progress=False)
        except Exception as err:  # a lost job may end the first run early; the rerun completes
            outcome["error"] = err

    thread = threading.Thread(target=first_run)
    thread.start()
    killed = None
    deadline = time.time() + 120
    while time.time() < deadline and killed is None:
        time.sleep(0.1)
        if not list((out / "cells").glob("*.parquet")):
            continue
        busy = [w for w, keys in client.processing().items() if keys]
        if busy:
            pid = client.run(os.getpid, workers=[busy[0]])[busy[0]]
            os.kill(pid, signal.SIGKILL)
            killed = pid
    thread.join(timeout=300)
    assert killed is not None, "no worker was busy after the first cell finished"
    assert not thread.is_alive()
    # rerun: completes whatever the first run lost
    client.wait_for_workers(2, timeout=60)
    final = run_grid(cfg, out, executor=client, progress=False)
    ref = run_grid(cfg, tmp_path / "inline", progress=False)
    assert final["cell"].nunique() == 6
    assert_same(final, ref)


def test_make_executor():
    assert isinstance(make_executor("inline"), InlineExecutor)
    assert make_executor("processes", workers=3).describe() == {"kind": "processes", "workers": 3}
    assert isinstance(ProcessExecutor(), ProcessExecutor)
    with pytest.raises(ValueError, match="unknown executor 'slurm'; expected 'inline'"):
        make_executor("slurm")


def test_dask_executor_wraps_a_client(client):
    ex = make_executor(client)
    assert isinstance(ex, DaskExecutor)
    assert ex.describe()["workers"] == 2
    assert ex.gpu_workers() is False
    ex.close()  # a borrowed client stays open
    assert client.status == "running"


def test_gpu_cells_ask_dask_for_a_gpu_worker(tmp_path, client, monkeypatch):
    import dataclasses

    from sceval.benchmark.grid import expand_grid, group_jobs

    cfg = parse_config(
        {
            "datasets": [{"simulate": {"n_cells": 100, "n_genes": 60}}],
            "models": ["pca", "scgpt"],
            "tasks": ["annotation"],
        }
    )
    cells, data_ids, model_ids = expand_grid(cfg, gpu_available=True)
    assert {c.model.key: c.gpu for c in cells} == {"pca": False, "scgpt": True}
    assert not any(c.gpu for c in expand_grid(cfg, gpu_available=False)[0])
    jobs = group_jobs(cells, cfg, tmp_path, data_ids, model_ids)
    pca = next(j for j in jobs if j.model.key == "pca")
    seen = []
    real = client.submit

    def submit(fn, *args, **kwargs):
        seen.append(kwargs.get("resources"))
        kwargs["resources"] = None  # the test cluster has no GPU; run it anyway
        return real(fn, *args, **kwargs)

    monkeypatch.setattr(client, "submit", submit)
    done = []
    errors = DaskExecutor(client=client).run(
        [pca, dataclasses.replace(pca, key="gpu-copy", gpu=True)], done.append
    )
    assert errors == [] and seen == [None, {"GPU": 1}]
