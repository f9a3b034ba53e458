from __future__ import annotations

import pandas as pd
import pytest
from click.testing import CliRunner

from sceval.cli import cli


@pytest.fixture(scope="module")
def h5ad(tmp_path_factory):
    from sceval.data import simulate

    path = tmp_path_factory.mktemp("data") / "sim3.h5ad"
    simulate(n_cells=1200, n_genes=1000, n_batches=3, n_cell_types=5, seed=0).write_h5ad(path)
    return path


def _run(args):
    return CliRunner().invoke(cli, args, catch_exceptions=False)


def test_help():
    for cmd in ([], ["run"], ["models"], ["tasks"], ["metrics"]):
        r = _run([*cmd, "--help"])
        assert r.exit_code == 0 and "Usage" in r.output


def test_models_and_tasks_listing():
    r = _run(["models"])
    assert r.exit_code == 0
    for key in ("pca", "harmony", "scvi", "combat", "unintegrated", "shuffled", "labels"):
        assert key in r.output
    assert "baseline" in r.output and "control" in r.output
    r = _run(["tasks"])
    assert "integration" in r.output and "annotation" in r.output


def test_run_ranks_controls_and_harmony(h5ad, tmp_path):
    """On a simulated 3-batch dataset: harmony beats unintegrated on iLISI and the batch
    aggregate, and the labels control tops bio conservation."""
    out = tmp_path / "out"
    r = _run(
        [
            "run",
            str(h5ad),
            "--batch-key",
            "batch",
            "--label-key",
            "cell_type",
            "--models",
            "pca,harmony,unintegrated,shuffled,labels",
            "--tasks",
            "integration",
            "--seeds",
            "0",
            "--out",
            str(out),
            "--quiet",
        ]
    )
    assert r.exit_code == 0, r.output
    assert "== sim3 / integration ==" in r.output
    res = pd.read_csv(out / "results.csv")
    assert (out / "results.parquet").exists()
    mean = res[res["status"] == "ok"].pivot_table(index="model", columns="metric", values="value")
    assert mean.loc["harmony", "ilisi"] > mean.loc["unintegrated", "ilisi"] + 0.2
    assert mean.loc["harmony", "batch_correction"] > mean.loc["unintegrated", "batch_correction"]
    assert mean["bio_conservation"].idxmax() == "labels"
    assert mean.loc["shuffled", "bio_conservation"] < mean.loc["unintegrated", "bio_conservation"]


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--models", "harmny"], "Did you mean 'harmony'"),
        (["--tasks", "integraton"], "Unknown task 'integraton'"),
        (["--batch-key", "nope"], "batch_key='nope' is not a column"),
        (["--seeds", "a,b"], "--seeds must be comma-separated"),
    ],
)
def test_bad_inputs_exit_2_without_traceback(h5ad, tmp_path, args, match):
    r = CliRunner().invoke(
        cli, ["run", str(h5ad), "--label-key", "cell_type", "--out", str(tmp_path), "-q", *args]
    )
    assert r.exit_code == 2
    assert match in r.output
    assert "Traceback" not in r.output


def test_unreadable_path(tmp_path):
    r = CliRunner().invoke(cli, ["run", str(tmp_path / "nope.h5ad"), "--label-key", "x"])
    assert r.exit_code == 2
    assert "does not exist" in r.output and "Traceback" not in r.output


def test_params_checkpoints_and_split_key(h5ad, tmp_path, monkeypatch):
    """--param, --checkpoint and --split-key reach run_benchmark as model/task params."""
    import sceval.benchmark.runner as runner
    from sceval.cli.main import _parse_params, _value

    assert _value("50") == 50 and _value("0.5") == 0.5 and _value("true") is True
    assert _value("none") is None and _value("abc") == "abc"
    mp, tp = _parse_params(("scvi.max_epochs=3", "annotation.test_size=0.3"), (), None)
    assert mp == {"scvi": {"max_epochs": 3}} and tp == {"annotation": {"test_size": 0.3}}
    seen = {}
    real = runner.run_benchmark

    def spy(*a, **kw):
        seen.update(kw)
        return real(*a, **kw)

    monkeypatch.setattr(runner, "run_benchmark", spy)
    r = _run(
        [
            "run",
            str(h5ad),
            "--label-key",
            "cell_type",
            "--models",
            "pca",
            "--tasks",
            "annotation",
            "--param",
            "pca.n_comps=10",
            "--split-key",
            "batch",
            "--out",
            str(tmp_path),
            "-q",
        ]
    )
    # batch_1.. are not reference/query values: every row fails with the recode hint
    assert r.exit_code == 0, r.output
    assert seen["model_params"] == {"pca": {"n_comps": 10}}
    assert seen["task_params"] == {"annotation": {"split_key": "batch"}}
    res = pd.read_csv(tmp_path / "results.csv")
    assert res["message"].str.contains("must mark every cell as reference or query").all()


def test_bad_param_syntax(h5ad, tmp_path):
    for args, match in (
        (["--param", "max_epochs=3"], "--param must look like MODEL.KEY=VALUE"),
        (["--param", "scvii.max_epochs=3"], "Did you mean 'scvi'"),
        (["--checkpoint", "scgpt"], "--checkpoint must look like MODEL=PATH"),
    ):
        r = CliRunner().invoke(
            cli, ["run", str(h5ad), "--label-key", "cell_type", "-q", "--out", str(tmp_path), *args]
        )
        assert r.exit_code == 2, r.output
        assert match in r.output
