"""Geneformer: checkpoint loading, dictionaries, tokenization, embeddings, fine-tuning.

Tiny random-weight checkpoints in the official layout are written by
:func:`sceval.testing.geneformer.write_tiny_geneformer`; the fidelity tests compare with an
independent reference built from ``transformers`` directly (eager attention, every cell
padded to the longest one, ``output_hidden_states``) and the official pooling.
"""

from __future__ import annotations

import os
import pickle
import warnings

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp

from sceval._errors import DataContractError, ModelSkippedError
from sceval.data import validate
from sceval.models import EmbedContext, get_model
from sceval.models._safe_load import UnsafePickleError, load_pickle_dict
from sceval.models.geneformer import (
    GeneformerDictionaries,
    build_bert,
    encode_cells,
    load_checkpoint,
    load_weights,
    tokenize_counts,
)
from sceval.testing import small_dataset
from sceval.testing.geneformer import write_tiny_geneformer

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

MAX_LEN = 96
N_VOCAB = 240


@pytest.fixture(scope="module")
def data():
    """150 cells x 300 genes, thinned per cell so token counts vary (20 to ~270 genes)."""
    a = small_dataset(n_cells=150, n_genes=300, n_batches=2, n_cell_types=3, seed=3)
    rng = np.random.default_rng(0)
    c = np.asarray(sp.csr_matrix(a.layers["counts"]).toarray())
    keep = rng.random(c.shape) < rng.uniform(0.08, 1.0, size=(c.shape[0], 1))
    c = c * keep
    a.layers["counts"] = sp.csr_matrix(c.astype(np.float32))
    a.X = a.layers["counts"].copy()
    return a


@pytest.fixture(scope="module")
def vocab(data):
    return [g for g in data.var["ensembl_id"].tolist() if g][:N_VOCAB]


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory, vocab):
    """One tiny checkpoint per (version, weights file)."""
    root = tmp_path_factory.mktemp("geneformer")
    out = {}
    for version in ("v1", "v2"):
        for weights in ("safetensors", "bin"):
            out[version, weights] = write_tiny_geneformer(
                root / f"{version}_{weights}",
                ensembl_ids=vocab,
                version=version,
                max_len=MAX_LEN,
                weights=weights,
                seed=7,
            )
    return out


def _ctx(adata, seed=0):
    rep = validate(adata, batch_key="batch", label_key="cell_type")
    return EmbedContext(report=rep, seed=seed, batch_key="batch", label_key="cell_type")


# ------------------------------------------------------------------ loading


@pytest.mark.parametrize("version", ["v1", "v2"])
@pytest.mark.parametrize("weights", ["safetensors", "bin"])
def test_load_checkpoint(ckpts, vocab, version, weights):
    ck = load_checkpoint(ckpts[version, weights])
    assert ck.version == version
    assert ck.input_size == MAX_LEN
    assert ck.weights_file.name == (
        "model.safetensors" if weights == "safetensors" else "pytorch_model.bin"
    )
    specials = {"<pad>": 0, "<mask>": 1} | ({"<cls>": 2, "<eos>": 3} if version == "v2" else {})
    assert {k: v for k, v in ck.dicts.token.items() if k.startswith("<")} == specials
    assert len(ck.dicts.token) == ck.config["vocab_size"] == len(vocab) + len(specials)
    assert all(type(v) is int for v in ck.dicts.token.values())
    assert all(type(v) is float for v in ck.dicts.median.values())
    assert ck.dicts.mapping is not None and ck.dicts.name_id
    model = load_weights(build_bert(ck.config, seed=123), ck.state_dict(), where="test")
    state = ck.state_dict()
    emb = state["bert.embeddings.word_embeddings.weight"]
    assert torch.equal(model.bert.embeddings.word_embeddings.weight.detach(), emb)
    # the tied decoder follows the word embeddings even when the file omits it
    assert torch.equal(model.cls.predictions.decoder.weight.detach(), emb)
    assert model.config._attn_implementation == "sdpa"
    if weights == "bin":  # old-style files carry the position_ids buffer: ignored by name
        assert "bert.embeddings.position_ids" in state


def test_official_dictionary_value_types(ckpts):
    """V1 files store gene tokens as numpy int16 and medians as numpy float64 scalars."""
    folder = ckpts["v1", "safetensors"]
    with open(folder / "token_dictionary_gc30M.pkl", "rb") as fh:
        raw = pickle.load(fh)  # our own file: plain pickle is fine here
    gene = next(k for k in raw if not k.startswith("<"))
    assert isinstance(raw[gene], np.int16) and type(raw["<pad>"]) is int
    with open(folder / "gene_median_dictionary_gc30M.pkl", "rb") as fh:
        assert isinstance(next(iter(pickle.load(fh).values())), np.float64)
    tok = load_pickle_dict(folder / "token_dictionary_gc30M.pkl")
    assert type(tok[gene]) is int and tok[gene] == int(raw[gene])


def test_repo_layout(tmp_path, vocab):
    """A copy of the Hugging Face repository: dictionaries in ../geneformer/."""
    model_dir = write_tiny_geneformer(
        tmp_path, ensembl_ids=vocab[:50], version="v2", layout="repo", max_len=32
    )
    assert model_dir.name == "Geneformer-V2-104M"
    assert (tmp_path / "geneformer" / "token_dictionary_gc104M.pkl").is_file()
    v1_dir = write_tiny_geneformer(
        tmp_path, ensembl_ids=vocab[:60], version="v1", layout="repo", max_len=32
    )
    assert (tmp_path / "geneformer/gene_dictionaries_30m/token_dictionary_gc30M.pkl").is_file()
    # both series' dictionaries are reachable from each model folder: vocab_size picks
    assert load_checkpoint(model_dir).version == "v2"
    assert load_checkpoint(v1_dir).version == "v1"
    assert len(load_checkpoint(v1_dir).dicts.token) == 62


class _RunsCode:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


def test_malicious_dictionary_is_refused(tmp_path, vocab):
    folder = write_tiny_geneformer(tmp_path / "m", ensembl_ids=vocab[:20], max_len=16)
    marker = tmp_path / "pwned"
    with open(folder / "token_dictionary_gc104M.pkl", "wb") as fh:
        pickle.dump({"<pad>": 0, "x": _RunsCode(marker)}, fh)
    with pytest.raises(UnsafePickleError, match=r"refused to unpickle global"):
        load_checkpoint(folder)
    assert not marker.exists()


def test_weight_key_problems_are_reported_together(ckpts):
    ck = load_checkpoint(ckpts["v2", "safetensors"])
    state = dict(ck.state_dict())
    state.pop("bert.encoder.layer.0.attention.self.query.weight")
    state["bert.encoder.layer.9.output.dense.weight"] = torch.zeros(2, 2)
    state["bert.embeddings.LayerNorm.bias"] = torch.zeros(3)
    with pytest.raises(ModelSkippedError) as err:
        load_weights(build_bert(ck.config), state, where="x")
    text = str(err.value)
    assert "missing keys 1 [bert.encoder.layer.0.attention.self.query.weight]" in text
    assert "unexpected keys 1 [bert.encoder.layer.9.output.dense.weight]" in text
    assert "shape mismatches 1 [bert.embeddings.LayerNorm.bias" in text
    # known-harmless keys are ignored by name
    ok = dict(ck.state_dict())
    ok["bert.embeddings.position_ids"] = torch.arange(MAX_LEN)[None]
    ok["bert.pooler.dense.weight"] = torch.zeros(32, 32)
    load_weights(build_bert(ck.config), ok)


def test_version_detection_and_override(ckpts):
    with pytest.raises(ValueError, match=r"needs <cls> and <eos>"):
        load_checkpoint(ckpts["v1", "safetensors"], version="v2")
    assert load_checkpoint(ckpts["v2", "safetensors"], version="v1").version == "v1"


def test_missing_checkpoint_is_skipped(monkeypatch, tmp_path, data):
    monkeypatch.setenv("SCEVAL_HOME", str(tmp_path))
    with pytest.raises(ModelSkippedError, match=r"sceval fetch"):
        get_model("geneformer").check(data, _ctx(data))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelSkippedError, match=r"no config.json.*sceval fetch"):
        get_model("geneformer", checkpoint=str(empty)).check(data, _ctx(data))


# ------------------------------------------------------------------ tokenization


def _hand_dicts(special: bool) -> GeneformerDictionaries:
    token = {"<pad>": 0, "<mask>": 1}
    if special:
        token |= {"<cls>": 2, "<eos>": 3}
    base = len(token)
    genes = ["ENSG00000000001", "ENSG00000000002", "ENSG00000000003", "ENSG00000000004"]
    token |= {g: base + i for i, g in enumerate(genes)}
    median = dict(zip(genes, [2.0, 0.5, 1.0, 3.0], strict=True))
    return GeneformerDictionaries(token=token, median=median)


def test_tokenize_hand_worked_cell():
    """Counts (A, B, C, D, E) = (4, 2, 0, 6, 8); E is not in the vocabulary.

    n_counts = 20 (all genes, E included). Normalized / median: A 4/20*1e4/2 = 1000,
    B 2/20*1e4/0.5 = 2000, C 0 (dropped), D 6/20*1e4/3 = 1000. Descending: B, then the
    tie A = D in data order: A, D.
    """
    ids = ["ENSG00000000001", "ENSG00000000002", "ENSG00000000003", "ENSG00000000004", "E"]
    counts = np.array([[4, 2, 0, 6, 8]], dtype=np.float32)
    d1 = _hand_dicts(special=False)
    a, b, d = (d1.token[i] for i in (ids[0], ids[1], ids[3]))
    t1 = tokenize_counts(counts, ids, d1, special_tokens=False, input_size=2048)
    assert t1.cell(0).tolist() == [b, a, d]
    t1 = tokenize_counts(counts, ids, d1, special_tokens=False, input_size=2)
    assert t1.cell(0).tolist() == [b, a]  # V1 truncates to input_size genes
    d2 = _hand_dicts(special=True)
    a, b, d = (d2.token[i] for i in (ids[0], ids[1], ids[3]))
    t2 = tokenize_counts(counts, ids, d2, special_tokens=True, input_size=4096)
    assert t2.cell(0).tolist() == [2, b, a, d, 3]  # <cls> genes <eos>
    t2 = tokenize_counts(counts, ids, d2, special_tokens=True, input_size=4)
    assert t2.cell(0).tolist() == [2, b, a, 3]  # V2 keeps input_size - 2 genes
    # a zero cell: V1 nothing, V2 <cls><eos>
    zero = np.zeros((1, 5), dtype=np.float32)
    assert tokenize_counts(zero, ids, d1, special_tokens=False, input_size=8).lengths.tolist() == [
        0
    ]
    assert tokenize_counts(zero, ids, d2, special_tokens=True, input_size=8).cell(0).tolist() == [
        2,
        3,
    ]


def test_tokenize_collapses_duplicate_ids():
    """Two columns with the same Ensembl ID (one in lower case) are summed.

    A = 1 + 4 = 5 counts -> 5/6*1e4/2 = 4167 beats B = 1 -> 1/6*1e4/0.5 = 3333; without
    the sum A's first column alone (1 count, 833) would rank below B.
    """
    d = _hand_dicts(special=False)
    d = GeneformerDictionaries(
        token=d.token,
        median=d.median,
        mapping={g: g for g in d.median},
    )
    ids = ["ENSG00000000001", "ENSG00000000002", "ensg00000000001"]
    counts = np.array([[1, 1, 4]], dtype=np.float32)
    t = tokenize_counts(counts, ids, d, special_tokens=False, input_size=10)
    a, b = d.token["ENSG00000000001"], d.token["ENSG00000000002"]
    assert t.cell(0).tolist() == [a, b]


def test_tokenize_in_chunks_is_the_same(monkeypatch, ckpts, data):
    import sceval.models.geneformer as gf

    ck = load_checkpoint(ckpts["v2", "safetensors"])
    args = (data.layers["counts"], data.var["ensembl_id"].tolist(), ck.dicts)
    whole = tokenize_counts(*args, special_tokens=True, input_size=MAX_LEN)
    monkeypatch.setattr(gf, "_TOKENIZE_CHUNK", 7)
    parts = tokenize_counts(*args, special_tokens=True, input_size=MAX_LEN)
    np.testing.assert_array_equal(whole.ids, parts.ids)
    np.testing.assert_array_equal(whole.offsets, parts.offsets)


def _reference_tokens(counts, ids, dicts, special, input_size):
    """Cell-by-cell tokenization written from the official description."""
    counts = np.asarray(counts.toarray() if sp.issparse(counts) else counts, dtype=np.float64)
    cols = [j for j, g in enumerate(ids) if g in dicts.token and g in dicts.median]
    med = np.array([dicts.median[ids[j]] for j in cols])
    tok = np.array([dicts.token[ids[j]] for j in cols])
    out = []
    for row in counts:
        v = row[cols] / row.sum() * 10_000 / med
        nz = np.nonzero(v)[0]
        ranked = tok[nz][np.argsort(-v[nz], kind="stable")]
        if special:
            ranked = [dicts.token["<cls>"], *ranked[: input_size - 2], dicts.token["<eos>"]]
        else:
            ranked = list(ranked[:input_size])
        out.append(np.asarray(ranked, dtype=np.int64))
    return out


# ------------------------------------------------------------------ fidelity


def _reference_embeddings(folder, cells, version, pooling, emb_layer):
    """transformers directly: eager attention, pad-to-max, output_hidden_states."""
    import json

    from safetensors.torch import load_file
    from transformers import BertConfig, BertForMaskedLM

    cfg = json.loads((folder / "config.json").read_text())
    cfg.pop("architectures")
    model = BertForMaskedLM(BertConfig(**cfg, attn_implementation="eager"))
    model.load_state_dict(load_file(str(folder / "model.safetensors")), strict=False)
    model.tie_weights()
    model.eval()
    width = max(len(c) for c in cells)
    ids = torch.zeros((len(cells), width), dtype=torch.long)
    mask = torch.zeros((len(cells), width), dtype=torch.long)
    for i, c in enumerate(cells):
        ids[i, : len(c)] = torch.as_tensor(c)
        mask[i, : len(c)] = 1
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    n_layers = cfg["num_hidden_layers"]
    h = out.hidden_states[n_layers + emb_layer]
    lens = torch.as_tensor([len(c) for c in cells])
    if pooling == "cls":
        return h[:, 0, :].numpy()
    if version == "v2":  # official "cell" mode: drop <cls>, average len - 2 (no <eos>)
        h, lens = h[:, 1:, :], lens - 2
    keep = torch.arange(h.shape[1])[None, :] < lens[:, None]
    return ((h * keep[:, :, None]).sum(1) / lens[:, None].float()).numpy()


@pytest.mark.parametrize(
    ("version", "pooling", "emb_layer"),
    [("v1", "auto", -1), ("v2", "auto", -1), ("v2", "mean", -1), ("v1", "auto", 0)],
)
def test_embeddings_match_transformers_reference(ckpts, data, version, pooling, emb_layer):
    folder = ckpts[version, "safetensors"]
    ctx = _ctx(data)
    model = get_model(
        "geneformer", checkpoint=str(folder), pooling=pooling, emb_layer=emb_layer, batch_size=16
    )
    emb = model.embed_cells(data, ctx)
    ck = model.checkpoint()
    cells = _reference_tokens(
        data.layers["counts"],
        data.var["ensembl_id"].tolist(),
        ck.dicts,
        version == "v2",
        MAX_LEN,
    )
    toks = model.tokenize(data, ctx)
    assert [toks.cell(i).tolist() for i in range(len(toks))] == [c.tolist() for c in cells]
    lens = toks.lengths
    assert lens.min() < 40 and lens.max() == MAX_LEN  # varied lengths, some truncated
    ref_pool = "cls" if (pooling == "auto" and version == "v2") else pooling
    ref = _reference_embeddings(folder, cells, version, ref_pool, emb_layer)
    assert emb.dtype == np.float32 and emb.shape == (data.n_obs, 32)
    np.testing.assert_allclose(emb, ref, atol=1e-5, rtol=0)
    assert emb.std(axis=0).mean() > 1e-2  # cells differ: the comparison is not vacuous


def test_sorted_batching_equals_one_cell_at_a_time(ckpts, data):
    model = get_model("geneformer", checkpoint=str(ckpts["v1", "safetensors"]))
    ctx = _ctx(data)
    toks = model.tokenize(data, ctx)
    net = model._model(ctx)
    kw = {"special_tokens": False, "device": "cpu"}
    one = encode_cells(net, toks, batch_size=1, **kw)
    np.testing.assert_allclose(encode_cells(net, toks, batch_size=13, **kw), one, atol=1e-5)
    np.testing.assert_allclose(
        encode_cells(net, toks, batch_size=13, padding="max", **kw), one, atol=1e-5
    )
    np.testing.assert_allclose(model.embed_cells(data, ctx), one, atol=1e-5)


# ------------------------------------------------------------------ genes


def test_symbol_input_goes_through_ensembl_ids(ckpts, data):
    folder = str(ckpts["v2", "safetensors"])
    base = get_model("geneformer", checkpoint=folder).embed_cells(data, _ctx(data))
    sym = ad.AnnData(X=data.layers["counts"].copy(), obs=data.obs.copy())
    sym.var_names = data.var_names  # symbols only: no ensembl_id column
    sym.layers["counts"] = sym.X.copy()
    assert "ensembl_id" not in sym.var
    emb = get_model("geneformer", checkpoint=folder).embed_cells(sym, _ctx(sym))
    np.testing.assert_allclose(emb, base, atol=1e-6)
    ens = sym.copy()
    ens.var_names = [f"{g}.7" for g in data.var["ensembl_id"]]  # versioned Ensembl IDs
    emb = get_model("geneformer", checkpoint=folder).embed_cells(ens, _ctx(ens))
    np.testing.assert_allclose(emb, base, atol=1e-6)


def test_zero_overlap_raises_low_overlap_warns(tmp_path, data, vocab):
    ctx = _ctx(data)
    other = write_tiny_geneformer(
        tmp_path / "other",
        ensembl_ids=[f"ENSG{90000000000 + i:011d}" for i in range(30)],
        max_len=32,
    )
    with pytest.raises(DataContractError, match=r"none of the 300 genes match"):
        get_model("geneformer", checkpoint=str(other)).embed_cells(data, ctx)
    few = write_tiny_geneformer(tmp_path / "few", ensembl_ids=vocab[:40], max_len=32)
    with pytest.warns(UserWarning, match=r"low gene coverage: 40/300"):
        get_model("geneformer", checkpoint=str(few)).embed_cells(data, _ctx(data))


def test_embed_genes(ckpts, data, vocab):
    model = get_model("geneformer", checkpoint=str(ckpts["v2", "safetensors"]))
    ctx = _ctx(data)
    sym = data.var_names[data.var["ensembl_id"] == vocab[1]][0]
    genes = [vocab[0], "NOT_A_GENE", sym, vocab[2].lower() + ".3"]
    mat, found = model.embed_genes(genes, ctx)
    assert found.tolist() == [True, False, True, True]
    ck = model.checkpoint()
    w = ck.state_dict()["bert.embeddings.word_embeddings.weight"].numpy()
    np.testing.assert_array_equal(mat, w[[ck.dicts.token[g] for g in vocab[:3]]])


# ------------------------------------------------------------------ controls and contract


def test_random_control(ckpts, data):
    folder = str(ckpts["v2", "safetensors"])
    pre = get_model("geneformer", checkpoint=folder).embed_cells(data, _ctx(data))
    r0 = get_model("geneformer.random", checkpoint=folder).embed_cells(data, _ctx(data, 0))
    r0b = get_model("geneformer.random", checkpoint=folder).embed_cells(data, _ctx(data, 0))
    r1 = get_model("geneformer.random", checkpoint=folder).embed_cells(data, _ctx(data, 1))
    assert get_model("geneformer.random").info.kind == "control"
    assert r0.shape == pre.shape
    assert not np.allclose(r0, pre, atol=1e-3)
    np.testing.assert_array_equal(r0, r0b)
    assert not np.allclose(r0, r1, atol=1e-3)


@pytest.mark.parametrize("key", ["geneformer", "geneformer.random"])
def test_contract(ckpts, data, key):
    folder = str(ckpts["v1", "bin"])
    model = get_model(key, checkpoint=folder, batch_size=8)
    info = model.info
    assert info.input == "counts" and info.description and "transformers" in info.requires
    ctx = _ctx(data)
    model.check(data, ctx)
    emb = model.embed_cells(data, ctx)
    assert emb.shape == (data.n_obs, 32) and emb.dtype == np.float32
    assert np.all(np.isfinite(emb))
    again = get_model(key, checkpoint=folder, batch_size=5).embed_cells(data, _ctx(data))
    np.testing.assert_allclose(emb, again, atol=1e-5)


# ------------------------------------------------------------------ fine-tuning


def test_fine_tune_annotate(ckpts, data):
    folder = str(ckpts["v2", "safetensors"])
    labels = data.obs["cell_type"].astype(str).to_numpy()
    rng = np.random.default_rng(0)
    perm = rng.permutation(data.n_obs)
    train, test = perm[:100], perm[100:]
    kw = {"epochs": 2, "batch_size": 16, "patience": 1}
    p1 = get_model("geneformer", checkpoint=folder).fine_tune_annotate(
        data, labels, train, test, _ctx(data), **kw
    )
    hidden = labels.copy()
    hidden[test] = "HIDDEN"  # test labels are never read
    p2 = get_model("geneformer", checkpoint=folder).fine_tune_annotate(
        data, hidden, train, test, _ctx(data), **kw
    )
    assert p1.shape == (test.size,)
    assert set(p1) <= set(labels[train])
    np.testing.assert_array_equal(p1, p2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p3 = get_model("geneformer.random", checkpoint=folder).fine_tune_annotate(
            data, labels, train, test, _ctx(data), epochs=1, val_fraction=0.0
        )
    assert p3.shape == (test.size,)
