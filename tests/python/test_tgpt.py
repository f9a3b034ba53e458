"""tGPT: tokenizer, sentences, checkpoint loading, embeddings against a reference, CLI.

Tiny random-weight checkpoints in the official layout come from
:func:`sceval.testing.tgpt.write_tiny_tgpt`. The reference tokenizes with the
``tokenizers`` library itself (the official ``PreTrainedTokenizerFast`` is a wrapper of it)
and runs ``transformers``' ``GPT2LMHeadModel(...).transformer`` with eager attention, one
cell at a time, then averages ``last_hidden_state[1:eos]`` as the official README does.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from sceval._errors import DataContractError, ModelSkippedError
from sceval.data import validate
from sceval.models import EmbedContext, get_model
from sceval.models.checkpoints import get_checkpoint
from sceval.models.tgpt import (
    build_gpt2,
    gene_token_ids,
    load_checkpoint,
    load_weights,
    read_tokenizer,
    tokenize_counts,
)
from sceval.testing import run_cli_benchmark, small_dataset
from sceval.testing.tgpt import write_tiny_tgpt

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

#: Genes renamed so that ``-`` and ``.`` occur (the vocabulary spells them ``_``).
RENAMED = {0: "HLA-DRA", 1: "RP11-34P13.7", 2: "MT-CO1", 3: "AC009.2"}
#: Genes of the data left out of the vocabulary (they become ``<unk>``).
N_OUT = 20


@pytest.fixture(scope="module")
def data():
    """150 cells x 200 genes, thinned per cell so sentence lengths vary (3 to ~200 genes)."""
    a = small_dataset(n_cells=150, n_genes=200, n_batches=2, n_cell_types=3, seed=5)
    rng = np.random.default_rng(1)
    c = np.asarray(sp.csr_matrix(a.layers["counts"]).toarray())
    c = c * (rng.random(c.shape) < rng.uniform(0.02, 1.0, size=(c.shape[0], 1)))
    a.layers["counts"] = sp.csr_matrix(c.astype(np.float32))
    a.X = a.layers["counts"].copy()
    names = a.var_names.tolist()
    for i, n in RENAMED.items():
        names[i] = n
    a.var_names = names
    a.var["gene_symbol"] = names
    return a


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, data):
    folder = tmp_path_factory.mktemp("tgpt") / "model"
    return write_tiny_tgpt(folder, symbols=data.var_names.tolist()[:-N_OUT], seed=3)


def _ctx(adata, seed=0):
    rep = validate(adata, batch_key="batch", label_key="cell_type")
    return EmbedContext(report=rep, seed=seed, batch_key="batch", label_key="cell_type")


def _sentences(adata, keep_unknown=True, vocab=None):
    """The official input lines: symbols by count (descending, stable), ``[-.]`` -> ``_``."""
    x = np.asarray(sp.csr_matrix(adata.layers["counts"]).toarray())
    names = np.array(adata.var_names.tolist(), dtype=object)
    lines = []
    for row in x:
        order = np.argsort(-row, kind="stable")
        genes = [re.sub(r"\-|\.", "_", g) for g in names[order[row[order] > 0]]]
        if not keep_unknown:
            genes = [g for g in genes if g in vocab]
        lines.append(" ".join(genes))
    return lines


def _reference(folder, lines, max_length=64):
    """Official-style features: HF tokenizer + GPT2LMHeadModel.transformer, one cell each."""
    tok = tokenizers.Tokenizer.from_file(str(folder / "tokenizer.json"))
    tok.enable_truncation(max_length=max_length)
    cfg = json.loads((folder / "config.json").read_text())
    cfg.pop("architectures")
    model = transformers.GPT2LMHeadModel(
        transformers.GPT2Config(**cfg, attn_implementation="eager")
    )
    state = torch.load(folder / "pytorch_model.bin", weights_only=True)
    state = {k: v for k, v in state.items() if not re.search(r"\.attn\.(bias|masked_bias)$", k)}
    model.load_state_dict(state, strict=True)
    gpt = model.transformer.eval()
    out = []
    with torch.no_grad():
        for line in lines:
            ids = torch.tensor([tok.encode(line).ids])
            hidden = gpt(input_ids=ids, output_hidden_states=True).last_hidden_state[0]
            eos = ids.shape[1] - 1
            out.append(hidden[1:eos].mean(0).numpy() if eos > 1 else np.zeros(hidden.shape[1]))
    return np.stack(out).astype(np.float32), tok


# ------------------------------------------------------------------ fidelity


@pytest.mark.parametrize("unknown", ["unk", "drop"])
def test_embeddings_match_reference(ckpt, data, unknown):
    vocab = read_tokenizer(ckpt / "tokenizer.json").token
    lines = _sentences(data, keep_unknown=unknown == "unk", vocab=vocab)
    ref, tok = _reference(ckpt, lines)
    model = get_model("tgpt", checkpoint=str(ckpt), unknown_genes=unknown, batch_size=16)
    emb = model.embed_cells(data, _ctx(data))
    # same tokens as the official tokenizer, cell by cell
    toks = model.tokenize(data, _ctx(data))
    for i in (0, 7, 42):
        assert toks.cell(i).tolist() == tok.encode(lines[i]).ids
    if unknown == "unk":
        assert (toks.ids == 3).any()  # genes outside the vocabulary are <unk>, as upstream
    assert toks.lengths.max() == 64 and toks.lengths.min() < 30
    np.testing.assert_allclose(emb, ref, atol=1e-5, rtol=1e-5)
    assert np.abs(emb - ref).max() < 1e-5


def test_batching_and_chunking_do_not_change_embeddings(ckpt, data):
    one = get_model("tgpt", checkpoint=str(ckpt), batch_size=1).embed_cells(data, _ctx(data))
    many = get_model("tgpt", checkpoint=str(ckpt), batch_size=64, chunk_size=40)
    np.testing.assert_allclose(many.embed_streaming(data, _ctx(data)), one, atol=1e-5)


def test_random_control_is_seeded_and_differs(ckpt, data):
    ctx = _ctx(data)
    pre = get_model("tgpt", checkpoint=str(ckpt)).embed_cells(data, ctx)
    r0 = get_model("tgpt.random", checkpoint=str(ckpt)).embed_cells(data, _ctx(data, seed=0))
    r0b = get_model("tgpt.random", checkpoint=str(ckpt)).embed_cells(data, _ctx(data, seed=0))
    r1 = get_model("tgpt.random", checkpoint=str(ckpt)).embed_cells(data, _ctx(data, seed=1))
    np.testing.assert_array_equal(r0, r0b)
    assert not np.allclose(r0, r1) and not np.allclose(r0, pre)


# ------------------------------------------------------------------ tokenization


def test_gene_tokens_match_the_tokenizers_library(ckpt):
    vocab = read_tokenizer(ckpt / "tokenizer.json")
    tok = tokenizers.Tokenizer.from_file(str(ckpt / "tokenizer.json"))
    for sym in ("HLA-DRA", "RP11-34P13.7", "MT-CO1", "AC009.2", "NOTAGENE", "A/B-C", "X'1"):
        want = tok.encode(re.sub(r"\-|\.", "_", sym)).ids[1:-1]
        assert gene_token_ids(sym, vocab) == want, sym
    assert gene_token_ids("HLA-DRA", vocab) == [vocab.token["HLA_DRA"]]
    assert gene_token_ids("", vocab) == []


def test_tokenize_hand_worked_cells():
    # genes:      G0  G1  G2  G3       G4 (two words)  G5 (no symbol)
    tokens = [[10], [11], [12], [3], [14, 15], []]
    counts = np.array(
        [
            [5, 0, 5, 9, 1, 100],  # G3 9, then tie G0/G2 in gene order, then G4; G5 left out
            [0, 0, 0, 0, 0, 7],  # nothing writable: </b> </s>
            [1, 2, 3, 4, 5, 0],  # G4 G3 G2 G1 G0, cut after 4 tokens: 14 15 3 12
        ],
        dtype=np.float32,
    )
    t = tokenize_counts(counts, tokens, bos_id=1, eos_id=2, max_length=6)
    assert t.cell(0).tolist() == [1, 3, 10, 12, 14, 2]  # 4 body tokens: 15 is cut
    assert t.cell(1).tolist() == [1, 2]
    assert t.cell(2).tolist() == [1, 14, 15, 3, 12, 2]
    t = tokenize_counts(sp.csr_matrix(counts), tokens, bos_id=1, eos_id=2, max_length=64)
    assert t.cell(0).tolist() == [1, 3, 10, 12, 14, 15, 2]
    with pytest.raises(ValueError, match=r"max_length=2 leaves no room for genes"):
        tokenize_counts(counts, tokens, bos_id=1, eos_id=2, max_length=2)
    with pytest.raises(ValueError, match=r"counts have 6 genes but token ids were given for 5"):
        tokenize_counts(counts, tokens[:5], bos_id=1, eos_id=2)


# ------------------------------------------------------------------ loading


def test_load_official_layout(ckpt, tmp_path, data):
    ck = load_checkpoint(ckpt)
    v = ck.vocab
    assert (v.pad_id, v.bos_id, v.eos_id, v.unk_id) == (0, 1, 2, 3)
    assert "HLA_DRA" in v.token and "RP11_34P13_7" in v.token
    assert len(v) == ck.config["vocab_size"] and ck.max_length == 64
    state = ck.state_dict()
    assert "lm_head.weight" in state and "transformer.h.0.attn.bias" in state
    model = load_weights(build_gpt2(ck.config, seed=9), state, where="test")
    assert torch.equal(model.wte.weight.detach(), state["transformer.wte.weight"])
    assert model.config._attn_implementation == "sdpa"
    # safetensors and a Hugging Face folder name (sentence length 128) load too
    hf = write_tiny_tgpt(
        tmp_path / "transcriptome-gpt-1024-8-16-128",
        symbols=data.var_names.tolist(),
        weights="safetensors",
    )
    ck2 = load_checkpoint(hf)
    assert ck2.weights_file.name == "model.safetensors" and ck2.max_length == 128
    spec = get_checkpoint("tgpt")
    assert {f.name for f in spec.files} >= {"config.json", "pytorch_model.bin", "tokenizer.json"}
    assert "lixiangchun/transcriptome-gpt-1024-8-16-64" in spec.files[0].url


def test_missing_checkpoint_is_skipped(monkeypatch, tmp_path, data):
    monkeypatch.setenv("SCEVAL_HOME", str(tmp_path))
    model = get_model("tgpt")
    with pytest.raises(ModelSkippedError, match=r"sceval fetch tgpt"):
        model.check(data, _ctx(data))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelSkippedError, match=r"lacks \['config.json', 'tokenizer.json'"):
        load_checkpoint(tmp_path / "empty")


# ------------------------------------------------------------------ bad inputs


def test_checkpoint_from_another_config(ckpt, tmp_path):
    folder = write_tiny_tgpt(tmp_path / "other", symbols=["A", "B", "C"], hidden=32)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["n_embd"] = 48
    (folder / "config.json").write_text(json.dumps(cfg))
    ck = load_checkpoint(folder)
    with pytest.raises(
        ModelSkippedError,
        match=r"shape mismatches 28 .*transformer\.h\.0\.attn\.c_attn\.weight: checkpoint "
        r"\(32, 96\) vs config \(48, 144\).*Fix: use the config\.json saved with these weights",
    ):
        load_weights(build_gpt2(ck.config), ck.state_dict(), where="x")
    cfg["n_embd"], cfg["n_layer"] = 32, 3
    (folder / "config.json").write_text(json.dumps(cfg))
    ck = load_checkpoint(folder)
    with pytest.raises(ModelSkippedError, match=r"missing keys \d+ \[transformer\.h\.2\."):
        load_weights(build_gpt2(ck.config), ck.state_dict(), where="x")


def test_tokenizer_of_the_wrong_length(tmp_path):
    folder = write_tiny_tgpt(tmp_path / "m", symbols=["A", "B", "C"])
    tok = json.loads((folder / "tokenizer.json").read_text())
    del tok["model"]["vocab"]["C"]
    (folder / "tokenizer.json").write_text(json.dumps(tok))
    with pytest.raises(
        ModelSkippedError,
        match=r"has 6 tokens \(ids up to 5\), but config\.json says vocab_size=7.*Fix: use "
        r"the tokenizer\.json saved with these weights",
    ):
        load_checkpoint(folder)
    tok["model"] = {"type": "BPE", "vocab": {}}
    (folder / "tokenizer.json").write_text(json.dumps(tok))
    with pytest.raises(ModelSkippedError, match=r"expected a 'WordLevel' model"):
        load_checkpoint(folder)


def test_zero_gene_overlap(tmp_path, data):
    folder = write_tiny_tgpt(tmp_path / "m", symbols=["NOPE1", "NOPE2"])
    with pytest.raises(DataContractError, match=r"none of the 200 genes match its vocabulary"):
        get_model("tgpt", checkpoint=str(folder)).embed_cells(data, _ctx(data))


def test_bad_parameters(ckpt, data):
    with pytest.raises(ValueError, match=r"unknown_genes must be one of \('unk', 'drop'\)"):
        get_model("tgpt", checkpoint=str(ckpt), unknown_genes="skip")
    with pytest.raises(ValueError, match=r"max_length=2000 is outside \[3, 1024\]"):
        get_model("tgpt", checkpoint=str(ckpt), max_length=2000).check(data, _ctx(data))


# ------------------------------------------------------------------ CLI


def test_cli_run(tmp_path, data):

    a = data[:120].copy()
    path = tmp_path / "d.h5ad"
    a.write_h5ad(path)
    folder = write_tiny_tgpt(tmp_path / "ck", symbols=a.var_names.tolist())
    out = tmp_path / "out"
    r = run_cli_benchmark(path, "tgpt", folder, out)
    assert r.exit_code == 0, r.output
    res = pd.read_csv(out / "results.csv")
    assert set(res["model"]) == {"tgpt", "tgpt.random"}
    assert (res["status"] == "ok").all(), res["message"].unique()
    assert res["message"].str.contains("gene coverage: 200/200").all()
