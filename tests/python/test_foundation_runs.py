"""Foundation models end to end: CLI with tiny checkpoints, backed streaming, fine-tuning."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

import sceval
from sceval.cli import cli
from sceval.data import validate
from sceval.models import EmbedContext, get_model
from sceval.testing import tiny_checkpoint


@pytest.fixture(scope="module")
def ckpts(small, tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpt")
    return {
        arch: str(tiny_checkpoint(arch, root / arch, small)) for arch in ("scgpt", "geneformer")
    }


@pytest.fixture(scope="module")
def h5ad(small, tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "small.h5ad"
    small.write_h5ad(path)
    return path


def test_cli_runs_foundation_models_with_tiny_checkpoints(h5ad, ckpts, tmp_path):
    out = tmp_path / "out"
    r = CliRunner().invoke(
        cli,
        [
            "run",
            str(h5ad),
            "--batch-key",
            "batch",
            "--label-key",
            "cell_type",
            "--models",
            "scgpt,geneformer,scgpt.random,geneformer.random,pca",
            "--tasks",
            "integration,annotation",
            "--checkpoint",
            f"scgpt={ckpts['scgpt']}",
            "--checkpoint",
            f"geneformer={ckpts['geneformer']}",
            "--out",
            str(out),
            "-q",
        ],
        catch_exceptions=False,
    )
    assert r.exit_code == 0, r.output
    res = pd.read_csv(out / "results.csv")
    assert set(res["model"]) == {"scgpt", "geneformer", "scgpt.random", "geneformer.random", "pca"}
    kinds = res.drop_duplicates("model").set_index("model")["model_kind"]
    assert kinds["scgpt"] == "foundation" and kinds["scgpt.random"] == "control"
    fm = res[res["model"].isin(["scgpt", "geneformer"])]
    assert (fm["status"] != "failed").all(), fm["message"].unique()
    assert fm.loc[fm["status"] == "ok", "message"].str.contains("gene coverage: 400/400").all()


def test_missing_checkpoint_is_a_skipped_row(small, tmp_path, monkeypatch):
    monkeypatch.setenv("SCEVAL_HOME", str(tmp_path))
    res = sceval.run_benchmark(
        small.copy(), models=["scgpt", "pca"], tasks=["annotation"], label_key="cell_type"
    )
    sc = res[res["model"] == "scgpt"]
    assert set(sc["status"]) == {"skipped"}
    assert sc["message"].str.contains("sceval fetch scgpt.human").all()
    assert set(res.loc[res["model"] == "pca", "status"]) == {"ok"}


@pytest.mark.parametrize("arch", ["scgpt", "geneformer"])
def test_backed_streaming_equals_in_memory(small, ckpts, tmp_path, arch):
    path = tmp_path / "d.h5ad"
    adata = small.copy()
    adata.X = adata.layers["counts"]
    del adata.layers["counts"]
    adata.write_h5ad(path)
    backed = ad.read_h5ad(path, backed="r")
    rep = validate(backed)
    assert rep.counts_location == "X"
    ctx = EmbedContext(report=rep, seed=0)
    model = get_model(arch, checkpoint=ckpts[arch], chunk_size=128)
    streamed = model.embed_streaming(backed, ctx)
    mem = ad.read_h5ad(path)
    whole = get_model(arch, checkpoint=ckpts[arch]).embed_cells(mem, EmbedContext(validate(mem)))
    np.testing.assert_allclose(streamed, whole, atol=1e-5)
    assert model.coverage is not None and model.coverage.n_matched == 400


def test_annotation_finetune_rows(small, ckpts):
    res = sceval.run_benchmark(
        small.copy(),
        models=["scgpt", "pca"],
        tasks=["annotation"],
        label_key="cell_type",
        model_params={"scgpt": {"checkpoint": ckpts["scgpt"]}},
        task_params={"annotation": {"finetune": True, "finetune_epochs": 1}},
    )
    ft = res[res["metric"].str.startswith("finetune_")].set_index(["model", "metric"])
    assert ft.loc[("scgpt", "finetune_accuracy"), "status"] == "ok"
    assert "epochs=1" in ft.loc[("scgpt", "finetune_accuracy"), "message"]
    assert ft.loc[("pca", "finetune_accuracy"), "status"] == "not_applicable"
    assert "cannot be fine-tuned" in ft.loc[("pca", "finetune_accuracy"), "message"]
