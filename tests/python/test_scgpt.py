"""scGPT: checkpoint loading, official tokenization, numerical fidelity, models.

Tiny random-weight checkpoints in the official layout stand in for the released ones
(no weights are available offline).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import anndata as ad  # noqa: E402
import pandas as pd  # noqa: E402
import scipy.sparse as sp  # noqa: E402

from sceval._errors import DataContractError, ModelSkippedError  # noqa: E402
from sceval.data import validate  # noqa: E402
from sceval.models import EmbedContext, get_model  # noqa: E402
from sceval.models._safe_load import UnsafePickleError  # noqa: E402
from sceval.models.scgpt import (  # noqa: E402
    ScGPTCheckpointError,
    bin_values,
    build_tokenizer,
    load_scgpt,
)
from sceval.testing import small_dataset  # noqa: E402
from sceval.testing.scgpt import write_tiny_scgpt  # noqa: E402


@pytest.fixture(scope="module")
def data():
    return small_dataset(n_cells=150, n_genes=300, n_batches=2, n_cell_types=3, seed=1)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, data):
    # max_seq_len 240: about half of the cells (185..280 genes) are subsampled
    folder = tmp_path_factory.mktemp("scgpt")
    return write_tiny_scgpt(folder, genes=list(data.var_names), max_seq_len=240)


def _ctx(adata, seed=0):
    rep = validate(adata, batch_key="batch", label_key="cell_type")
    return EmbedContext(report=rep, seed=seed, batch_key="batch", label_key="cell_type")


def _embed(adata, folder, seed=0, key="scgpt", **params):
    return get_model(key, checkpoint=str(folder), **params).embed_cells(adata, _ctx(adata, seed))


# ------------------------------------------------------------------------- loading


def test_both_key_namings_give_identical_embeddings(tmp_path, data):
    genes = list(data.var_names)
    wqkv = write_tiny_scgpt(tmp_path / "wqkv", genes=genes, wqkv_naming=True)
    torch_naming = write_tiny_scgpt(tmp_path / "torch", genes=genes, wqkv_naming=False)
    # the wrapped flash-attn naming (self_attn._impl.*) of newer official code
    impl = write_tiny_scgpt(tmp_path / "impl", genes=genes)
    state = torch.load(impl / "best_model.pt", weights_only=True)
    state = {k.replace(".self_attn.", ".self_attn._impl."): v for k, v in state.items()}
    torch.save(state, impl / "best_model.pt")

    keys = torch.load(wqkv / "best_model.pt", weights_only=True).keys()
    assert "transformer_encoder.layers.0.self_attn.Wqkv.weight" in keys
    assert "transformer_encoder.layers.0.self_attn.in_proj_weight" not in keys
    a = _embed(data, wqkv)
    np.testing.assert_array_equal(a, _embed(data, torch_naming))
    np.testing.assert_array_equal(a, _embed(data, impl))


def test_unused_keys_ignored_by_name(tmp_path, data):
    extra = (
        "flag_encoder.weight",
        "dsbn.bns.0.running_mean",
        "batch_encoder.embedding.weight",
        "grad_reverse_discriminator.out_layer.weight",
    )
    folder = write_tiny_scgpt(tmp_path, genes=list(data.var_names), extra_keys=extra)
    model, vocab, args = load_scgpt(folder)
    assert sorted(model.ignored_keys) == sorted(extra)
    assert args["embsize"] == 32 and vocab["<cls>"] == len(vocab) - 2


def test_missing_unexpected_and_misshaped_keys_in_one_error(tmp_path, data):
    folder = write_tiny_scgpt(tmp_path, genes=list(data.var_names))
    path = folder / "best_model.pt"
    state = torch.load(path, weights_only=True)
    del state["encoder.enc_norm.bias"]
    state["foo.bar"] = torch.zeros(3)
    state["decoder.fc.2.weight"] = torch.zeros(5, 32)
    torch.save(state, path)
    pattern = (
        r"(?s)missing keys 1 \[encoder\.enc_norm\.bias\].*unexpected keys 1 \[foo\.bar\]"
        r".*shape mismatches 1 \[decoder\.fc\.2\.weight: checkpoint \(5, 32\) vs expected "
        r"\(32, 32\)\].*Fix:"
    )
    with pytest.raises(ScGPTCheckpointError, match=pattern):
        load_scgpt(folder)


def test_layer_count_mismatch_lists_the_extra_layers(tmp_path, data):
    folder = write_tiny_scgpt(tmp_path, genes=list(data.var_names), nlayers=2)
    args = json.loads((folder / "args.json").read_text())
    args["nlayers"] = 1
    (folder / "args.json").write_text(json.dumps(args))
    with pytest.raises(ScGPTCheckpointError, match=r"unexpected keys 12 \[transformer_encoder"):
        load_scgpt(folder)


def test_vocab_without_special_tokens_gets_them_appended(tmp_path, data):
    folder = write_tiny_scgpt(tmp_path, genes=list(data.var_names))
    vocab = json.loads((folder / "vocab.json").read_text())
    full = dict(vocab)
    for tok in ("<pad>", "<cls>", "<eoc>"):
        del vocab[tok]
    (folder / "vocab.json").write_text(json.dumps(vocab))
    _, loaded, _ = load_scgpt(folder)
    assert loaded == full


def test_malicious_pickle_is_refused(tmp_path, data):
    folder = write_tiny_scgpt(tmp_path, genes=list(data.var_names))
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (Path.touch, (marker,))

    torch.save({"encoder.embedding.weight": Evil()}, folder / "best_model.pt")
    with pytest.raises(UnsafePickleError, match="not a plain state dict"):
        load_scgpt(folder)
    assert not marker.exists()


def test_missing_checkpoint_is_skipped_with_fetch_hint(tmp_path, monkeypatch, data):
    monkeypatch.setenv("SCEVAL_HOME", str(tmp_path))
    model = get_model("scgpt")
    with pytest.raises(ModelSkippedError, match="sceval fetch"):
        model.check(data, _ctx(data))
    with pytest.raises(ModelSkippedError, match="sceval fetch"):
        get_model("scgpt.random").embed_cells(data, _ctx(data))


# ------------------------------------------------------------------------- tokenization


def test_binning_hand_worked():
    rng = np.random.default_rng(0)
    # edges = quantiles at 0, 1/3, 2/3, 1 of [1, 2, 3, 4, 5] = [1, 2.33, 3.67, 5]
    got = bin_values(np.array([0, 3, 1, 0, 5, 2, 4]), 5, rng)
    np.testing.assert_array_equal(got, [0, 2, 1, 0, 4, 1, 3])


def test_binning_spreads_tied_values_like_the_official_digitize():
    # edges of [1, 1, 1, 1, 5] are [1, 1, 1, 5]: a 1 lies on three edges (left digit 3,
    # right digit 0) and gets ceil(u * (0 - 3) + 3), uniform over bins 1..3
    u = np.random.default_rng(7).random(5)
    got = bin_values(np.array([1, 1, 1, 1, 5]), 5, np.random.default_rng(7))
    expected = np.ceil(u * (np.array([0, 0, 0, 0, 3]) - [3, 3, 3, 3, 4]) + [3, 3, 3, 3, 4])
    np.testing.assert_array_equal(got, expected)
    assert set(got[:4]) <= {1, 2, 3} and got[4] == 4
    # a realistic cell: the official formula with np.quantile / np.digitize, levels 1..50
    x = (np.random.default_rng(1).poisson(3, 500) + 1).astype(np.float32)
    edges = np.quantile(x, np.linspace(0, 1, 50))
    left, right = np.digitize(x, edges), np.digitize(x, edges, right=True)
    u = np.random.default_rng(2).random(500)
    big = bin_values(x, 51, np.random.default_rng(2))
    np.testing.assert_array_equal(big, np.ceil(u * (right - left) + left))
    assert big.min() == 1 and big.max() == 50


@pytest.fixture()
def hand_cells(tmp_path):
    # genes A..F are in the vocabulary (in another order), X is not
    var_names = ["A", "B", "C", "D", "E", "F", "X"]
    counts = np.array(
        [
            [0, 3, 1, 0, 5, 2, 7],  # non-zero in vocab: B=3, C=1, E=5, F=2
            [0, 0, 0, 0, 0, 0, 4],  # nothing in the vocabulary
            [1, 0, 0, 0, 0, 0, 0],
        ],
        dtype=np.float32,
    )
    adata = ad.AnnData(sp.csr_matrix(counts), var=pd.DataFrame(index=var_names))
    folder = write_tiny_scgpt(tmp_path, genes=["F", "E", "D", "C", "B", "A"], n_bins=5)
    model, vocab, _ = load_scgpt(folder)
    return adata, validate(adata), model, vocab


def test_tokenization_hand_worked_cell(hand_cells):
    adata, report, model, vocab = hand_cells
    tok, cov = build_tokenizer(adata, report, vocab, model.config, max_length=10)
    assert cov.n_matched == 6
    genes, values = tok.cell(0)
    # edges of [3, 1, 5, 2] are [1, 2, 3, 5]: every value sits on one edge -> bins 3, 1, 4, 2
    assert genes[0] == vocab["<cls>"] and values[0] == -2
    np.testing.assert_array_equal(genes[1:], [vocab[g] for g in "BCEF"])
    np.testing.assert_array_equal(values[1:], [3, 1, 4, 2])
    g1, v1 = tok.cell(1)
    np.testing.assert_array_equal(g1, [vocab["<cls>"]])
    np.testing.assert_array_equal(v1, [-2])
    np.testing.assert_array_equal(tok.lengths, [5, 1, 2])

    g, v, mask = tok.batch(np.array([0, 1]))
    assert g.shape == (2, 5)
    np.testing.assert_array_equal(g[1], [vocab["<cls>"]] + [vocab["<pad>"]] * 4)
    np.testing.assert_array_equal(v[1], [-2] * 5)
    np.testing.assert_array_equal(mask, [[False] * 5, [False] + [True] * 4])
    assert tok.batch(np.array([0]))[2] is None  # nothing padded: no mask


def test_truncation_samples_genes_and_keeps_cls(hand_cells):
    adata, report, model, vocab = hand_cells

    def tokens(max_length, seed=0):
        return build_tokenizer(
            adata, report, vocab, model.config, max_length=max_length, seed=seed
        )[0].cell(0)

    full = dict(zip(*tokens(10), strict=True))
    tok, _ = build_tokenizer(adata, report, vocab, model.config, max_length=3, seed=4)
    genes, values = tok.cell(0)
    assert genes.size == 3 and genes[0] == vocab["<cls>"] and values[0] == -2
    assert len(set(genes[1:])) == 2 and set(genes[1:]) <= {vocab[g] for g in "BCEF"}
    # bins are computed on the whole cell before sampling (official order)
    assert all(full[g] == v for g, v in zip(genes[1:], values[1:], strict=True))
    np.testing.assert_array_equal(tokens(3, seed=4)[0], genes)
    picks = {tuple(tokens(3, seed=s)[0]) for s in range(20)}
    assert len(picks) > 1  # a random subset (official sampling), not the first genes


# ------------------------------------------------------------------------- fidelity


def _reference_embeddings(folder: Path, genes: np.ndarray, values: np.ndarray, mask):
    """Official forward rebuilt from torch.nn.TransformerEncoderLayer and the raw keys."""
    import torch.nn.functional as F
    from torch import nn

    args = json.loads((folder / "args.json").read_text())
    s = torch.load(folder / "best_model.pt", weights_only=True)
    d, nhead = args["embsize"], args["nheads"]

    def ln(x, name):
        return F.layer_norm(x, (d,), s[f"{name}.weight"], s[f"{name}.bias"], 1e-5)

    src = torch.from_numpy(genes)
    val = torch.from_numpy(values).unsqueeze(-1).clamp(max=512)
    gene_emb = ln(F.embedding(src, s["encoder.embedding.weight"]), "encoder.enc_norm")
    h = F.relu(F.linear(val, s["value_encoder.linear1.weight"], s["value_encoder.linear1.bias"]))
    h = F.linear(h, s["value_encoder.linear2.weight"], s["value_encoder.linear2.bias"])
    x = gene_emb + ln(h, "value_encoder.norm")
    pad = torch.from_numpy(mask) if mask is not None else None
    with torch.no_grad():
        for i in range(args["nlayers"]):
            p = f"transformer_encoder.layers.{i}."
            layer = nn.TransformerEncoderLayer(
                d,
                nhead,
                args["d_hid"],
                dropout=0.0,
                activation="relu",
                layer_norm_eps=1e-5,
                batch_first=True,
                norm_first=False,
            )
            sd = {
                "self_attn.in_proj_weight": s[p + "self_attn.Wqkv.weight"],
                "self_attn.in_proj_bias": s[p + "self_attn.Wqkv.bias"],
            }
            for name in ("self_attn.out_proj", "linear1", "linear2", "norm1", "norm2"):
                sd[f"{name}.weight"] = s[f"{p}{name}.weight"]
                sd[f"{name}.bias"] = s[f"{p}{name}.bias"]
            layer.load_state_dict(sd, strict=True)
            layer.eval()
            x = layer(x, src_key_padding_mask=pad)
    cls = x[:, 0].numpy()
    return cls / np.linalg.norm(cls, axis=1, keepdims=True)


def test_fidelity_against_torch_transformer_layers(data, ckpt):
    model, vocab, _ = load_scgpt(ckpt)
    ctx = _ctx(data)
    tok, _ = build_tokenizer(data, ctx.report, vocab, model.config, seed=ctx.seed)
    assert tok.lengths.min() < tok.lengths.max() == 240  # padded and subsampled cells
    g, v, m = tok.batch(np.arange(tok.n_cells))  # official collator: pad to the batch max
    ref = _reference_embeddings(ckpt, g, v, m)
    ours = _embed(data, ckpt, batch_size=16, precision="fp32")
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-5)


def test_sorted_batching_equals_one_cell_at_a_time(data, ckpt):
    batched = _embed(data, ckpt, batch_size=32)
    single = _embed(data, ckpt, batch_size=1)
    np.testing.assert_allclose(batched, single, rtol=0, atol=1e-5)
    assert np.allclose(np.linalg.norm(batched, axis=1), 1.0, atol=1e-5)


# ------------------------------------------------------------------------- genes


def test_ensembl_ids_go_through_gene_symbols(data, ckpt):
    from sceval.data.genes import map_genes

    # readthrough genes (e.g. KLRC4-KLRK1) share their Ensembl ID with another symbol;
    # keep the genes whose ID maps back to the simulated symbol
    table, _ = map_genes(list(data.var["ensembl_id"]))
    same = table["gene_symbol"].to_numpy() == data.var["gene_symbol"].to_numpy()
    data = data[:, same].copy()
    ref = _embed(data, ckpt)
    ens = data.copy()
    ens.var_names = ens.var["ensembl_id"].astype(str).to_numpy()
    np.testing.assert_array_equal(_embed(ens, ckpt), ref)  # var["gene_symbol"]
    bare = ens.copy()
    del bare.var["gene_symbol"]
    np.testing.assert_array_equal(_embed(bare, ckpt), ref)  # bundled tables


def test_zero_overlap_raises_and_low_overlap_warns(tmp_path, data, ckpt):
    renamed = data.copy()
    renamed.var_names = [f"NOTAGENE{i}" for i in range(renamed.n_vars)]
    with pytest.raises(DataContractError, match="none of the 300 genes match"):
        _embed(renamed, ckpt)
    few = write_tiny_scgpt(tmp_path, genes=list(data.var_names[:60]))
    model = get_model("scgpt", checkpoint=str(few))
    with pytest.warns(UserWarning, match=r"low gene coverage: 60/300 genes \(20\.0%\)"):
        emb = model.embed_cells(data, _ctx(data))
    assert emb.shape == (data.n_obs, 32)
    assert model.coverage.n_matched == 60 and "60/300 genes" in model.coverage.message


def test_embed_genes(data, ckpt):
    model = get_model("scgpt", checkpoint=str(ckpt))
    genes = [data.var_names[0], "NOTAGENE", data.var_names[5], "<cls>"]
    emb, found = model.embed_genes(genes, _ctx(data))
    np.testing.assert_array_equal(found, [True, False, True, False])
    s = torch.load(ckpt / "best_model.pt", weights_only=True)
    vocab = json.loads((ckpt / "vocab.json").read_text())
    ids = torch.tensor([vocab[genes[0]], vocab[genes[2]]])
    expected = torch.nn.functional.layer_norm(
        s["encoder.embedding.weight"][ids],
        (32,),
        s["encoder.enc_norm.weight"],
        s["encoder.enc_norm.bias"],
    )
    np.testing.assert_allclose(emb, expected.numpy(), atol=1e-6)


# ------------------------------------------------------------------------- models


@pytest.mark.parametrize("key", ["scgpt", "scgpt.random"])
def test_contract(data, ckpt, key):
    model = get_model(key, checkpoint=str(ckpt))
    assert model.info.input == "counts"
    assert model.info.kind == ("foundation" if key == "scgpt" else "control")
    assert model.info.description
    ctx = _ctx(data)
    model.check(data, ctx)
    emb = model.embed_cells(data, ctx)
    assert emb.shape == (data.n_obs, 32) and emb.dtype == np.float32
    assert np.all(np.isfinite(emb))
    np.testing.assert_allclose(emb, _embed(data, ckpt, key=key), atol=1e-6)


def test_random_control_differs_and_is_seeded(data, ckpt):
    pre = _embed(data, ckpt)
    r0 = _embed(data, ckpt, seed=0, key="scgpt.random")
    assert np.abs(r0 - pre).max() > 0.1
    np.testing.assert_array_equal(r0, _embed(data, ckpt, seed=0, key="scgpt.random"))
    assert np.abs(r0 - _embed(data, ckpt, seed=1, key="scgpt.random")).max() > 0.1
    # random weights follow the official initializations
    model = get_model("scgpt.random", checkpoint=str(ckpt))
    net = model._load(_ctx(data)).model
    assert float(net.encoder.embedding.weight.detach().abs().max()) <= 0.1
    assert torch.all(net.encoder.enc_norm.weight == 1)


@pytest.fixture(scope="module")
def two_types(tmp_path_factory):
    """Two cell types expressing different genes (easy to learn), and a checkpoint."""
    rng = np.random.default_rng(0)
    n, n_genes = 80, 40
    y = np.repeat(["A", "B"], n // 2)
    x = rng.poisson(0.3, (n, n_genes)).astype(np.float32)
    x[y == "A", :10] += rng.poisson(3, (n // 2, 10))
    x[y == "B", 10:20] += rng.poisson(3, (n // 2, 10))
    genes = [f"G{i}" for i in range(n_genes)]
    obs = pd.DataFrame({"cell_type": y}, index=[f"c{i}" for i in range(n)])
    adata = ad.AnnData(sp.csr_matrix(x), obs=obs, var=pd.DataFrame(index=genes))
    folder = write_tiny_scgpt(tmp_path_factory.mktemp("two"), genes=genes, max_seq_len=32)
    perm = rng.permutation(n)
    return adata, folder, np.sort(perm[:60]), np.sort(perm[60:])


def test_fine_tune_annotate_learns_is_seeded_and_ignores_test_labels(two_types):
    adata, folder, train, test = two_types
    labels = adata.obs["cell_type"].to_numpy()
    ctx = EmbedContext(report=validate(adata, label_key="cell_type"), seed=0)
    model = get_model("scgpt", checkpoint=str(folder))
    zero_shot = model.embed_cells(adata, ctx)
    kw = {"epochs": 3, "batch_size": 8, "lr": 1e-3}
    pred = model.fine_tune_annotate(adata, labels, train, test, ctx, **kw)
    assert pred.shape == (test.size,) and set(pred) <= {"A", "B"}
    assert (pred == labels[test]).mean() >= 0.9
    hidden = labels.astype(object)
    hidden[test] = None  # test labels are never looked at
    again = get_model("scgpt", checkpoint=str(folder)).fine_tune_annotate(
        adata, hidden, train, test, ctx, **kw
    )
    np.testing.assert_array_equal(pred, again)
    # fine-tuning works on a copy: the zero-shot model is unchanged
    np.testing.assert_array_equal(model.embed_cells(adata, ctx), zero_shot)
    with pytest.raises(DataContractError, match="overlap"):
        model.fine_tune_annotate(adata, labels, train, train[:5], ctx)
