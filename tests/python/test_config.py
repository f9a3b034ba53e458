"""Benchmark configs: YAML -> frozen dataclasses; every error names the key and its line."""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path

import pytest

from sceval.benchmark.config import (
    Config,
    ConfigError,
    DatasetSpec,
    ModelSpec,
    SubsampleSpec,
    load_config,
    parse_config,
)

GOOD = """\
name: demo
seeds: [0, 1]
datasets:
  - name: sim
    simulate: {n_cells: 200, n_genes: 100, seed: 0}
    batch_key: batch
    label_key: cell_type
models:
  - key: pca
    grid: {n_comps: [10, 20]}
  - key: harmony
  - unintegrated
tasks:
  - key: integration
    params: {n_neighbors: 15}
  - key: annotation
    grid: {test_size: [0.2, 0.3]}
subsample: {n: 100, stratify: label}
"""


def write(tmp_path: Path, text: str, name: str = "bench.yaml") -> Path:
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


def test_good_config_parses_into_frozen_dataclasses(tmp_path):
    cfg = load_config(write(tmp_path, GOOD))
    assert isinstance(cfg, Config)
    assert cfg.seeds == (0, 1)
    assert [m.key for m in cfg.models] == ["pca", "harmony", "unintegrated"]
    assert cfg.models[0] == ModelSpec("pca", "pca", None, {}, {"n_comps": (10, 20)})
    ds = cfg.datasets[0]
    assert isinstance(ds, DatasetSpec) and ds.simulate == {
        "n_cells": 200,
        "n_genes": 100,
        "seed": 0,
    }
    assert cfg.subsample == SubsampleSpec(100, "label")
    assert cfg.tasks[1].grid == {"test_size": (0.2, 0.3)}
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.seeds = (3,)  # type: ignore[misc]
    # the resolved config round-trips through parse_config
    again = parse_config(cfg.to_dict())
    assert again.to_dict() == cfg.to_dict()


def test_simulated_datasets_default_their_keys_and_floats_in_yaml_strings(tmp_path):
    cfg = load_config(
        write(
            tmp_path,
            """\
            datasets: [{simulate: {n_cells: 100}}]
            models: [pca]
            tasks: [{key: annotation, grid: {finetune_lr: [1e-4, 1.0e-3]}}]
            """,
        )
    )
    assert cfg.datasets[0].name == "sim0"
    assert cfg.datasets[0].batch_key == "batch" and cfg.datasets[0].label_key == "cell_type"
    assert cfg.tasks[0].grid["finetune_lr"] == (1e-4, 1e-3)  # YAML reads 1e-4 as a string
    assert cfg.seeds == (0,)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (
            GOOD.replace("  - key: harmony", "  - key: pcaa"),
            r"bench\.yaml line 11: models\[1\]\.key: unknown model 'pcaa'; did you mean 'pca'\? "
            r"Valid models: .*harmony",
        ),
        (
            GOOD.replace("seeds: [0, 1]", "seedz: [0, 1]"),
            r"bench\.yaml line 2: seedz: unknown key 'seedz'\. Did you mean 'seeds'\? "
            r"Valid keys here: name, out, seeds",
        ),
        (
            GOOD.replace("    grid: {n_comps: [10, 20]}", "    gird: {n_comps: [10, 20]}"),
            r"line 10: models\[0\]\.gird: unknown key 'gird'\. Did you mean 'grid'\?",
        ),
        (
            GOOD.replace("  - key: annotation", "  - key: anotation"),
            r"line 16: tasks\[1\]\.key: unknown task 'anotation'; did you mean 'annotation'\?",
        ),
        (GOOD.replace("seeds: [0, 1]", "seeds: []"), r"line 2: seeds: the list of seeds is empty"),
        (
            GOOD.replace("seeds: [0, 1]", "seeds: [0, -1]"),
            r"line 2: seeds\[1\]: expected a non-negative integer, found -1",
        ),
        (
            GOOD.replace("seeds: [0, 1]", "seeds: zero"),
            r"line 2: seeds: expected a list of non-negative integers, found str 'zero'",
        ),
        (
            GOOD.replace("    params: {n_neighbors: 15}", "    params: 15"),
            r"line 15: tasks\[0\]\.params: expected a mapping of parameter -> value, found int",
        ),
        (
            GOOD.replace("grid: {n_comps: [10, 20]}", "grid: {n_comps: []}"),
            r"line 10: models\[0\]\.grid\.n_comps: the list of values is empty",
        ),
        (
            GOOD.replace(
                "    simulate: {n_cells: 200, n_genes: 100, seed: 0}", "    path: nope.h5ad"
            ),
            r"line 5: datasets\[0\]\.path: dataset file 'nope\.h5ad' does not exist",
        ),
        (
            GOOD.replace("batch_key: batch", "batch_key: null"),
            r"line 4: datasets\[0\]: task 'integration' needs batch_key",
        ),
        (
            GOOD.replace("  - key: harmony", "  - key: harmony\n    checkpoint: x"),
            r"line 12: models\[1\]\.checkpoint: model 'harmony' takes no checkpoint",
        ),
        (
            GOOD.replace("seed: 0}", "seeed: 0}"),
            r"line 5: datasets\[0\]\.simulate\.seeed: unknown key 'seeed'\. Did you mean 'seed'\?",
        ),
        (
            GOOD.replace("subsample: {n: 100, stratify: label}", "subsample: {n: 5}"),
            r"line 18: subsample\.n: expected an integer >= 10",
        ),
        (
            GOOD.replace("name: demo", "name: demo\nname: again"),
            r"line 2: name: key 'name' appears twice",
        ),
        (
            GOOD + "executor: {kind: slurm}\n",
            r"line 19: executor\.kind: unknown executor 'slurm'.*Valid executors: inline, "
            r"processes, dask",
        ),
        (GOOD.replace("models:\n", "models: [\n"), r"bench\.yaml line \d+: not valid YAML"),
        ("datasets: []\nmodels: [pca]\ntasks: [annotation]\n", r"line 1: datasets: the list"),
        ("models: [pca]\ntasks: [annotation]\n", r"missing key 'datasets'"),
    ],
)
def test_errors_name_key_and_line(tmp_path, text, match):
    with pytest.raises(ConfigError, match=match):
        load_config(write(tmp_path, text))


def test_existing_dataset_file_and_backed(tmp_path, small):
    small.write_h5ad(tmp_path / "d.h5ad")
    cfg = load_config(
        write(
            tmp_path,
            """\
            datasets:
              - path: d.h5ad
                backed: true
                label_key: cell_type
            models: [pca]
            tasks: [annotation]
            """,
        )
    )
    ds = cfg.datasets[0]
    assert ds.name == "d" and ds.backed and Path(ds.path) == (tmp_path / "d.h5ad").resolve()
    with pytest.raises(ConfigError, match=r"datasets\[0\]\.backed: backed: true needs a path"):
        parse_config(
            {
                "datasets": [{"simulate": {}, "backed": True}],
                "models": ["pca"],
                "tasks": ["annotation"],
            }
        )


def test_dict_configs_and_missing_files():
    with pytest.raises(ConfigError, match=r"^config: models\[0\]\.key: unknown model 'xyz'"):
        parse_config({"datasets": [{"simulate": {}}], "models": ["xyz"], "tasks": ["annotation"]})
    with pytest.raises(ConfigError, match=r"config file '/no/such\.yaml' does not exist"):
        load_config("/no/such.yaml")


def test_model_names_must_be_unique(tmp_path):
    text = GOOD.replace("  - key: harmony", "  - key: pca")
    with pytest.raises(ConfigError, match=r"models\[1\]: model name 'pca' is used twice"):
        load_config(write(tmp_path, text))
    ok = GOOD.replace(
        "  - key: harmony", "  - key: pca\n    name: pca_small\n    params: {n_comps: 5}"
    )
    assert [m.name for m in load_config(write(tmp_path, ok)).models][:2] == ["pca", "pca_small"]


def test_plugins_must_import(tmp_path):
    with pytest.raises(ConfigError, match=r"line 1: plugins\[0\]: cannot import plugin module"):
        load_config(write(tmp_path, "plugins: [no_such_module_e1]\n" + GOOD))


def test_registry_datasets_take_the_registry_keys(tmp_path):
    cfg = load_config(
        write(tmp_path, "datasets: [{registry: sim_3batch}]\nmodels: [pca]\ntasks: [integration]\n")
    )
    ds = cfg.datasets[0]
    assert ds.name == "sim_3batch" and ds.registry == "sim_3batch"
    assert ds.batch_key == "batch" and ds.label_key == "cell_type"
    text = "datasets:\n  - registry: sim_3bach\nmodels: [pca]\ntasks: [annotation]\n"
    with pytest.raises(ConfigError, match=r"line 2: datasets\[0\]\.registry: .*sim_3bach"):
        load_config(write(tmp_path, text))
