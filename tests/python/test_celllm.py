"""CellLM: fidelity to an independent reference forward (the official padded layout),
tokenization, loading from the official layout, bad inputs and a CLI run, all on tiny
random-weight checkpoints."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")

from sceval._errors import DataContractError, ModelSkippedError  # noqa: E402
from sceval.data import validate  # noqa: E402
from sceval.models import EmbedContext, get_model  # noqa: E402
from sceval.models._performer import PerformerCheckpointError  # noqa: E402
from sceval.models.celllm import CellLMTokens, celllm_config, load_celllm  # noqa: E402
from sceval.testing import run_cli_benchmark, small_dataset, tiny_checkpoint  # noqa: E402
from sceval.testing.celllm import write_tiny_celllm  # noqa: E402
from sceval.testing.scbert import write_gene_reference, write_tiny_scbert  # noqa: E402


@pytest.fixture(scope="module")
def data():
    return small_dataset(n_cells=120, seed=4)


@pytest.fixture(scope="module")
def ckpt(data, tmp_path_factory):
    return tiny_checkpoint("celllm", tmp_path_factory.mktemp("celllm"), data)


def _ctx(adata, seed=0):
    return EmbedContext(report=validate(adata, batch_key="batch", label_key="cell_type"), seed=seed)


# --------------------------------------------------------------------------- reference


def _official_inputs(row: np.ndarray, gene_num: int, max_len: int):
    """PerformerLM_CellLM.forward input building for one cell (value vector in gene
    order): non-zero values, > 5 -> 5, long; <cls> (token 6, gene row gene_num) first;
    truncate; pad with token 7 at gene row gene_num + 1; mask = real positions."""
    pos = np.flatnonzero(row > 0)
    exp = row[row > 0].copy()
    exp[exp > 5] = 5
    exp = np.concatenate([[6], exp.astype(np.int64)])
    pos = np.concatenate([[gene_num], pos])
    n = min(exp.size, max_len)
    tokens = np.full(max_len, 7, dtype=np.int64)
    genes = np.full(max_len, gene_num + 1, dtype=np.int64)
    tokens[:n], genes[:n] = exp[:n], pos[:n]
    return tokens, genes, np.arange(max_len) < n


def _reference_cls(sd: dict, tokens, genes, mask, heads: int) -> np.ndarray:
    """The official forward for ONE cell with plain tensor ops on the state dict: values
    of padded positions zeroed (their keys stay), FAVOR+ with the query row maximum and
    the key maximum over the whole key tensor, pre-LN blocks, final LN; position 0."""
    import torch.nn.functional as F

    t, g, m = (torch.as_tensor(a) for a in (tokens, genes, mask))
    n = t.numel()
    x = (sd["token_emb.weight"][t].double() + sd["pos_emb.emb.weight"][g]).float()
    d = x.shape[1]
    depth = 1 + max(int(k.split(".")[3]) for k in sd if k.startswith("performer.net.layers."))
    for i in range(depth):
        p = f"performer.net.layers.{i}."
        h = F.layer_norm(x, (d,), sd[p + "0.norm.weight"], sd[p + "0.norm.bias"], 1e-5)
        q, k, v = (
            (h @ sd[p + f"0.fn.to_{c}.weight"].T).reshape(n, heads, -1).transpose(0, 1)
            for c in "qkv"
        )
        v = v * m[None, :, None]
        proj = sd[p + "0.fn.fast_attention.projection_matrix"]
        mf, e = proj.shape
        c = e**-0.25

        def feats(z, query, proj=proj, mf=mf, c=c):
            dash = (c * z) @ proj.T
            diag = (z * z).sum(-1, keepdim=True) / 2.0 * c**2
            top = dash.max(-1, keepdim=True).values if query else dash.max()
            return mf**-0.5 * (torch.exp(dash - diag - top) + 1e-4)

        qf, kf = feats(q, True), feats(k, False)
        att = (qf @ (kf.transpose(1, 2) @ v)) / (qf @ kf.sum(1, keepdim=True).transpose(1, 2))
        att = att.transpose(0, 1).reshape(n, -1)
        x = x + att @ sd[p + "0.fn.to_out.weight"].T + sd[p + "0.fn.to_out.bias"]
        h = F.layer_norm(x, (d,), sd[p + "1.norm.weight"], sd[p + "1.norm.bias"], 1e-5)
        h = F.gelu(h @ sd[p + "1.fn.fn.w1.weight"].T + sd[p + "1.fn.fn.w1.bias"])
        x = x + h @ sd[p + "1.fn.fn.w2.weight"].T + sd[p + "1.fn.fn.w2.bias"]
    x = F.layer_norm(x, (d,), sd["norm.weight"], sd["norm.bias"], 1e-5)
    return (x * m[:, None])[0].numpy()


def _log2_values(adata) -> np.ndarray:
    """normalize_total(1e4) + log1p(base=2) in numpy (the tiny gene order is adata's)."""
    x = np.asarray(adata.layers["counts"].toarray(), dtype=np.float32)
    x = x / (x.sum(1, keepdims=True) / np.float32(1e4))
    return (np.log1p(x) / np.float32(np.log(2.0))).astype(np.float32)


def test_fidelity_against_reference_forward(data, ckpt):
    cfg = json.loads((ckpt / "cellLM.json").read_text())["network"]["structure"]
    values = _log2_values(data)
    nnz = (values > 0).sum(1)
    # cells above and below max_seq_len - 1 expressed genes (truncation and padding)
    pick = np.concatenate([np.flatnonzero(nnz >= 299)[:4], np.flatnonzero(nnz < 299)[:6]])
    assert pick.size == 10
    sub = data[pick].copy()
    sd = torch.load(ckpt / "checkpoint4_fixed.pth", weights_only=True)["model_state_dict"]
    with torch.no_grad():
        ref = np.stack(
            [
                _reference_cls(sd, *_official_inputs(values[i], cfg["gene_num"], 300), heads=2)
                for i in pick
            ]
        )
    for mode in ("exact", "fast"):
        emb = get_model("celllm", checkpoint=str(ckpt), mode=mode, batch_size=4).embed_cells(
            sub, _ctx(sub)
        )
        np.testing.assert_allclose(emb, ref, atol=1e-5, rtol=0)


def test_tokens_by_hand():
    """<cls> then the expressed genes in gene order (tokens floor(min(v, 5))), at most
    max_seq_len; exact layout padded with <pad>; fast layout one weighted <pad>."""
    import scipy.sparse as sp

    from sceval.models._performer import PerformerConfig

    values = sp.csr_matrix(
        np.array([[0.0, 1.58, 0.0, 13.3, 0.3], [2.9, 0.7, 0.3, 5.0, 1.0]], np.float32)
    )
    cfg = PerformerConfig(
        num_tokens=8, dim=4, depth=1, heads=1, n_positions=5 + 2, max_seq_len=5, dim_head=4
    )
    tok = CellLMTokens(values, cfg)
    assert tok.lengths.tolist() == [4, 5]
    t, p = tok.cell(0)
    assert t.tolist() == [6, 1, 5, 0] and p.tolist() == [5, 1, 3, 4]
    t, p = tok.cell(1)  # 5 expressed genes, room for 4 after <cls>
    assert t.tolist() == [6, 2, 0, 0, 5] and p.tolist() == [5, 0, 1, 2, 3]
    t, p, m = tok.padded(0)
    assert t.tolist() == [6, 1, 5, 0, 7] and p.tolist() == [5, 1, 3, 4, 6]
    assert m.tolist() == [True, True, True, True, False]
    t, p, w, k = tok.compact_batch(np.array([1, 0]))
    assert t.tolist() == [[6, 2, 0, 0, 5], [6, 1, 5, 0, 7]]
    assert w.tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 1, 1]]  # cell 0: one <pad> of weight 1
    assert k[1].tolist() == [True, True, True, True, False]


def test_fast_mode_equals_exact_and_random_control_differs(data, ckpt):
    ctx = _ctx(data)
    exact = get_model("celllm", checkpoint=str(ckpt)).embed_cells(data, ctx)
    fast = get_model("celllm", checkpoint=str(ckpt), mode="fast").embed_cells(data, ctx)
    np.testing.assert_allclose(fast, exact, atol=1e-5, rtol=0)
    rnd = get_model("celllm.random", checkpoint=str(ckpt)).embed_cells(data, ctx)
    rnd2 = get_model("celllm.random", checkpoint=str(ckpt)).embed_cells(data, ctx)
    assert np.abs(rnd - exact).max() > 0.1
    np.testing.assert_array_equal(rnd, rnd2)


def test_loads_official_layout(ckpt, data):
    model, genes, fields = load_celllm(ckpt)
    assert genes == [str(g) for g in data.var["gene_symbol"]]
    assert fields["param_key"] == "model_state_dict"
    cfg, _ = celllm_config(ckpt)
    assert (cfg.num_tokens, cfg.n_positions, cfg.max_seq_len) == (8, len(genes) + 2, 300)
    sd = torch.load(ckpt / "checkpoint4_fixed.pth", weights_only=True)["model_state_dict"]
    key = "performer.net.layers.0.0.fn.fast_attention.projection_matrix"
    get_model("celllm", checkpoint=str(ckpt)).embed_cells(data[:3].copy(), _ctx(data[:3]))
    assert torch.equal(model.state_dict()[key], sd[key])  # from the checkpoint, not redrawn
    table = model.state_dict()["pos_emb.emb.weight"]
    assert torch.all(table[-2] == 1) and torch.all(table[-1] == 0)  # <cls> ones, <pad> zeros


def test_registered_checkpoint_is_resolved_or_skipped(ckpt, data, tmp_path, monkeypatch):
    monkeypatch.setenv("SCEVAL_HOME", str(tmp_path))
    sub = data[:4].copy()
    with pytest.raises(ModelSkippedError, match=r"checkpoint 'celllm' is not installed.*by hand"):
        get_model("celllm").check(sub, _ctx(sub))
    shutil.copytree(ckpt, tmp_path / "checkpoints" / "celllm")
    assert get_model("celllm").embed_cells(sub, _ctx(sub)).shape == (4, 32)


def test_other_config_is_reported_by_key(data, tmp_path):
    """scBERT weights (7 tokens, 1 extra gene2vec row) under a CellLM config."""
    genes = list(data.var["gene_symbol"])
    folder = write_tiny_celllm(tmp_path / "c", genes=genes)
    write_tiny_scbert(tmp_path / "s", genes=genes)
    sd = torch.load(tmp_path / "s" / "panglao_pretrained.pth", weights_only=True)
    torch.save(sd, folder / "checkpoint4_fixed.pth")
    with pytest.raises(
        PerformerCheckpointError,
        match=r"shape mismatches 2 \[token_emb\.weight: checkpoint \[7, 32\] vs expected "
        r"\[8, 32\], pos_emb\.emb\.weight: checkpoint \[401, 32\] vs expected \[402, 32\]\]"
        r".*Fix: use the cellLM\.json",
    ):
        load_celllm(folder)


def test_gene_list_of_wrong_length(data, tmp_path):
    genes = list(data.var["gene_symbol"])
    folder = write_tiny_celllm(tmp_path / "g", genes=genes)
    write_gene_reference(folder / "zheng68k_hgnc.h5ad", [*genes, "EXTRA"])
    with pytest.raises(
        PerformerCheckpointError,
        match=r"lists 401 genes, but CellLM expects exactly 400 genes.*Fix: use the gene order",
    ):
        load_celllm(folder)


def test_zero_gene_overlap_bad_mode_and_missing_weights(data, ckpt, tmp_path):
    other = data[:10].copy()
    other.var_names = [f"NOPE{i}" for i in range(other.n_vars)]
    other.var["gene_symbol"] = list(other.var_names)
    with pytest.raises(DataContractError, match=r"none of the 400 genes match.*harmonize_genes"):
        get_model("celllm", checkpoint=str(ckpt)).embed_cells(other, _ctx(other))
    sub = data[:2].copy()
    with pytest.raises(ValueError, match=r"mode='batched' is not supported; expected"):
        get_model("celllm", checkpoint=str(ckpt), mode="batched").embed_cells(sub, _ctx(sub))
    folder = tmp_path / "partial"
    shutil.copytree(ckpt, folder)
    (folder / "checkpoint4_fixed.pth").unlink()
    with pytest.raises(ModelSkippedError, match=r"no CellLM weights file .*checkpoint4_fixed"):
        get_model("celllm", checkpoint=str(folder)).embed_cells(sub, _ctx(sub))


def test_cli_run(data, ckpt, tmp_path):

    h5ad = tmp_path / "d.h5ad"
    data.write_h5ad(h5ad)
    out = tmp_path / "out"
    r = run_cli_benchmark(h5ad, "celllm", ckpt, out)
    assert r.exit_code == 0, r.output
    res = pd.read_csv(out / "results.csv")
    assert set(res["model"]) == {"celllm", "celllm.random"}
    assert set(res["status"]) == {"ok"}, res["message"].unique()
    assert res.loc[res["model"] == "celllm", "message"].str.contains("gene coverage: 400/400").all()
