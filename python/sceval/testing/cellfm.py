"""CellFM checkpoints with random weights, in the official on-disk layout.

No pretrained weights are available offline, so tests build a folder like the released
ones: a MindSpore ``.ckpt`` protobuf file (``CellFM_80M_weight.ckpt`` or
``base_weight.ckpt``) with the parameter names of the official ``CellFM`` model
(biomed-AI/CellFM ``model.py`` / ``retention.py``: encoder, decoders, the Adam moments
``moment1.*`` / ``moment2.*`` and the optimizer scalars that MindSpore's training loop
saves), plus the vocabulary csv in the column layout of ``csv/expand_gene_info.csv``.

The protobuf encoder below is written independently of the reader in
:mod:`sceval.models._mindspore_ckpt` (``mindspore/ccsrc/utils/checkpoint.proto``:
``Checkpoint{repeated Value value = 1}``, ``Value{string tag = 1; TensorProto tensor =
2}``, ``TensorProto{repeated int64 dims = 1; string tensor_type = 2; bytes
tensor_content = 3}``). Like ``mindspore.save_checkpoint`` it appends one serialized
``Checkpoint`` per parameter chunk (each chunk carries the full ``dims``) and can end
the file with ``b"crc_num"`` + a 10-byte big-endian CRC32 (MindSpore >= 2.3).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "OFFICIAL_VOCAB_COLUMNS",
    "official_keys",
    "write_checkpoint",
    "write_for_adata",
    "write_tiny_cellfm",
    "write_vocab_csv",
]

#: Header of ``csv/gene_info.csv`` and ``csv/expand_gene_info.csv``.
OFFICIAL_VOCAB_COLUMNS = (
    "HGNC_gene",
    "h5_sample_frequency",
    "biotype",
    "gene_length",
    "exon_count",
    "exon_length_total",
    "unique_exon_count",
    "unique_exon_length_total",
    "feature",
)

_TYPE_NAMES = {
    np.dtype(np.float32): "Float32",
    np.dtype(np.float16): "Float16",
    np.dtype(np.float64): "Float64",
    np.dtype(np.int32): "Int32",
    np.dtype(np.int64): "Int64",
}

# --------------------------------------------------------------------------- protobuf


def _varint(value: int) -> bytes:
    if value < 0:  # int64: two's complement, ten bytes
        value += 1 << 64
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def _key(field: int, wire: int) -> bytes:
    return _varint((field << 3) | wire)


def _delimited(field: int, payload: bytes) -> bytes:
    return _key(field, 2) + _varint(len(payload)) + payload


def _value_message(tag: str, dims: list[int], tensor_type: str, content: bytes) -> bytes:
    tensor = b"".join(_key(1, 0) + _varint(d) for d in dims)  # proto2: unpacked
    tensor += _delimited(2, tensor_type.encode()) + _delimited(3, content)
    value = _delimited(1, tag.encode()) + _delimited(2, tensor)
    return _delimited(1, value)  # one Checkpoint message with one Value


def _chunks(data: bytes, chunk_bytes: int | None) -> Iterator[bytes]:
    if not chunk_bytes or len(data) <= chunk_bytes:
        yield data
        return
    for start in range(0, len(data), chunk_bytes):
        yield data[start : start + chunk_bytes]


def write_checkpoint(
    path: str | Path,
    tensors: Iterable[tuple[str, np.ndarray]],
    *,
    chunk_bytes: int | None = None,
    crc: bool = False,
) -> Path:
    """Write ``(name, array)`` pairs as a MindSpore ``.ckpt`` protobuf file.

    Parameters
    ----------
    path
        Output file.
    tensors
        Names and arrays (float16/32/64, int32/64); shape ``()`` is stored with
        ``dims [0]`` as MindSpore does.
    chunk_bytes
        Split parameters larger than this into consecutive same-tag entries
        (MindSpore splits at 512 MiB).
    crc
        Append ``b"crc_num"`` and the big-endian CRC32 of the protobuf bytes.
    """
    path = Path(path)
    crc_value = 0
    with open(path, "wb") as fh:
        for name, array in tensors:
            arr = np.asarray(array).copy(order="C")  # keeps shape () (ascontiguousarray does not)
            ttype = _TYPE_NAMES.get(arr.dtype)
            if ttype is None:
                msg = f"write_checkpoint: unsupported dtype {arr.dtype} for {name!r}"
                raise ValueError(msg)
            dims = list(arr.shape) if arr.shape else [0]
            data = arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
            for part in _chunks(data, chunk_bytes):
                msg_bytes = _value_message(name, dims, ttype, part)
                crc_value = zlib.crc32(msg_bytes, crc_value)
                fh.write(msg_bytes)
        if crc:
            fh.write(b"crc_num" + crc_value.to_bytes(10, "big"))
    return path


# --------------------------------------------------------------------------- layout


def official_keys(
    n_genes: int, d: int, nlayers: int, value_hidden: int = 256, *, st_keys: bool = False
) -> list[tuple[str, tuple[int, ...]]]:
    """Parameter names and shapes of the official pretraining ``CellFM`` model (in the
    order MindSpore lists them), written out independently of
    :mod:`sceval.models.cellfm`."""
    rows = n_genes + 1 + (-n_genes - 1) % 8
    keys: list[tuple[str, tuple[int, ...]]] = [
        ("gene_emb", (rows, d)),
        ("cls_token", (1, 1, d)),
        ("zero_emb", (1, 1, d)),
    ]
    if st_keys:  # CellFM-torch FinetuneModel / the BatchIntegration tutorial
        keys.append(("ST_emb", (1, 2, d)))
    keys += [
        ("value_enc.value_enc.w1.weight", (value_hidden, 1)),
        ("value_enc.value_enc.w3.weight", (value_hidden, value_hidden)),
        ("value_enc.value_enc.table.weight", (d, value_hidden)),
        ("value_enc.value_enc.a", (1, 1)),
        ("value_enc.mask_emb", (1, 1, d)),
    ]
    if st_keys:
        keys += [
            ("ST_enc.w1.weight", (value_hidden, 1)),
            ("ST_enc.w3.weight", (value_hidden, value_hidden)),
            ("ST_enc.table.weight", (d, value_hidden)),
            ("ST_enc.a", (1, 1)),
        ]
    for i in range(nlayers):
        p = f"encoder.{i}"
        keys += [(f"{p}.attn.{n}_proj.weight", (d, d)) for n in "qkvuo"]
        keys += [(f"{p}.ffn.{n}_proj.weight", (d, d)) for n in "uvo"]
        keys += [
            (f"{p}.post_norm1.gamma", (d,)),
            (f"{p}.post_norm1.beta", (d,)),
            (f"{p}.post_norm2.gamma", (d,)),
            (f"{p}.post_norm2.beta", (d,)),
        ]
    keys += [
        ("value_dec.w1.weight", (d, d)),
        ("value_dec.w2.weight", (1, d)),
        ("cellwise_dec.map.weight", (d, d)),
    ]
    return keys


def _random_weight(name: str, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    if name.endswith(".gamma"):
        return (1.0 + 0.1 * rng.standard_normal(shape)).astype(np.float32)
    if name.endswith(".beta"):
        return (0.1 * rng.standard_normal(shape)).astype(np.float32)
    if name.endswith(".a"):
        return np.full(shape, 0.3, dtype=np.float32)
    if name.endswith("w1.weight") and shape[-1] == 1:  # value encoder input layer
        return rng.standard_normal(shape).astype(np.float32)
    if name in ("gene_emb", "cls_token", "zero_emb", "ST_emb") or name.endswith("mask_emb"):
        out = (0.5 * rng.standard_normal(shape)).astype(np.float32)
        if name == "gene_emb":
            out[0] = 0.0  # the padding row
        return out
    fan_in = shape[-1]
    return (rng.standard_normal(shape) / np.sqrt(fan_in)).astype(np.float32)


def _optimizer_state(
    params: list[tuple[str, np.ndarray]], rng: np.random.Generator
) -> list[tuple[str, np.ndarray]]:
    """Adam state as MindSpore's ``Model.train`` saves it next to the weights."""
    out: list[tuple[str, np.ndarray]] = [
        ("global_step", np.array([38071], dtype=np.int32)),
        ("learning_rate", np.array(1e-6, dtype=np.float32)),
        ("beta1_power", np.array([0.9**100], dtype=np.float32)),
        ("beta2_power", np.array([0.999**100], dtype=np.float32)),
    ]
    for prefix, scale in (("moment1", 1e-3), ("moment2", 1e-6)):
        for name, value in params:
            m = (scale * rng.standard_normal(value.shape)).astype(np.float32)
            out.append((f"{prefix}.{name}", m))
    out += [
        ("current_iterator_step", np.array(38071, dtype=np.int32)),
        ("last_overflow_iterator_step", np.array(0, dtype=np.int32)),
    ]
    return out


def write_vocab_csv(path: str | Path, genes: Iterable[str], seed: int = 0) -> Path:
    """Write a vocabulary csv in the column layout of the official ``gene_info.csv``
    (symbols in the first column, in the given order; other columns filled in)."""
    import csv

    rng = np.random.default_rng(seed)
    path = Path(path)
    with open(path, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(OFFICIAL_VOCAB_COLUMNS)
        for g in genes:
            length = int(rng.integers(1_000, 100_000))
            exons = int(rng.integers(2, 60))
            w.writerow(
                [
                    g,
                    int(rng.integers(1, 20_000)),
                    "gene with protein product",
                    f"{float(length):.1f}",
                    f"{float(exons):.1f}",
                    f"{float(length // 4):.1f}",
                    f"{float(max(exons - 1, 1)):.1f}",
                    f"{float(length // 5):.1f}",
                    "protein coding",
                ]
            )
    return path


def write_tiny_cellfm(
    folder: str | Path,
    *,
    genes: Iterable[str],
    d_model: int = 64,
    nlayers: int = 2,
    value_hidden: int = 32,
    seed: int = 0,
    ckpt_name: str = "CellFM_80M_weight.ckpt",
    vocab_name: str | None = None,
    n_filler: int = 3,
    pad_vocab_to: int | None = None,
    optimizer: bool = True,
    st_keys: bool = False,
    dtype: Any = np.float32,
    chunk_bytes: int | None = None,
    crc: bool = False,
) -> Path:
    """Write a random-weight CellFM checkpoint folder in the official layout.

    Parameters
    ----------
    folder
        Created if needed.
    genes
        Vocabulary symbols (duplicates dropped, sorted as the official csv files are),
        followed by ``n_filler`` made-up genes, and more up to ``pad_vocab_to`` genes.
    d_model, nlayers, value_hidden
        Architecture (official: 1536, 2 or 40, 256); heads are ``d_model // 32``.
    seed
        Seed of the weights and of the csv's filler columns.
    ckpt_name, vocab_name
        File names (default: the 80M pair; ``vocab_name`` follows ``ckpt_name``:
        ``expand_gene_info.csv`` for ``CellFM_80M_weight.ckpt``, ``gene_info.csv``
        otherwise).
    optimizer
        Also write the Adam moments and optimizer scalars (as the released files do).
    st_keys
        Also write CellFM-torch's ``ST_emb`` / ``ST_enc.*`` parameters.
    dtype
        Stored dtype of the weights (``np.float32`` or ``np.float16``).
    chunk_bytes, crc
        See :func:`write_checkpoint`.

    Returns
    -------
    pathlib.Path
        The folder.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    names = sorted(dict.fromkeys(str(g) for g in genes if str(g)))
    names += [f"CELLFMFILLER{i}" for i in range(n_filler)]
    if pad_vocab_to is not None and len(names) < pad_vocab_to:
        names += [f"CELLFMPAD{i}" for i in range(pad_vocab_to - len(names))]
    if vocab_name is None:
        vocab_name = (
            "expand_gene_info.csv" if ckpt_name == "CellFM_80M_weight.ckpt" else "gene_info.csv"
        )
    rng = np.random.default_rng(seed)
    params = [
        (name, _random_weight(name, shape, rng).astype(dtype))
        for name, shape in official_keys(
            len(names), d_model, nlayers, value_hidden, st_keys=st_keys
        )
    ]
    entries = list(params)
    if optimizer:
        entries += _optimizer_state(params, rng)
    write_checkpoint(folder / ckpt_name, entries, chunk_bytes=chunk_bytes, crc=crc)
    write_vocab_csv(folder / vocab_name, names, seed=seed)
    return folder


def write_for_adata(folder: Path, adata: Any, *, seed: int = 0, size: str = "tiny") -> Path:
    """:func:`sceval.testing.tiny_checkpoint` writer: a vocabulary of ``adata``'s gene
    symbols. ``size="official"`` writes the 80M dimensions (1536-d, 2 layers, 48 heads,
    value encoder 256, vocabulary padded to the official 27,855 genes), without the
    optimizer moments (they only make the file three times larger)."""
    symbols = adata.var["gene_symbol"] if "gene_symbol" in adata.var else adata.var_names
    genes = [str(g) for g in symbols]
    if size == "official":
        return write_tiny_cellfm(
            folder,
            genes=genes,
            d_model=1536,
            nlayers=2,
            value_hidden=256,
            seed=seed,
            pad_vocab_to=27_855,
            optimizer=False,
        )
    return write_tiny_cellfm(folder, genes=genes, seed=seed)
