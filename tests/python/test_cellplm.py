"""CellPLM: fidelity against a hand-written forward, preprocessing, loading, bad inputs, CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

torch = pytest.importorskip("torch")

from sceval._errors import DataContractError, ModelSkippedError  # noqa: E402
from sceval.data import validate  # noqa: E402
from sceval.models import EmbedContext, get_model  # noqa: E402
from sceval.models import cellplm as C  # noqa: E402
from sceval.models._safe_load import UnsafePickleError  # noqa: E402
from sceval.testing import small_dataset  # noqa: E402
from sceval.testing.cellplm import write_for_adata, write_tiny_cellplm  # noqa: E402

GMVAE = "20230926_85M"
VAE = "20231027_85M"


@pytest.fixture(scope="module")
def data():
    """200 cells x 300 human genes, 3 batches."""
    return small_dataset(n_cells=200, n_genes=300, seed=3)


@pytest.fixture(scope="module")
def genes(data):
    # gene list in another order than the data, with one gene the data lacks
    return [*list(data.var["ensembl_id"])[::-1], "ENSG00000999999"]


@pytest.fixture(scope="module")
def ckpt(genes, tmp_path_factory):
    return write_tiny_cellplm(tmp_path_factory.mktemp("gmvae"), genes=genes, enc_hid=32, seed=1)


@pytest.fixture(scope="module")
def ckpt_vae(genes, tmp_path_factory):
    folder = tmp_path_factory.mktemp("vae")
    return write_tiny_cellplm(folder, genes=genes, enc_hid=32, latent_mod="vae", seed=2)


def _ctx(adata, seed=0, batch_key="batch"):
    rep = validate(adata, batch_key=batch_key, label_key="cell_type")
    return EmbedContext(report=rep, seed=seed, batch_key=batch_key, label_key="cell_type")


# --------------------------------------------------------------------------- reference


def _layer_norm(x, w, b, eps=1e-5):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + eps) * w + b


def _group_norm(x, w, b, groups=4, eps=1e-5):
    n, d = x.shape
    g = x.reshape(n, groups, d // groups)
    mu = g.mean(-1, keepdim=True)
    var = ((g - mu) ** 2).mean(-1, keepdim=True)
    return ((g - mu) / torch.sqrt(var + eps)).reshape(n, d) * w + b


def _lin(sd, name, x):
    return x @ sd[f"{name}.weight"].T + sd[f"{name}.bias"]


def _flow_attention(sd, p, x, heads=8, eps=1e-6):
    """Flowformer attention over the n cells of ``x`` (Wu et al. 2022, non-causal)."""
    n, d = x.shape

    def split(t):
        return t.reshape(n, heads, d // heads).permute(1, 0, 2)  # (h, n, dh)

    q = torch.sigmoid(split(_lin(sd, f"{p}.query_projection", x)))
    k = torch.sigmoid(split(_lin(sd, f"{p}.key_projection", x)))
    v = split(_lin(sd, f"{p}.value_projection", x))
    incoming = 1.0 / ((q + eps) * (k.sum(1, keepdim=True) + eps)).sum(-1)  # (h, n)
    outgoing = 1.0 / ((k + eps) * (q.sum(1, keepdim=True) + eps)).sum(-1)
    sink = ((q + eps) * ((k * outgoing[..., None]).sum(1, keepdim=True) + eps)).sum(-1)
    source = ((k + eps) * ((q * incoming[..., None]).sum(1, keepdim=True) + eps)).sum(-1)
    source = source.clamp(-1.0, 1.0)
    competition = torch.exp(source) / torch.exp(source).sum(-1, keepdim=True) * n
    kv = k.transpose(1, 2) @ (v * competition[..., None])  # (h, dh, dh)
    out = ((q * incoming[..., None]) @ kv) * torch.sigmoid(sink)[..., None]
    return _lin(sd, f"{p}.out_projection", out.permute(1, 0, 2).reshape(n, d))


def _reference(folder: Path, version: str, adata, passes, uniforms=None) -> np.ndarray:
    """Embeddings from the raw files with plain tensor ops, float64."""
    cfg = json.loads((folder / f"{version}.config.json").read_text())
    raw = torch.load(folder / f"{version}.best.ckpt", weights_only=True)["model_state_dict"]
    sd = {k: v.double() for k, v in raw.items()}
    index = {g: i for i, g in enumerate(cfg["gene_list"])}
    cols = [j for j, g in enumerate(adata.var["ensembl_id"]) if g in index]
    rows = torch.tensor([index[adata.var["ensembl_id"].iloc[j]] for j in cols])
    x_all = torch.from_numpy(np.asarray(adata.layers["counts"][:, cols].todense())).double()
    out = np.zeros((adata.n_obs, cfg["post_latent_dim"]))
    for idx in passes:
        x = torch.log1p(x_all[idx]) @ sd["embedder.feat_enc.emb"][rows]
        x = torch.relu(_lin(sd, "embedder.extra_linear.0", x))
        x = _group_norm(x, sd["embedder.extra_linear.3.weight"], sd["embedder.extra_linear.3.bias"])
        for i in range(cfg["enc_layers"]):
            p = f"encoder.layers.{i}"
            h = _layer_norm(x, sd[f"{p}.norm1.weight"], sd[f"{p}.norm1.bias"])
            x = x + _flow_attention(sd, f"{p}.self_attn", h)
            h = _layer_norm(x, sd[f"{p}.norm2.weight"], sd[f"{p}.norm2.bias"])
            h = _lin(sd, f"{p}._ff_block.0", h)
            h = 0.5 * h * (1.0 + torch.erf(h / math.sqrt(2.0)))
            x = x + _lin(sd, f"{p}._ff_block.3", h)
        x = _layer_norm(x, sd["pre_latent_norm.norm.weight"], sd["pre_latent_norm.norm.bias"])
        if cfg["latent_mod"] == "vae":
            out[idx] = _lin(sd, "latent.layers.1.hid_2mu", x).numpy()
            continue
        inf = "latent.layers.1.inference"
        logits = _lin(sd, f"{inf}.inference_qyx.0.logits", x)
        if uniforms is not None:
            u = torch.from_numpy(uniforms[idx]).double()
            logits = logits - torch.log(-torch.log(u + 1e-20) + 1e-20)
        y = torch.zeros_like(logits)
        y[torch.arange(len(idx)), logits.argmax(1)] = 1.0
        h = torch.relu(_lin(sd, f"{inf}.inference_qzyx.0", torch.cat([x, y], 1)))
        out[idx] = _lin(sd, f"{inf}.inference_qzyx.2.mu", h).numpy()
    return out


def _batches(adata):
    b = adata.obs["batch"].astype(str).to_numpy()
    return [np.flatnonzero(b == v) for v in pd.unique(b)]


# --------------------------------------------------------------------------- fidelity


def test_fidelity_gmvae_argmax(data, ckpt):
    emb = get_model("cellplm", checkpoint=str(ckpt)).embed_cells(data, _ctx(data))
    ref = _reference(ckpt, GMVAE, data, _batches(data))
    assert emb.shape == (data.n_obs, 16) and emb.dtype == np.float32
    np.testing.assert_allclose(emb, ref, atol=1e-5, rtol=0)


def test_fidelity_gmvae_gumbel_and_batch_size(data, ckpt):
    model = get_model("cellplm", checkpoint=str(ckpt), latent="gumbel", batch_size=25)
    emb = model.embed_cells(data, _ctx(data, seed=4))
    # the documented seeding: one generator per cell keyed by (seed, 7, global index)
    u = np.stack([np.random.default_rng((4, 7, i)).random(4, dtype=np.float32) for i in range(200)])
    passes = [p[i : i + 25] for p in _batches(data) for i in range(0, p.size, 25)]
    np.testing.assert_allclose(emb, _reference(ckpt, GMVAE, data, passes, u), atol=1e-5, rtol=0)
    argmax = _reference(ckpt, GMVAE, data, passes)
    assert np.abs(emb - argmax).max() > 1e-3  # the Gumbel draw changes some clusters


def test_fidelity_vae(data, ckpt_vae):
    model = get_model("cellplm", checkpoint=str(ckpt_vae), group_by="all")
    emb = model.embed_cells(data, _ctx(data))
    ref = _reference(ckpt_vae, VAE, data, [np.arange(data.n_obs)])
    np.testing.assert_allclose(emb, ref, atol=1e-5, rtol=0)
    assert "latent: vae mean" in model.coverage.message


# --------------------------------------------------------------------------- preprocessing


def test_ensembl_ids_offline():
    a = ad.AnnData(X=np.zeros((1, 4), dtype=np.float32))
    a.var_names = ["ENSG00000198851.9", "ENSG00000010610", "ENSG00000139618", "ENSG00000167286"]
    rep = validate(a)
    assert list(C.ensembl_ids(a, rep)) == [
        "ENSG00000198851",
        "ENSG00000010610",
        "ENSG00000139618",
        "ENSG00000167286",
    ]
    b = ad.AnnData(X=np.zeros((1, 3), dtype=np.float32))
    b.var_names = ["CD3E", "CD4", "NOT_A_GENE_X"]
    ids = C.ensembl_ids(b, validate(b))  # bundled human table, no network
    assert list(ids) == ["ENSG00000198851", "ENSG00000010610", ""]
    b.var["ensembl_id"] = ["ENSG00000000001.2", "", "ENSG00000000003"]  # preferred when present
    assert list(C.ensembl_ids(b, validate(b))) == ["ENSG00000000001", "", "ENSG00000000003"]


def test_match_genes_keeps_first_duplicate():
    rows = C.match_genes(np.array(["G2", "G9", "G1", "G2", ""]), ("G1", "G2", "G3"))
    assert rows.tolist() == [1, -1, 0, -1, -1]


def test_forward_groups():
    labels = np.array(["a", "b", "a", "b", "a"])
    as_lists = [p.tolist() for p in C.forward_groups(labels, 0)]
    assert as_lists == [[0, 2, 4], [1, 3]]
    assert [p.tolist() for p in C.forward_groups(labels, 2)] == [[0, 2], [4], [1, 3]]
    s1 = C.forward_groups(labels, 2, shuffle=True, seed=1)
    s2 = C.forward_groups(labels, 2, shuffle=True, seed=1)
    assert [p.tolist() for p in s1] == [p.tolist() for p in s2]
    assert sorted(np.concatenate(s1).tolist()) == [0, 1, 2, 3, 4]
    assert {tuple(sorted(p.tolist())) for p in s1[-1:]} == {(1, 3)}


def test_log1p_counts_without_library_size(ckpt):
    """feat = sum_g log1p(count_g) * emb[g]: raw counts, no normalize_total."""
    model, _ = C.load_cellplm(ckpt)
    emb = model.embedder.feat_enc.emb.detach()
    counts = sp.csr_matrix(np.array([[1.0, 3.0], [2.0, 6.0]], dtype=np.float32))
    x = torch.sparse_coo_tensor(
        torch.tensor([[0, 0, 1, 1], [0, 1, 0, 1]]),
        torch.from_numpy(np.log1p(counts.data)),
        check_invariants=True,
    )
    with torch.no_grad():
        feat = model.embedder.feat_enc(x, torch.tensor([5, 7]))
    np.testing.assert_allclose(feat[0], math.log(2) * emb[5] + math.log(4) * emb[7], atol=1e-6)
    np.testing.assert_allclose(feat[1], math.log(3) * emb[5] + math.log(7) * emb[7], atol=1e-6)


def test_gumbel_uniforms_keyed_by_global_index():
    whole = C.gumbel_uniforms(3, np.arange(10), 5)
    np.testing.assert_array_equal(C.gumbel_uniforms(3, np.array([7, 2]), 5), whole[[7, 2]])
    assert not np.allclose(C.gumbel_uniforms(4, np.arange(10), 5), whole)


def test_batch_composition_and_determinism(data, ckpt):
    ctx = _ctx(data)
    grouped = get_model("cellplm", checkpoint=str(ckpt))
    a = grouped.embed_cells(data, ctx)
    np.testing.assert_array_equal(
        a, get_model("cellplm", checkpoint=str(ckpt)).embed_cells(data, ctx)
    )
    msg = grouped.coverage.message
    assert "gene coverage: 300/300 genes" in msg
    assert "depends on the cells sharing its forward pass" in msg
    assert "grouped by obs['batch'] (3 groups" in msg and "latent: argmax" in msg
    together = get_model("cellplm", checkpoint=str(ckpt), group_by="all").embed_cells(data, ctx)
    assert np.abs(a - together).max() > 1e-4  # other cells in the pass, other embedding
    g1 = get_model("cellplm", checkpoint=str(ckpt), latent="gumbel")
    np.testing.assert_array_equal(g1.embed_cells(data, ctx), g1.embed_cells(data, ctx))
    assert "depends on which other cells" in C.CellPLMModel.__doc__


def test_backed_equals_in_memory(data, ckpt, tmp_path):
    path = tmp_path / "d.h5ad"
    a = data.copy()
    a.X = a.layers["counts"]
    del a.layers["counts"]
    a.write_h5ad(path)
    backed = ad.read_h5ad(path, backed="r")
    model = get_model("cellplm", checkpoint=str(ckpt), chunk_size=64)
    streamed = model.embed_streaming(backed, EmbedContext(report=validate(backed)))
    mem = ad.read_h5ad(path)
    whole = get_model("cellplm", checkpoint=str(ckpt)).embed_cells(
        mem, EmbedContext(report=validate(mem))
    )
    np.testing.assert_allclose(streamed, whole, atol=1e-6)


def test_random_control_differs_and_is_seeded(data, ckpt):
    trained = get_model("cellplm", checkpoint=str(ckpt)).embed_cells(data, _ctx(data))
    r0 = get_model("cellplm.random", checkpoint=str(ckpt)).embed_cells(data, _ctx(data))
    r0b = get_model("cellplm.random", checkpoint=str(ckpt)).embed_cells(data, _ctx(data))
    r1 = get_model("cellplm.random", checkpoint=str(ckpt)).embed_cells(data, _ctx(data, 1))
    np.testing.assert_array_equal(r0, r0b)
    assert not np.allclose(r0, trained) and not np.allclose(r0, r1)


def test_embed_genes(ckpt):
    model = get_model("cellplm", checkpoint=str(ckpt))
    ctx = EmbedContext(report=None)  # type: ignore[arg-type]
    cfg = C.read_config(ckpt / f"{GMVAE}.config.json")
    emb, found = model.embed_genes([cfg.gene_list[3], "NOT_A_GENE_X"], ctx)
    assert found.tolist() == [True, False] and emb.shape == (1, 32)
    state = torch.load(ckpt / f"{GMVAE}.best.ckpt", weights_only=True)["model_state_dict"]
    np.testing.assert_array_equal(emb[0], state["embedder.feat_enc.emb"][3].numpy())


# --------------------------------------------------------------------------- loading


def test_loader_official_layout(ckpt):
    model, cfg = C.load_cellplm(ckpt)
    assert cfg.version == GMVAE and cfg.latent_mod == "gmvae" and cfg.n_genes == 301
    assert cfg.enc_hid == 32 and cfg.enc_head == 8 and cfg.num_clusters == 4
    assert model.ignored_keys and all(k.startswith("decoder.") for k in model.ignored_keys)
    state = torch.load(ckpt / f"{GMVAE}.best.ckpt", weights_only=True)["model_state_dict"]
    used = {k for k in state if not k.startswith("decoder.")}
    assert used == set(model.state_dict())
    for k in used:
        torch.testing.assert_close(model.state_dict()[k], state[k])


def test_writer_official_dims_and_registered_specs(data):
    from sceval.models.checkpoints import get_checkpoint
    from sceval.testing.cellplm import OFFICIAL_DIMS, official_shapes

    keys = dict(
        (k, s) for k, s, _ in official_shapes(19374, 1024, 4, "gmvae", 512, 16, 1024, 12596, 484)
    )
    assert keys["embedder.feat_enc.emb"] == (19374, 1024)
    assert keys["latent.layers.1.inference.inference_qzyx.0.weight"] == (512, 1040)
    assert OFFICIAL_DIMS["n_genes"] == 19374
    for name, version in (("cellplm.20231027_85m", VAE), ("cellplm.20230926_85m", GMVAE)):
        spec = get_checkpoint(name)
        assert spec.model == "cellplm" and spec.license == "BSD-2-Clause" and spec.manual
        assert [f.name for f in spec.files] == [f"{version}.config.json", f"{version}.best.ckpt"]
        assert "dropbox.com" in spec.files[0].url and "ICLR 2024" in spec.citation
    assert get_model("cellplm").info.license == "BSD-2-Clause"


def test_missing_registered_checkpoint_is_skipped(data, tmp_path, monkeypatch):
    monkeypatch.setenv("SCEVAL_HOME", str(tmp_path))
    with pytest.raises(ModelSkippedError, match=r"sceval fetch cellplm\.20231027_85m"):
        get_model("cellplm").check(data, _ctx(data))


def test_version_choice(genes, tmp_path):
    write_tiny_cellplm(tmp_path, genes=genes, latent_mod="gmvae")
    write_tiny_cellplm(tmp_path, genes=genes, latent_mod="vae")
    with pytest.raises(FileNotFoundError, match=r"several versions .*pass version="):
        C.load_cellplm(tmp_path)
    _, cfg = C.load_cellplm(tmp_path, version=VAE)
    assert cfg.latent_mod == "vae"
    with pytest.raises(FileNotFoundError, match=r"no 2099_1M\.config\.json; versions there"):
        C.load_cellplm(tmp_path, version="2099_1M")


# --------------------------------------------------------------------------- bad inputs


def test_checkpoint_from_another_config(genes, tmp_path):
    write_tiny_cellplm(tmp_path / "a", genes=genes, enc_hid=32)
    write_tiny_cellplm(tmp_path / "b", genes=genes, enc_hid=64)
    (tmp_path / "a" / f"{GMVAE}.best.ckpt").replace(tmp_path / "b" / f"{GMVAE}.best.ckpt")
    with pytest.raises(
        C.CellPLMCheckpointError,
        match=r"shape mismatches \d+ \[.*encoder\.layers\.0\._ff_block\.0\.bias: checkpoint "
        r"\(64,\) vs expected \(128,\).*same version",
    ):
        C.load_cellplm(tmp_path / "b")


def test_missing_and_unexpected_keys_are_errors(genes, tmp_path):
    write_tiny_cellplm(tmp_path, genes=genes)
    path = tmp_path / f"{GMVAE}.best.ckpt"
    state = torch.load(path, weights_only=True)["model_state_dict"]
    del state["encoder.layers.1.norm2.bias"]
    state["latent.layers.2.extra.weight"] = torch.zeros(2)
    torch.save({"model_state_dict": state}, path)
    with pytest.raises(
        C.CellPLMCheckpointError,
        match=r"missing keys 1 \[encoder\.layers\.1\.norm2\.bias\]; unexpected keys 1 "
        r"\[latent\.layers\.2\.extra\.weight\].*silently skips",
    ):
        C.load_cellplm(tmp_path)


def test_gene_list_of_wrong_length(genes, tmp_path):
    write_tiny_cellplm(tmp_path, genes=genes)
    path = tmp_path / f"{GMVAE}.config.json"
    cfg = json.loads(path.read_text())
    cfg["gene_list"] = cfg["gene_list"][:-2]
    path.write_text(json.dumps(cfg))
    with pytest.raises(
        C.CellPLMCheckpointError,
        match=r"gene list of 20230926_85M\.config\.json has 299 genes but "
        r"embedder\.feat_enc\.emb .* has 301 rows.*same checkpoint version",
    ):
        C.load_cellplm(tmp_path)


def test_zero_gene_overlap(ckpt):
    from sceval.data.simulate import simulate

    mouse = simulate(n_cells=60, n_genes=80, n_batches=2, species="mouse", seed=0)
    model = get_model("cellplm", checkpoint=str(ckpt))
    with pytest.raises(
        DataContractError, match=r"none of the 80 genes match.*human Ensembl IDs.*mouse"
    ):
        model.embed_cells(mouse, _ctx(mouse))
    del mouse.var["ensembl_id"]  # mouse symbols: the species is detected, not forced to human
    with pytest.raises(DataContractError, match=r"none of the 80 genes match"):
        model.embed_cells(mouse, _ctx(mouse))


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("enc_mod", "performer", r"enc_mod='performer'; sceval implements the 'flowformer'"),
        ("latent_mod", "split", r"latent_mod='split'; sceval implements 'gmvae'"),
        ("dsbn", True, r"switches on \['dsbn'\]"),
        ("gene_list", "ENSG1", r"'gene_list' must be a non-empty list"),
    ],
)
def test_bad_config(genes, tmp_path, field, value, match):
    write_tiny_cellplm(tmp_path, genes=genes)
    path = tmp_path / f"{GMVAE}.config.json"
    cfg = json.loads(path.read_text())
    cfg[field] = value
    path.write_text(json.dumps(cfg))
    with pytest.raises(C.CellPLMCheckpointError, match=match):
        C.load_cellplm(tmp_path)


def test_config_missing_keys_and_missing_weights(genes, tmp_path):
    write_tiny_cellplm(tmp_path, genes=genes)
    path = tmp_path / f"{GMVAE}.config.json"
    cfg = json.loads(path.read_text())
    del cfg["enc_layers"]
    path.write_text(json.dumps(cfg))
    with pytest.raises(C.CellPLMCheckpointError, match=r"lacks \['enc_layers'\]"):
        C.load_cellplm(tmp_path)
    (tmp_path / f"{GMVAE}.best.ckpt").unlink()
    with pytest.raises(FileNotFoundError, match=r"not 20230926_85M\.best\.ckpt; expected both"):
        C.load_cellplm(tmp_path)


def test_pickled_object_is_refused(genes, tmp_path):
    write_tiny_cellplm(tmp_path, genes=genes)
    torch.save({"model_state_dict": {}, "args": _Opaque()}, tmp_path / f"{GMVAE}.best.ckpt")
    with pytest.raises(UnsafePickleError, match=r"not a plain state dict"):
        C.load_cellplm(tmp_path)


class _Opaque:
    pass


def test_bad_params(data, ckpt):
    with pytest.raises(ValueError, match=r"latent='mean' is not supported.*'argmax'"):
        get_model("cellplm", checkpoint=str(ckpt), latent="mean").check(data, _ctx(data))
    with pytest.raises(DataContractError, match=r"group_by='donor' is not a column of adata\.obs"):
        get_model("cellplm", checkpoint=str(ckpt), group_by="donor").embed_cells(data, _ctx(data))


# --------------------------------------------------------------------------- CLI


def test_cli_run(data, tmp_path):
    from click.testing import CliRunner

    from sceval.cli import cli

    folder = write_for_adata(tmp_path / "ckpt", data)
    h5ad = tmp_path / "d.h5ad"
    data.write_h5ad(h5ad)
    out = tmp_path / "out"
    args = ["run", str(h5ad), "--batch-key", "batch", "--label-key", "cell_type"]
    args += ["--models", "cellplm,cellplm.random", "--tasks", "integration,annotation"]
    args += ["--checkpoint", f"cellplm={folder}", "--checkpoint", f"cellplm.random={folder}"]
    r = CliRunner().invoke(cli, [*args, "--out", str(out), "-q"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    res = pd.read_csv(out / "results.csv")
    assert set(res["model"]) == {"cellplm", "cellplm.random"}
    assert (res["status"] == "ok").all(), res["message"].unique()
    assert res["message"].str.contains("gene coverage: 300/300").all()
    assert res["message"].str.contains("cells sharing its forward pass").all()
