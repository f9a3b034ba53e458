"""scBERT: fidelity to an independent reference forward, tokenization, loading from the
official layout, bad inputs and a CLI run, all on tiny random-weight checkpoints."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")

from sceval._errors import DataContractError, ModelSkippedError  # noqa: E402
from sceval.data import validate  # noqa: E402
from sceval.models import EmbedContext, get_model  # noqa: E402
from sceval.models._performer import PerformerCheckpointError  # noqa: E402
from sceval.models.scbert import load_scbert, scbert_tokens  # noqa: E402
from sceval.testing import run_cli_benchmark, small_dataset, tiny_checkpoint  # noqa: E402
from sceval.testing.scbert import write_gene_reference, write_tiny_scbert  # noqa: E402


@pytest.fixture(scope="module")
def data():
    return small_dataset(n_cells=120, seed=3)


@pytest.fixture(scope="module")
def ckpt(data, tmp_path_factory):
    return tiny_checkpoint("scbert", tmp_path_factory.mktemp("scbert"), data)


def _ctx(adata, seed=0):
    return EmbedContext(report=validate(adata, batch_key="batch", label_key="cell_type"), seed=seed)


# --------------------------------------------------------------------------- reference


def _reference_encode(sd: dict, tokens: np.ndarray, heads: int) -> torch.Tensor:
    """The official PerformerLM forward for ONE cell (predict.py: batch of one), written
    from the formulas with plain tensor ops on the state dict: token + gene2vec (float64
    add), per layer x += attn(LN(x)), x += ff(LN(x)); FAVOR+ with the query row maximum
    and the key maximum over the whole key tensor; final LayerNorm."""
    import torch.nn.functional as F

    t = torch.as_tensor(tokens)
    n = t.numel()
    x = sd["token_emb.weight"][t]
    x = (x.double() + sd["pos_emb.emb.weight"][:n]).float()
    d = x.shape[1]
    depth = 1 + max(int(k.split(".")[3]) for k in sd if k.startswith("performer.net.layers."))
    for i in range(depth):
        p = f"performer.net.layers.{i}."
        h = F.layer_norm(x, (d,), sd[p + "0.norm.weight"], sd[p + "0.norm.bias"], 1e-5)
        q, k, v = (
            (h @ sd[p + f"0.fn.to_{c}.weight"].T).reshape(n, heads, -1).transpose(0, 1)
            for c in "qkv"
        )
        proj = sd[p + "0.fn.fast_attention.projection_matrix"]
        m, e = proj.shape
        c = e**-0.25

        def feats(z, query, proj=proj, m=m, c=c):
            dash = (c * z) @ proj.T
            diag = (z * z).sum(-1, keepdim=True) / 2.0 * c**2
            top = dash.max(-1, keepdim=True).values if query else dash.max()
            return m**-0.5 * (torch.exp(dash - diag - top) + 1e-4)

        qf, kf = feats(q, True), feats(k, False)
        att = (qf @ (kf.transpose(1, 2) @ v)) / (qf @ kf.sum(1, keepdim=True).transpose(1, 2))
        att = att.transpose(0, 1).reshape(n, -1)
        x = x + att @ sd[p + "0.fn.to_out.weight"].T + sd[p + "0.fn.to_out.bias"]
        h = F.layer_norm(x, (d,), sd[p + "1.norm.weight"], sd[p + "1.norm.bias"], 1e-5)
        h = F.gelu(h @ sd[p + "1.fn.fn.w1.weight"].T + sd[p + "1.fn.fn.w1.bias"])
        x = x + h @ sd[p + "1.fn.fn.w2.weight"].T + sd[p + "1.fn.fn.w2.bias"]
    return F.layer_norm(x, (d,), sd["norm.weight"], sd["norm.bias"], 1e-5)


def _official_tokens(adata) -> np.ndarray:
    """preprocess.py + predict.py, written out in numpy (the tiny gene list is adata's gene
    order): scale each cell to 1e4 counts, log2(1 + x), values > 5 -> 5, floor, append 0.
    (scanpy is not used here: its numba kernels change torch's CPU thread count.)"""
    x = np.asarray(adata.layers["counts"].toarray(), dtype=np.float32)
    x = x / (x.sum(1, keepdims=True) / np.float32(1e4))
    x = (np.log1p(x) / np.float32(np.log(2.0))).astype(np.float32)
    x[x > 5] = 5
    return np.concatenate([x.astype(np.int64), np.zeros((x.shape[0], 1), np.int64)], 1)


def test_fidelity_against_reference_forward(data, ckpt):
    sub = data[:12].copy()
    sd = torch.load(ckpt / "panglao_pretrained.pth", weights_only=True)["model_state_dict"]
    tokens = _official_tokens(sub)
    with torch.no_grad():
        hidden = [_reference_encode(sd, t, heads=2) for t in tokens]
    ref_mean = np.stack([h[:-1].mean(0).numpy() for h in hidden])
    ref_cls = np.stack([h[-1].numpy() for h in hidden])
    for mode in ("exact", "fast"):
        emb = get_model("scbert", checkpoint=str(ckpt), mode=mode, batch_size=5).embed_cells(
            sub, _ctx(sub)
        )
        np.testing.assert_allclose(emb, ref_mean, atol=1e-5, rtol=0)
    cls = get_model("scbert", checkpoint=str(ckpt), pool="cls").embed_cells(sub, _ctx(sub))
    np.testing.assert_allclose(cls, ref_cls, atol=1e-5, rtol=0)


def test_tokens_by_hand():
    """Tokens: binned values of every gene (zeros included), then the appended 0."""
    import scipy.sparse as sp

    values = sp.csr_matrix(np.array([[0.0, 1.58, 0.0, 13.3], [2.9, 0.0, 0.3, 5.0]], np.float32))
    assert scbert_tokens(values, 7).tolist() == [[0, 1, 0, 5, 0], [2, 0, 0, 5, 0]]


def test_fast_mode_equals_exact_and_random_control_differs(data, ckpt):
    ctx = _ctx(data)
    exact = get_model("scbert", checkpoint=str(ckpt)).embed_cells(data, ctx)
    fast = get_model("scbert", checkpoint=str(ckpt), mode="fast", batch_size=16).embed_cells(
        data, ctx
    )
    np.testing.assert_allclose(fast, exact, atol=1e-5, rtol=0)
    rnd = get_model("scbert.random", checkpoint=str(ckpt)).embed_cells(data, ctx)
    rnd2 = get_model("scbert.random", checkpoint=str(ckpt)).embed_cells(data, ctx)
    rnd3 = get_model("scbert.random", checkpoint=str(ckpt)).embed_cells(data, _ctx(data, seed=1))
    assert np.abs(rnd - exact).max() > 0.1
    np.testing.assert_array_equal(rnd, rnd2)
    assert np.abs(rnd3 - rnd).max() > 0.1


def test_loads_official_layout(ckpt, data):
    model, genes = load_scbert(ckpt)
    assert genes == [str(g) for g in data.var["gene_symbol"]]
    sd = torch.load(ckpt / "panglao_pretrained.pth", weights_only=True)["model_state_dict"]
    mine = model.state_dict()
    key = "performer.net.layers.1.0.fn.fast_attention.projection_matrix"
    assert torch.equal(mine[key], sd[key])  # taken from the checkpoint, not redrawn
    assert mine["pos_emb.emb.weight"].dtype == torch.float64
    assert not any(k.startswith("to_out.") for k in mine)  # the LM head is not used
    assert model.config.max_seq_len == len(genes) + 1
    get_model("scbert", checkpoint=str(ckpt)).embed_cells(data[:3].copy(), _ctx(data[:3]))
    assert torch.equal(model.state_dict()[key], sd[key])  # still, after inference


def test_registered_checkpoint_is_resolved_or_skipped(ckpt, data, tmp_path, monkeypatch):
    monkeypatch.setenv("SCEVAL_HOME", str(tmp_path))
    sub = data[:4].copy()
    with pytest.raises(ModelSkippedError, match=r"checkpoint 'scbert' is not installed.*by hand"):
        get_model("scbert").check(sub, _ctx(sub))
    dest = tmp_path / "checkpoints" / "scbert"
    shutil.copytree(ckpt, dest)
    emb = get_model("scbert").embed_cells(sub, _ctx(sub))
    assert emb.shape == (4, 32)


def test_other_config_is_reported_by_key(data, tmp_path):
    """Weights of a 2-layer 32-d model, but scbert.json says 3 layers of 48-d."""
    import json

    folder = write_tiny_scbert(tmp_path / "c", genes=list(data.var["gene_symbol"]))
    cfg = json.loads((folder / "scbert.json").read_text())
    cfg["network"]["structure"].update(dim=48, depth=3)
    (folder / "scbert.json").write_text(json.dumps(cfg))
    with pytest.raises(
        PerformerCheckpointError,
        match=r"missing keys .*performer\.net\.layers\.2\..*shape mismatches .*"
        r"token_emb\.weight: checkpoint \[7, 32\] vs expected \[7, 48\].*Fix:",
    ):
        load_scbert(folder)
    # the official dimensions (no scbert.json) against tiny weights
    (folder / "scbert.json").unlink()
    with pytest.raises(PerformerCheckpointError, match=r"expects exactly 16906 genes"):
        load_scbert(folder)


def test_gene_list_of_wrong_length(data, tmp_path):
    genes = list(data.var["gene_symbol"])
    folder = write_tiny_scbert(tmp_path / "g", genes=genes)
    write_gene_reference(folder / "panglao_10000.h5ad", genes[:-1])
    with pytest.raises(
        PerformerCheckpointError,
        match=r"lists 399 genes, but scBERT expects exactly 400 genes in the official order.*"
        r"pos_emb\.emb\.weight has 401 rows.*Fix: use the gene list",
    ):
        load_scbert(folder)


def test_zero_gene_overlap_and_bad_parameters(data, ckpt):
    other = data[:10].copy()
    other.var_names = [f"NOPE{i}" for i in range(other.n_vars)]
    other.var["gene_symbol"] = list(other.var_names)
    with pytest.raises(DataContractError, match=r"none of the 400 genes match.*harmonize_genes"):
        get_model("scbert", checkpoint=str(ckpt)).embed_cells(other, _ctx(other))
    sub = data[:2].copy()
    with pytest.raises(ValueError, match=r"mode='quick' is not supported; expected.*'exact'"):
        get_model("scbert", checkpoint=str(ckpt), mode="quick").embed_cells(sub, _ctx(sub))
    with pytest.raises(ValueError, match=r"pool='max' is not supported"):
        get_model("scbert", checkpoint=str(ckpt), pool="max").embed_cells(sub, _ctx(sub))


def test_missing_file_is_skipped(ckpt, data, tmp_path):
    folder = tmp_path / "partial"
    shutil.copytree(ckpt, folder)
    (folder / "panglao_10000.h5ad").unlink()
    with pytest.raises(ModelSkippedError, match=r"no gene list .*panglao_10000\.h5ad"):
        get_model("scbert", checkpoint=str(folder)).embed_cells(data[:2].copy(), _ctx(data[:2]))


def test_cli_run(data, ckpt, tmp_path):

    h5ad = tmp_path / "d.h5ad"
    data.write_h5ad(h5ad)
    out = tmp_path / "out"
    r = run_cli_benchmark(h5ad, "scbert", ckpt, out)
    assert r.exit_code == 0, r.output
    res = pd.read_csv(out / "results.csv")
    assert set(res["model"]) == {"scbert", "scbert.random"}
    assert set(res["status"]) == {"ok"}, res["message"].unique()
    assert res.loc[res["model"] == "scbert", "message"].str.contains("gene coverage: 400/400").all()
