"""The grid runner: stable cell hashes, per-cell files, resume (also after kill -9),
the embedding cache, failed cells, metric subsamples, backed data, run.json, dry runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from sceval.benchmark import GRID_COLUMNS, RESULT_COLUMNS, load_config, plan_grid, run_grid
from sceval.benchmark.config import SubsampleSpec
from sceval.benchmark.grid import expand_grid
from sceval.benchmark.jobs import subsample_indices

# A test-only plugin model: logs each embedding call, can sleep or fail.
PLUGIN = '''
import os, time
import numpy as np
from sceval.models.base import MODELS, Model, ModelInfo, register_model

class SlowModel(Model):
    """Test-only: one-hot labels plus seeded noise, after sleeping ``sleep`` seconds."""
    info = ModelInfo(key="e1_slow", kind="baseline", needs_labels=True,
                     description="test-only model")

    def embed_cells(self, adata, ctx):
        log = os.environ.get("E1_CALL_LOG")
        if log:
            with open(log, "a") as fh:
                fh.write(f"{os.getpid()} {ctx.seed} {self.params.get('sleep', 0)}\\n")
        if self.params.get("fail"):
            raise RuntimeError("e1_slow was told to fail")
        time.sleep(float(self.params.get("sleep", 0)))
        labels = adata.obs[ctx.label_key].astype(str).to_numpy()
        onehot = (labels[:, None] == np.unique(labels)[None, :]).astype(np.float32)
        rng = np.random.default_rng(ctx.seed)
        return onehot + rng.normal(scale=0.3, size=onehot.shape).astype(np.float32)

if "e1_slow" not in MODELS:
    register_model(SlowModel)
'''
PLUGIN_NAME = "e1_grid_plugin"


@pytest.fixture()
def plugin(tmp_path, monkeypatch):
    """Put the plugin on the path (also for subprocesses); unregister it afterwards."""
    folder = tmp_path / "plugin"
    folder.mkdir()
    (folder / f"{PLUGIN_NAME}.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join([str(folder), os.environ.get("PYTHONPATH", "")])
    )
    log = tmp_path / "calls.log"
    monkeypatch.setenv("E1_CALL_LOG", str(log))
    yield log
    from sceval.models.base import MODELS

    if "e1_slow" in MODELS:
        MODELS.unregister("e1_slow")
    sys.modules.pop(PLUGIN_NAME, None)


def calls(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


SIM = {"n_cells": 200, "n_genes": 100, "n_batches": 2, "n_cell_types": 3, "seed": 0}


def base_config(**over):
    cfg = {
        "datasets": [{"name": "sim", "simulate": dict(SIM)}],
        "models": ["pca", "unintegrated"],
        "tasks": [{"key": "annotation"}],
        "seeds": [0, 1],
        "device": "cpu",
    }
    cfg.update(over)
    return cfg


def write_yaml(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


# ---------------------------------------------------------------- hashes

HASH_A = """\
seeds: [0, 1]
datasets:
  - {name: sim, simulate: {n_cells: 200, n_genes: 100, seed: 0},
     batch_key: batch, label_key: cell_type}
models:
  - {key: pca, params: {n_comps: 10}, grid: {}}
tasks:
  - {key: annotation, params: {test_size: 0.3, n_neighbors: 5}}
"""
# the same grid, every mapping in another order
HASH_B = """\
tasks:
  - {params: {n_neighbors: 5, test_size: 0.3}, key: annotation}
models:
  - {params: {n_comps: 10}, key: pca}
datasets:
  - {label_key: cell_type, batch_key: batch,
     simulate: {seed: 0, n_genes: 100, n_cells: 200}, name: sim}
seeds: [0, 1]
"""


def test_hashes_are_stable_across_processes_and_key_order(tmp_path):
    a = write_yaml(tmp_path / "a.yaml", HASH_A)
    b = write_yaml(tmp_path / "b.yaml", HASH_B)
    here = [c.hash for c in expand_grid(load_config(a))[0]]
    assert len(here) == 2 and len(set(here)) == 2
    assert [c.hash for c in expand_grid(load_config(b))[0]] == here
    code = (
        "import sys, json; from sceval.benchmark import load_config; "
        "from sceval.benchmark.grid import expand_grid; "
        "print(json.dumps([c.hash for c in expand_grid(load_config(sys.argv[1]))[0]]))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", code, str(b)], env=env, capture_output=True, text=True, check=True
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == here


def test_hash_changes_with_each_part_of_the_definition(tmp_path):
    def hashes(text):
        return [c.hash for c in expand_grid(load_config(write_yaml(tmp_path / "x.yaml", text)))[0]]

    ref = hashes(HASH_A)
    for old, new in [
        ("n_comps: 10", "n_comps: 11"),
        ("test_size: 0.3", "test_size: 0.4"),
        ("seed: 0}", "seed: 1}"),
        ("seeds: [0, 1]", "seeds: [0, 2]"),
        ("name: sim", "name: sim2"),
        ("label_key: cell_type", "label_key: batch"),
    ]:
        assert hashes(HASH_A.replace(old, new)) != ref, old


def test_file_datasets_are_identified_by_content(tmp_path, small):
    small.write_h5ad(tmp_path / "d.h5ad")
    text = "datasets: [{path: d.h5ad, label_key: cell_type}]\nmodels: [pca]\ntasks: [annotation]\n"
    cfg = load_config(write_yaml(tmp_path / "c.yaml", text))
    h1 = expand_grid(cfg, tmp_path / "out")[0][0].hash
    assert (tmp_path / "out" / "cache" / "sha256.json").exists()  # the file hash is remembered
    moved = tmp_path / "sub"
    moved.mkdir()
    (tmp_path / "d.h5ad").rename(moved / "d.h5ad")
    cfg2 = load_config(write_yaml(moved / "c.yaml", text))
    assert expand_grid(cfg2)[0][0].hash == h1  # same content, other folder: same cell
    small[:500].copy().write_h5ad(moved / "d.h5ad")
    assert expand_grid(load_config(moved / "c.yaml"))[0][0].hash != h1


# ---------------------------------------------------------------- running


def test_cells_resume_and_run_record(tmp_path):
    out = tmp_path / "out"
    res = run_grid(base_config(), out, progress=False)
    assert list(res.columns) == [*RESULT_COLUMNS, *GRID_COLUMNS]
    assert res["cell"].nunique() == 4 and (res["status"] == "ok").all()
    assert set(res["params"]) == {"{}"} and (res["subsample"] == "").all()
    assert (res["n_cells"] == 200).all() and (res["peak_mem_mb"] > 0).all()
    assert sorted(p.stem for p in (out / "cells").glob("*.parquet")) == sorted(set(res["cell"]))
    disk = pd.read_parquet(out / "results.parquet")
    pd.testing.assert_frame_equal(disk, res, check_dtype=False)
    assert len(pd.read_csv(out / "results.csv")) == len(res)
    rec = json.loads((out / "run.json").read_text())
    for key in ("sceval_version", "dependencies", "hardware", "python", "platform", "config"):
        assert key in rec
    assert rec["seeds"] == [0, 1] and rec["grid_size"] == 4 and rec["cells_run"] == 4
    assert rec["datasets"]["sim"]["simulate"]["n_cells"] == 200
    assert rec["status"] == "complete" and rec["started"] <= rec["finished"]
    assert (out / "config.yaml").exists()
    # a rerun runs nothing and returns the same table
    again = run_grid(base_config(), out, progress=False)
    assert json.loads((out / "run.json").read_text())["cells_run"] == 0
    pd.testing.assert_frame_equal(again, res)
    # a bigger grid runs only the new cells
    bigger = run_grid(base_config(seeds=[0, 1, 2]), out, progress=False)
    assert json.loads((out / "run.json").read_text())["cells_run"] == 2
    pd.testing.assert_frame_equal(bigger[bigger["seed"] < 2].reset_index(drop=True), res)


def test_embedding_is_computed_once_per_dataset_model_seed(tmp_path, plugin):
    cfg = base_config(
        plugins=[PLUGIN_NAME],
        models=["e1_slow"],
        tasks=[{"key": "annotation", "grid": {"test_size": [0.2, 0.3], "n_neighbors": [5, 15]}}],
    )
    out = tmp_path / "out"
    res = run_grid(cfg, out, progress=False)
    assert res["cell"].nunique() == 8  # 2 seeds x 4 annotation settings
    assert len(calls(plugin)) == 2  # one embedding per seed, shared by four cells
    assert '{"annotation.n_neighbors":5,"annotation.test_size":0.3}' in set(res["params"])
    assert len(list((out / "cache" / "emb").glob("*.npy"))) == 2
    # new task settings reuse the cached embeddings; --no-resume recomputes them
    cfg["tasks"][0]["grid"]["test_size"] = [0.2, 0.3, 0.4]
    res2 = run_grid(cfg, out, progress=False)
    assert res2["cell"].nunique() == 12 and len(calls(plugin)) == 2
    run_grid(cfg, out, progress=False, resume=False)
    assert len(calls(plugin)) == 4


def test_failed_cells_are_recorded_and_retried_on_request(tmp_path, plugin):
    cfg = base_config(
        plugins=[PLUGIN_NAME],
        models=["pca", {"key": "e1_slow", "params": {"fail": True}}],
        seeds=[0],
    )
    out = tmp_path / "out"
    res = run_grid(cfg, out, progress=False)
    bad = res[res["model"] == "e1_slow"]
    assert (bad["status"] == "failed").all()
    assert bad["message"].str.contains("RuntimeError: e1_slow was told to fail").all()
    assert (res.loc[res["model"] == "pca", "status"] == "ok").all()
    n = len(calls(plugin))
    run_grid(cfg, out, progress=False)  # failed cells count as finished
    assert len(calls(plugin)) == n
    run_grid(cfg, out, progress=False, retry_failed=True)
    assert len(calls(plugin)) == n + 1


def test_kill_9_loses_only_unfinished_cells(tmp_path, plugin):
    cfg_text = f"""\
    plugins: [{PLUGIN_NAME}]
    seeds: [0, 1, 2]
    device: cpu
    datasets: [{{name: sim, simulate: {json.dumps(SIM)}}}]
    models:
      - key: e1_slow
        params: {{sleep: 1.5}}
      - unintegrated
    tasks: [annotation]
    """
    cfg = write_yaml(tmp_path / "bench.yaml", cfg_text)
    out = tmp_path / "killed"
    entry = "import sys; from sceval.cli import main; sys.argv[0] = 'sceval'; main()"
    cmd = [sys.executable, "-c", entry, "run", "--config", str(cfg), "--out", str(out), "-q"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    cells = out / "cells"
    while time.time() < deadline and len(list(cells.glob("*.parquet"))) < 2:
        time.sleep(0.1)
        assert proc.poll() is None, proc.stderr.read().decode()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = len(list(cells.glob("*.parquet")))
    assert 2 <= done < 6
    assert not (out / "results.parquet").exists()
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    rec = json.loads((out / "run.json").read_text())
    assert rec["cells_run"] == 6 - done
    resumed = pd.read_parquet(out / "results.parquet")
    ref = run_grid(load_config(cfg), tmp_path / "ref", progress=False)
    cols = [c for c in resumed.columns if c not in ("runtime_s", "peak_mem_mb")]
    assert not resumed.duplicated(["cell", "metric"]).any()
    pd.testing.assert_frame_equal(resumed[cols], ref[cols], check_dtype=False)


def test_subsample_is_seeded_stratified_and_recorded(tmp_path):
    labels = np.array(["a"] * 700 + ["b"] * 250 + ["c"] * 50)
    idx = subsample_indices(labels, 1000, SubsampleSpec(100, "label"), seed=3)
    assert idx.size == 100 and np.all(np.diff(idx) > 0)
    assert dict(zip(*np.unique(labels[idx], return_counts=True), strict=True)) == {
        "a": 70,
        "b": 25,
        "c": 5,
    }
    assert np.array_equal(idx, subsample_indices(labels, 1000, SubsampleSpec(100), seed=3))
    assert not np.array_equal(idx, subsample_indices(labels, 1000, SubsampleSpec(100), seed=4))
    rare = np.array(["a"] * 995 + ["b"] * 5)
    assert "b" in set(rare[subsample_indices(rare, 1000, SubsampleSpec(20), seed=0)])
    assert subsample_indices(labels, 1000, SubsampleSpec(1000), seed=0) is None
    res = run_grid(
        base_config(models=["pca"], seeds=[0], subsample={"n": 120, "stratify": "label"}),
        tmp_path / "out",
        progress=False,
    )
    assert (res["n_cells"] == 120).all() and (res["subsample"] == "stratified:120:seed0").all()
    assert (res["status"] == "ok").all()


def test_backed_h5ad_dataset(tmp_path, small):
    small[:300].copy().write_h5ad(tmp_path / "d.h5ad")
    cfg = {
        "datasets": [{"path": str(tmp_path / "d.h5ad"), "backed": True, "label_key": "cell_type"}],
        "models": ["pca"],
        "tasks": [{"key": "annotation", "subsample": {"n": 150}}],
        "seeds": [0],
    }
    res = run_grid(cfg, tmp_path / "out", progress=False)
    assert (res["status"] == "ok").all() and (res["n_cells"] == 150).all()
    assert (res["dataset"] == "d").all()


def test_dry_run_prints_the_grid_and_runs_nothing(tmp_path):
    from sceval.cli.main import cli

    cfg = write_yaml(
        tmp_path / "bench.yaml",
        f"""\
        seeds: [0, 1]
        datasets: [{{name: sim, simulate: {json.dumps(SIM)}}}]
        models: [{{key: pca, grid: {{n_comps: [5, 10]}}}}, unintegrated]
        tasks: [annotation]
        """,
    )
    out = tmp_path / "out"
    r = CliRunner().invoke(cli, ["run", "--config", str(cfg), "--out", str(out), "--dry-run"])
    assert r.exit_code == 0, r.output
    for word in ("dataset", "model", "task", "seed", "params", "cell", "done", '{"pca.n_comps":5}'):
        assert word in r.output
    assert "6 cells (1 datasets x 2 models x 1 tasks x 2 seeds" in r.output
    assert "0 done, 6 to run" in r.output
    assert not (out / "cells").exists()
    plan = plan_grid(cfg, out)
    assert len(plan) == 6 and not plan["done"].any()


def test_cli_config_errors_and_conflicts(tmp_path):
    from sceval.cli.main import cli

    bad = write_yaml(
        tmp_path / "bad.yaml", "datasets: [{simulate: {}}]\nmodels: [pcaa]\ntasks: [annotation]\n"
    )
    r = CliRunner().invoke(cli, ["run", "--config", str(bad)])
    assert r.exit_code == 2
    assert (
        "Error: bad.yaml line 2: models[0].key: unknown model 'pcaa'; did you mean 'pca'?"
        in r.output
    )
    r = CliRunner().invoke(cli, ["run", "--config", str(bad), "--models", "pca"])
    assert r.exit_code == 2 and "--models cannot be combined with --config" in r.output
    r = CliRunner().invoke(cli, ["run", "--dry-run"])
    assert r.exit_code == 2 and "--dry-run only apply with --config" in r.output
    r = CliRunner().invoke(
        cli, ["run", "--config", str(bad), "--processes", "2", "--dask-local", "2"]
    )
    assert r.exit_code == 2 and "choose one executor" in r.output


def test_registry_datasets_go_through_the_registry_hook(tmp_path, monkeypatch, small):
    import types

    from sceval.testing import small_dataset

    loaded = []

    def load_dataset(name, backed=False):
        loaded.append((name, backed))
        return small_dataset(n_cells=150, n_genes=80, n_batches=2)

    fake = types.ModuleType("sceval.data.registry")
    fake.get_dataset = lambda name: types.SimpleNamespace(
        batch_key="batch", label_key="cell_type", files=(), builtin=True
    )
    fake.load_dataset = load_dataset
    monkeypatch.setitem(sys.modules, "sceval.data.registry", fake)
    cfg = base_config(datasets=[{"registry": "toy"}], models=["pca"], seeds=[0])
    res = run_grid(cfg, tmp_path / "out", progress=False)
    assert loaded == [("toy", False)]
    assert (res["dataset"] == "toy").all() and (res["status"] == "ok").all()
    rec = json.loads((tmp_path / "out" / "run.json").read_text())
    assert rec["datasets"]["toy"]["registry"] == "toy"


def test_foundation_model_cells_hash_their_checkpoint(tmp_path, small):
    from sceval.testing import tiny_checkpoint

    adata = small[:200].copy()
    adata.write_h5ad(tmp_path / "d.h5ad")
    ckpt = tiny_checkpoint("scgpt", tmp_path / "ckpt", adata)
    cfg = {
        "device": "cpu",
        "seeds": [0],
        "datasets": [{"path": str(tmp_path / "d.h5ad"), "label_key": "cell_type"}],
        "models": [{"key": "scgpt", "checkpoint": str(ckpt)}],
        "tasks": ["annotation"],
    }
    res = run_grid(cfg, tmp_path / "out", progress=False)
    assert (res["status"] == "ok").all() and (res["model_kind"] == "foundation").all()
    rec = json.loads((tmp_path / "out" / "run.json").read_text())
    sha = rec["checkpoints"]["scgpt"]["checkpoint_sha256"]
    assert isinstance(sha, str) and len(sha) == 64
    plan = plan_grid(cfg, tmp_path / "out")
    assert plan["done"].all() and not plan["gpu"].any()
    # the checkpoint's content, not its folder, identifies the cell
    moved = tmp_path / "elsewhere"
    Path(ckpt).rename(moved)
    cfg["models"][0]["checkpoint"] = str(moved)
    assert plan_grid(cfg, tmp_path / "out")["done"].all()
    first = sorted(p for p in moved.rglob("*") if p.is_file())[0]
    first.write_bytes(first.read_bytes() + b" ")
    assert not plan_grid(cfg, tmp_path / "out")["done"].any()


def test_ctrl_c_stops_a_process_pool_run_and_keeps_finished_cells(tmp_path, plugin):
    cfg = write_yaml(
        tmp_path / "bench.yaml",
        f"""\
        plugins: [{PLUGIN_NAME}]
        seeds: [0, 1, 2, 3, 4, 5]
        device: cpu
        datasets: [{{name: sim, simulate: {json.dumps(SIM)}}}]
        models: [{{key: e1_slow, params: {{sleep: 2.0}}}}]
        tasks: [annotation]
        """,
    )
    out = tmp_path / "out"
    entry = "import sys; from sceval.cli import main; sys.argv[0] = 'sceval'; main()"
    cmd = [sys.executable, "-c", entry, "run", "--config", str(cfg), "--out", str(out)]
    proc = subprocess.Popen([*cmd, "-q", "--processes", "2"], stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and not list((out / "cells").glob("*.parquet")):
        time.sleep(0.1)
        assert proc.poll() is None, proc.stderr.read().decode()
    t0 = time.time()
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=60)
    assert time.time() - t0 < 10  # it stops without finishing the grid
    assert proc.returncode == 130
    assert "Interrupted: finished cells are saved" in proc.stderr.read().decode()
    rec = json.loads((out / "run.json").read_text())
    assert rec["status"] == "interrupted"
    done = len(list((out / "cells").glob("*.parquet")))
    assert 1 <= done < 6
