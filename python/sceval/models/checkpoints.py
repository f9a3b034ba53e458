"""Pretrained checkpoints: where they come from, where they live, how they are fetched.

A checkpoint is a folder in the official on-disk layout of its model (scGPT: ``args.json``,
``vocab.json``, ``best_model.pt``; Geneformer: ``config.json``, ``model.safetensors`` and
the gene dictionaries). A :class:`CheckpointSpec` in :data:`CHECKPOINTS` records the
official download location of each file, its license and citation.

Installed checkpoints live in ``<home>/checkpoints/<name>/`` where ``<home>`` is
:func:`sceval_home` (``$SCEVAL_HOME``, else the user cache folder). :func:`fetch` downloads
a checkpoint there: resumable (``<file>.part`` + HTTP ``Range``), with timeouts and retries,
each file verified against its sha256 (from the spec, or the one recorded in
``<home>/checksums.json`` at its first download) and moved into place atomically; a
``.complete`` marker with the checksums is written last.

Any local folder in the official layout works as well: ``checkpoint=PATH`` in Python,
``--checkpoint <model>=PATH`` on the command line (:func:`resolve_checkpoint`).

A mirror (``url_base=`` or ``$SCEVAL_CHECKPOINT_MIRROR``) serves the same relative paths
as the official host: ``<mirror>/<path of the official URL>`` (for Hugging Face files,
``<mirror>/ctheodoris/Geneformer/resolve/main/...``), and ``<mirror>/<name>/<file>`` for
files whose official home is a Google Drive folder.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import http.client
import json
import os
import re
import ssl
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from sceval._errors import ScevalError, UnknownNameError
from sceval._registry import Registry

__all__ = [
    "CHECKPOINTS",
    "CheckpointSpec",
    "ChecksumError",
    "DownloadError",
    "FileSpec",
    "ManualDownloadError",
    "checkpoint_dir",
    "fetch",
    "fetch_files",
    "get_checkpoint",
    "is_installed",
    "register_checkpoint",
    "resolve_checkpoint",
    "sceval_home",
]

#: Environment variable naming the sceval home folder.
HOME_ENV = "SCEVAL_HOME"
#: Environment variable naming a checkpoint mirror (same relative paths as the official hosts).
MIRROR_ENV = "SCEVAL_CHECKPOINT_MIRROR"
#: Marker written last in an installed checkpoint folder (JSON: files and their sha256).
COMPLETE_MARKER = ".complete"
#: File in the home folder recording the sha256 of first downloads (trust on first use).
CHECKSUMS_FILE = "checksums.json"

#: Official locations that cannot be fetched file by file over plain HTTP.
_FOLDER_URL_MARKERS = ("drive.google.com/drive/folders/",)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_CHUNK = 1024 * 1024
_RETRYABLE_HTTP = {408, 425, 429, 500, 502, 503, 504}


class DownloadError(ScevalError, OSError):
    """A checkpoint file could not be downloaded (the message says what to do)."""


class ChecksumError(DownloadError):
    """A downloaded file does not have the expected sha256 (it is deleted)."""


class ManualDownloadError(DownloadError):
    """The checkpoint's official home cannot be fetched over plain HTTP (e.g. a Google
    Drive folder); the message explains the manual download."""


# ----------------------------------------------------------------------------------------
# Specs and registry
# ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileSpec:
    """One file of a checkpoint.

    Attributes
    ----------
    name
        Path inside the checkpoint folder, ``/``-separated (may contain a subfolder).
    url
        Official download URL (or, for a Google Drive folder, the folder's URL).
    sha256
        Expected sha256 (lowercase hex) when an official source states it; otherwise
        ``None`` and the sha256 of the first download is recorded and enforced later.
    size
        Expected size in bytes when known.
    manual
        ``True`` when :attr:`url` is a page to download from by hand (a portal or an
        archive listing), not the file itself.
    """

    name: str
    url: str
    sha256: str | None = None
    size: int | None = None
    manual: bool = False

    def __post_init__(self) -> None:
        p = PurePosixPath(self.name)
        if (
            not self.name
            or "\\" in self.name
            or p.is_absolute()
            or any(part in ("", ".", "..") for part in self.name.split("/"))
            or p.name.startswith(".")
        ):
            msg = (
                f"FileSpec.name must be a relative '/'-separated path inside the checkpoint "
                f"folder (no '..', no leading '/', not a dotfile), got {self.name!r}."
            )
            raise ValueError(msg)
        if urllib.parse.urlsplit(self.url).scheme not in ("http", "https"):
            msg = f"FileSpec.url must be an http(s) URL, got {self.url!r} for {self.name!r}."
            raise ValueError(msg)
        if self.sha256 is not None:
            sha = self.sha256.lower()
            if not _SHA256.match(sha):
                msg = (
                    f"FileSpec.sha256 must be 64 hex digits, got {self.sha256!r} for {self.name!r}."
                )
                raise ValueError(msg)
            object.__setattr__(self, "sha256", sha)
        if self.size is not None and (not isinstance(self.size, int) or self.size < 0):
            msg = f"FileSpec.size must be a non-negative int, got {self.size!r}."
            raise ValueError(msg)

    @property
    def direct(self) -> bool:
        """Whether :attr:`url` can be fetched with a plain HTTP GET."""
        return not self.manual and not any(m in self.url for m in _FOLDER_URL_MARKERS)


@dataclass(frozen=True)
class CheckpointSpec:
    """A pretrained checkpoint: its files, where they come from, its terms of use.

    Attributes
    ----------
    name
        Registry key, e.g. ``"scgpt.human"`` (also the folder name under ``checkpoints/``).
    model
        The architecture key that reads it (``"scgpt"``, ``"geneformer"``).
    files
        The files of the folder, in the official layout.
    license, citation, homepage, description
        Shown by ``sceval models``; ``citation`` is the reference to cite.
    species
        Species of the pretraining data.
    notes
        Optional remarks (provenance, caveats).
    approx_size_mb
        Rough total download size for messages (never used for verification).
    """

    name: str
    model: str
    files: tuple[FileSpec, ...]
    license: str
    citation: str
    homepage: str
    description: str
    species: str = "human"
    notes: str | None = None
    approx_size_mb: float | None = None

    def __post_init__(self) -> None:
        if not _NAME.match(self.name) or self.name in (".", ".."):
            msg = (
                f"CheckpointSpec.name must be letters, digits, '.', '_' or '-' (it is a folder "
                f"name), got {self.name!r}."
            )
            raise ValueError(msg)
        object.__setattr__(self, "files", tuple(self.files))
        if not self.files:
            msg = f"checkpoint {self.name!r} lists no files."
            raise ValueError(msg)
        names = [f.name for f in self.files]
        if len(set(names)) != len(names):
            msg = f"checkpoint {self.name!r} lists a file twice: {names}."
            raise ValueError(msg)

    @property
    def manual(self) -> bool:
        """Whether some file must be downloaded by hand from its official location."""
        return not all(f.direct for f in self.files)

    @property
    def size(self) -> int | None:
        """Total size in bytes when every file's size is known, else ``None``."""
        sizes = [f.size for f in self.files if f.size is not None]
        return sum(sizes) if len(sizes) == len(self.files) else None

    def size_text(self) -> str:
        """``"412.3 MB"``, ``"about 420 MB"`` or ``""``."""
        if self.size is not None:
            return _human(self.size)
        if self.approx_size_mb is not None:
            return f"about {self.approx_size_mb:g} MB"
        return ""

    def how_to_get(self) -> str:
        """The command that installs this checkpoint (short, for tables)."""
        if self.manual:
            return f"manual download (see: sceval fetch {self.name})"
        return f"sceval fetch {self.name}"


#: Registered checkpoints, keyed by name.
CHECKPOINTS: Registry[CheckpointSpec] = Registry("checkpoint")


def register_checkpoint(spec: CheckpointSpec) -> CheckpointSpec:
    """Register ``spec`` under ``spec.name``; returns it."""
    CHECKPOINTS.register(spec.name, spec)
    return spec


def get_checkpoint(name: str) -> CheckpointSpec:
    """The spec registered under ``name`` (did-you-mean error otherwise)."""
    return CHECKPOINTS.get(name)


# ----------------------------------------------------------------------------------------
# The official checkpoints
# ----------------------------------------------------------------------------------------

_SCGPT_HOME = "https://github.com/bowang-lab/scGPT"
_SCGPT_CITATION = (
    "Cui, H., Wang, C., Maan, H., Pang, K., Luo, F., Duan, N. & Wang, B. scGPT: toward "
    "building a foundation model for single-cell multi-omics using generative AI. "
    "Nature Methods 21, 1470-1480 (2024). doi:10.1038/s41592-024-02201-0"
)
_SCGPT_LICENSE = "MIT"
_SCGPT_FILES = ("args.json", "vocab.json", "best_model.pt")
_SCGPT_NOTES = (
    "Official download: a Google Drive folder linked from the 'Pretrained scGPT Model Zoo' "
    "table of the bowang-lab/scGPT README; no per-file URLs or checksums are published, "
    "so the sha256 of each file is recorded at its first download. License: the MIT "
    "license of that repository (no separate license is stated for the weights)."
)


def _scgpt(name: str, folder_id: str, description: str, approx_mb: float | None) -> CheckpointSpec:
    url = f"https://drive.google.com/drive/folders/{folder_id}"
    return CheckpointSpec(
        name=name,
        model="scgpt",
        files=tuple(FileSpec(f, url) for f in _SCGPT_FILES),
        license=_SCGPT_LICENSE,
        citation=_SCGPT_CITATION,
        homepage=_SCGPT_HOME,
        description=description,
        notes=_SCGPT_NOTES,
        approx_size_mb=approx_mb,
    )


_HF = "https://huggingface.co/ctheodoris/Geneformer/resolve/main"
_GF_HOME = "https://huggingface.co/ctheodoris/Geneformer"
_GF_LICENSE = "Apache-2.0"
_GF_NOTES = (
    "Files from the ctheodoris/Geneformer Hugging Face repository (branch main). The model "
    "folder's files and the matching gene dictionaries (from geneformer/) are put side by "
    "side in one folder. No checksum is pinned (the branch can move); sha256 is recorded "
    "at the first download."
)


def _geneformer(
    name: str,
    subfolder: str,
    model_files: tuple[str, ...],
    dict_dir: str,
    corpus: str,
    description: str,
    citation: str,
    approx_mb: float,
) -> CheckpointSpec:
    files = [FileSpec(f, f"{_HF}/{subfolder}/{f}") for f in model_files]
    for stem in (
        "token_dictionary",
        "gene_median_dictionary",
        "gene_name_id_dict",
        "ensembl_mapping_dict",
    ):
        fname = f"{stem}_{corpus}.pkl"
        files.append(FileSpec(fname, f"{_HF}/{dict_dir}{fname}"))
    return CheckpointSpec(
        name=name,
        model="geneformer",
        files=tuple(files),
        license=_GF_LICENSE,
        citation=citation,
        homepage=_GF_HOME,
        description=description,
        notes=_GF_NOTES,
        approx_size_mb=approx_mb,
    )


# Sizes are rough: parameters x 4 bytes (fp32) plus a few MB of dictionaries (scGPT
# whole-human: ~51M parameters, most in the 60,697 x 512 gene embedding; the blood
# model's vocabulary size is not documented, so no estimate).
register_checkpoint(
    _scgpt(
        "scgpt.human",
        "1oWh_-ZRdhtoGQ2Fw24HP41FgLoomVo-y",
        "scGPT whole-human: pretrained on 33 million normal human cells (the recommended "
        "default of the scGPT model zoo)",
        200,
    )
)
register_checkpoint(
    _scgpt(
        "scgpt.blood",
        "1kkug5C7NjvXIwQGGaGoqXTk_Lb_pDrBU",
        "scGPT blood: pretrained on 10.3 million blood and bone marrow cells",
        None,
    )
)
register_checkpoint(
    _geneformer(
        "geneformer.v1-10m",
        "Geneformer-V1-10M",
        ("config.json", "model.safetensors"),
        "geneformer/gene_dictionaries_30m/",
        "gc30M",
        "Geneformer V1, 10M parameters (6 layers, 256-d, input 2,048 genes), pretrained on "
        "Genecorpus-30M (~30 million human cells)",
        "Theodoris, C.V. et al. Transfer learning enables predictions in network biology. "
        "Nature 618, 616-624 (2023). doi:10.1038/s41586-023-06139-9",
        45,
    )
)
register_checkpoint(
    _geneformer(
        "geneformer.v2-104m",
        "Geneformer-V2-104M",
        ("config.json", "model.safetensors"),
        "geneformer/",
        "gc104M",
        "Geneformer V2, 104M parameters (12 layers, 768-d, input 4,096 genes), pretrained on "
        "~104 million human cells",
        "Chen, H. et al. Quantized multi-task learning for context-specific representations "
        "of gene network dynamics. bioRxiv 2024.08.16.608180 (2024). "
        "doi:10.1101/2024.08.16.608180",
        425,
    )
)


# ----------------------------------------------------------------------------------------
# Home folder and installed checkpoints
# ----------------------------------------------------------------------------------------


def sceval_home() -> Path:
    """The sceval home folder: ``$SCEVAL_HOME``, else the user cache folder
    (``platformdirs.user_cache_dir("sceval")``, e.g. ``~/.cache/sceval`` on Linux).

    The folder is not created here.
    """
    env = os.environ.get(HOME_ENV, "").strip()
    if env:
        return Path(env).expanduser()
    try:
        import platformdirs
    except ImportError:  # a light fallback; platformdirs gives the platform's convention
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        return Path(base).expanduser() / "sceval"
    return Path(platformdirs.user_cache_dir("sceval"))


def _home(home: str | os.PathLike[str] | None) -> Path:
    return Path(home).expanduser() if home is not None else sceval_home()


def checkpoint_dir(name: str, *, home: str | os.PathLike[str] | None = None) -> Path:
    """Where the registered checkpoint ``name`` is (or would be) installed."""
    spec = CHECKPOINTS.get(name)
    return _home(home) / "checkpoints" / spec.name


def _files_present(spec: Any, folder: Path) -> bool:
    return all((folder / f.name).is_file() for f in spec.files)


def is_installed(name: str, *, home: str | os.PathLike[str] | None = None) -> bool:
    """Whether every file of checkpoint ``name`` is in its folder.

    Files are moved into place only after they are verified, so a folder with all files
    was either fetched completely or filled by hand (which ``sceval fetch`` then verifies
    and marks complete).
    """
    folder = checkpoint_dir(name, home=home)
    return _files_present(CHECKPOINTS.get(name), folder)


def _read_marker(folder: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((folder / COMPLETE_MARKER).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def resolve_checkpoint(
    ref: str | os.PathLike[str], *, home: str | os.PathLike[str] | None = None
) -> Path:
    """The folder of a checkpoint given as a local folder or a registered name.

    Parameters
    ----------
    ref
        An existing folder in the model's official layout (returned as is), or the name
        of a registered checkpoint (e.g. ``"scgpt.human"``).
    home
        The sceval home (default :func:`sceval_home`).

    Raises
    ------
    FileNotFoundError
        A registered checkpoint that is not installed (the message says how to get it),
        or a path that is a file or does not exist.
    UnknownNameError
        ``ref`` is neither an existing folder nor a registered name.
    """
    if isinstance(ref, str) and not ref.strip():
        msg = (
            "no checkpoint given: expected a registered checkpoint name or a local folder. "
            f"Pass checkpoint=NAME or checkpoint=PATH; registered: {', '.join(CHECKPOINTS)}."
        )
        raise ValueError(msg)
    path = Path(ref).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        msg = (
            f"checkpoint {str(ref)!r} is a file; expected a folder in the model's official "
            f"layout. Pass its parent folder instead: {str(path.parent)!r}."
        )
        raise FileNotFoundError(msg)
    if isinstance(ref, str) and ref in CHECKPOINTS:
        spec = CHECKPOINTS.get(ref)
        folder = checkpoint_dir(ref, home=home)
        if is_installed(ref, home=home):
            return folder
        raise FileNotFoundError(_not_installed_message(spec, folder))
    if not isinstance(ref, str):
        msg = (
            f"checkpoint folder {str(path)!r} does not exist. Expected a folder in the "
            "model's official layout, or a registered checkpoint name (see `sceval models`)."
        )
        raise FileNotFoundError(msg)
    listing = ""
    try:
        CHECKPOINTS.get(ref)
    except UnknownNameError as err:
        listing = str(err)
    msg = (
        f"{listing} A local checkpoint folder must exist; {str(path.absolute())!r} does not. "
        "See `sceval models` for the checkpoints and how to get them."
    )
    raise UnknownNameError(msg)


def _not_installed_message(spec: CheckpointSpec, folder: Path) -> str:
    facts = ", ".join(s for s in (spec.size_text(), f"license {spec.license}") if s)
    how = (
        f"download it by hand (`sceval fetch {spec.name}` prints the steps)"
        if spec.manual
        else f"run `sceval fetch {spec.name}`"
    )
    return (
        f"checkpoint {spec.name!r} is not installed in {str(folder)!r}. To get it ({facts}), "
        f"{how}, or pass a local folder in the official layout with checkpoint=PATH (Python) "
        f"or --checkpoint {spec.model}=PATH (command line)."
    )


# ----------------------------------------------------------------------------------------
# Downloading
# ----------------------------------------------------------------------------------------


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"  # pragma: no cover


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file next to ``path``, then rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "x") as fh:  # plain open: permissions follow the umask
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


@contextlib.contextmanager
def _locked(lock_path: Path, waiting: str | None = None) -> Iterator[None]:
    """Hold an exclusive lock on ``lock_path`` (POSIX ``flock``; released if the process
    dies), so concurrent fetches of one checkpoint take turns instead of writing the same
    ``.part`` files. ``waiting`` is printed to stderr when the lock is busy. Where
    ``fcntl`` is missing (Windows) no lock is taken."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if waiting:
                print(waiting, file=sys.stderr, flush=True)
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _load_checksums(home: Path) -> dict[str, str]:
    path = home / CHECKSUMS_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as err:
        msg = (
            f"{str(path)!r} is not a readable JSON file of recorded checksums ({err}). "
            "Delete it to start recording again."
        )
        raise DownloadError(msg) from err
    files = data.get("files", {}) if isinstance(data, dict) else {}
    return {str(k): str(v) for k, v in files.items()} if isinstance(files, dict) else {}


def _record_checksum(home: Path, key: str, sha: str) -> None:
    with _locked(home / f".{CHECKSUMS_FILE}.lock"):
        table = _load_checksums(home)
        table[key] = sha
        body = {
            "comment": "sha256 of downloads (checkpoints, datasets) at their first download; "
            "later downloads of the same URL must match",
            "files": dict(sorted(table.items())),
        }
        _atomic_write_text(home / CHECKSUMS_FILE, json.dumps(body, indent=1) + "\n")


def _mirror_url(spec: Any, f: FileSpec, url_base: str) -> str:
    base = url_base.rstrip("/")
    if f.direct:
        parts = urllib.parse.urlsplit(f.url)
        rel = parts.path.lstrip("/") + (f"?{parts.query}" if parts.query else "")
    else:
        rel = urllib.parse.quote(f"{spec.name}/{f.name}")
    return f"{base}/{rel}"


def _check_base(url_base: str) -> str:
    parts = urllib.parse.urlsplit(url_base)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        msg = (
            f"a checkpoint mirror must be an http(s) URL like https://mirror.example.org, "
            f"got {url_base!r} (from --mirror, url_base= or ${MIRROR_ENV})."
        )
        raise ValueError(msg)
    return url_base


def _content_range_start(value: str | None) -> int | None:
    m = re.match(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$", value or "")
    return int(m.group(1)) if m else None


@contextlib.contextmanager
def _progress(desc: str, total: int | None, initial: int, enabled: bool) -> Iterator[Any]:
    from tqdm import tqdm

    bar = tqdm(
        total=total,
        initial=initial,
        desc=desc,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        disable=not enabled,
        leave=True,
        dynamic_ncols=True,
    )
    try:
        yield bar
    finally:
        bar.close()


def _copy(resp: BinaryIO, fh: BinaryIO, bar: Any) -> int:
    n = 0
    while True:
        block = resp.read(_CHUNK)
        if not block:
            return n
        fh.write(block)
        n += len(block)
        bar.update(len(block))


def _attempt(
    url: str, part: Path, label: str, expected_size: int | None, timeout: float, progress: bool
) -> str | None:
    """One try at completing ``part``; ``None`` when complete, else why it is not."""
    from sceval import __version__

    have = part.stat().st_size if part.exists() else 0
    if expected_size is not None and have > expected_size:
        part.unlink()
        have = 0
    if expected_size is not None and have == expected_size:
        return None
    req = urllib.request.Request(
        url, headers={"User-Agent": f"sceval/{__version__}", "Accept-Encoding": "identity"}
    )
    if have:
        req.add_header("Range", f"bytes={have}-")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            status = getattr(resp, "status", None) or 200
            if have and status == 206:
                if _content_range_start(resp.headers.get("Content-Range")) != have:
                    part.unlink()  # not the range asked for: start over
                    return "the server answered a different byte range"
            elif status == 200:
                have = 0  # a full response: no Range sent, or the server ignored it
            else:
                return f"unexpected HTTP status {status}"
            length = resp.headers.get("Content-Length", "")
            body = int(length) if length.strip().isdigit() else None
            total = have + body if body is not None else expected_size
            with (
                open(part, "ab" if have else "wb") as fh,
                _progress(label, total, have, progress) as bar,
            ):
                got = _copy(resp, fh, bar)
    except urllib.error.HTTPError as err:
        if err.code == 416 and have:
            # Nothing to send from `have` on: the .part is complete if the size agrees.
            if expected_size is None or have == expected_size:
                return None
            part.unlink()
            return "the server refused to resume (HTTP 416)"
        if err.code not in _RETRYABLE_HTTP:
            msg = (
                f"downloading {label} from {url} failed: HTTP {err.code} {err.reason}. "
                "Check the URL and your network access (with a mirror: that it serves "
                "this path)."
            )
            raise DownloadError(msg) from err
        return f"HTTP {err.code} {err.reason}"
    except (
        urllib.error.URLError,
        http.client.HTTPException,
        ConnectionError,
        TimeoutError,
        ssl.SSLError,
    ) as err:
        return f"{type(err).__name__}: {getattr(err, 'reason', err)}"
    have += got
    if body is not None and got < body:
        return f"the connection closed after {have} of {total} bytes"
    if expected_size is not None and have < expected_size:
        return f"the download stopped after {have} of {expected_size} bytes"
    if expected_size is not None and have > expected_size:
        part.unlink()
        msg = (
            f"downloading {label} from {url}: got {have} bytes, more than the "
            f"{expected_size} expected. The partial file was deleted; check that the URL "
            "(or mirror) serves the right file."
        )
        raise DownloadError(msg)
    return None


def _download(
    url: str,
    part: Path,
    *,
    label: str,
    expected_size: int | None,
    timeout: float,
    attempts: int,
    progress: bool,
) -> None:
    """Download ``url`` into ``part``, resuming what is there, until complete.

    Complete means ``expected_size`` bytes when known, else the server's
    ``Content-Length``, else a response that ended normally. A try that made progress is
    followed at once by the next; one that made none waits (0.5 s, 1 s, 2 s, ...).
    """
    part.parent.mkdir(parents=True, exist_ok=True)
    why = ""
    for attempt in range(1, attempts + 1):
        before = part.stat().st_size if part.exists() else 0
        why = _attempt(url, part, label, expected_size, timeout, progress)
        if why is None:
            return
        after = part.stat().st_size if part.exists() else 0
        if attempt < attempts and after <= before:
            time.sleep(min(0.5 * 2 ** (attempt - 1), 8.0))
    have = part.stat().st_size if part.exists() else 0
    msg = (
        f"downloading {label} from {url} did not complete after {attempts} "
        f"attempt{'s' if attempts != 1 else ''} "
        f"({why}); {have} bytes are kept in {str(part)!r}. Run the same command again to "
        "resume, or use a mirror (--mirror URL)."
    )
    raise DownloadError(msg)


def _checksum_key(f: FileSpec) -> str:
    return f.url if f.direct else f"{f.url}#{f.name}"


def _verify(
    spec: Any,
    f: FileSpec,
    path: Path,
    recorded: dict[str, str],
    home: Path,
    *,
    delete: bool,
    origin: str,
) -> str:
    """sha256 of ``path``, checked against the spec or the recorded value.

    ``origin`` says where the file came from (a URL, or "placed by hand") for messages.
    """
    if f.size is not None and path.stat().st_size != f.size:
        found_size = path.stat().st_size
        if delete:
            path.unlink()
        msg = (
            f"{spec.name}/{f.name}: expected {f.size} bytes, found {found_size} in "
            f"{str(path)!r} ({origin})" + (", deleted" if delete else "") + ". Fetch it again."
        )
        raise ChecksumError(msg)
    found = _sha256(path)
    if f.sha256 is not None:
        expected, source = f.sha256, "the checkpoint spec"
    else:
        expected, source = recorded.get(_checksum_key(f)), str(home / CHECKSUMS_FILE)
    if expected is not None and found != expected:
        if delete:
            path.unlink()
        fix = (
            "The file is corrupt or the source serves a different file; try again or use "
            "another mirror."
            if f.sha256 is not None
            else f"If the upstream file really changed, remove the entry {_checksum_key(f)!r} "
            f"from {str(home / CHECKSUMS_FILE)!r} and fetch again; otherwise the source "
            "serves a different file than before (check the mirror)."
        )
        msg = (
            f"sha256 mismatch for {spec.name}/{f.name}: expected {expected} (from {source}), "
            f"found {found} in {str(path)!r} ({origin})"
            + (" (the file was deleted)" if delete else "")
            + f". {fix}"
        )
        raise ChecksumError(msg)
    return found


def _manual_message(spec: CheckpointSpec, dest: Path) -> str:
    urls = sorted({f.url for f in spec.files if not f.direct})
    names = ", ".join(f.name for f in spec.files if not f.direct)
    auto = [f.name for f in spec.files if f.direct]
    gdrive = any("drive.google.com" in u for u in urls)
    where = "a Google Drive folder" if gdrive else "a shared folder or portal page"
    tool = f" (or the whole folder, e.g. with the third-party tool `gdown --folder {urls[0]}`)"
    return (
        f"checkpoint {spec.name!r} is published as {where} ({', '.join(urls)}), "
        "which cannot be downloaded file by file over plain HTTP. Download it by hand: open "
        f"that link, download {names}{tool if gdrive else ''}, and put the files in "
        f"{str(dest)!r}; then run "
        f"`sceval fetch {spec.name}` again to verify them"
        + (f" (it downloads {', '.join(auto)} itself)" if auto else "")
        + ". Or keep the folder anywhere and pass "
        f"checkpoint=PATH (Python) / --checkpoint {spec.model}=PATH (command line). A mirror "
        f"serving <mirror>/{spec.name}/<file> works too: --mirror URL or ${MIRROR_ENV}. "
        f"License: {spec.license}."
    )


def _write_marker(
    spec: Any, dest: Path, shas: dict[str, str], source: str, kind: str = "checkpoint"
) -> None:
    from sceval import __version__

    body = {
        kind: spec.name,
        "model": getattr(spec, "model", None),
        "files": {
            f.name: {"sha256": shas[f.name], "size": (dest / f.name).stat().st_size}
            for f in spec.files
        },
        "source": source,
        "fetched_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "sceval_version": __version__,
    }
    _atomic_write_text(dest / COMPLETE_MARKER, json.dumps(body, indent=1) + "\n")


def fetch(
    name: str,
    *,
    home: str | os.PathLike[str] | None = None,
    url_base: str | None = None,
    force: bool = False,
    progress: bool = True,
    timeout: float = 60.0,
    attempts: int = 5,
) -> Path:
    """Download checkpoint ``name`` into ``<home>/checkpoints/<name>/`` and verify it.

    Each file is downloaded to ``<file>.part`` (resumed with HTTP ``Range`` after an
    interruption, here or in an earlier run), checked against its sha256 and moved into
    place atomically; the ``.complete`` marker is written when all files are there.
    Where the spec gives no sha256, the first download's sha256 is recorded in
    ``<home>/checksums.json`` and later downloads must match it.

    Parameters
    ----------
    name
        A registered checkpoint (see ``sceval models``).
    home
        The sceval home (default :func:`sceval_home`).
    url_base
        A mirror replacing the official host (default ``$SCEVAL_CHECKPOINT_MIRROR``):
        files are fetched from ``<url_base>/<path of the official URL>``, or
        ``<url_base>/<name>/<file>`` for files published in a Google Drive folder.
    force
        Download every file again even if the checkpoint is installed (the installed files
        are replaced only by verified downloads).
    progress
        Show a progress bar per file (stderr).
    timeout
        Seconds to wait for the server on each connect or read.
    attempts
        Tries per file; each resumes where the previous one stopped.

    Returns
    -------
    Path
        The checkpoint folder.

    Raises
    ------
    ManualDownloadError
        The official location is a Google Drive folder and no mirror is set (the message
        explains the manual download).
    ChecksumError
        A download does not match the expected sha256 (it is deleted).
    DownloadError
        The server kept failing or the download stayed incomplete.
    """
    spec = CHECKPOINTS.get(name)
    root = _home(home)
    return fetch_files(
        spec,
        root / "checkpoints" / spec.name,
        root=root,
        url_base=url_base,
        force=force,
        progress=progress,
        timeout=timeout,
        attempts=attempts,
        manual_message=_manual_message,
    )


def fetch_files(
    spec: Any,
    dest: Path,
    *,
    root: Path,
    url_base: str | None = None,
    force: bool = False,
    progress: bool = True,
    timeout: float = 60.0,
    attempts: int = 5,
    manual_message: Any = None,
    kind: str = "checkpoint",
    mirror_env: str = MIRROR_ENV,
) -> Path:
    """Download the files of ``spec`` (a :class:`CheckpointSpec` or anything with
    ``name``, ``files`` and ``manual``) into ``dest`` and verify them: the machinery of
    :func:`fetch`, shared with :func:`sceval.data.registry.fetch_dataset`.

    ``manual_message(spec, dest)`` explains a manual download; ``kind`` names the
    marker's key; ``mirror_env`` the environment variable read when ``url_base`` is
    ``None``.
    """
    if attempts < 1:
        msg = f"attempts must be >= 1, got {attempts}."
        raise ValueError(msg)
    if url_base is None:
        url_base = os.environ.get(mirror_env, "").strip() or None
    if url_base is not None:
        _check_base(url_base)
    marker = _read_marker(dest)
    if not force and marker is not None and _files_present(spec, dest):
        return dest
    recorded = _load_checksums(root)
    shas: dict[str, str] = {}
    by_hand = url_base is None and spec.manual
    if by_hand and not all((dest / f.name).is_file() for f in spec.files if not f.direct):
        raise ManualDownloadError((manual_message or _manual_message)(spec, dest))

    waiting = f"waiting for another sceval fetch of {spec.name} to finish ..." if progress else None
    with _locked(dest.parent / f".{spec.name}.lock", waiting):
        if not force and _read_marker(dest) is not None and _files_present(spec, dest):
            return dest  # another process finished it while this one waited
        recorded = _load_checksums(root)  # re-read: the other process may have recorded
        with contextlib.suppress(FileNotFoundError):
            (dest / COMPLETE_MARKER).unlink()
        for f in spec.files:
            target = dest / f.name
            part = target.with_name(target.name + ".part")
            if url_base is None and not f.direct:  # placed by hand: verify and record it
                shas[f.name] = _verify(
                    spec, f, target, recorded, root, delete=False, origin="placed by hand"
                )
                if f.sha256 is None and _checksum_key(f) not in recorded:
                    _record_checksum(root, _checksum_key(f), shas[f.name])
                    recorded[_checksum_key(f)] = shas[f.name]
                continue
            if target.is_file() and not force:
                try:
                    shas[f.name] = _verify(
                        spec, f, target, recorded, root, delete=False, origin="already there"
                    )
                    continue
                except ChecksumError:
                    pass  # a stale or damaged file: download it again
            if force and part.exists():
                part.unlink()
            url = _mirror_url(spec, f, url_base) if url_base else f.url
            _download(
                url,
                part,
                label=f"{spec.name}/{f.name}",
                expected_size=f.size,
                timeout=timeout,
                attempts=attempts,
                progress=progress,
            )
            shas[f.name] = _verify(
                spec, f, part, recorded, root, delete=True, origin=f"downloaded from {url}"
            )
            if f.sha256 is None and _checksum_key(f) not in recorded:
                _record_checksum(root, _checksum_key(f), shas[f.name])
                recorded[_checksum_key(f)] = shas[f.name]
            os.replace(part, target)
        source = url_base or ("placed by hand" if by_hand else "official")
        if by_hand and any(f.direct for f in spec.files):
            source = "placed by hand + official"
        _write_marker(spec, dest, shas, source, kind)
        return dest
