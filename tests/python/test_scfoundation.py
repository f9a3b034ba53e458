"""scFoundation: fidelity against an independent reference forward, preprocessing,
official-layout loading, bad inputs and a CLI run (tiny random-weight checkpoints).

The repository ships official embeddings (e.g. ``DeepCDR/data/50M-0.1B-res_embedding.npy``,
``SCAD/data/split_norm/*_embedding.npy``), but the weights (SharePoint) and most of the
inputs (Figshare) cannot be obtained offline, so no comparison against them is made here.
"""

from __future__ import annotations

import argparse
import math

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from sceval._errors import DataContractError, ModelSkippedError
from sceval.data import validate
from sceval.models import EmbedContext, get_model
from sceval.models import scfoundation as sf
from sceval.models._safe_load import UnsafePickleError
from sceval.testing import run_cli_benchmark, small_dataset, tiny_checkpoint


@pytest.fixture(scope="module")
def data():
    return small_dataset(n_cells=150, n_genes=300, seed=3)


@pytest.fixture(scope="module")
def ckpt(data, tmp_path_factory):
    return tiny_checkpoint("scfoundation", tmp_path_factory.mktemp("sf"), data)


def _ctx(adata, seed=0):
    rep = validate(adata, batch_key="batch", label_key="cell_type")
    return EmbedContext(report=rep, seed=seed, batch_key="batch", label_key="cell_type")


def _raw(folder, key):
    obj = torch.load(folder / "models.ckpt", map_location="cpu", weights_only=True)[key]
    sd = {k.split("model.", 1)[1]: v.float() for k, v in obj["state_dict"].items()}
    cfg = dict(obj["config"]["model_config"]["mae_autobin"])
    return sd, cfg


# ----------------------------------------------------------------- reference forward
# Written from model/get_embedding.py, model/load.py and model/pretrainmodels/*.py of
# biomap-research/scFoundation, one cell at a time as upstream, reading the raw state dict.


def _ref_input(counts_row, symbols, gene_list, tgthighres="t4"):
    """pretrain_gene_x of get_embedding.py (single cell, pre_normalized F)."""
    x_df = pd.DataFrame(counts_row[None].astype(np.float64), columns=symbols)
    x_df = x_df.T.groupby(level=0).sum().T  # one column per symbol
    x_df = x_df.reindex(columns=gene_list, fill_value=0.0)  # main_gene_selection
    row = x_df.iloc[0, :]
    tmp = np.log1p(row / row.sum() * 1e4).tolist()
    total = row.sum()
    kind, v = tgthighres[0], float(tgthighres[1:])
    t = {"t": v, "f": np.log10(total * v), "a": np.log10(total) + v}[kind]
    # float64 here when T/S are numpy scalars; upstream casts with .float() before use
    return torch.tensor([*tmp, t, np.log10(total)]).unsqueeze(0).float()


def _ref_token_emb(sd, cfg, v):
    h = F.leaky_relu(v.unsqueeze(-1) @ sd["token_emb.mlp.weight"].T + sd["token_emb.mlp.bias"], 0.1)
    h = cfg["bin_alpha"] * h + h @ sd["token_emb.mlp2.weight"].T + sd["token_emb.mlp2.bias"]
    out = torch.softmax(h, -1) @ sd["token_emb.emb.weight"]
    out[v == cfg["mask_token_id"]] = sd["token_emb.emb_mask.weight"][0]
    out[v == cfg["pad_token_id"]] = sd["token_emb.emb_pad.weight"][0]
    return out


def _ref_encoder(sd, cfg, x):
    enc = cfg["encoder"]
    d = enc["hidden_dim"]
    for i in range(enc["depth"]):
        layer = torch.nn.TransformerEncoderLayer(d, enc["heads"], 4 * d, batch_first=True)
        p = f"encoder.transformer_encoder.{i}."
        layer.load_state_dict({k[len(p) :]: v for k, v in sd.items() if k.startswith(p)})
        x = layer.eval()(x)
    return F.layer_norm(x, (d,), sd["encoder.norm.weight"], sd["encoder.norm.bias"])


def _ref_encode(sd, cfg, x):
    """gatherData (order kept, values > 0) + token/position embedding + encoder."""
    idx = torch.nonzero(x[0] > 0).ravel()
    h = _ref_token_emb(sd, cfg, x[:, idx]) + sd["pos_emb.weight"][idx][None]
    return _ref_encoder(sd, cfg, h), idx


def _ref_cell(sd, cfg, x):
    h, _ = _ref_encode(sd, cfg, x)
    return torch.cat(
        [h[:, -1], h[:, -2], h[:, :-2].max(dim=1).values, h[:, :-2].mean(dim=1)], dim=1
    )[0]


def _ref_softmax_kernel(data, proj, is_query, eps=1e-4):
    normalizer = data.shape[-1] ** -0.25
    ratio = proj.shape[0] ** -0.5
    dash = torch.einsum("...id,...jd->...ij", normalizer * data, proj)
    diag = (data**2).sum(-1, keepdim=True) / 2.0 * normalizer**2
    stab = dash.max(dim=-1, keepdim=True).values if is_query else torch.max(dash)
    return ratio * (torch.exp(dash - diag - stab) + eps)


def _ref_genes(sd, cfg, x):
    """MaeAutobin.forward with to_final=None, decoder = PerformerModule."""
    h, idx = _ref_encode(sd, cfg, x)
    dec = _ref_token_emb(sd, cfg, x)
    dec[0, idx] = h[0]
    dec = dec + sd["pos_emb.weight"][: x.shape[1]][None]
    dec = dec @ sd["decoder_embed.weight"].T + sd["decoder_embed.bias"]
    dcfg = cfg["decoder"]
    heads, dd = dcfg["heads"], dcfg["hidden_dim"]
    for i in range(dcfg["depth"]):
        a = f"decoder.performer.net.layers.{i}.0."
        f = f"decoder.performer.net.layers.{i}.1."
        y = F.layer_norm(dec, (dd,), sd[a + "norm.weight"], sd[a + "norm.bias"])
        q, k, v = (
            (y @ sd[a + f"fn.{n}.weight"].T + sd[a + f"fn.{n}.bias"])
            .view(1, y.shape[1], heads, -1)
            .transpose(1, 2)
            for n in ("to_q", "to_k", "to_v")
        )
        proj = sd[a + "fn.fast_attention.projection_matrix"]
        q = _ref_softmax_kernel(q, proj, True)
        k = _ref_softmax_kernel(k, proj, False)
        d_inv = 1.0 / torch.einsum("...nd,...d->...n", q, k.sum(dim=-2))
        context = torch.einsum("...nd,...ne->...de", k, v)
        out = torch.einsum("...de,...nd,...n->...ne", context, q, d_inv)
        out = out.transpose(1, 2).reshape(1, y.shape[1], -1)
        dec = dec + out @ sd[a + "fn.to_out.weight"].T + sd[a + "fn.to_out.bias"]
        y = F.layer_norm(dec, (dd,), sd[f + "norm.weight"], sd[f + "norm.bias"])
        y = F.gelu(y @ sd[f + "fn.fn.w1.weight"].T + sd[f + "fn.fn.w1.bias"])
        dec = dec + y @ sd[f + "fn.fn.w2.weight"].T + sd[f + "fn.fn.w2.bias"]
    dec = F.layer_norm(dec, (dd,), sd["decoder.norm.weight"], sd["decoder.norm.bias"])
    dec = F.layer_norm(dec, (dd,), sd["norm.weight"], sd["norm.bias"])
    return dec[0, : x.shape[1] - 2]


def _dense(x):
    return np.asarray(x.todense() if hasattr(x, "todense") else x, dtype=np.float64)


def _gene_list(folder):
    return pd.read_csv(folder / sf.GENE_LIST_FILE, sep="\t")["gene_name"].tolist()


# ----------------------------------------------------------------- fidelity


@pytest.mark.parametrize(("mode", "res"), [("cell", "t4"), ("rde", "a5")])
def test_cell_embedding_matches_reference(data, ckpt, mode, res):
    cells = data[:24].copy()
    m = get_model("scfoundation", checkpoint=str(ckpt), mode=mode, tgthighres=res, batch_size=5)
    emb = m.embed_cells(cells, _ctx(cells))
    assert emb.shape == (24, 4 * 16)
    sd, cfg = _raw(ckpt, mode)
    genes = _gene_list(ckpt)
    counts = _dense(cells.layers["counts"])
    with torch.no_grad():
        ref = np.stack(
            [
                _ref_cell(sd, cfg, _ref_input(counts[i], list(cells.var_names), genes, res)).numpy()
                for i in range(cells.n_obs)
            ]
        )
    diff = float(np.abs(emb - ref).max())
    assert diff < 1e-5, diff


def test_gene_embedding_matches_reference(data, ckpt):
    cells = data[:3].copy()
    m = get_model("scfoundation", checkpoint=str(ckpt))
    ctx = _ctx(cells)
    loaded = m._load(ctx, "gene")
    toks = m.tokenize(cells, ctx, loaded.genes)
    got = sf.decoder_gene_embeddings(loaded.model, toks, batch_size=3)  # batched: per-cell max
    assert got.shape == (3, sf.N_GENES, 8)
    sd, cfg = _raw(ckpt, "gene")
    genes = _gene_list(ckpt)
    counts = _dense(cells.layers["counts"])
    with torch.no_grad():
        for i in range(3):
            ref = _ref_genes(sd, cfg, _ref_input(counts[i], list(cells.var_names), genes)).numpy()
            diff = float(np.abs(got[i] - ref).max())
            assert diff < 1e-5, diff
    # the public per-cell API returns the same rows for selected genes
    sel = list(cells.var_names[:4])
    part = m.gene_embeddings(cells, ctx, genes=sel)
    np.testing.assert_allclose(part, got[:, [genes.index(g) for g in sel]], atol=1e-5)
    with pytest.raises(ValueError, match=r"1 of the requested genes are not in .*'NOPE'"):
        m.gene_embeddings(cells, ctx, genes=["NOPE", sel[0]])


def test_embed_genes_context(data, ckpt):
    m = get_model("scfoundation", checkpoint=str(ckpt))
    ctx = _ctx(data)
    names = [*data.var_names[:5], "NOT_A_GENE"]
    mat, found = m.embed_genes(names, ctx)
    assert found.tolist() == [True] * 5 + [False] and mat.shape == (5, 8)
    assert np.isfinite(mat).all()
    # empty context: a cell with only T = S = 4 in the encoder
    sd, cfg = _raw(ckpt, "gene")
    genes = _gene_list(ckpt)
    x = torch.zeros(1, sf.N_GENES + 2)
    x[0, -2:] = 4.0
    with torch.no_grad():
        ref = _ref_genes(sd, cfg, x).numpy()[[genes.index(g) for g in names[:5]]]
    np.testing.assert_allclose(mat, ref, atol=1e-5)
    # with cells as context: the mean over those cells
    ctx_cells = data[:2].copy()
    m2 = get_model("scfoundation", checkpoint=str(ckpt), gene_context=ctx_cells)
    mat2, _ = m2.embed_genes(names, ctx)
    per_cell = m2.gene_embeddings(ctx_cells, _ctx(ctx_cells), genes=names[:5])
    np.testing.assert_allclose(mat2, per_cell.mean(axis=0), atol=1e-5)


# ----------------------------------------------------------------- preprocessing


def test_tokenize_hand_worked():
    genes = ["A", "B", "C", "D"]
    counts = np.array([[2.0, 0.0, 5.0], [0.0, 0.0, 1.0], [1.0, 3.0, 0.0]])
    x, matched = sf.to_gene_order(counts, ["C", "A", "X"], genes)
    assert matched.tolist() == [True, True, False]
    assert x.toarray().tolist() == [[0, 0, 2, 0], [0, 0, 0, 0], [3, 0, 1, 0]]
    toks = sf.tokenize(x, resolution="t4")
    # cell 0: total 2 (X is not a model gene), C -> log1p(1e4), T = 4, S = log10(2)
    assert toks.positions[toks.offsets[0] : toks.offsets[1]].tolist() == [2, 4, 5]
    np.testing.assert_allclose(
        toks.values[toks.offsets[0] : toks.offsets[1]],
        [math.log1p(1e4), 4.0, math.log10(2)],
        rtol=1e-6,
    )
    # cell 1: no counts on model genes -> no tokens
    assert toks.lengths[1] == 0
    # cell 2: A = log1p(3/4 * 1e4), C = log1p(1/4 * 1e4)
    np.testing.assert_allclose(
        toks.values[toks.offsets[2] : toks.offsets[3]],
        [math.log1p(7500), math.log1p(2500), 4.0, math.log10(4)],
        rtol=1e-6,
    )
    # f / a resolutions
    np.testing.assert_allclose(sf.tokenize(x[[2]], resolution="f2").t_values, [math.log10(8)])
    np.testing.assert_allclose(sf.tokenize(x[[2]], resolution="a5").t_values, [math.log10(4) + 5])
    # total of 1: S = log10(1) = 0 is not > 0, so it leaves the encoder input
    one = sf.tokenize(np.array([[0.0, 1.0, 0.0, 0.0]]))
    assert one.positions.tolist() == [1, 4]
    # pre_normalized T: values as they are, total = their sum (upstream)
    pre = sf.tokenize(np.array([[0.5, 0.0, 1.5, 0.0]]), pre_normalized="T")
    np.testing.assert_allclose(pre.values, [0.5, 1.5, 4.0, math.log10(2.0)], rtol=1e-6)
    full = pre.full(np.array([0]))
    np.testing.assert_allclose(full[0], [0.5, 0, 1.5, 0, 4.0, math.log10(2.0)], rtol=1e-6)


def test_duplicate_symbols_are_summed():
    x, _ = sf.to_gene_order(np.array([[1.0, 2.0]]), ["B", "B"], ["A", "B"])
    assert x.toarray().tolist() == [[0, 3]]


def test_padding_and_pad_value_embedding(ckpt):
    config, state = sf.load_subcheckpoint(ckpt / sf.CKPT_FILE, "cell")
    model = sf.load_weights(sf.build_model(config), state)
    v = torch.tensor([[1.0, 102.0, 103.0]])
    with torch.no_grad():
        out = model.token_emb(v)
    np.testing.assert_allclose(out[0, 1], state["token_emb.emb_mask.weight"][0], atol=0)
    np.testing.assert_allclose(out[0, 2], state["token_emb.emb_pad.weight"][0], atol=0)


# ----------------------------------------------------------------- loading


def test_loads_official_layout_and_sub_checkpoints(data, ckpt, tmp_path):
    ctx = _ctx(data)
    m = get_model("scfoundation", checkpoint=str(ckpt))
    loaded = m._load(ctx, "cell")
    raw = torch.load(ckpt / "models.ckpt", weights_only=True)
    for key in (
        "pos_emb.weight",
        "decoder.performer.net.layers.1.0.fn.fast_attention.projection_matrix",
    ):
        torch.testing.assert_close(
            loaded.model.state_dict()[key], raw["cell"]["state_dict"][f"model.{key}"]
        )
    assert len(loaded.genes) == sf.N_GENES
    # a copy of the official model/ folder: models/models.ckpt next to the gene list
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "models.ckpt").symlink_to(ckpt / "models.ckpt")
    (tmp_path / sf.GENE_LIST_FILE).symlink_to(ckpt / sf.GENE_LIST_FILE)
    cells = data[:10].copy()
    a = get_model("scfoundation", checkpoint=str(tmp_path)).embed_cells(cells, _ctx(cells))
    b = get_model("scfoundation", checkpoint=str(ckpt)).embed_cells(cells, _ctx(cells))
    np.testing.assert_array_equal(a, b)
    rde = get_model("scfoundation", checkpoint=str(ckpt), mode="rde").embed_cells(
        cells, _ctx(cells)
    )
    assert np.abs(rde - b).max() > 1e-3  # a different sub-checkpoint
    mx = get_model("scfoundation", checkpoint=str(ckpt), pool_type="max").embed_cells(
        cells, _ctx(cells)
    )
    assert mx.shape == (10, 16)


def test_random_control_is_seeded_and_differs(data, ckpt):
    cells = data[:20].copy()
    r0 = get_model("scfoundation.random", checkpoint=str(ckpt)).embed_cells(cells, _ctx(cells, 0))
    r0b = get_model("scfoundation.random", checkpoint=str(ckpt)).embed_cells(cells, _ctx(cells, 0))
    r1 = get_model("scfoundation.random", checkpoint=str(ckpt)).embed_cells(cells, _ctx(cells, 1))
    pre = get_model("scfoundation", checkpoint=str(ckpt)).embed_cells(cells, _ctx(cells))
    np.testing.assert_array_equal(r0, r0b)
    assert np.abs(r0 - r1).max() > 1e-3 and np.abs(r0 - pre).max() > 1e-3


def test_chunking_does_not_change_results(data, ckpt):
    cells = data[:30].copy()
    whole = get_model("scfoundation", checkpoint=str(ckpt)).embed_cells(cells, _ctx(cells))
    chunked = get_model("scfoundation", checkpoint=str(ckpt), chunk_size=7).embed_streaming(
        cells, _ctx(cells)
    )
    np.testing.assert_allclose(whole, chunked, atol=1e-5)


def test_registered_checkpoint():
    from sceval.models.checkpoints import get_checkpoint

    spec = get_checkpoint("scfoundation.100m")
    assert spec.model == "scfoundation" and spec.manual
    assert "non-commercial" in spec.license
    assert {f.name for f in spec.files} == {"models.ckpt", "OS_scRNA_gene_index.19264.tsv"}
    assert "sharepoint.com" in next(f.url for f in spec.files if f.name == "models.ckpt")
    assert "Nature Methods" in spec.citation
    assert "non-commercial" in get_model("scfoundation").info.license


# ----------------------------------------------------------------- bad inputs


def _rewrite(folder, src, fn):
    import shutil

    shutil.copy(src / sf.GENE_LIST_FILE, folder / sf.GENE_LIST_FILE)
    obj = torch.load(src / "models.ckpt", weights_only=True)
    fn(obj)
    torch.save(obj, folder / "models.ckpt")
    return folder


def test_checkpoint_from_another_config(data, ckpt, tmp_path):
    def bigger(obj):
        obj["cell"]["config"]["model_config"]["mae_autobin"]["encoder"]["hidden_dim"] = 32

    folder = _rewrite(tmp_path, ckpt, bigger)
    with pytest.raises(
        sf.ScFoundationCheckpointError,
        match=r"shape mismatches .*token_emb\.emb\.weight: checkpoint \(10, 16\) vs config "
        r"\(10, 32\).*Fix: use the config saved with these weights",
    ):
        get_model("scfoundation", checkpoint=str(folder)).embed_cells(data, _ctx(data))


def test_missing_and_unexpected_keys(data, ckpt, tmp_path):
    def drop(obj):
        sd = obj["cell"]["state_dict"]
        sd.pop("model.encoder.norm.bias")
        sd["model.extra.weight"] = torch.zeros(1)

    folder = _rewrite(tmp_path, ckpt, drop)
    with pytest.raises(
        sf.ScFoundationCheckpointError,
        match=r"missing keys 1 \[encoder\.norm\.bias\]; unexpected keys 1 \[extra\.weight\]",
    ):
        get_model("scfoundation", checkpoint=str(folder)).embed_cells(data, _ctx(data))


def test_gene_list_of_wrong_length(data, ckpt, tmp_path):
    import shutil

    shutil.copy(ckpt / "models.ckpt", tmp_path / "models.ckpt")
    genes = _gene_list(ckpt)[:100]
    (tmp_path / sf.GENE_LIST_FILE).write_text(
        "gene_name\tindex\n" + "".join(f"{g}\t{i}\n" for i, g in enumerate(genes))
    )
    with pytest.raises(
        sf.ScFoundationCheckpointError,
        match=r"has 100 genes; expected 19264 .*Fix: use the official OS_scRNA_gene_index",
    ):
        get_model("scfoundation", checkpoint=str(tmp_path)).embed_cells(data, _ctx(data))
    (tmp_path / sf.GENE_LIST_FILE).write_text("symbol\n" + "\n".join(genes))
    with pytest.raises(sf.ScFoundationCheckpointError, match=r"expected .*'gene_name' column"):
        get_model("scfoundation", checkpoint=str(tmp_path)).embed_cells(data, _ctx(data))


def test_zero_gene_overlap(data, ckpt):
    bad = data[:20].copy()
    bad.var_names = [f"zz{i}" for i in range(bad.n_vars)]
    bad.var = bad.var.drop(columns=[c for c in ("gene_symbol", "ensembl_id") if c in bad.var])
    with pytest.raises(DataContractError, match=r"none of the 300 genes match"):
        get_model("scfoundation", checkpoint=str(ckpt)).embed_cells(bad, _ctx(bad))


def test_missing_files_and_sub_checkpoint(data, ckpt, tmp_path, monkeypatch):
    with pytest.raises(ModelSkippedError, match=r"lacks \['models\.ckpt'.*sceval fetch"):
        get_model("scfoundation", checkpoint=str(tmp_path)).check(data, _ctx(data))
    monkeypatch.setenv("SCEVAL_HOME", str(tmp_path / "home"))
    with pytest.raises(ModelSkippedError, match=r"sceval fetch scfoundation\.100m"):
        get_model("scfoundation").check(data, _ctx(data))
    folder = _rewrite(tmp_path, ckpt, lambda obj: obj.pop("rde"))
    with pytest.raises(sf.ScFoundationCheckpointError, match=r"no sub-checkpoint 'rde'.*'cell'"):
        get_model("scfoundation", checkpoint=str(folder), mode="rde").embed_cells(data, _ctx(data))
    with pytest.raises(ValueError, match=r"mode='ce' is not a sub-checkpoint.*'cell'"):
        get_model("scfoundation", checkpoint=str(folder), mode="ce").embed_cells(data, _ctx(data))


def test_bad_resolution_and_pickled_objects(data, ckpt, tmp_path):
    with pytest.raises(ValueError, match=r"tgthighres='x4' is not understood.*'t4'"):
        get_model("scfoundation", checkpoint=str(ckpt), tgthighres="x4").embed_cells(
            data, _ctx(data)
        )
    (tmp_path / sf.GENE_LIST_FILE).symlink_to(ckpt / sf.GENE_LIST_FILE)
    torch.save({"cell": argparse.Namespace(a=1)}, tmp_path / "models.ckpt")
    with pytest.raises(UnsafePickleError, match=r"weights_only"):
        get_model("scfoundation", checkpoint=str(tmp_path)).embed_cells(data, _ctx(data))


def test_numpy_scalars_in_config_load_through_the_allowlist(data, ckpt, tmp_path):
    def numpy_config(obj):
        cfg = obj["cell"]["config"]["model_config"]["mae_autobin"]
        cfg["bin_alpha"] = np.float64(1.0)
        cfg["pad_token_id"] = np.int64(103)

    folder = _rewrite(tmp_path, ckpt, numpy_config)
    cells = data[:5].copy()
    a = get_model("scfoundation", checkpoint=str(folder)).embed_cells(cells, _ctx(cells))
    b = get_model("scfoundation", checkpoint=str(ckpt)).embed_cells(cells, _ctx(cells))
    np.testing.assert_array_equal(a, b)


# ----------------------------------------------------------------- CLI


def test_cli_run(data, ckpt, tmp_path):

    path = tmp_path / "d.h5ad"
    data.write_h5ad(path)
    out = tmp_path / "out"
    r = run_cli_benchmark(path, "scfoundation", ckpt, out)
    assert r.exit_code == 0, r.output
    res = pd.read_csv(out / "results.csv")
    assert set(res["model"]) == {"scfoundation", "scfoundation.random"}
    assert (res["status"] == "ok").all(), res["message"].unique()
    assert res["message"].str.contains("gene coverage: 300/300").all()
