"""GeneCompass: dictionaries, rank-value encoding, checkpoint loading, embeddings, CLI.

Tiny random-weight checkpoints in the official layout come from
:func:`sceval.testing.genecompass.write_tiny_genecompass` (via ``write_for_adata``). The
reference forward below reads ``pytorch_model.bin`` directly: the knowledge embedding
block is written out with plain torch ops after the official
``genecompass/knowledge_embeddings.py``, the encoder is ``transformers``' own BERT encoder
(eager attention), and each cell runs alone, unpadded, as the official ``get_emb`` does.
"""

from __future__ import annotations

import json
import pickle

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from sceval._errors import DataContractError, ModelSkippedError
from sceval.data import validate
from sceval.data.simulate import simulate
from sceval.models import EmbedContext, get_model
from sceval.models._safe_load import UnsafePickleError
from sceval.models.checkpoints import get_checkpoint
from sceval.models.genecompass import (
    build_model,
    load_checkpoint,
    load_weights,
    tokenize_counts,
)
from sceval.testing import run_cli_benchmark
from sceval.testing.genecompass import write_for_adata, write_tiny_genecompass

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

MAX_LEN = 64  # genes per cell in the test checkpoints (2,048 in the release)


def _data(species, seed):
    """120 cells x 200 genes, thinned per cell so some cells are shorter than MAX_LEN."""
    a = simulate(n_cells=120, n_genes=200, n_batches=2, n_cell_types=3, species=species, seed=seed)
    rng = np.random.default_rng(seed)
    c = np.asarray(sp.csr_matrix(a.layers["counts"]).toarray())
    c = c * (rng.random(c.shape) < rng.uniform(0.05, 1.0, size=(c.shape[0], 1)))
    a.layers["counts"] = sp.csr_matrix(c.astype(np.float32))
    a.X = a.layers["counts"].copy()
    return a


@pytest.fixture(scope="module")
def human():
    return _data("human", 2)


@pytest.fixture(scope="module")
def mouse():
    return _data("mouse", 4)


@pytest.fixture(scope="module")
def ckpt_h(tmp_path_factory, human):
    return write_for_adata(tmp_path_factory.mktemp("gc_h"), human, seed=5, max_len=MAX_LEN)


@pytest.fixture(scope="module")
def ckpt_m(tmp_path_factory, mouse):
    return write_for_adata(tmp_path_factory.mktemp("gc_m"), mouse, seed=5, max_len=MAX_LEN)


def _ctx(adata, seed=0):
    rep = validate(adata, batch_key="batch", label_key="cell_type")
    return EmbedContext(report=rep, seed=seed, batch_key="batch", label_key="cell_type")


def _dicts(folder):
    with open(folder / "human_mouse_tokens.pickle", "rb") as fh:
        token = pickle.load(fh)  # our own test file
    med = {}
    for s in ("human", "mouse"):
        with open(folder / f"{s}_gene_median_after_filter.pickle", "rb") as fh:
            med.update(pickle.load(fh))
    return token, med


def _reference_tokens(adata, token, med, max_len):
    """Official preprocess.py per cell: x / median, log2(1 + x), rank desc, truncate."""
    ids = adata.var["ensembl_id"].tolist()
    x = np.asarray(sp.csr_matrix(adata.layers["counts"]).toarray(), dtype=np.float64)
    keep = [j for j, g in enumerate(ids) if g in token]
    x = x[:, keep]
    tok = np.array([token[ids[j]] for j in keep])
    m = np.array([med.get(ids[j], 1.0) for j in keep])
    v = np.log2(1 + x / m)
    cells = []
    for row in v:
        nz = np.flatnonzero(row)
        order = nz[np.argsort(-row[nz], kind="stable")][:max_len]
        cells.append((tok[order], row[order].astype(np.float32)))
    return cells


def _reference_forward(folder, cells, species):
    """Independent forward from the state dict: knowledge block by hand + HF encoder."""
    sd = torch.load(folder / "pytorch_model.bin", weights_only=True)
    cfg = json.loads((folder / "config.json").read_text())
    bcfg = transformers.BertConfig(
        **{k: v for k, v in cfg.items() if k != "architectures"}, attn_implementation="eager"
    )
    bert = transformers.BertModel(bcfg, add_pooling_layer=False)
    enc = {k[len("bert.encoder.") :]: v for k, v in sd.items() if k.startswith("bert.encoder.")}
    bert.encoder.load_state_dict(enc, strict=True)
    bert.eval()
    e = "bert.embeddings."
    alpha = float(sd["emb_warmup.alpha"])
    out = []
    with torch.no_grad():
        for ids, vals in cells:
            ids_t = torch.as_tensor(ids, dtype=torch.long)
            shifted = sd[e + "homologous_index"][ids_t] if species == 1 else ids_t
            parts = [sd[e + "word_embeddings.weight"][ids_t], torch.as_tensor(vals)[:, None]]
            for p in ("promoter", "co_exp", "gene_family", "peca_grn"):
                w = sd[f"{e}{p}_embeddings.linear1.weight"]
                b = sd[f"{e}{p}_embeddings.linear1.bias"]
                parts.append(alpha * (sd[f"{e}{p}_knowledge"][shifted] @ w.T + b))
            x = torch.cat(parts, dim=1)
            c = e + "concat_embeddings."
            x = x @ sd[c + "cat_fc.weight"].T + sd[c + "cat_fc.bias"]
            x = torch.nn.functional.layer_norm(
                x, (x.shape[-1],), sd[c + "cat_ln.weight"], sd[c + "cat_ln.bias"], 1e-5
            )
            x = x * torch.sigmoid(1.702 * x)
            x = x @ sd[c + "cat_proj.weight"].T + sd[c + "cat_proj.bias"]
            n = ids_t.shape[0]
            x = (
                x
                + sd[e + "token_type_embeddings.weight"][0]
                + sd[e + "position_embeddings.weight"][:n]
            )
            x = torch.nn.functional.layer_norm(
                x, (x.shape[-1],), sd[e + "LayerNorm.weight"], sd[e + "LayerNorm.bias"], 1e-12
            )
            x = torch.cat([sd["bert.cls_embedding.weight"][species][None], x], dim=0)[None]
            h = bert.encoder(x).last_hidden_state[0]
            out.append(h.numpy())
    return out


# ------------------------------------------------------------------ fidelity


@pytest.mark.parametrize("which", ["human", "mouse"])
def test_embeddings_match_reference(which, human, mouse, ckpt_h, ckpt_m):
    adata, folder = (human, ckpt_h) if which == "human" else (mouse, ckpt_m)
    species = 0 if which == "human" else 1
    token, med = _dicts(folder)
    cells = _reference_tokens(adata, token, med, MAX_LEN)
    ref = np.stack([h[0] for h in _reference_forward(folder, cells, species)])
    model = get_model("genecompass", checkpoint=str(folder), batch_size=8)
    ctx = _ctx(adata)
    emb = model.embed_cells(adata, ctx)
    toks = model.tokenize(adata, ctx)
    assert toks.species == species
    for i in (0, 5, 77):
        a, b = toks.offsets[i], toks.offsets[i + 1]
        np.testing.assert_array_equal(toks.ids[a:b], cells[i][0])
        np.testing.assert_allclose(toks.values[a:b], cells[i][1], rtol=1e-6)
    assert toks.lengths.max() == MAX_LEN and toks.lengths.min() < MAX_LEN // 2
    if which == "mouse":  # the homologue remap is exercised: some mouse tokens move
        sd = torch.load(folder / "pytorch_model.bin", weights_only=True)
        hom = sd["bert.embeddings.homologous_index"].numpy()
        assert (hom[toks.ids] != toks.ids).any()
    np.testing.assert_allclose(emb, ref, atol=1e-5, rtol=1e-5)
    assert np.abs(emb - ref).max() < 1e-5


def test_species_cls_and_homologues_matter(mouse, ckpt_m):
    """Forcing mouse cells through as human (no remap, human <cls>) changes them."""
    e_m = get_model("genecompass", checkpoint=str(ckpt_m)).embed_cells(mouse, _ctx(mouse))
    token, med = _dicts(ckpt_m)
    cells = _reference_tokens(mouse, token, med, MAX_LEN)[:3]
    as_human = np.stack([h[0] for h in _reference_forward(ckpt_m, cells, 0)])
    assert not np.allclose(e_m[:3], as_human, atol=1e-3)


def test_chunking_and_batching_do_not_change_embeddings(human, ckpt_h):
    one = get_model("genecompass", checkpoint=str(ckpt_h), batch_size=1)
    many = get_model("genecompass", checkpoint=str(ckpt_h), batch_size=32, chunk_size=50)
    np.testing.assert_allclose(
        many.embed_streaming(human, _ctx(human)), one.embed_cells(human, _ctx(human)), atol=1e-5
    )


def test_embed_genes_are_token_outputs(human, ckpt_h):
    model = get_model("genecompass", checkpoint=str(ckpt_h))
    genes = [*human.var_names[:4].tolist(), "ENSG00000000000", "NOT_A_GENE"]
    mat, found = model.embed_genes(genes, _ctx(human))
    assert found.tolist() == [True] * 4 + [False, False] and mat.shape == (4, 32)
    token, _ = _dicts(ckpt_h)
    ids = human.var["ensembl_id"].tolist()[:4]
    ref = _reference_forward(
        ckpt_h, [(np.array([token[g]]), np.ones(1, np.float32)) for g in ids], 0
    )
    np.testing.assert_allclose(mat, np.stack([h[1] for h in ref]), atol=1e-5)


def test_random_control_is_seeded_keeps_priors(human, ckpt_h):
    pre = get_model("genecompass", checkpoint=str(ckpt_h)).embed_cells(human, _ctx(human))
    r0 = get_model("genecompass.random", checkpoint=str(ckpt_h))
    e0 = r0.embed_cells(human, _ctx(human, seed=0))
    e0b = get_model("genecompass.random", checkpoint=str(ckpt_h)).embed_cells(human, _ctx(human))
    e1 = get_model("genecompass.random", checkpoint=str(ckpt_h)).embed_cells(
        human, _ctx(human, seed=1)
    )
    np.testing.assert_array_equal(e0, e0b)
    assert not np.allclose(e0, e1) and not np.allclose(e0, pre)
    sd = torch.load(ckpt_h / "pytorch_model.bin", weights_only=True)
    net = next(iter(r0._models.values()))
    assert torch.equal(net.embeddings.promoter_knowledge, sd["bert.embeddings.promoter_knowledge"])
    assert not torch.equal(
        net.embeddings.word_embeddings.weight, sd["bert.embeddings.word_embeddings.weight"]
    )


# ------------------------------------------------------------------ tokenization


def test_tokenize_hand_worked_cells():
    # genes:        g0   g1   g2   g3(not in vocab)  g4
    tokens = np.array([10, 11, 12, -1, 14])
    medians = np.array([1.0, 3.0, 0.5, 1.0, 2.0])
    counts = np.array(
        [
            [1, 3, 0, 50, 6],  # values 1, 1, -, -, 3 -> g4 (log2 4 = 2), then tie g0/g1 = 1
            [0, 0, 0, 9, 0],  # only an unmatched gene: empty
            [3, 0, 1, 0, 2],  # 3, -, 2, -, 1 -> g0 (2), g2 (log2 3), g4 (1)
        ],
        dtype=np.float32,
    )
    t = tokenize_counts(counts, tokens, medians, max_genes=10)
    assert t.lengths.tolist() == [3, 0, 3]
    assert t.ids[:3].tolist() == [14, 10, 11] and t.ids[3:].tolist() == [10, 12, 14]
    np.testing.assert_allclose(t.values, [2, 1, 1, 2, np.log2(3), 1], rtol=1e-6)
    assert t.values.dtype == np.float32
    t2 = tokenize_counts(sp.csr_matrix(counts), tokens, medians, max_genes=2)
    assert t2.lengths.tolist() == [2, 0, 2] and t2.ids.tolist() == [14, 10, 10, 12]
    # the commented-out total-count step: cell 0 total over matched genes = 10
    t3 = tokenize_counts(counts, tokens, medians, normalize_total=True)
    np.testing.assert_allclose(t3.values[:3], np.log2(1 + np.array([3, 1, 1]) * 1e3))
    with pytest.raises(ValueError, match=r"counts have 5 genes but 4 tokens and 5 medians"):
        tokenize_counts(counts, tokens[:4], medians)
    with pytest.raises(ValueError, match=r"gene medians must be positive"):
        tokenize_counts(counts, tokens, np.zeros(5))


# ------------------------------------------------------------------ loading


def test_load_official_layouts(ckpt_h, tmp_path, human):
    ck = load_checkpoint(ckpt_h)
    assert ck.pad_id == 0 and ck.max_genes == MAX_LEN
    assert len(ck.token) == ck.config["vocab_size"]
    assert set(ck.medians) == {"human", "mouse"}
    assert ck.species_tokens("human") and ck.species_tokens("mouse")
    assert not set(ck.species_tokens("human")) & set(ck.species_tokens("mouse"))
    state = ck.state_dict()
    for k in (
        "bert.embeddings.peca_grn_knowledge",
        "bert.embeddings.homologous_index",
        "bert.cls_embedding.weight",
        "cls4value.predictions.decoder.weight",
        "emb_warmup.alpha",
    ):
        assert k in state
    net = load_weights(
        build_model(
            ck.config, prior_dims={"promoter": 24, "co_exp": 20, "gene_family": 16, "peca_grn": 12}
        ),
        state,
        where="test",
    )
    assert torch.equal(
        net.embeddings.word_embeddings.weight, state["bert.embeddings.word_embeddings.weight"]
    )
    assert net.config._attn_implementation == "sdpa"
    # the repository layout: pretrained_models/GeneCompass_Base + prior_knowledge/(public/)
    ids = human.var["ensembl_id"].tolist()
    repo = write_tiny_genecompass(tmp_path / "repo", human_ids=ids, layout="repo")
    assert repo.name == "GeneCompass_Base"
    ck2 = load_checkpoint(repo)
    assert ck2.files["token"].parent.name == "prior_knowledge"
    assert ck2.files["median.human"].parent.name == "public"
    for name in ("genecompass.base", "genecompass.small"):
        spec = get_checkpoint(name)
        assert spec.manual and "pytorch_model.bin" in {f.name for f in spec.files}


def test_missing_checkpoint_is_skipped(monkeypatch, tmp_path, human):
    monkeypatch.setenv("SCEVAL_HOME", str(tmp_path))
    with pytest.raises(ModelSkippedError, match=r"sceval fetch genecompass\.base"):
        get_model("genecompass").check(human, _ctx(human))


def test_malicious_token_dictionary_is_refused(tmp_path, human):
    folder = write_tiny_genecompass(tmp_path / "m", human_ids=human.var["ensembl_id"].tolist())

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    with open(folder / "human_mouse_tokens.pickle", "wb") as fh:
        pickle.dump({"<pad>": 0, "x": Evil()}, fh)
    with pytest.raises(UnsafePickleError, match=r"refused to unpickle global builtins\.print"):
        load_checkpoint(folder)


# ------------------------------------------------------------------ bad inputs


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_checkpoint_from_another_config(tmp_path, human):
    ids = human.var["ensembl_id"].tolist()[:30]
    folder = write_tiny_genecompass(tmp_path / "m", human_ids=ids, hidden=32)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["hidden_size"] = 48
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(
        ModelSkippedError,
        match=r"shape mismatches \d+ \[bert\.embeddings\.word_embeddings\.weight: checkpoint "
        r"\(32, 32\) vs config \(32, 48\).*Fix: use the config\.json saved with these weights",
    ):
        get_model("genecompass", checkpoint=str(folder)).embed_cells(human, _ctx(human))
    cfg["hidden_size"], cfg["use_gene_family"] = 32, False
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(
        ModelSkippedError,
        match=r"unexpected keys 3 \[bert\.embeddings\.gene_family_embeddings\.linear1\.weight, .*"
        r"gene_family_knowledge\]; shape mismatches 1 \[bert\.embeddings\.concat_embeddings\."
        r"cat_fc\.weight: checkpoint \(32, 161\) vs config \(32, 129\)\]",
    ):
        get_model("genecompass", checkpoint=str(folder)).embed_cells(human, _ctx(human))


def test_token_dictionary_of_the_wrong_length(tmp_path, human):
    ids = human.var["ensembl_id"].tolist()[:30]
    folder = write_tiny_genecompass(tmp_path / "m", human_ids=ids)
    with open(folder / "human_mouse_tokens.pickle", "wb") as fh:
        pickle.dump({"<pad>": 0, "<mask>": 1, ids[0]: 2}, fh)
    with pytest.raises(
        ModelSkippedError,
        match=r"have \[3\] tokens, but config\.json says vocab_size=32.*Fix: use the token "
        r"dictionary the checkpoint was trained with",
    ):
        load_checkpoint(folder)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_zero_gene_overlap(tmp_path, human):
    folder = write_tiny_genecompass(tmp_path / "m", human_ids=["ENSG00000999999"])
    with pytest.raises(DataContractError, match=r"none of the 200 genes match its vocabulary"):
        get_model("genecompass", checkpoint=str(folder)).embed_cells(human, _ctx(human))


def test_species_without_tokens(tmp_path, human, mouse):
    folder = write_tiny_genecompass(tmp_path / "m", human_ids=human.var["ensembl_id"].tolist())
    with pytest.raises(
        ModelSkippedError,
        match=r"has no mouse tokens \(ENSMUSG\.\.\.\); it has tokens for \['human'\]",
    ):
        get_model("genecompass", checkpoint=str(folder)).embed_cells(mouse, _ctx(mouse))
    with pytest.raises(ValueError, match=r"species='rat' is not supported; GeneCompass has tokens"):
        get_model("genecompass", species="rat")


def test_config_without_cls_token(tmp_path, human):
    folder = write_tiny_genecompass(tmp_path / "m", human_ids=["ENSG00000999999"])
    cfg = json.loads((folder / "config.json").read_text())
    cfg["use_cls_token"] = False
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelSkippedError, match=r"use_cls_token=False.*species <cls> token"):
        load_checkpoint(folder)


# ------------------------------------------------------------------ CLI


def test_cli_run(tmp_path, human, ckpt_h):

    path = tmp_path / "d.h5ad"
    human.write_h5ad(path)
    out = tmp_path / "out"
    r = run_cli_benchmark(path, "genecompass", ckpt_h, out)
    assert r.exit_code == 0, r.output
    res = pd.read_csv(out / "results.csv")
    assert set(res["model"]) == {"genecompass", "genecompass.random"}
    assert (res["status"] == "ok").all(), res["message"].unique()
    assert res["message"].str.contains("gene coverage: 200/200").all()
