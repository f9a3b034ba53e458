"""Checkpoint registry, home folder, resolution and verified resumable downloads.

All downloads go to a local HTTP server (sceval.testing.http) on 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner

from sceval._errors import UnknownNameError
from sceval.cli import cli
from sceval.listing import list_checkpoints
from sceval.models import checkpoints as ck
from sceval.models.checkpoints import (
    CHECKPOINTS,
    CheckpointSpec,
    ChecksumError,
    DownloadError,
    FileSpec,
    ManualDownloadError,
    checkpoint_dir,
    fetch,
    is_installed,
    resolve_checkpoint,
    sceval_home,
)
from sceval.testing.http import serve_directory

OFFICIAL = "https://models.example.org/org/repo/resolve/main"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _payload(n: int, seed: int = 0) -> bytes:
    return bytes((i * 7 + seed) % 251 for i in range(n))


@pytest.fixture()
def home(tmp_path, monkeypatch):
    h = tmp_path / "home"
    monkeypatch.setenv("SCEVAL_HOME", str(h))
    monkeypatch.delenv("SCEVAL_CHECKPOINT_MIRROR", raising=False)
    return h


@pytest.fixture()
def served(tmp_path):
    """A folder laid out like the official host: org/repo/resolve/main/<files>."""
    root = tmp_path / "srv"
    files = {
        "config.json": b'{"hidden_size": 8}',
        "model.safetensors": _payload(300_000),
        "dicts/token_dictionary.pkl": _payload(5_000, seed=3),
    }
    for rel, data in files.items():
        p = root / "org/repo/resolve/main" / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return root, files


def _register(monkeypatch, spec: CheckpointSpec) -> CheckpointSpec:
    # Temporary registration, undone after the test.
    monkeypatch.setitem(CHECKPOINTS._items, spec.name, spec)
    return spec


def _spec(files, name="test.tiny", sha=True, base=OFFICIAL, sizes=False) -> CheckpointSpec:
    return CheckpointSpec(
        name=name,
        model="geneformer",
        files=tuple(
            FileSpec(
                rel,
                f"{base}/{rel}",
                sha256=_sha(data) if sha else None,
                size=len(data) if sizes else None,
            )
            for rel, data in files.items()
        ),
        license="Apache-2.0",
        citation="Doe, J. A tiny model. (2025)",
        homepage="https://models.example.org/org/repo",
        description="a tiny test checkpoint",
    )


def _rel(name: str) -> str:
    return f"org/repo/resolve/main/{name}"


# ---------------------------------------------------------------------------- the server


def test_server_honours_range_and_truncation(served):
    root, files = served
    data = files["model.safetensors"]
    with serve_directory(root, truncate={_rel("model.safetensors"): 100}) as base:
        url = f"{base}/{_rel('model.safetensors')}"
        with urllib.request.urlopen(url) as r:  # first response: cut after 100 bytes
            assert r.headers["Content-Length"] == str(len(data))
            with pytest.raises(http.client.IncompleteRead) as err:
                r.read()
            assert err.value.partial == data[:100]
        req = urllib.request.Request(url, headers={"Range": "bytes=100-"})
        with urllib.request.urlopen(req) as r:
            assert r.status == 206
            assert r.headers["Content-Range"] == f"bytes 100-{len(data) - 1}/{len(data)}"
            assert r.read() == data[100:]
        req = urllib.request.Request(url, headers={"Range": f"bytes={len(data)}-"})
        with pytest.raises(urllib.error.HTTPError, match="416"):
            urllib.request.urlopen(req)
        with pytest.raises(urllib.error.HTTPError, match="404"):
            urllib.request.urlopen(f"{base}/nope.bin")
        assert [rec.status for rec in base.log] == [200, 206, 416, 404]


# ---------------------------------------------------------------------------- fetching


def test_fetch_downloads_verifies_and_marks_complete(home, served, monkeypatch):
    root, files = served
    with serve_directory(root) as base:
        spec = _register(monkeypatch, _spec(files, base=f"{base}/org/repo/resolve/main"))
        assert not is_installed(spec.name)
        dest = fetch(spec.name, progress=False)
    assert dest == home / "checkpoints" / spec.name == checkpoint_dir(spec.name)
    for rel, data in files.items():
        assert (dest / rel).read_bytes() == data
    assert not list(dest.rglob("*.part"))
    marker = json.loads((dest / ".complete").read_text())
    assert marker["files"]["model.safetensors"]["sha256"] == _sha(files["model.safetensors"])
    assert is_installed(spec.name)
    assert resolve_checkpoint(spec.name) == dest
    # Installed: a second fetch needs no server at all.
    assert fetch(spec.name, progress=False) == dest


def test_fetch_from_mirror_keeps_official_relative_paths(home, served, monkeypatch):
    root, files = served
    spec = _register(monkeypatch, _spec(files))  # official host is unreachable
    with serve_directory(root) as base:
        dest = fetch(spec.name, url_base=base, progress=False)
        paths = {rec.path for rec in base.log}
    assert paths == {_rel(r) for r in files}
    assert (dest / "dicts/token_dictionary.pkl").read_bytes() == files["dicts/token_dictionary.pkl"]


def test_mirror_from_environment(home, served, monkeypatch):
    root, files = served
    spec = _register(monkeypatch, _spec(files))
    with serve_directory(root) as base:
        monkeypatch.setenv("SCEVAL_CHECKPOINT_MIRROR", base + "/")
        dest = fetch(spec.name, progress=False)
    assert (dest / "config.json").read_bytes() == files["config.json"]


def test_truncated_first_response_is_resumed_with_range(home, served, monkeypatch):
    root, files = served
    spec = _register(monkeypatch, _spec(files))
    with serve_directory(root, truncate={_rel("model.safetensors"): 70_000}) as base:
        dest = fetch(spec.name, url_base=base, progress=False)
        log = [r for r in base.log if r.path == _rel("model.safetensors")]
    assert (dest / "model.safetensors").read_bytes() == files["model.safetensors"]
    assert [(r.status, r.range, r.sent) for r in log] == [
        (200, None, 70_000),
        (206, "bytes=70000-", 300_000 - 70_000),
    ]


def test_still_short_raises_then_next_run_resumes(home, served, monkeypatch):
    root, files = served
    spec = _register(monkeypatch, _spec(files, sizes=True))
    with serve_directory(root, truncate={_rel("model.safetensors"): 1234}) as base:
        with pytest.raises(
            DownloadError, match=r"1234 bytes are kept .*Run the same command again to resume"
        ):
            fetch(spec.name, url_base=base, progress=False, attempts=1)
        part = checkpoint_dir(spec.name) / "model.safetensors.part"
        assert part.stat().st_size == 1234
        assert not is_installed(spec.name)
        dest = fetch(spec.name, url_base=base, progress=False, attempts=1)
    log = [r for r in base.log if r.path == _rel("model.safetensors")]
    assert [(r.status, r.range, r.sent) for r in log] == [
        (200, None, 1234),
        (206, "bytes=1234-", 300_000 - 1234),
    ]
    assert (dest / "model.safetensors").read_bytes() == files["model.safetensors"]


def test_concurrent_fetches_take_turns(home, served, monkeypatch):
    root, files = served
    spec = _register(monkeypatch, _spec(files, sha=False))
    results, errors = [], []

    def run(base):
        try:
            results.append(fetch(spec.name, url_base=base, progress=False))
        except Exception as err:  # pragma: no cover - reported below
            errors.append(err)

    with serve_directory(root) as base:
        threads = [threading.Thread(target=run, args=(base,)) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors and len(results) == 3
    assert sum(r.path == _rel("model.safetensors") for r in base.log) == 1
    assert (results[0] / "model.safetensors").read_bytes() == files["model.safetensors"]


def test_server_ignoring_range_restarts_from_zero(home, served, monkeypatch):
    root, files = served
    spec = _register(monkeypatch, _spec(files))
    trunc = {_rel("model.safetensors"): 500}
    with serve_directory(root, truncate=trunc, ignore_range=True) as base:
        dest = fetch(spec.name, url_base=base, progress=False)
    assert (dest / "model.safetensors").read_bytes() == files["model.safetensors"]


def test_transient_http_error_is_retried(home, served, monkeypatch):
    root, files = served
    spec = _register(monkeypatch, _spec(files))
    monkeypatch.setattr(ck.time, "sleep", lambda s: None)
    with serve_directory(root, fail={_rel("config.json"): 503}) as base:
        dest = fetch(spec.name, url_base=base, progress=False)
    assert (dest / "config.json").read_bytes() == files["config.json"]


def test_missing_file_on_server_is_a_clear_error(home, served, monkeypatch):
    root, files = served
    spec = _register(monkeypatch, _spec({**files, "extra.bin": b"x"}))
    with serve_directory(root) as base, pytest.raises(DownloadError, match=r"extra\.bin.*HTTP 404"):
        fetch(spec.name, url_base=base, progress=False)
    assert not is_installed(spec.name)
    assert not (checkpoint_dir(spec.name) / ".complete").exists()


def test_wrong_sha256_raises_and_leaves_no_file(home, served, monkeypatch):
    root, files = served
    good = _spec(files)
    bad_files = tuple(
        FileSpec(f.name, f.url, sha256="0" * 64) if f.name == "model.safetensors" else f
        for f in good.files
    )
    spec = _register(monkeypatch, CheckpointSpec(**{**good.__dict__, "files": bad_files}))
    with serve_directory(root) as base:
        with pytest.raises(ChecksumError, match=r"expected 0{64} .*found [0-9a-f]{64}"):
            fetch(spec.name, url_base=base, progress=False)
    dest = checkpoint_dir(spec.name)
    assert not (dest / "model.safetensors").exists()
    assert not (dest / "model.safetensors.part").exists()
    assert not (dest / ".complete").exists()
    assert not is_installed(spec.name)


def test_first_download_sha256_is_recorded_and_enforced(home, served, monkeypatch):
    root, files = served
    spec = _register(monkeypatch, _spec(files, sha=False))
    with serve_directory(root) as base:
        dest = fetch(spec.name, url_base=base, progress=False)
    recorded = json.loads((home / "checksums.json").read_text())["files"]
    key = f"{OFFICIAL}/model.safetensors"
    assert recorded[key] == _sha(files["model.safetensors"])
    # The upstream file changes: a forced download no longer matches the record.
    (root / _rel("model.safetensors")).write_bytes(_payload(300_000, seed=9))
    with serve_directory(root) as base:
        with pytest.raises(ChecksumError, match=r"checksums\.json"):
            fetch(spec.name, url_base=base, progress=False, force=True)
    # The verified file installed earlier is untouched.
    assert (dest / "model.safetensors").read_bytes() == files["model.safetensors"]
    assert not (dest / "model.safetensors.part").exists()


def test_size_mismatch_is_an_error(home, served, monkeypatch):
    root, files = served
    good = _spec(files, sha=False)
    wrong = tuple(
        FileSpec(f.name, f.url, size=10) if f.name == "config.json" else f for f in good.files
    )
    spec = _register(monkeypatch, CheckpointSpec(**{**good.__dict__, "files": wrong}))
    with serve_directory(root) as base, pytest.raises(DownloadError, match="more than the 10"):
        fetch(spec.name, url_base=base, progress=False)
    assert not (checkpoint_dir(spec.name) / "config.json").exists()


# ---------------------------------------------------------------------------- manual (Drive)


def _drive_spec(files) -> CheckpointSpec:
    url = "https://drive.google.com/drive/folders/abc123"
    return CheckpointSpec(
        name="test.drive",
        model="scgpt",
        files=tuple(FileSpec(rel, url) for rel in files),
        license="MIT",
        citation="Doe, J. (2025)",
        homepage="https://example.org",
        description="files in a Google Drive folder",
    )


def test_drive_folder_checkpoint_explains_manual_download(home, monkeypatch, tmp_path):
    files = {"args.json": b"{}", "vocab.json": b'{"<pad>": 0}', "best_model.pt": b"w" * 99}
    spec = _register(monkeypatch, _drive_spec(files))
    dest = checkpoint_dir(spec.name)
    with pytest.raises(ManualDownloadError, match=r"drive\.google\.com.*by hand.*best_model\.pt"):
        fetch(spec.name, progress=False)
    with pytest.raises(FileNotFoundError, match=r"by hand.*sceval fetch test\.drive"):
        resolve_checkpoint(spec.name)
    # Files put in place by hand: installed; fetch verifies and records them.
    dest.mkdir(parents=True)
    for rel, data in files.items():
        (dest / rel).write_bytes(data)
    assert is_installed(spec.name)
    assert resolve_checkpoint(spec.name) == dest
    assert fetch(spec.name, progress=False) == dest
    assert (dest / ".complete").exists()
    assert len(json.loads((home / "checksums.json").read_text())["files"]) == 3


def test_mixed_manual_and_direct_files(home, monkeypatch, tmp_path):
    """A portal-hosted weight file plus a directly downloadable gene list (scFoundation):
    the message names only the manual file; once it is placed, fetch downloads the rest."""
    www = tmp_path / "www"
    www.mkdir()
    (www / "genes.tsv").write_bytes(b"gene_name\nA\nB\n")
    with serve_directory(www) as base:
        spec = _register(
            monkeypatch,
            CheckpointSpec(
                name="test.mixed",
                model="scgpt",
                files=(
                    FileSpec("models.ckpt", "https://portal.example.org/share/x", manual=True),
                    FileSpec("genes.tsv", f"{base}/genes.tsv"),
                ),
                license="custom, non-commercial",
                citation="Doe, J. (2025)",
                homepage="https://example.org",
                description="mixed",
            ),
        )
        with pytest.raises(
            ManualDownloadError,
            match=r"a shared folder or portal page.*download models\.ckpt, and put.*"
            r"it downloads genes\.tsv itself",
        ) as err:
            fetch(spec.name, progress=False)
        assert "gdown" not in str(err.value)
        dest = checkpoint_dir(spec.name)
        dest.mkdir(parents=True)
        (dest / "models.ckpt").write_bytes(b"w" * 10)
        assert fetch(spec.name, progress=False) == dest
    assert (dest / "genes.tsv").read_bytes().startswith(b"gene_name")
    marker = json.loads((dest / ".complete").read_text())
    assert marker["source"] == "placed by hand + official"
    assert set(marker["files"]) == {"models.ckpt", "genes.tsv"}


def test_drive_folder_checkpoint_from_mirror(home, monkeypatch, tmp_path):
    files = {"args.json": b"{}", "vocab.json": b'{"<pad>": 0}', "best_model.pt": b"w" * 99}
    spec = _register(monkeypatch, _drive_spec(files))
    srv = tmp_path / "mirror" / spec.name
    srv.mkdir(parents=True)
    for rel, data in files.items():
        (srv / rel).write_bytes(data)
    with serve_directory(tmp_path / "mirror") as base:
        dest = fetch(spec.name, url_base=base, progress=False)
    assert (dest / "best_model.pt").read_bytes() == files["best_model.pt"]


# ---------------------------------------------------------------------------- resolution


def test_resolve_checkpoint_folder_installed_missing_unknown(home, tmp_path, monkeypatch):
    folder = tmp_path / "my_ckpt"
    folder.mkdir()
    assert resolve_checkpoint(folder) == folder
    assert resolve_checkpoint(str(folder)) == folder
    with pytest.raises(FileNotFoundError, match=r"sceval fetch geneformer\.v1-10m"):
        resolve_checkpoint("geneformer.v1-10m")
    with pytest.raises(FileNotFoundError, match="--checkpoint geneformer=PATH"):
        resolve_checkpoint("geneformer.v1-10m")
    with pytest.raises(UnknownNameError, match=r"Did you mean 'scgpt\.human'.*must exist"):
        resolve_checkpoint("scgpt.humn")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        resolve_checkpoint(tmp_path / "nowhere")
    weights = folder / "best_model.pt"
    weights.write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="is a file"):
        resolve_checkpoint(weights)
    with pytest.raises(ValueError, match="no checkpoint given"):
        resolve_checkpoint("")


def test_foundation_model_skips_with_fetch_hint(home):
    from sceval._errors import ModelSkippedError
    from sceval.models.foundation import FoundationModel

    class Tiny(FoundationModel):
        default_checkpoint = "geneformer.v2-104m"

        def embed_cells(self, adata, ctx):  # pragma: no cover
            raise NotImplementedError

    with pytest.raises(ModelSkippedError, match=r"sceval fetch geneformer\.v2-104m"):
        Tiny().checkpoint_dir()


def test_sceval_home(monkeypatch, tmp_path):
    monkeypatch.setenv("SCEVAL_HOME", str(tmp_path / "h"))
    assert sceval_home() == tmp_path / "h"
    monkeypatch.delenv("SCEVAL_HOME")
    platformdirs = pytest.importorskip("platformdirs")
    assert sceval_home() == Path(platformdirs.user_cache_dir("sceval"))


def test_spec_validation():
    with pytest.raises(ValueError, match="relative"):
        FileSpec("../evil.bin", "https://example.org/x")
    with pytest.raises(ValueError, match="relative"):
        FileSpec("/abs.bin", "https://example.org/x")
    with pytest.raises(ValueError, match="http"):
        FileSpec("a.bin", "ftp://example.org/x")
    with pytest.raises(ValueError, match="64 hex"):
        FileSpec("a.bin", "https://example.org/x", sha256="abc")
    assert FileSpec("a.bin", "https://example.org/x", sha256="A" * 64).sha256 == "a" * 64
    with pytest.raises(ValueError, match="folder name"):
        CheckpointSpec("a/b", "scgpt", (FileSpec("a", "https://e.org/a"),), "", "", "", "")


# ---------------------------------------------------------------------------- real registry


def test_registered_checkpoints_are_complete():
    from sceval.models import MODELS

    names = set(CHECKPOINTS)
    assert {"scgpt.human", "scgpt.blood", "geneformer.v1-10m", "geneformer.v2-104m"} <= names
    archs = {k.split(".", 1)[0] for k in MODELS.keys()}
    for name in names:
        spec = CHECKPOINTS.get(name)
        assert spec.name == name and spec.model in archs, (name, spec.model)
        assert spec.license and spec.citation and spec.description and spec.species
        assert spec.homepage.startswith("https://")
        for f in spec.files:
            assert f.url.startswith("https://"), f.url
    scgpt = {f.name for f in CHECKPOINTS.get("scgpt.human").files}
    assert scgpt == {"args.json", "vocab.json", "best_model.pt"}
    for name in ("geneformer.v1-10m", "geneformer.v2-104m"):
        spec = CHECKPOINTS.get(name)
        got = {f.name for f in spec.files}
        assert {"config.json", "model.safetensors"} <= got
        assert any(n.startswith("token_dictionary_") for n in got)
        assert any(n.startswith("gene_median_dictionary_") for n in got)
        for f in spec.files:
            assert f.url.startswith("https://huggingface.co/ctheodoris/Geneformer/resolve/main/")


# ---------------------------------------------------------------------------- CLI and listing


def _cli(args, env=None):
    return CliRunner().invoke(cli, args, env=env, catch_exceptions=False)


def test_cli_fetch_and_models(home, served, monkeypatch):
    root, files = served
    spec = _register(monkeypatch, _spec(files))
    r = _cli(["models"])
    assert r.exit_code == 0
    assert "Checkpoints" in r.output and "sceval fetch test.tiny" in r.output
    row = next(line for line in r.output.splitlines() if line.strip().startswith("test.tiny"))
    assert "missing" in row and "Apache-2.0" in row
    with serve_directory(root) as base:
        r = _cli(["fetch", spec.name, "--mirror", base, "-q"])
    assert r.exit_code == 0, r.output
    assert f"installed in {home / 'checkpoints' / spec.name}" in r.output
    row = next(line for line in _cli(["models"]).output.splitlines() if "test.tiny" in line)
    assert "installed" in row and str(home) in row
    df = list_checkpoints()
    assert bool(df.set_index("checkpoint").loc["test.tiny", "installed"])
    assert {"checkpoint", "model", "installed", "get", "license", "path"} <= set(df.columns)


def test_cli_fetch_errors_exit_2_with_one_line(home, tmp_path):
    r = _cli(["fetch", "scgpt.humn"])
    assert r.exit_code == 2
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: Unknown checkpoint 'scgpt.humn'")
    r = _cli(["fetch", "scgpt.human", "--home", str(tmp_path / "h")])
    assert r.exit_code == 2 and "drive.google.com" in r.output and "by hand" in r.output
    assert len(r.output.strip().splitlines()) == 1
    r = _cli(["fetch", "geneformer.v1-10m", "--mirror", "ftp://x"])
    assert r.exit_code == 2 and "http(s) URL" in r.output


def test_list_checkpoints_does_not_create_folders(tmp_path):
    home = tmp_path / "never"
    df = list_checkpoints(home=home)
    assert not home.exists()
    assert set(df["status"]) == {"missing"}
    assert (df["get"].str.contains("sceval fetch")).all()
    assert os.path.commonpath([*df["path"], str(home)]) == str(home)
