"""Dataset registry: listing, built-in loaders, verified resumable downloads, CLI.

Every download goes to a local HTTP server (sceval.testing.http) on 127.0.0.1.
"""

from __future__ import annotations

import json
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pytest
import scipy.sparse as sp
from click.testing import CliRunner

from sceval._errors import UnknownNameError
from sceval.cli import cli
from sceval.data.registry import (
    DATASETS,
    DatasetNotDownloadedError,
    DatasetSpec,
    fetch_dataset,
    get_dataset,
    is_downloaded,
    list_datasets,
    load_dataset,
    register_dataset,
)
from sceval.models.checkpoints import ChecksumError, FileSpec, ManualDownloadError
from sceval.testing import small_dataset
from sceval.testing.http import serve_directory

PUBLIC = (
    "scib_immune_human",
    "scib_pancreas",
    "scib_lung",
    "adamson",
    "norman",
    "tabula_sapiens_blood",
    "pbmc10k_multiome",
)


@pytest.fixture
def served(tmp_path):
    """A small h5ad served at <base>/files/small.h5ad."""
    root = tmp_path / "www" / "files"
    root.mkdir(parents=True)
    a = small_dataset(n_cells=60, n_genes=40)
    a.write_h5ad(root / "small.h5ad")
    return tmp_path / "www", a


@pytest.fixture
def temp_spec():
    made: list[str] = []

    def make(name: str, url: str, **kw):
        spec = DatasetSpec(
            name,
            "test dataset",
            ("integration",),
            files=(FileSpec("small.h5ad", url, **kw),),
            license="CC0",
            citation="test",
            batch_key="batch",
            label_key="cell_type",
            counts_layer="counts",
        )
        register_dataset(spec)
        made.append(name)
        return spec

    yield make
    for name in made:
        DATASETS.unregister(name)


def test_registry_lists_public_and_builtin_datasets(tmp_path):
    df = list_datasets(home=tmp_path)
    names = set(df["dataset"])
    assert set(PUBLIC) <= names
    assert {"sim_3batch", "pbmc68k_reduced", "sim_perturbation", "sim_multiome"} <= names
    for name in PUBLIC:
        spec = get_dataset(name)
        assert spec.license and spec.citation and spec.files
        assert spec.files[0].url.startswith("https://")
        row = df[df["dataset"] == name].iloc[0]
        assert row["status"] == "missing"
        assert row["get"].startswith(f"sceval fetch-data {name}")
    assert df.set_index("dataset").loc["sim_3batch", "status"] == "built-in"
    assert get_dataset("scib_pancreas").keys() == {
        "batch_key": "tech",
        "label_key": "celltype",
        "counts_layer": "counts",
    }


def test_unknown_dataset_suggests_the_closest():
    with pytest.raises(UnknownNameError, match=r"scib_pancreas"):
        get_dataset("scib_pancrea")


def test_builtin_dataset_loads_without_download(tmp_path):
    a = load_dataset("sim_3batch", home=tmp_path)
    assert a.n_obs == 3000 and "batch" in a.obs and "counts" in a.layers
    assert is_downloaded("sim_3batch", home=tmp_path)


def test_missing_dataset_error_names_fetch_command(tmp_path):
    with pytest.raises(DatasetNotDownloadedError, match=r"sceval fetch-data scib_pancreas"):
        load_dataset("scib_pancreas", home=tmp_path)


def test_fetch_verifies_records_and_loads(served, temp_spec, tmp_path):
    www, a = served
    home = tmp_path / "home"
    with serve_directory(www, truncate={"files/small.h5ad": 500}) as base:
        temp_spec("tiny_test", f"{base}/files/small.h5ad")
        path = fetch_dataset("tiny_test", home=home, progress=False)
        # the cut-short first response was resumed with a Range request
        assert any(r.status == 206 for r in base.log)
    assert path == home / "datasets" / "tiny_test"
    marker = json.loads((path / ".complete").read_text())
    assert marker["dataset"] == "tiny_test"
    recorded = json.loads((home / "checksums.json").read_text())
    assert marker["files"]["small.h5ad"]["sha256"] in recorded["files"].values()
    assert is_downloaded("tiny_test", home=home)
    got = load_dataset("tiny_test", home=home)
    np.testing.assert_array_equal(got.layers["counts"].toarray(), a.layers["counts"].toarray())
    assert got.uns["sceval_dataset"]["batch_key"] == "batch"
    backed = load_dataset("tiny_test", home=home, backed=True)
    assert backed.isbacked and backed.n_obs == a.n_obs
    # fetching again is a no-op (no new request)
    fetch_dataset("tiny_test", home=home, progress=False)


def test_changed_upstream_file_is_refused(served, temp_spec, tmp_path):
    www, _ = served
    home = tmp_path / "home"
    with serve_directory(www) as base:
        temp_spec("tiny_test", f"{base}/files/small.h5ad")
        fetch_dataset("tiny_test", home=home, progress=False)
        b = small_dataset(n_cells=61, n_genes=40)
        b.write_h5ad(www / "files" / "small.h5ad")
        with pytest.raises(ChecksumError, match=r"sha256 mismatch for tiny_test/small.h5ad"):
            fetch_dataset("tiny_test", home=home, progress=False, force=True)


def test_wrong_published_sha256_is_refused(served, temp_spec, tmp_path):
    www, _ = served
    with serve_directory(www) as base:
        temp_spec("tiny_test", f"{base}/files/small.h5ad", sha256="0" * 64)
        with pytest.raises(ChecksumError, match=r"expected 0{64} \(from the checkpoint spec\)"):
            fetch_dataset("tiny_test", home=tmp_path / "home", progress=False)
    assert not (tmp_path / "home" / "datasets" / "tiny_test" / "small.h5ad").exists()


def test_mirror_serves_the_official_path(tmp_path):
    """A mirror serves <mirror>/<path of the official URL>: figshare's /files/<id>."""
    www = tmp_path / "mirror"
    (www / "files").mkdir(parents=True)
    small_dataset(n_cells=30, n_genes=20).write_h5ad(www / "files" / "24539828")
    home = tmp_path / "home"
    with serve_directory(www) as base:
        r = CliRunner().invoke(
            cli, ["fetch-data", "scib_pancreas", "--home", str(home), "--mirror", base, "-q"]
        )
    assert r.exit_code == 0, r.output
    assert "scib_pancreas: downloaded to" in r.output and "CC BY 4.0" in r.output
    assert is_downloaded("scib_pancreas", home=home)
    r = CliRunner().invoke(cli, ["datasets", "--home", str(home)])
    assert r.exit_code == 0
    line = next(ln for ln in r.output.splitlines() if ln.strip().startswith("scib_pancreas"))
    assert "downloaded" in line


def test_manual_dataset_explains_and_accepts_a_file_placed_by_hand(tmp_path):
    home = tmp_path / "home"
    with pytest.raises(ManualDownloadError, match=r"Download TS_Blood.h5ad by hand.*unzip"):
        fetch_dataset("tabula_sapiens_blood", home=home, progress=False)
    dest = home / "datasets" / "tabula_sapiens_blood"
    dest.mkdir(parents=True)
    small_dataset(n_cells=30, n_genes=20).write_h5ad(dest / "TS_Blood.h5ad")
    fetch_dataset("tabula_sapiens_blood", home=home, progress=False)
    assert is_downloaded("tabula_sapiens_blood", home=home)
    assert json.loads((dest / ".complete").read_text())["source"] == "placed by hand"


def test_cli_errors_are_one_line(tmp_path):
    r = CliRunner().invoke(cli, ["fetch-data", "scib_pancrea", "--home", str(tmp_path)])
    assert r.exit_code == 2
    assert r.output.startswith("Error:") and "scib_pancreas" in r.output
    r = CliRunner().invoke(cli, ["fetch-data", "sim_3batch", "--home", str(tmp_path)])
    assert r.exit_code == 0 and "built in" in r.output


def _write_10x_multiome(path: Path, n_cells: int = 20) -> None:
    """A Cell Ranger ARC filtered_feature_bc_matrix.h5 with 6 genes and 4 peaks."""
    rng = np.random.default_rng(0)
    genes = [f"GENE{i}" for i in range(6)]
    peaks = [f"chr1:{100 * i}-{100 * i + 50}" for i in range(4)]
    names = genes + peaks
    m = sp.csc_matrix(rng.poisson(1.0, size=(len(names), n_cells)).astype(np.int32))
    with h5py.File(path, "w") as f:
        g = f.create_group("matrix")
        g["barcodes"] = np.array([f"AAAC{i:04d}-1" for i in range(n_cells)], dtype="S")
        g["data"], g["indices"], g["indptr"] = m.data, m.indices, m.indptr
        g["shape"] = np.array(m.shape, dtype=np.int32)
        ft = g.create_group("features")
        ft["id"] = np.array([f"ENSG{i:011d}" for i in range(6)] + peaks, dtype="S")
        ft["name"] = np.array(names, dtype="S")
        ft["feature_type"] = np.array(["Gene Expression"] * 6 + ["Peaks"] * 4, dtype="S")
        ft["genome"] = np.array(["GRCh38"] * len(names), dtype="S")
        ft["_all_tag_keys"] = np.array([b"genome"])


def test_10x_multiome_file_loads_as_rna_and_atac(tmp_path):
    www = tmp_path / "www" / "samples" / "cell-arc" / "1.0.0" / "pbmc_granulocyte_sorted_10k"
    www.mkdir(parents=True)
    _write_10x_multiome(www / "pbmc_granulocyte_sorted_10k_filtered_feature_bc_matrix.h5")
    home = tmp_path / "home"
    with serve_directory(tmp_path / "www") as base:
        fetch_dataset("pbmc10k_multiome", home=home, url_base=base, progress=False)
    mdata = load_dataset("pbmc10k_multiome", home=home)
    rna, atac = mdata.mod["rna"], mdata.mod["atac"]
    assert (rna.n_vars, atac.n_vars) == (6, 4)
    assert rna.n_obs == atac.n_obs == 20
    assert rna.var["ensembl_id"].iloc[0] == "ENSG00000000000"
    assert "counts" in rna.layers


def test_builtin_multiome_and_perturbation_load(tmp_path):
    m = load_dataset("sim_multiome", home=tmp_path)
    assert set(m.mod) >= {"rna", "atac"}
    p = load_dataset("sim_perturbation", home=tmp_path)
    assert isinstance(p, ad.AnnData) and "condition" in p.obs
    assert (p.obs["condition"] == get_dataset("sim_perturbation").control).any()
