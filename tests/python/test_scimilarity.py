"""SCimilarity: official folder layout, alignment + log-normalization, fidelity, errors."""

from __future__ import annotations

import io
import json
import tarfile

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

from sceval._errors import DataContractError
from sceval.data import validate
from sceval.models import EmbedContext, get_model
from sceval.models.scimilarity import align_counts, find_model_folder, load_checkpoint, lognorm
from sceval.testing import run_cli_benchmark, small_dataset, tiny_checkpoint
from sceval.testing.scimilarity import write_tiny_scimilarity


@pytest.fixture(scope="module")
def data():
    return small_dataset(n_cells=120, n_genes=80, seed=3)


@pytest.fixture(scope="module")
def ckpt(data, tmp_path_factory):
    return tiny_checkpoint("scimilarity", tmp_path_factory.mktemp("scim"), data)


def _ctx(adata, seed=0):
    rep = validate(adata, batch_key="batch", label_key="cell_type")
    return EmbedContext(report=rep, seed=seed, batch_key="batch", label_key="cell_type")


def _reference(folder, adata):
    """Independent forward: read the files, align, normalize and run the MLP by hand."""
    genes = [g for g in (folder / "gene_order.tsv").read_text().split("\n") if g]
    state = torch.load(folder / "encoder.ckpt", weights_only=True)["state_dict"]
    counts = np.asarray(adata.layers["counts"].toarray(), dtype=np.float64)
    x = np.zeros((adata.n_obs, len(genes)))
    for j, g in enumerate(adata.var_names):
        if g in genes:
            x[:, genes.index(g)] = counts[:, j]
    x = np.log1p(x / x.sum(axis=1, keepdims=True) * 1e4)
    h = torch.tensor(x, dtype=torch.float64)
    n_hidden = len({k.split(".")[1] for k in state if k.endswith(".running_mean")})
    for i in range(n_hidden):
        p = f"network.{i}."
        h = h @ state[p + "1.weight"].double().T + state[p + "1.bias"].double()
        h = (h - state[p + "2.running_mean"].double()) / torch.sqrt(
            state[p + "2.running_var"].double() + 1e-5
        ) * state[p + "2.weight"].double() + state[p + "2.bias"].double()
        a = state[p + "3.weight"].double()
        h = torch.where(h > 0, h, a * h)
    last = f"network.{n_hidden}."
    h = h @ state[last + "weight"].double().T + state[last + "bias"].double()
    return (h / h.norm(dim=1, keepdim=True)).numpy()


def test_official_layout_and_loader(ckpt, data):
    ck = load_checkpoint(ckpt)
    assert ck.hidden == [32, 16] and ck.latent == 8
    assert len(ck.gene_order) == data.n_vars + 10
    assert "network.0.1.weight" in ck.state and "network.2.weight" in ck.state
    sizes = json.loads((ckpt / "layer_sizes.json").read_text())
    assert sizes["network.0.1.weight"] == [32, data.n_vars + 10]


def test_alignment_and_lognorm_hand_worked():
    counts = sp.csr_matrix(np.array([[1.0, 2.0, 7.0], [0.0, 0.0, 4.0]]))
    aligned, matched = align_counts(np.array(["B", "X", "A"]), counts, ["A", "B", "C"])
    np.testing.assert_array_equal(matched, [True, False, True])
    np.testing.assert_array_equal(aligned.toarray(), [[7, 1, 0], [4, 0, 0]])
    ln = lognorm(aligned).toarray()
    # totals over the aligned genes only (8 and 4), as align_dataset runs first
    np.testing.assert_allclose(ln[0], np.log1p(np.array([7, 1, 0]) / 8 * 1e4), rtol=1e-6)
    np.testing.assert_allclose(ln[1], [np.log1p(1e4), 0, 0], rtol=1e-6)


def test_duplicated_symbols_use_the_first():
    counts = sp.csr_matrix(np.array([[1.0, 5.0]]))
    aligned, matched = align_counts(np.array(["A", "A"]), counts, ["A"])
    np.testing.assert_array_equal(matched, [True, False])
    assert aligned.toarray()[0, 0] == 1.0


def test_fidelity_against_independent_forward(ckpt, data):
    emb = get_model("scimilarity", checkpoint=str(ckpt), batch_size=7).embed_cells(data, _ctx(data))
    ref = _reference(ckpt, data)
    assert emb.shape == (data.n_obs, 8) and emb.dtype == np.float32
    np.testing.assert_allclose(emb, ref, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)


def test_random_control_differs_and_is_seeded(ckpt, data):
    a = get_model("scimilarity.random", checkpoint=str(ckpt)).embed_cells(data, _ctx(data, 1))
    b = get_model("scimilarity.random", checkpoint=str(ckpt)).embed_cells(data, _ctx(data, 1))
    c = get_model("scimilarity", checkpoint=str(ckpt)).embed_cells(data, _ctx(data, 1))
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 1e-3


def test_release_archive_is_unpacked_safely(ckpt, data, tmp_path):
    tar_path = tmp_path / "model_v1.1.tar.gz"
    with tarfile.open(tar_path, "w:gz") as tar:
        for name in ("encoder.ckpt", "layer_sizes.json", "gene_order.tsv"):
            tar.add(ckpt / name, arcname=f"model_v1.1/{name}")
        evil = tarfile.TarInfo("../../evil.txt")
        evil.size = 3
        tar.addfile(evil, io.BytesIO(b"bad"))
    folder = find_model_folder(tmp_path)
    assert folder == tmp_path / "model_v1.1"
    assert not (tmp_path.parent.parent / "evil.txt").exists()
    emb = get_model("scimilarity", checkpoint=str(tmp_path)).embed_cells(data, _ctx(data))
    np.testing.assert_allclose(emb, _reference(ckpt, data), atol=1e-5)


def test_archive_without_encoder_is_an_error(tmp_path):
    with tarfile.open(tmp_path / "model_v1.1.tar.gz", "w:gz") as tar:
        info = tarfile.TarInfo("model_v1.1/metadata.json")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"{}"))
    with pytest.raises(FileNotFoundError, match=r"not an SCimilarity model archive.*lacks"):
        find_model_folder(tmp_path)


def test_wrong_length_gene_list(ckpt, tmp_path, data):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(ckpt, bad)
    with open(bad / "gene_order.tsv", "a") as fh:
        fh.write("EXTRA1\n")
    with pytest.raises(ValueError, match=r"gene_order.tsv lists 91 genes but the first layer"):
        load_checkpoint(bad)


def test_checkpoint_from_another_config(ckpt, tmp_path, data):
    other = write_tiny_scimilarity(tmp_path / "other", genes=list(data.var_names), hidden=(24, 16))
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for name in ("layer_sizes.json", "gene_order.tsv"):
        (mixed / name).write_bytes((ckpt / name).read_bytes())
    (mixed / "encoder.ckpt").write_bytes((other / "encoder.ckpt").read_bytes())
    model = get_model("scimilarity", checkpoint=str(mixed))
    with pytest.raises(ValueError, match=r"network\.0\.1\.weight: checkpoint \(24, 90\)"):
        model.embed_cells(data, _ctx(data))


def test_zero_and_low_gene_overlap(ckpt, data):
    renamed = data.copy()
    renamed.var_names = [f"X{i}" for i in range(renamed.n_vars)]
    renamed.var = pd.DataFrame(index=renamed.var_names)
    with pytest.raises(DataContractError, match=r"none of the 80 genes match"):
        get_model("scimilarity", checkpoint=str(ckpt)).embed_cells(renamed, _ctx(renamed))
    few = data[:, :20].copy()
    with pytest.raises(DataContractError, match=r"only 20 of the data's genes.*at least 45"):
        get_model("scimilarity", checkpoint=str(ckpt)).embed_cells(few, _ctx(few))
    emb = get_model("scimilarity", checkpoint=str(ckpt), min_overlap=10).embed_cells(few, _ctx(few))
    assert emb.shape == (few.n_obs, 8)


def test_missing_checkpoint_is_skipped_with_how_to(tmp_path, data, monkeypatch):
    from sceval._errors import ModelSkippedError

    monkeypatch.setenv("SCEVAL_HOME", str(tmp_path / "home"))
    with pytest.raises(ModelSkippedError, match=r"sceval fetch scimilarity.v1.1"):
        get_model("scimilarity").check(data, _ctx(data))


def test_cli_runs_scimilarity(ckpt, data, tmp_path):
    path = tmp_path / "d.h5ad"
    data.write_h5ad(path)
    out = tmp_path / "out"
    r = run_cli_benchmark(path, "scimilarity", ckpt, out)
    assert r.exit_code == 0, r.output
    res = pd.read_csv(out / "results.csv")
    assert set(res["model"]) == {"scimilarity", "scimilarity.random"}
    assert (res["status"] == "ok").all()
    assert res["message"].str.contains("gene coverage: 80/80").all()
