"""UCE: official layout loading, cell sentences, numerical fidelity, bad inputs, CLI.

Tiny random-weight checkpoints in the official ``model_files`` layout stand in for the
released ones (no weights are available offline). The reference forward below re-builds
the official ``TransformerModel`` (snap-stanford/UCE ``model.py``) from ``torch.nn``
modules and runs it as ``evaluate.py`` ``run_eval`` does (sequence-first tensors, float
``1 - mask`` key padding mask); it shares no code with ``sceval.models.uce``.
"""

from __future__ import annotations

import math
import pickle

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")

from torch import nn  # noqa: E402

from sceval._errors import DataContractError, ModelSkippedError  # noqa: E402
from sceval.data import validate  # noqa: E402
from sceval.models import EmbedContext, get_model  # noqa: E402
from sceval.models._safe_load import UnsafePickleError  # noqa: E402
from sceval.models.checkpoints import get_checkpoint  # noqa: E402
from sceval.models.uce import (  # noqa: E402
    UCECheckpointError,
    UCESpeciesError,
    UCETokenizer,
    _read_chrom,
    build_tokenizer,
    load_uce,
)
from sceval.testing import run_cli_benchmark, small_dataset  # noqa: E402
from sceval.testing.uce import write_for_adata, write_tiny_uce  # noqa: E402

SAMPLE = 96  # genes per cell in most tests (official 1,024; the cost is quadratic)


@pytest.fixture(scope="module")
def data():
    return small_dataset(n_cells=120, n_genes=200, n_batches=2, n_cell_types=3, seed=3)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, data):
    folder = tmp_path_factory.mktemp("uce")
    genes = {"human": [*data.var_names, "EXTRA1", "EXTRA2"], "mouse": ["Actb", "Cd3e"]}
    return write_tiny_uce(folder, genes=genes, nlayers=3, seed=5)


def _ctx(adata, seed=0, offset=0):
    rep = validate(adata, batch_key="batch", label_key="cell_type")
    return EmbedContext(
        report=rep, seed=seed, batch_key="batch", label_key="cell_type", cell_offset=offset
    )


def _embed(adata, folder, key="uce", seed=0, **params):
    params.setdefault("sample_size", SAMPLE)
    return get_model(key, checkpoint=str(folder), **params).embed_cells(adata, _ctx(adata, seed))


# ------------------------------------------------------------------ independent reference


def _reference_model(state, token_dim, d_model, d_hid, nlayers, output_dim):
    """``model.py`` ``TransformerModel`` rebuilt from torch.nn, loaded strictly."""

    def full_block(i, o):
        return nn.Sequential(nn.Linear(i, o), nn.LayerNorm(o), nn.GELU(), nn.Dropout(0.05))

    class Pos(nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("pe", torch.zeros(1536, 1, d_model))

    m = nn.Module()
    m.pos_encoder = Pos()
    m.encoder = nn.Sequential(nn.Linear(token_dim, d_model), nn.GELU(), nn.LayerNorm(d_model))
    layer = nn.TransformerEncoderLayer(d_model, 20, d_hid, 0.05)
    m.transformer_encoder = nn.TransformerEncoder(layer, nlayers, enable_nested_tensor=False)
    m.decoder = nn.Sequential(
        full_block(d_model, 1024),
        full_block(1024, output_dim),
        full_block(output_dim, output_dim),
        nn.Linear(output_dim, output_dim),
    )
    m.binary_decoder = nn.Sequential(
        full_block(output_dim + 1280, 2048),
        full_block(2048, 512),
        full_block(512, 128),
        nn.Linear(128, 1),
    )
    m.gene_embedding_layer = nn.Sequential(
        nn.Linear(token_dim, d_model), nn.GELU(), nn.LayerNorm(d_model)
    )
    m.pe_embedding = nn.Embedding.from_pretrained(torch.zeros(state["pe_embedding.weight"].shape))
    m.load_state_dict(state, strict=True)
    return m.eval()


def _reference_forward(m, batch_sentences, mask):
    """``run_eval`` + ``TransformerModel.forward`` on one collated batch."""
    d_model = m.encoder[0].out_features
    with torch.no_grad():
        x = m.pe_embedding(batch_sentences.permute(1, 0).long())
        x = nn.functional.normalize(x, dim=2)
        src = m.encoder(x) * math.sqrt(d_model)
        src = src + m.pos_encoder.pe[: src.size(0)]
        out = m.transformer_encoder(src, src_key_padding_mask=(1 - mask))
        gene_output = m.decoder(out)
        return nn.functional.normalize(gene_output[0, :, :], dim=1).numpy()


def _collate(sentences):
    """``MultiDatasetSentenceCollator``: pad with 0 to the batch's longest, float mask."""
    longest = max(s.size for s in sentences)
    toks = torch.zeros((len(sentences), longest))
    mask = torch.zeros((len(sentences), longest))
    for i, s in enumerate(sentences):
        toks[i, : s.size] = torch.from_numpy(s.astype(np.float32))
        mask[i, : s.size] = 1
    return toks, mask


def _official_sentence(counts, dataset_idxs, chroms, starts, sample_size, chrom_offset, rng):
    """``sample_cell_sentences`` for one cell, with ``rng`` in place of ``np.random``."""
    weights = np.log1p(counts)
    weights = weights / weights.sum()
    choice_idx = rng.choice(np.arange(len(weights)), size=sample_size, p=weights, replace=True)
    choice_idx = choice_idx[np.argsort(chroms[choice_idx], kind="stable")]
    new_chrom = chroms[choice_idx]
    choosen_starts = starts[choice_idx]
    out = [3]
    uq_chroms = np.unique(new_chrom)
    rng.shuffle(uq_chroms)
    for chrom in uq_chroms:
        out.append(int(chrom) + chrom_offset)
        loc = np.where(new_chrom == chrom)[0]
        to_add = choice_idx[loc[np.argsort(choosen_starts[loc], kind="stable")]]
        out.extend(dataset_idxs[to_add].tolist())
        out.append(2)
    return np.array(out)


def _reference_tokens(adata, folder, species="human"):
    """Token rows, chromosome codes and starts per gene the official way
    (``adata_path_to_prot_chrom_starts`` and ``get_spec_chrom_csv``)."""
    pe_file = {
        "human": "Homo_sapiens.GRCh38.gene_symbol_to_embedding_ESM2.pt",
        "mouse": "Mus_musculus.GRCm39.gene_symbol_to_embedding_ESM2.pt",
    }[species]
    pe = torch.load(folder / "protein_embeddings" / pe_file, weights_only=True)
    spec_pe_genes = [k.upper() for k in pe]
    with open(folder / "species_offsets.pkl", "rb") as fh:
        offset = pickle.load(fh)[species]  # our own test file
    csv = pd.read_csv(folder / "species_chrom.csv")
    csv["spec_chrom"] = pd.Categorical(csv["species"] + "_" + csv["chromosome"].astype(str))
    spec = csv[csv["species"] == species].set_index("gene_symbol")
    names = [k.upper() for k in adata.var_names]
    idxs = np.array([spec_pe_genes.index(k) + offset for k in names])
    gene_chrom = spec.loc[names]
    n_chrom = len(csv["spec_chrom"].cat.categories)
    return (
        idxs,
        gene_chrom["spec_chrom"].cat.codes.to_numpy(),
        gene_chrom["start"].to_numpy(),
        n_chrom,
    )


# ------------------------------------------------------------------ fidelity


def test_sentences_equal_official_sampling(data, ckpt):
    loaded = load_uce(ckpt)
    tok, _, _ = build_tokenizer(
        data, _ctx(data).report, loaded, "human", sample_size=SAMPLE, seed=7
    )
    idxs, chroms, starts, n_chrom = _reference_tokens(data, ckpt)
    n_rows = torch.load(ckpt / "4layer_model.torch", weights_only=True)[
        "pe_embedding.weight"
    ].shape[0]
    assert loaded.chrom_offset == n_rows - n_chrom
    counts = data.layers["counts"].toarray()
    for i in range(20):
        rng = np.random.default_rng((7, i))
        nz = np.flatnonzero(counts[i])  # zero-weight genes are never drawn
        ref = _official_sentence(
            counts[i, nz], idxs[nz], chroms[nz], starts[nz], SAMPLE, loaded.chrom_offset, rng
        )
        np.testing.assert_array_equal(tok.sentence(i), ref)


def test_embedding_equals_reference_forward(data, ckpt):
    sub = data[:10].copy()
    state = torch.load(ckpt / "4layer_model.torch", weights_only=True)
    ref_model = _reference_model(state, 32, 40, 64, 3, 24)
    loaded = load_uce(ckpt)
    tok, _, _ = build_tokenizer(sub, _ctx(sub).report, loaded, "human", sample_size=1024, seed=0)
    sentences = tok.sentences()
    # a batch of one cell has no padding: the official output, cell by cell
    ref = np.concatenate([_reference_forward(ref_model, *_collate([s])) for s in sentences])
    ours = _embed(sub, ckpt, sample_size=1024, batch_size=4)
    assert np.abs(ours - ref).max() < 1e-5
    # padding="official": consecutive batches with the float padding mask (+1 on padding);
    # 48 genes per cell leave some chromosomes out, so sentence lengths differ
    tok, _, _ = build_tokenizer(sub, _ctx(sub).report, loaded, "human", sample_size=48, seed=0)
    sentences = tok.sentences()
    assert len({s.size for s in sentences}) > 1
    ref_b = np.concatenate(
        [_reference_forward(ref_model, *_collate(sentences[i : i + 4])) for i in range(0, 10, 4)]
    )
    ours_b = _embed(sub, ckpt, sample_size=48, batch_size=4, padding="official")
    assert np.abs(ours_b - ref_b).max() < 1e-5
    ref_1 = np.concatenate([_reference_forward(ref_model, *_collate([s])) for s in sentences])
    ours_1 = _embed(sub, ckpt, sample_size=48, batch_size=4)
    assert np.abs(ours_1 - ref_1).max() < 1e-5
    assert np.abs(ours_b - ref_1).max() > 1e-6  # the official padding changes the numbers


# ------------------------------------------------------------------ cell sentences


def test_hand_worked_sentence():
    """Three genes on two chromosomes: structure, order and weights of the sentence."""
    import scipy.sparse as sp

    counts = sp.csr_matrix(np.array([[5.0, 0.0, 1.0, 2.0]]))
    tokens = np.array([10, 11, 12, 13])
    chroms = np.array([0, 0, 1, 0])  # genes 0, 1, 3 on chromosome 0; gene 2 on chromosome 1
    starts = np.array([300.0, 100.0, 50.0, 200.0])
    tok = UCETokenizer(counts, tokens, chroms, starts, chrom_offset=100, sample_size=4000)
    s = tok.sentence(0)
    assert s[0] == 3 and s.size == 1 + 4000 + 2 * 2
    opens = np.flatnonzero(s >= 100)
    assert sorted(s[opens]) == [100, 101]
    assert list(np.flatnonzero(s == 2)) == sorted([opens[1] - 1, s.size - 1])
    block0 = s[opens[s[opens] == 100][0] + 1 :]
    block0 = block0[: np.argmax(block0 == 2)]
    # chromosome 0 in genomic order: gene 3 (start 200) before gene 0 (start 300); gene 1
    # has no counts and is never drawn
    assert set(block0) == {10, 13} and np.all(np.diff(np.where(block0 == 10, 300, 200)) >= 0)
    freq = np.array([(s == t).sum() for t in (10, 12, 13)]) / 4000
    w = np.log1p([5.0, 1.0, 2.0])
    np.testing.assert_allclose(freq, w / w.sum(), atol=0.03)
    # seeded per (seed, global index): a chunk with offset gives the same sentence
    again = UCETokenizer(counts, tokens, chroms, starts, chrom_offset=100, sample_size=4000)
    np.testing.assert_array_equal(again.sentence(0), s)
    shifted = UCETokenizer(
        sp.vstack([counts, counts]).tocsr(),
        tokens,
        chroms,
        starts,
        chrom_offset=100,
        sample_size=4000,
        offset=-1,
    )
    np.testing.assert_array_equal(shifted.sentence(1), s)
    empty = UCETokenizer(sp.csr_matrix((1, 4)), tokens, chroms, starts, chrom_offset=100)
    np.testing.assert_array_equal(empty.sentence(0), [3])


def test_chromosome_codes_span_all_species(tmp_path, data):
    """``species_chrom`` codes index the sorted categories of the whole csv (all species),
    and the chromosome tokens start at table rows minus categories."""
    folder = write_tiny_uce(
        tmp_path,
        genes={"human": ["A1", "B1", "C1"], "mouse": ["Aa", "Bb"]},
        positions={
            "human": {"A1": ("2", 10), "B1": ("X", 5), "C1": ("2", 1)},
            "mouse": {"Aa": ("1", 3), "Bb": ("1", 4)},
        },
    )
    table, n_chrom = _read_chrom(folder / "species_chrom.csv")
    # categories: human_2, human_X, mouse_1
    assert n_chrom == 3
    assert dict(zip(table["gene_symbol"], table["code"], strict=True)) == {
        "A1": 0,
        "B1": 1,
        "C1": 0,
        "AA": 2,
        "BB": 2,
    }
    loaded = load_uce(folder)
    assert loaded.offsets == {"human": 4, "mouse": 7}
    assert loaded.chrom_offset == 4 + 3 + 2 and loaded.table.shape[0] == 9 + 3
    assert loaded.table_source.startswith("pe_embedding")


# ------------------------------------------------------------------ loading


def test_registered_checkpoints():
    for name, fname in (("uce.4l", "4layer_model.torch"), ("uce.33l", "33l_8ep_1024t_1280.torch")):
        spec = get_checkpoint(name)
        files = {f.name: f.url for f in spec.files}
        assert files[fname].startswith("https://figshare.com/ndownloader/files/")
        assert {
            "all_tokens.torch",
            "species_chrom.csv",
            "species_offsets.pkl",
            "protein_embeddings.tar.gz",
        } <= set(files)
        assert spec.license == "MIT" and "Rosen" in spec.citation and spec.model == "uce"
    assert files["33l_8ep_1024t_1280.torch"].endswith("/43423236")


def test_missing_default_checkpoint_is_skipped(data, tmp_path, monkeypatch):
    monkeypatch.setenv("SCEVAL_HOME", str(tmp_path))
    with pytest.raises(ModelSkippedError, match=r"sceval fetch uce\.4l"):
        get_model("uce").check(data, _ctx(data))


def test_archive_and_mouse(tmp_path):
    """The released protein_embeddings.tar.gz works in place of the folder; mouse data
    (species detected from the gene names) uses the mouse block of the token table."""
    from sceval.data.simulate import simulate

    mouse = simulate(n_cells=40, n_genes=120, n_batches=2, n_cell_types=2, species="mouse")
    flat = write_for_adata(tmp_path / "flat", mouse, seed=2)
    tar = write_tiny_uce(
        tmp_path / "tar",
        genes={
            "human": list(
                pd.read_csv(flat / "species_chrom.csv").query("species == 'human'")["gene_symbol"]
            ),
            "mouse": list(
                torch.load(
                    flat
                    / "protein_embeddings"
                    / "Mus_musculus.GRCm39.gene_symbol_to_embedding_ESM2.pt",
                    weights_only=True,
                )
            ),
        },
        nlayers=1,
        seed=2,
        archive=True,
    )
    assert (tar / "protein_embeddings.tar.gz").is_file() and not (
        tar / "protein_embeddings"
    ).exists()
    model = get_model("uce", checkpoint=str(tar), sample_size=SAMPLE)
    a = model.embed_cells(mouse, _ctx(mouse))
    assert model.coverage.species == "mouse" and model.coverage.n_matched == 120
    assert "species mouse" in model.coverage.message
    assert (tar / "protein_embeddings").is_dir()  # the species file was extracted once
    b = _embed(mouse, tar, species="mouse")
    np.testing.assert_array_equal(a, b)
    loaded = load_uce(tar)
    assert loaded.offsets["mouse"] > loaded.offsets["human"] == 4


def test_random_control_and_seeds(data, ckpt):
    a = _embed(data[:30], ckpt)
    np.testing.assert_array_equal(a, _embed(data[:30], ckpt))
    assert np.abs(a - _embed(data[:30], ckpt, seed=1)).max() > 1e-4  # the sampling is seeded
    r0 = _embed(data[:30], ckpt, key="uce.random")
    np.testing.assert_array_equal(r0, _embed(data[:30], ckpt, key="uce.random"))
    assert np.abs(r0 - a).max() > 1e-2
    assert np.abs(r0 - _embed(data[:30], ckpt, key="uce.random", seed=1)).max() > 1e-3
    np.testing.assert_allclose(np.linalg.norm(r0, axis=1), 1.0, atol=1e-5)


def test_chunking_does_not_change_embeddings(data, ckpt):
    whole = _embed(data, ckpt)
    model = get_model("uce", checkpoint=str(ckpt), sample_size=SAMPLE, chunk_size=50)
    np.testing.assert_allclose(model.embed_streaming(data, _ctx(data)), whole, atol=1e-6)
    part = get_model("uce", checkpoint=str(ckpt), sample_size=SAMPLE).embed_cells(
        data[60:].copy(), _ctx(data[60:].copy(), offset=60)
    )
    np.testing.assert_allclose(part, whole[60:], atol=1e-6)


# ------------------------------------------------------------------ bad inputs


def test_checkpoint_from_another_config(tmp_path, data, ckpt):
    import shutil

    other = write_tiny_uce(
        tmp_path / "other",
        genes={"human": list(data.var_names)},
        token_dim=48,
        d_model=60,
        nlayers=2,
    )
    mixed = tmp_path / "mixed"
    shutil.copytree(ckpt, mixed)
    shutil.copy(other / "4layer_model.torch", mixed / "4layer_model.torch")
    with pytest.raises(
        UCECheckpointError,
        match=r"shape mismatches \d+ \[.*encoder\.0\.weight: checkpoint \(60, 48\) vs "
        r"expected \(60, 32\).*Fix: make sure the model file, all_tokens.torch",
    ):
        load_uce(mixed)
    with pytest.raises(
        UCECheckpointError, match=r"nlayers=33.*missing keys \d+ \[transformer_encoder\.layers\.10"
    ):
        load_uce(ckpt, nlayers=33)


def test_gene_list_of_wrong_length(tmp_path, data, ckpt):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(ckpt, bad)
    pe_path = bad / "protein_embeddings" / "Homo_sapiens.GRCh38.gene_symbol_to_embedding_ESM2.pt"
    pe = torch.load(pe_path, weights_only=True)
    pe["ONEMORE"] = torch.zeros(32)
    torch.save(pe, pe_path)
    with pytest.raises(
        UCECheckpointError,
        match=r"human protein-embedding file lists 203 genes, but species_offsets.pkl and the "
        r"token table leave 202 rows",
    ):
        _embed(data, bad)


def test_species_without_protein_embeddings(data, ckpt):
    with pytest.raises(
        UCESpeciesError,
        match=r"species 'zebrafish' has no protein-embedding file \(protein_embeddings/"
        r"Danio_rerio.*Species available there: \['human', 'mouse'\]. Fix: pass species=",
    ):
        _embed(data, ckpt, species="zebrafish")
    with pytest.raises(UCESpeciesError, match=r"species 'chicken'.*\['human', 'mouse'\]"):
        _embed(data, ckpt, species="chicken")


def test_zero_gene_overlap_and_missing_genes_reported(data, ckpt):
    renamed = data.copy()
    renamed.var_names = [f"NOTAGENE{i}" for i in range(renamed.n_vars)]
    with pytest.raises(
        DataContractError,
        match=r"none of the 200 genes match the human protein embeddings.*200 lack a protein "
        r"embedding, e.g. \['NOTAGENE0'",
    ):
        _embed(renamed, ckpt)
    partial = data.copy()
    partial.var_names = [f"NOTAGENE{i}" if i < 20 else g for i, g in enumerate(data.var_names)]
    model = get_model("uce", checkpoint=str(ckpt), sample_size=SAMPLE)
    model.embed_cells(partial, _ctx(partial))
    msg = model.coverage.message
    assert "gene coverage: 180/200 genes (90.0%)" in msg
    assert "20 genes lack a protein embedding (e.g. NOTAGENE0, NOTAGENE1, NOTAGENE2)" in msg


def test_unsafe_offsets_pickle_refused(tmp_path, ckpt):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(ckpt, bad)

    class Evil:
        def __reduce__(self):
            return (print, ("boom",))

    with open(bad / "species_offsets.pkl", "wb") as fh:
        pickle.dump({"human": Evil()}, fh)
    with pytest.raises(UnsafePickleError, match="refused to unpickle global"):
        load_uce(bad)


def test_missing_files_listed(tmp_path, ckpt):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(ckpt, bad)
    (bad / "species_chrom.csv").unlink()
    with pytest.raises(FileNotFoundError, match=r"lacks \['species_chrom.csv'\].*sceval fetch"):
        load_uce(bad)


# ------------------------------------------------------------------ CLI


def test_cli_run(tmp_path):

    adata = small_dataset(n_cells=120, n_genes=150, n_batches=2, n_cell_types=3, seed=4)
    path = tmp_path / "d.h5ad"
    adata.write_h5ad(path)
    folder = write_for_adata(tmp_path / "ckpt", adata)
    out = tmp_path / "out"
    r = run_cli_benchmark(path, "uce", folder, out)
    assert r.exit_code == 0, r.output
    res = pd.read_csv(out / "results.csv")
    assert set(res["model"]) == {"uce", "uce.random"}
    assert (res["status"] == "ok").all(), res["message"].unique()
    assert res["message"].str.contains("gene coverage: 150/150 genes").all()
    assert res["message"].str.contains("species human").all()
