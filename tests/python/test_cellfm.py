"""CellFM: MindSpore checkpoint reader, official preprocessing, numerical fidelity, models.

Tiny random-weight checkpoints in the official layout (a MindSpore ``.ckpt`` protobuf
with the optimizer moments, plus the vocabulary csv) stand in for the released ones.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import pandas as pd  # noqa: E402
import scipy.sparse as sp  # noqa: E402

from sceval._errors import DataContractError, ModelSkippedError  # noqa: E402
from sceval.data import validate  # noqa: E402
from sceval.models import EmbedContext, get_model  # noqa: E402
from sceval.models._mindspore_ckpt import (  # noqa: E402
    MindSporeCheckpointError,
    read_checkpoint,
    scan_checkpoint,
)
from sceval.models.cellfm import (  # noqa: E402
    CellFMCheckpointError,
    CellFMTokenizer,
    gene_rows,
    load_cellfm,
    preprocess,
    read_hgnc_aliases,
)
from sceval.testing import run_cli_benchmark, small_dataset  # noqa: E402
from sceval.testing.cellfm import (  # noqa: E402
    write_checkpoint,
    write_tiny_cellfm,
    write_vocab_csv,
)

CKPT = "CellFM_80M_weight.ckpt"
VOCAB = "expand_gene_info.csv"


@pytest.fixture(scope="module")
def data():
    adata = small_dataset(n_cells=150, n_genes=300, n_batches=2, n_cell_types=3, seed=1)
    # three deep cells: above 1e5 counts the official rescaling (round(x / (T / 1e5))) acts
    counts = adata.layers["counts"].tocsr(copy=True).astype(np.float32)
    counts = sp.diags(np.r_[[400.0, 900.0, 1500.0], np.ones(adata.n_obs - 3)]) @ counts
    adata.layers["counts"] = sp.csr_matrix(counts, dtype=np.float32)
    adata.X = adata.layers["counts"].copy()
    return adata


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, data):
    folder = tmp_path_factory.mktemp("cellfm")
    return write_tiny_cellfm(folder, genes=list(data.var_names), seed=3)


def _ctx(adata, seed=0, offset=0):
    rep = validate(adata, batch_key="batch", label_key="cell_type")
    return EmbedContext(
        report=rep, seed=seed, batch_key="batch", label_key="cell_type", cell_offset=offset
    )


def _embed(adata, folder, key="cellfm", seed=0, **params):
    model = get_model(key, checkpoint=str(folder), **params)
    return model.embed_cells(adata, _ctx(adata, seed)), model


# ------------------------------------------------------------------ MindSpore protobuf


def test_wire_format_hand_worked(tmp_path):
    path = write_checkpoint(tmp_path / "a.ckpt", [("a", np.array([7], dtype=np.int32))])
    tensor = b"\x08\x01" + b"\x12\x05Int32" + b"\x1a\x04\x07\x00\x00\x00"
    value = b"\x0a\x01a" + b"\x12" + bytes([len(tensor)]) + tensor
    assert path.read_bytes() == b"\x0a" + bytes([len(value)]) + value
    tensors, skipped = read_checkpoint(path)
    assert skipped == [] and tensors["a"].dtype == np.int32 and tensors["a"].tolist() == [7]


def _protobuf_classes():
    pytest.importorskip("google.protobuf")
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    f = descriptor_pb2.FieldDescriptorProto
    fdp = descriptor_pb2.FileDescriptorProto(name="sceval_ckpt_test.proto", syntax="proto2")
    t = fdp.message_type.add(name="TensorProto")
    t.field.add(name="dims", number=1, type=f.TYPE_INT64, label=f.LABEL_REPEATED)
    t.field.add(name="tensor_type", number=2, type=f.TYPE_STRING, label=f.LABEL_REQUIRED)
    t.field.add(name="tensor_content", number=3, type=f.TYPE_BYTES, label=f.LABEL_REQUIRED)
    c = fdp.message_type.add(name="Checkpoint")
    v = c.nested_type.add(name="Value")
    v.field.add(name="tag", number=1, type=f.TYPE_STRING, label=f.LABEL_REQUIRED)
    v.field.add(name="tensor", number=2, type=f.TYPE_MESSAGE, type_name=".TensorProto", label=1)
    c.field.add(name="value", number=1, type=f.TYPE_MESSAGE, type_name=".Checkpoint.Value", label=3)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("Checkpoint"))


def test_reader_and_writer_agree_with_protobuf(tmp_path):
    """Files of the writer parse with protobuf; protobuf-serialized files parse with the
    reader (checkpoint.proto built at run time, no generated code in the repo)."""
    checkpoint_cls = _protobuf_classes()
    rng = np.random.default_rng(0)
    arrays = {
        "w": rng.standard_normal((5, 3)).astype(np.float32),
        "h": rng.standard_normal((4,)).astype(np.float16),
        "i64": np.array([[1, -2], [3, 2**40]], dtype=np.int64),
        "step": np.array([12], dtype=np.int32),
        "lr": np.array(0.5, dtype=np.float32),
    }
    path = write_checkpoint(tmp_path / "w.ckpt", arrays.items(), chunk_bytes=16)
    msg = checkpoint_cls.FromString(path.read_bytes())
    tags = [v.tag for v in msg.value]
    assert tags[:4] == ["w"] * 4  # 60 bytes in chunks of 16, full dims on each
    assert list(msg.value[0].tensor.dims) == [5, 3] and msg.value[0].tensor.tensor_type == "Float32"
    assert [list(v.tensor.dims) for v in msg.value if v.tag == "lr"] == [[0]]

    theirs = checkpoint_cls()
    for name, arr in arrays.items():
        data = arr.tobytes()
        halves = [data[: len(data) // 2], data[len(data) // 2 :]] if arr.size > 2 else [data]
        for part in halves:  # same-tag chunks, as MindSpore splits large parameters
            val = theirs.value.add(tag=name)
            val.tensor.dims.extend(list(arr.shape) or [0])
            val.tensor.tensor_type = {
                "float32": "Float32",
                "float16": "Float16",
                "int64": "Int64",
                "int32": "Int32",
            }[arr.dtype.name]
            val.tensor.tensor_content = part
    other = tmp_path / "theirs.ckpt"
    other.write_bytes(theirs.SerializeToString())
    for f in (path, other):
        got, _ = read_checkpoint(f)
        for name, arr in arrays.items():
            assert got[name].dtype == arr.dtype and got[name].shape == arr.shape, name
            np.testing.assert_array_equal(got[name], arr)


def test_reader_skips_by_name_and_checks_crc(tmp_path):
    arrays = [("keep", np.ones((3, 2), np.float32)), ("moment1.keep", np.zeros((3, 2), np.float32))]
    path = write_checkpoint(tmp_path / "c.ckpt", arrays, crc=True)
    assert path.read_bytes()[-17:-10] == b"crc_num"
    got, skipped = read_checkpoint(path, keep=lambda t: not t.startswith("moment"))
    assert list(got) == ["keep"] and skipped == ["moment1.keep"]
    entries = scan_checkpoint(path)
    assert [(e.tag, e.shape, e.tensor_type) for e in entries] == [
        ("keep", (3, 2), "Float32"),
        ("moment1.keep", (3, 2), "Float32"),
    ]
    raw = bytearray(path.read_bytes())
    raw[-20] ^= 0xFF  # flip a byte of the last tensor
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(bytes(raw))
    with pytest.raises(MindSporeCheckpointError, match="CRC check failed"):
        read_checkpoint(bad)


def test_reader_reports_malformed_files(tmp_path):
    path = write_checkpoint(tmp_path / "t.ckpt", [("x", np.ones(1000, np.float32))])
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(MindSporeCheckpointError, match=r"truncated .*download it again"):
        read_checkpoint(cut)
    other = tmp_path / "pickle.ckpt"
    other.write_bytes(b"\x80\x04\x95 not a protobuf")
    with pytest.raises(MindSporeCheckpointError, match=r"does not start with .*found 0x80"):
        scan_checkpoint(other)
    empty = tmp_path / "empty.ckpt"
    empty.write_bytes(b"")
    with pytest.raises(MindSporeCheckpointError, match="is empty"):
        read_checkpoint(empty)


# ------------------------------------------------------------------ preprocessing


def test_preprocess_hand_worked():
    counts = sp.csr_matrix(
        np.array([[1, 0, 3, 5], [150_000, 1, 49_999, 0]], dtype=np.float32)
    )  # totals 9 and 200,000 (-> scale 2)
    out = preprocess(counts, np.array([0, 2])).toarray()
    # cell 0: matched total 4 -> log1p(x / 4 * 1e4); cell 1: round(x / 2) = 75,000 and
    # 25,000 (24,999.5 rounds half to even), the 1 -> round(0.5) = 0 is dropped
    expected = np.log1p(np.array([[2500.0, 7500.0], [7500.0, 2500.0]]))
    np.testing.assert_allclose(out, expected, rtol=1e-6)


def test_subsampling_is_seeded_weighted_and_chunk_invariant():
    rng = np.random.default_rng(0)
    dense = np.zeros((6, 12), np.float32)
    dense[:, :10] = rng.uniform(0.1, 5.0, (6, 10))
    dense[:, 10:] = 0
    x = sp.csr_matrix(dense)
    ids = np.arange(1, 13)
    tok = CellFMTokenizer(x, ids, max_genes=4, seed=7)
    assert tok.n_subsampled == 6 and tok.lengths.tolist() == [5] * 6
    g, v = tok.cell(2)
    assert g.size == 4 and np.all(np.diff(g) > 0)  # kept in vocabulary/column order
    np.testing.assert_array_equal(v, dense[2, g - 1])
    again = CellFMTokenizer(x, ids, max_genes=4, seed=7)
    np.testing.assert_array_equal(again.cell(2)[0], g)
    other_seed = [CellFMTokenizer(x, ids, max_genes=4, seed=s).cell(2)[0] for s in range(8)]
    assert len({tuple(o) for o in other_seed}) > 1
    # chunking: cell 2 of the full data is cell 0 of a chunk starting at cell 2
    chunk = CellFMTokenizer(x[2:], ids, max_genes=4, seed=7, offset=2)
    np.testing.assert_array_equal(chunk.cell(0)[0], g)
    # weighted by log1p(value): a dominant gene is almost always kept
    heavy = np.full((1, 10), 0.01, np.float32)
    heavy[0, 3] = 1e3
    picks = [
        CellFMTokenizer(sp.csr_matrix(heavy), ids[:10], max_genes=2, seed=s).cell(0)[0]
        for s in range(40)
    ]
    assert sum(4 in p for p in picks) >= 35
    # below max_genes nothing is dropped and no randomness is involved
    full = CellFMTokenizer(x, ids, max_genes=20, seed=1)
    assert full.n_subsampled == 0 and full.cell(0)[0].tolist() == list(range(1, 11))


def test_gene_rows_and_alias_table(tmp_path):
    assert gene_rows(27_855) == 27_856 and gene_rows(24_078) == 24_080 and gene_rows(7) == 8
    tsv = tmp_path / "updated_hgcn.tsv"
    pd.DataFrame(
        {
            "HGNC ID": ["HGNC:1", "HGNC:2", "HGNC:3"],
            "Approved symbol": ["NEWA", "NEWB", "OLDC"],
            "Status": ["Approved", "Approved", "Symbol Withdrawn"],
            "Previous symbols": ["OLDA", np.nan, np.nan],
            "Alias symbols": ["ALIASA, NEWB", "ALIASB", "X"],
        }
    ).to_csv(tsv, sep="\t", index=False)
    assert read_hgnc_aliases(tsv) == {"ALIASA": "NEWA", "OLDA": "NEWA", "ALIASB": "NEWB"}


# ------------------------------------------------------------------ fidelity


def _reference_embeddings(adata, folder: Path, pad_len: int = 2048) -> np.ndarray:
    """The official zero-shot computation written out with plain torch ops (float64):
    ``read_h5ad`` rescaling, ``normalize_total`` + ``log1p``, ``Prepare`` padding every
    cell to ``pad_len`` genes with ``zero_idx``, and ``Backbone.construct``."""
    state, _ = read_checkpoint(folder / CKPT)
    w = {k: torch.from_numpy(v.astype(np.float64)) for k, v in state.items()}
    genes = pd.read_csv(folder / VOCAB, index_col=0, header=0).index.astype(str)
    geneset = {g: i + 1 for i, g in enumerate(genes)}
    x = adata.layers["counts"].toarray().astype(np.float32)
    total = x.sum(1, keepdims=True)
    x = np.round(x / np.maximum(1, total / 1e5, dtype=np.float32))
    names = list(adata.var_names)
    cols = [j for j, g in enumerate(names) if g in geneset]
    ids = np.array([geneset[names[j]] for j in cols])
    xm = x[:, cols].astype(np.float64)
    lognorm = np.log1p(xm / xm.sum(1, keepdims=True) * 1e4)
    d = w["cls_token"].shape[-1]
    nlayers = len({k.split(".")[1] for k in w if k.startswith("encoder.")})
    heads, dh = d // 32, 32
    alpha = (2 * nlayers) ** 0.25

    def ln(t, p):
        mu = t.mean(-1, keepdim=True)
        var = ((t - mu) ** 2).mean(-1, keepdim=True)
        return (t - mu) / torch.sqrt(var + 1e-7) * w[f"{p}.gamma"] + w[f"{p}.beta"]

    out = np.zeros((adata.n_obs, d))
    for c in range(adata.n_obs):
        nz = np.flatnonzero(lognorm[c])
        gene = torch.zeros(pad_len, dtype=torch.long)
        gene[: nz.size] = torch.from_numpy(ids[nz])
        val = torch.zeros(pad_len, 1, dtype=torch.float64)
        val[: nz.size, 0] = torch.from_numpy(lognorm[c, nz])
        zero_idx = torch.zeros(pad_len + 1, dtype=torch.float64)
        zero_idx[: nz.size + 1] = 1
        h = val @ w["value_enc.value_enc.w1.weight"].T
        h = torch.where(h > 0, h, 0.2 * h)
        h = h @ w["value_enc.value_enc.w3.weight"].T + h * w["value_enc.value_enc.a"]
        emb = torch.softmax(h, -1) @ w["value_enc.value_enc.table.weight"].T
        emb = emb + w["gene_emb"][gene]
        t = torch.cat([w["cls_token"][0], emb]) * zero_idx[:, None]
        len_scale = 1 / torch.sqrt(zero_idx.sum() - 1)
        for i in range(nlayers):
            p = f"encoder.{i}"

            def proj(t, name, p=p):
                return (t @ w[f"{p}.{name}.weight"].T).reshape(-1, heads, dh).transpose(0, 1)

            q = torch.relu(proj(t, "attn.q_proj")) / dh**0.5
            k = torch.relu(proj(t, "attn.k_proj")) * zero_idx[None, :, None] / dh**0.5
            v = proj(t, "attn.v_proj") * len_scale
            u = proj(t, "attn.u_proj")
            o = q @ (k.transpose(1, 2) @ v)
            norm = torch.linalg.norm(o / dh**0.5, dim=-1, keepdim=True).clamp(min=1e-12)
            o = (o / norm) * (u * torch.sigmoid(u))
            o = o.transpose(0, 1).reshape(-1, d) @ w[f"{p}.attn.o_proj.weight"].T
            t = ln(alpha * t + o, f"{p}.post_norm1")
            g = (t @ w[f"{p}.ffn.u_proj.weight"].T) * (t @ w[f"{p}.ffn.v_proj.weight"].T)
            t = ln(alpha * t + g @ w[f"{p}.ffn.o_proj.weight"].T, f"{p}.post_norm2")
        out[c] = t[0].numpy()
    return out


def test_fidelity_against_reference_forward(data, ckpt):
    ref = _reference_embeddings(data, ckpt)
    emb, model = _embed(data, ckpt, batch_size=7)
    assert emb.shape == (data.n_obs, 64) and emb.dtype == np.float32
    assert np.abs(emb - ref).max() < 1e-5
    assert np.abs(ref).max() > 0.5  # not a degenerate comparison
    assert model.coverage.n_subsampled == 0 and "subsampled" not in model.coverage.message
    # batching and padding do not change the numbers
    one, _ = _embed(data, ckpt, batch_size=1)
    np.testing.assert_allclose(one, emb, atol=1e-5)


# ------------------------------------------------------------------ loading


def test_loads_official_layout_and_ignores_optimizer_state(ckpt, data):
    model, vocab, info = load_cellfm(ckpt)
    c = model.config
    assert (c.d_model, c.nlayers, c.nheads, c.value_hidden) == (64, 2, 2, 32)
    assert c.alpha == pytest.approx(4**0.25)
    assert len(vocab) == 303 and min(vocab.values()) == 1
    assert model.gene_emb.shape == (304, 64) and info["aliases"] == {}
    ignored = set(model.ignored_keys)
    assert {"global_step", "learning_rate", "beta1_power", "beta2_power"} <= ignored
    assert "moment1.gene_emb" in ignored and "moment2.encoder.1.ffn.o_proj.weight" in ignored
    assert {"zero_emb", "value_dec.w1.weight", "cellwise_dec.map.weight"} <= ignored
    state, _ = read_checkpoint(ckpt / CKPT)
    np.testing.assert_array_equal(
        model.encoder[1].attn.v_proj.weight.detach().numpy(), state["encoder.1.attn.v_proj.weight"]
    )


def test_800m_naming_chunks_crc_fp16_and_st_keys(tmp_path, data):
    genes = list(data.var_names)
    base = write_tiny_cellfm(
        tmp_path / "base", genes=genes, ckpt_name="base_weight.ckpt", nlayers=3, seed=5,
        chunk_bytes=4096, crc=True, st_keys=True,
    )  # fmt: skip
    assert (base / "gene_info.csv").is_file()
    model, _, _ = load_cellfm(base)
    assert model.config.nlayers == 3 and model.config.alpha == pytest.approx(6**0.25)
    assert "ST_emb" in model.ignored_keys
    plain = write_tiny_cellfm(
        tmp_path / "plain", genes=genes, ckpt_name="base_weight.ckpt", nlayers=3, seed=5,
        st_keys=True,
    )  # fmt: skip
    np.testing.assert_array_equal(_embed(data, base)[0], _embed(data, plain)[0])
    half = write_tiny_cellfm(tmp_path / "half", genes=genes, seed=3, dtype=np.float16)
    model16, _, _ = load_cellfm(half)
    assert model16.gene_emb.dtype == torch.float32
    ref = write_tiny_cellfm(tmp_path / "ref", genes=genes, seed=3)
    a, b = _embed(data, half)[0], _embed(data, ref)[0]
    assert np.abs(a - b).max() < 0.05  # fp16 rounding of the weights only


def test_missing_registered_checkpoint_is_skipped(data, tmp_path, monkeypatch):
    monkeypatch.setenv("SCEVAL_HOME", str(tmp_path))
    model = get_model("cellfm")
    with pytest.raises(ModelSkippedError, match=r"cellfm\.80m.*sceval fetch cellfm\.80m"):
        model.check(data, _ctx(data))
    from sceval.models.checkpoints import get_checkpoint

    spec = get_checkpoint("cellfm.800m")
    assert [f.name for f in spec.files] == ["base_weight.ckpt", "gene_info.csv"]
    assert spec.files[0].url.startswith("https://huggingface.co/ShangguanNingyuan/CellFM/")
    assert "CC-BY-NC-ND-4.0" in spec.license and "s41467-025-59926-5" in spec.citation
    assert get_model("cellfm").info.license.startswith("CC-BY-NC-ND-4.0")


# ------------------------------------------------------------------ bad inputs


def test_checkpoint_of_another_config_is_reported_by_key(tmp_path, data, ckpt):
    genes = list(data.var_names)
    other = write_tiny_cellfm(tmp_path / "big", genes=genes, pad_vocab_to=400, seed=1)
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    shutil.copy(other / CKPT, mixed / CKPT)
    shutil.copy(ckpt / VOCAB, mixed / VOCAB)
    with pytest.raises(
        CellFMCheckpointError,
        match=r"gene_emb: checkpoint \(408, 64\) vs expected \(304, 64\).*"
        r"expand_gene_info.csv lists 303 genes.*does not belong to this checkpoint",
    ):
        load_cellfm(mixed)
    # a layer of another width inside the checkpoint
    state, _ = read_checkpoint(ckpt / CKPT)
    state["encoder.1.attn.q_proj.weight"] = np.zeros((32, 64), np.float32)
    state["encoder.0.attn.lora_q.weight"] = np.zeros((4, 64), np.float32)
    bad = tmp_path / "bad"
    bad.mkdir()
    write_checkpoint(bad / CKPT, state.items())
    shutil.copy(ckpt / VOCAB, bad / VOCAB)
    with pytest.raises(
        CellFMCheckpointError,
        match=r"unexpected keys 1 \[encoder\.0\.attn\.lora_q\.weight\]; shape mismatches 1 "
        r"\[encoder\.1\.attn\.q_proj\.weight: checkpoint \(32, 64\) vs expected \(64, 64\)\]",
    ):
        get_model("cellfm", checkpoint=str(bad)).embed_cells(data, _ctx(data))


def test_vocabulary_of_the_wrong_length(tmp_path, data, ckpt):
    folder = tmp_path / "short"
    folder.mkdir()
    shutil.copy(ckpt / CKPT, folder / CKPT)
    genes = pd.read_csv(ckpt / VOCAB, index_col=0).index[:-20]
    write_vocab_csv(folder / VOCAB, genes)
    with pytest.raises(
        CellFMCheckpointError,
        match=r"lists 283 genes, so gene_emb should have 288 rows .* 304 rows fit a "
        r"vocabulary of 296\.\.303 genes",
    ):
        load_cellfm(folder)
    (folder / VOCAB).unlink()
    with pytest.raises(ModelSkippedError, match=r"lacks its vocabulary expand_gene_info\.csv"):
        get_model("cellfm", checkpoint=str(folder)).embed_cells(data, _ctx(data))


def test_zero_gene_overlap_and_mouse_symbols(data, ckpt):
    renamed = data.copy()
    renamed.var_names = [f"NOTAGENE{i}" for i in range(renamed.n_vars)]
    with pytest.raises(DataContractError, match="none of the 300 genes match its vocabulary"):
        _embed(renamed, ckpt)
    from sceval.data.simulate import simulate

    mouse = simulate(n_cells=20, n_genes=60, n_batches=2, n_cell_types=2, species="mouse", seed=2)
    with pytest.raises(DataContractError, match=r"none of the 60 genes match.*check the species"):
        _embed(mouse, ckpt)


def test_alias_remapping_with_hgnc_table(tmp_path, data, ckpt):
    folder = tmp_path / "alias"
    shutil.copytree(ckpt, folder)
    renamed = data.copy()
    names = list(renamed.var_names)
    approved = names[:2]
    renamed.var_names = ["OLDNAME0", "ALIAS1", *names[2:]]
    pd.DataFrame(
        {
            "HGNC ID": ["HGNC:1", "HGNC:2"],
            "Approved symbol": approved,
            "Status": ["Approved", "Approved"],
            "Previous symbols": ["OLDNAME0", np.nan],
            "Alias symbols": [np.nan, "ALIAS1"],
        }
    ).to_csv(folder / "updated_hgcn.tsv", sep="\t", index=False)
    emb, model = _embed(renamed, folder)
    assert (
        model.coverage.n_matched == 300 and "2 genes matched through HGNC" in model.coverage.message
    )
    np.testing.assert_allclose(emb, _embed(data, ckpt)[0], atol=1e-6)
    _, plain = _embed(renamed, folder, remap_aliases=False)
    assert plain.coverage.n_matched == 298


# ------------------------------------------------------------------ models


def test_subsampled_cells_are_recorded_and_streaming_matches(data, ckpt):
    ctx = _ctx(data, seed=4)
    model = get_model("cellfm", checkpoint=str(ckpt), max_genes=200, chunk_size=40)
    streamed = model.embed_streaming(data, ctx)
    whole_model = get_model("cellfm", checkpoint=str(ckpt), max_genes=200)
    whole = whole_model.embed_cells(data, ctx)
    np.testing.assert_allclose(streamed, whole, atol=1e-5)
    k = whole_model.coverage.n_subsampled
    assert 0 < k < data.n_obs and model.coverage.n_subsampled == k
    assert f"{k} of 150 cells had > 200 expressed genes and were subsampled" in (
        model.coverage.message
    )
    again = get_model("cellfm", checkpoint=str(ckpt), max_genes=200).embed_cells(data, ctx)
    np.testing.assert_array_equal(again, whole)
    other = get_model("cellfm", checkpoint=str(ckpt), max_genes=200).embed_cells(
        data, _ctx(data, seed=5)
    )
    assert not np.allclose(other, whole)


def test_random_control_and_gene_embeddings(data, ckpt):
    pre, _ = _embed(data, ckpt)
    r0, _ = _embed(data, ckpt, key="cellfm.random", seed=0)
    r0b, _ = _embed(data, ckpt, key="cellfm.random", seed=0)
    r1, _ = _embed(data, ckpt, key="cellfm.random", seed=1)
    np.testing.assert_array_equal(r0, r0b)
    assert not np.allclose(r0, r1) and not np.allclose(r0, pre)
    model = get_model("cellfm", checkpoint=str(ckpt))
    genes = [data.var_names[0], "NOTAGENE", data.var_names[5]]
    emb, found = model.embed_genes(genes, _ctx(data))
    assert found.tolist() == [True, False, True] and emb.shape == (2, 64)
    state, _ = read_checkpoint(ckpt / CKPT)
    vocab = pd.read_csv(ckpt / VOCAB, index_col=0).index.tolist()
    np.testing.assert_array_equal(emb[1], state["gene_emb"][vocab.index(data.var_names[5]) + 1])


def test_cli_run_with_tiny_checkpoint(data, ckpt, tmp_path):
    path = tmp_path / "d.h5ad"
    data.write_h5ad(path)
    out = tmp_path / "out"
    r = run_cli_benchmark(path, "cellfm", ckpt, out)
    assert r.exit_code == 0, r.output
    res = pd.read_csv(out / "results.csv")
    assert set(res["model"]) == {"cellfm", "cellfm.random"}
    assert (res["status"] == "ok").all(), res["message"].unique()
    assert res["message"].str.contains("gene coverage: 300/300").all()
