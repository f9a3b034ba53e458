"""Reading MindSpore ``.ckpt`` checkpoint files without MindSpore.

A MindSpore checkpoint is a protobuf message (``mindspore/ccsrc/utils/checkpoint.proto``
of mindspore-ai/mindspore, proto2)::

    message Checkpoint {
        message Value {
            required string tag = 1;
            oneof value { TensorProto tensor = 2; MapTensorProto maptensor = 3; }
        }
        repeated Value value = 1;
    }
    message TensorProto {
        repeated int64 dims = 1;
        required string tensor_type = 2;   // "Float32", "Float16", "Int32", ...
        required bytes tensor_content = 3; // raw little-endian values, C order
    }

``mindspore.save_checkpoint`` appends one serialized ``Checkpoint`` per parameter chunk
(parameters above 512 MiB are split into consecutive ``Value`` entries with the same tag
and the full ``dims``), and MindSpore >= 2.3 may end the file with ``b"crc_num"`` plus a
10-byte big-endian CRC32 of the protobuf bytes. ``mindspore.load_checkpoint``
concatenates the contents of consecutive entries with the same tag, reshapes them to
``dims`` unless ``dims`` is ``[0]`` (a scalar) or ``[1]``.

This module decodes the protobuf wire format itself (varints and length-delimited
fields; no generated protobuf code, no MindSpore): the file is memory-mapped, only the
field headers are walked, and the bytes of the tensors that are asked for are copied
out once. Tensors that are not wanted (optimizer moments, for instance) are never read,
so a 10 GB checkpoint with Adam moments does not need 10 GB of memory.
"""

from __future__ import annotations

import mmap
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sceval._errors import ScevalError

__all__ = [
    "TENSOR_TYPES",
    "CheckpointEntry",
    "MindSporeCheckpointError",
    "read_checkpoint",
    "scan_checkpoint",
]

#: ``tensor_type`` strings of ``TensorProto`` -> numpy dtype (little-endian).
#: ``BFloat16`` is read as raw 16-bit words and widened to float32.
TENSOR_TYPES: dict[str, str] = {
    "Float16": "<f2",
    "Float32": "<f4",
    "Float64": "<f8",
    "BFloat16": "<u2",
    "Int8": "i1",
    "UInt8": "u1",
    "Int16": "<i2",
    "UInt16": "<u2",
    "Int32": "<i4",
    "UInt32": "<u4",
    "Int64": "<i8",
    "UInt64": "<u8",
    "Bool": "?",
}

_CRC_MARK = b"crc_num"
_CRC_TAIL = len(_CRC_MARK) + 10


class MindSporeCheckpointError(ScevalError, ValueError):
    """A file is not a readable MindSpore checkpoint (the message says where and why)."""


@dataclass
class CheckpointEntry:
    """One parameter of a checkpoint, possibly stored in several consecutive chunks.

    Attributes
    ----------
    tag
        Parameter name.
    dims
        Shape as stored (``[0]``: a scalar).
    tensor_type
        ``TensorProto.tensor_type``.
    chunks
        ``(offset, length)`` of each chunk's ``tensor_content`` in the file.
    """

    tag: str
    dims: tuple[int, ...]
    tensor_type: str
    chunks: list[tuple[int, int]] = field(default_factory=list)

    @property
    def nbytes(self) -> int:
        """Bytes of content over all chunks."""
        return sum(n for _, n in self.chunks)

    @property
    def shape(self) -> tuple[int, ...]:
        """The tensor shape as MindSpore builds it (``[0]`` -> ``()``)."""
        if self.dims == (0,):
            return ()
        if self.dims == (1,):
            return (self._count(),)
        return self.dims

    def _count(self) -> int:
        dtype = TENSOR_TYPES.get(self.tensor_type)
        return self.nbytes // np.dtype(dtype).itemsize if dtype else 0


def _varint(buf: mmap.mmap | bytes, pos: int, end: int, path: str) -> tuple[int, int]:
    """Decode a base-128 varint at ``pos``; returns ``(value, next position)``."""
    result = 0
    shift = 0
    while True:
        if pos >= end:
            msg = f"{path!r}: truncated varint at byte {pos} (file or field ends at {end})."
            raise MindSporeCheckpointError(msg)
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            msg = f"{path!r}: varint longer than 10 bytes at byte {pos}; not a protobuf file."
            raise MindSporeCheckpointError(msg)


def _int64(value: int) -> int:
    """Two's complement of a decoded varint (protobuf ``int64``)."""
    return value - (1 << 64) if value >= (1 << 63) else value


def _skip(buf: mmap.mmap | bytes, wire: int, pos: int, end: int, path: str) -> int:
    """Skip a field of wire type ``wire`` whose value starts at ``pos``."""
    if wire == 0:
        return _varint(buf, pos, end, path)[1]
    if wire == 1:
        nxt = pos + 8
    elif wire == 5:
        nxt = pos + 4
    elif wire == 2:
        n, pos = _varint(buf, pos, end, path)
        nxt = pos + n
    else:
        msg = (
            f"{path!r}: unsupported protobuf wire type {wire} at byte {pos} (groups are not "
            "used by checkpoint.proto); the file is not a MindSpore checkpoint or is corrupt."
        )
        raise MindSporeCheckpointError(msg)
    if nxt > end:
        msg = f"{path!r}: field at byte {pos} runs past the end of its message ({end})."
        raise MindSporeCheckpointError(msg)
    return nxt


def _length(buf: mmap.mmap | bytes, pos: int, end: int, path: str, what: str) -> tuple[int, int]:
    n, pos = _varint(buf, pos, end, path)
    if pos + n > end:
        msg = (
            f"{path!r}: {what} at byte {pos} declares {n} bytes but only {end - pos} remain; "
            "the file is truncated (an interrupted download?). Fix: download it again."
        )
        raise MindSporeCheckpointError(msg)
    return pos, pos + n


def _parse_tensor(
    buf: mmap.mmap | bytes, pos: int, end: int, path: str
) -> tuple[list[int], str, tuple[int, int]]:
    dims: list[int] = []
    ttype: str | None = None
    content: tuple[int, int] | None = None
    while pos < end:
        key, pos = _varint(buf, pos, end, path)
        num, wire = key >> 3, key & 7
        if num == 1 and wire == 0:  # unpacked repeated int64 (proto2 default)
            v, pos = _varint(buf, pos, end, path)
            dims.append(_int64(v))
        elif num == 1 and wire == 2:  # packed repeated int64
            start, stop = _length(buf, pos, end, path, "packed dims")
            while start < stop:
                v, start = _varint(buf, start, stop, path)
                dims.append(_int64(v))
            pos = stop
        elif num == 2 and wire == 2:
            start, stop = _length(buf, pos, end, path, "tensor_type")
            ttype = bytes(buf[start:stop]).decode("utf-8", errors="replace")
            pos = stop
        elif num == 3 and wire == 2:
            start, stop = _length(buf, pos, end, path, "tensor_content")
            content = (start, stop - start)
            pos = stop
        else:
            pos = _skip(buf, wire, pos, end, path)
    if ttype is None or content is None:
        msg = (
            f"{path!r}: a TensorProto ending at byte {end} lacks "
            f"{'tensor_type' if ttype is None else 'tensor_content'} (required fields)."
        )
        raise MindSporeCheckpointError(msg)
    return dims, ttype, content


def _payload_end(buf: mmap.mmap, path: str, verify_crc: bool) -> int:
    size = len(buf)
    if size >= _CRC_TAIL and buf[size - _CRC_TAIL : size - 10] == _CRC_MARK:
        end = size - _CRC_TAIL
        if verify_crc:
            stored = int.from_bytes(buf[size - 10 : size], "big")
            crc = 0
            step = 64 << 20
            for start in range(0, end, step):
                crc = zlib.crc32(buf[start : min(start + step, end)], crc)
            if crc != stored:
                msg = (
                    f"{path!r}: CRC check failed (stored {stored}, computed {crc}); the file "
                    "is corrupt. Fix: download it again."
                )
                raise MindSporeCheckpointError(msg)
        return end
    return size


def _walk(buf: mmap.mmap, path: str, verify_crc: bool) -> list[CheckpointEntry]:
    end = _payload_end(buf, path, verify_crc)
    if end and buf[0] != 0x0A:
        msg = (
            f"{path!r} does not start with a Checkpoint.value field (byte 0x0a), found "
            f"0x{buf[0]:02x}. Expected an unencrypted MindSpore .ckpt (protobuf); encrypted "
            "checkpoints (saved with enc_key) and other formats cannot be read."
        )
        raise MindSporeCheckpointError(msg)
    entries: list[CheckpointEntry] = []
    seen: set[str] = set()
    pos = 0
    while pos < end:
        key, pos = _varint(buf, pos, end, path)
        num, wire = key >> 3, key & 7
        if num != 1 or wire != 2:
            pos = _skip(buf, wire, pos, end, path)
            continue
        vstart, vend = _length(buf, pos, end, path, "Checkpoint.value")
        pos = vend
        tag: str | None = None
        tensor: tuple[list[int], str, tuple[int, int]] | None = None
        is_map = False
        p = vstart
        while p < vend:
            k, p = _varint(buf, p, vend, path)
            n, w = k >> 3, k & 7
            if n == 1 and w == 2:
                s, e = _length(buf, p, vend, path, "Value.tag")
                tag = bytes(buf[s:e]).decode("utf-8", errors="replace")
                p = e
            elif n == 2 and w == 2:
                s, e = _length(buf, p, vend, path, "Value.tensor")
                tensor = _parse_tensor(buf, s, e, path)
                p = e
            else:
                is_map = is_map or n == 3
                p = _skip(buf, w, p, vend, path)
        if tag is None:
            msg = f"{path!r}: a Checkpoint.value at byte {vstart} has no tag (required)."
            raise MindSporeCheckpointError(msg)
        if tensor is None:  # a MapTensor (embedding tables of recommender models)
            entries.append(CheckpointEntry(tag, (), "MapTensor" if is_map else "none"))
            seen.add(tag)
            continue
        dims, ttype, content = tensor
        last = entries[-1] if entries else None
        if last is not None and last.tag == tag:  # a large parameter split into chunks
            if last.tensor_type != ttype or last.dims != tuple(dims):
                msg = (
                    f"{path!r}: consecutive chunks of {tag!r} disagree (dims "
                    f"{list(last.dims)} {last.tensor_type} vs {dims} {ttype} at byte {vstart})."
                )
                raise MindSporeCheckpointError(msg)
            last.chunks.append(content)
            continue
        if tag in seen:
            msg = (
                f"{path!r}: parameter {tag!r} appears again at byte {vstart} after other "
                "parameters; expected the chunks of one parameter to be consecutive."
            )
            raise MindSporeCheckpointError(msg)
        seen.add(tag)
        entries.append(CheckpointEntry(tag, tuple(dims), ttype, [content]))
    return entries


def _open(path: Path) -> tuple[mmap.mmap | bytes, int]:
    with open(path, "rb") as fh:
        size = fh.seek(0, 2)
        if size == 0:
            return b"", 0
        return mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ), size


def scan_checkpoint(path: str | Path, *, verify_crc: bool = False) -> list[CheckpointEntry]:
    """List the parameters of a MindSpore checkpoint (names, shapes, types) without
    reading their values.

    Parameters
    ----------
    path
        The ``.ckpt`` file.
    verify_crc
        Check the trailing CRC32 when the file has one (reads the whole file).

    Raises
    ------
    MindSporeCheckpointError
        Malformed or truncated file (the message gives the byte offset).
    """
    path = Path(path)
    buf, size = _open(path)
    if size == 0:
        msg = f"{str(path)!r} is empty; expected a MindSpore checkpoint. Fix: download it again."
        raise MindSporeCheckpointError(msg)
    try:
        return _walk(buf, str(path), verify_crc)  # type: ignore[arg-type]
    finally:
        buf.close()  # type: ignore[union-attr]


def _materialize(buf: mmap.mmap, entry: CheckpointEntry, path: str) -> np.ndarray:
    dtype_str = TENSOR_TYPES.get(entry.tensor_type)
    if dtype_str is None:
        msg = (
            f"{path!r}: parameter {entry.tag!r} has tensor_type {entry.tensor_type!r}; "
            f"supported: {sorted(TENSOR_TYPES)}."
        )
        raise MindSporeCheckpointError(msg)
    dtype = np.dtype(dtype_str)
    total = entry.nbytes
    if total % dtype.itemsize:
        msg = (
            f"{path!r}: parameter {entry.tag!r} has {total} bytes of {entry.tensor_type} "
            f"content, not a multiple of {dtype.itemsize}."
        )
        raise MindSporeCheckpointError(msg)
    out = np.empty(total // dtype.itemsize, dtype=dtype)
    raw = out.view(np.uint8)
    at = 0
    for offset, length in entry.chunks:  # one copy out of the page cache, no bytes objects
        raw[at : at + length] = np.frombuffer(buf, dtype=np.uint8, count=length, offset=offset)
        at += length
    shape = entry.shape
    if shape and int(np.prod(shape)) != out.size:
        msg = (
            f"{path!r}: parameter {entry.tag!r} has dims {list(entry.dims)} "
            f"({int(np.prod(shape))} values) but {out.size} {entry.tensor_type} values of "
            "content; the file is corrupt or truncated."
        )
        raise MindSporeCheckpointError(msg)
    if not shape:  # dims [0]: a scalar
        out = out[:1].reshape(())
    else:
        out = out.reshape(shape)
    if entry.tensor_type == "BFloat16":
        out = (out.astype(np.uint32) << 16).view(np.float32)
    return out


def read_checkpoint(
    path: str | Path,
    *,
    keep: Callable[[str], bool] | Iterable[str] | None = None,
    verify_crc: bool = True,
) -> tuple[dict[str, np.ndarray], list[str]]:
    """Read parameters of a MindSpore ``.ckpt`` file into numpy arrays.

    Parameters
    ----------
    path
        The checkpoint file.
    keep
        Which parameters to read: a predicate on the name or a collection of names
        (default: all). The others are skipped without reading their bytes.
    verify_crc
        Check the trailing CRC32 of MindSpore >= 2.3 files when present.

    Returns
    -------
    tensors : dict
        Name -> array (writable, C-contiguous; chunks of one parameter concatenated;
        ``BFloat16`` widened to float32).
    skipped : list
        Names present in the file but not read.

    Raises
    ------
    MindSporeCheckpointError
        Malformed, truncated or encrypted file; an unsupported ``tensor_type`` among the
        kept parameters.
    """
    path = Path(path)
    if keep is None:
        wanted: Callable[[str], bool] = lambda _tag: True  # noqa: E731
    elif callable(keep):
        wanted = keep
    else:
        names = set(keep)
        wanted = names.__contains__
    buf, size = _open(path)
    if size == 0:
        msg = f"{str(path)!r} is empty; expected a MindSpore checkpoint. Fix: download it again."
        raise MindSporeCheckpointError(msg)
    try:
        entries = _walk(buf, str(path), verify_crc)  # type: ignore[arg-type]
        tensors: dict[str, np.ndarray] = {}
        skipped: list[str] = []
        for entry in entries:
            if not wanted(entry.tag):
                skipped.append(entry.tag)
                continue
            tensors[entry.tag] = _materialize(buf, entry, str(path))  # type: ignore[arg-type]
        return tensors, skipped
    finally:
        buf.close()  # type: ignore[union-attr]
