"""Registry of public benchmark datasets: where they come from, their keys, their terms.

Each :class:`DatasetSpec` records the official download location of its files, size,
license, citation and the ``obs``/``layers`` keys the tasks need (batch, labels, counts,
perturbation). ``sceval datasets`` lists them with whether they are downloaded;
``sceval fetch-data NAME`` downloads one into ``<home>/datasets/<NAME>/`` with the same
machinery as the checkpoints (:func:`sceval.models.checkpoints.fetch_files`): resumable
``.part`` files, retries, sha256 verification (from the spec where the publisher states
it, else recorded at the first download and enforced afterwards), atomic moves and a
``.complete`` marker. A mirror serving ``<mirror>/<path of the official URL>`` works via
``--mirror URL`` or ``$SCEVAL_DATA_MIRROR``.

Built-in entries (``pbmc68k_reduced``, ``sim_3batch``, ``sim_perturbation``,
``sim_multiome``) need no download and make configs runnable offline.

References for the public entries are in each spec's ``citation``; keys follow the
files as published (scIB: Luecken et al., Nat. Methods 2022; scPerturb: Peidli et al.,
Nat. Methods 2024).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from sceval._errors import ScevalError
from sceval._registry import Registry
from sceval.models.checkpoints import (
    FileSpec,
    _files_present,
    _home,
    _human,
    _read_marker,
    fetch_files,
)

__all__ = [
    "DATASETS",
    "DATA_MIRROR_ENV",
    "DatasetNotDownloadedError",
    "DatasetSpec",
    "dataset_dir",
    "fetch_dataset",
    "get_dataset",
    "is_downloaded",
    "list_datasets",
    "load_dataset",
    "register_dataset",
]

#: Environment variable naming a dataset mirror (same relative paths as the official hosts).
DATA_MIRROR_ENV = "SCEVAL_DATA_MIRROR"
FORMATS = ("h5ad", "10x_h5_multiome", "builtin")


class DatasetNotDownloadedError(ScevalError, FileNotFoundError):
    """A registered dataset is not in the cache yet (the message says how to fetch it)."""


@dataclass(frozen=True)
class DatasetSpec:
    """A public dataset and how sceval reads it.

    Attributes
    ----------
    name
        Registry key (also the folder name under ``<home>/datasets/``).
    description
        One line for ``sceval datasets``.
    tasks
        The sceval tasks it is meant for.
    files
        Its files (empty for built-in datasets); the first is the one that is read.
    format
        ``"h5ad"``, ``"10x_h5_multiome"`` (a 10x Cell Ranger ARC ``.h5`` with gene
        expression and peaks; loaded as a MuData with ``rna`` and ``atac``) or
        ``"builtin"`` (``loader`` makes it).
    license, citation, homepage
        Terms of use, reference to cite, landing page.
    batch_key, label_key, counts_layer, gene_id_column
        Keys passed to :func:`sceval.data.validate` and the tasks (``None`` when absent).
    perturbation_key, control
        For perturbation sets: the ``obs`` column and its control value.
    n_cells, n_genes, species
        As published (for the listing; never used for verification).
    approx_size_mb
        Rough download size for messages.
    loader
        For built-in datasets: a function returning the AnnData (or MuData).
    notes
        Caveats (e.g. what the published file holds).
    """

    name: str
    description: str
    tasks: tuple[str, ...]
    files: tuple[FileSpec, ...] = ()
    format: str = "h5ad"
    license: str = ""
    citation: str = ""
    homepage: str = ""
    batch_key: str | None = None
    label_key: str | None = None
    counts_layer: str | None = None
    gene_id_column: str | None = None
    perturbation_key: str | None = None
    control: str | None = None
    n_cells: int | None = None
    n_genes: int | None = None
    species: str = "human"
    approx_size_mb: float | None = None
    loader: Callable[[], Any] | None = field(default=None, compare=False, repr=False)
    notes: str = ""

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            msg = f"DatasetSpec.format must be one of {FORMATS}, got {self.format!r}."
            raise ValueError(msg)
        object.__setattr__(self, "files", tuple(self.files))
        object.__setattr__(self, "tasks", tuple(self.tasks))
        if (self.format == "builtin") != (self.loader is not None):
            msg = f"dataset {self.name!r}: a loader is given exactly for format 'builtin'."
            raise ValueError(msg)
        if self.format != "builtin" and not self.files:
            msg = f"dataset {self.name!r} lists no files."
            raise ValueError(msg)

    @property
    def builtin(self) -> bool:
        """Whether the dataset ships with sceval (no download)."""
        return self.format == "builtin"

    @property
    def manual(self) -> bool:
        """Whether some file must be downloaded by hand from its official page."""
        return not all(f.direct for f in self.files)

    def keys(self) -> dict[str, Any]:
        """The keys to pass to :func:`sceval.run_benchmark` / a config's dataset entry."""
        out = {
            "batch_key": self.batch_key,
            "label_key": self.label_key,
            "counts_layer": self.counts_layer,
            "gene_id_column": self.gene_id_column,
        }
        return {k: v for k, v in out.items() if v is not None}

    def size_text(self) -> str:
        """``"about 316 MB"`` or ``""``."""
        sizes = [f.size for f in self.files]
        if sizes and all(s is not None for s in sizes):
            return _human(float(sum(s for s in sizes if s is not None)))
        if self.approx_size_mb is not None:
            return f"about {self.approx_size_mb:g} MB"
        return ""


#: Registered datasets, keyed by name.
DATASETS: Registry[DatasetSpec] = Registry("dataset")


def register_dataset(spec: DatasetSpec) -> DatasetSpec:
    """Register ``spec`` under ``spec.name``; returns it."""
    DATASETS.register(spec.name, spec)
    return spec


def get_dataset(name: str) -> DatasetSpec:
    """The spec registered under ``name`` (did-you-mean error otherwise)."""
    return DATASETS.get(name)


def dataset_dir(name: str, *, home: str | os.PathLike[str] | None = None) -> Path:
    """Where dataset ``name`` is (or would be) downloaded."""
    return _home(home) / "datasets" / get_dataset(name).name


def is_downloaded(name: str, *, home: str | os.PathLike[str] | None = None) -> bool:
    """Whether dataset ``name`` can be loaded here (built-in, or all files verified)."""
    spec = get_dataset(name)
    if spec.builtin:
        return True
    folder = dataset_dir(name, home=home)
    return _files_present(spec, folder) and _read_marker(folder) is not None


def _manual_message(spec: DatasetSpec, dest: Path) -> str:
    pages = sorted({f.url for f in spec.files if not f.direct})
    names = ", ".join(f.name for f in spec.files)
    return (
        f"dataset {spec.name!r} is published on a portal page ({', '.join(pages)}) that "
        f"cannot be fetched over plain HTTP. Download {names} by hand from that page, put "
        f"{'it' if len(spec.files) == 1 else 'them'} in {str(dest)!r} and run "
        f"`sceval fetch-data {spec.name}` again to verify and record "
        f"{'it' if len(spec.files) == 1 else 'them'}. Or pass the file path directly "
        f"(path: in a config, DATA.h5ad on the command line). License: {spec.license}."
        + (f" {spec.notes}" if spec.notes else "")
    )


def fetch_dataset(
    name: str,
    *,
    home: str | os.PathLike[str] | None = None,
    url_base: str | None = None,
    force: bool = False,
    progress: bool = True,
    timeout: float = 60.0,
    attempts: int = 5,
) -> Path:
    """Download dataset ``name`` into ``<home>/datasets/<name>/`` and verify it.

    Resumes interrupted downloads, verifies sha256 (see the module docstring) and is a
    no-op when the dataset is already complete. Built-in datasets need no download.

    Returns
    -------
    Path
        The dataset folder (for built-in datasets, ``<home>/datasets/<name>``, unused).
    """
    spec = get_dataset(name)
    root = _home(home)
    dest = root / "datasets" / spec.name
    if spec.builtin:
        return dest
    return fetch_files(
        spec,
        dest,
        root=root,
        url_base=url_base,
        force=force,
        progress=progress,
        timeout=timeout,
        attempts=attempts,
        manual_message=_manual_message,
        kind="dataset",
        mirror_env=DATA_MIRROR_ENV,
    )


def _read_10x_multiome(path: Path) -> Any:
    import scanpy as sc

    from sceval.data.simulate_multiome import to_mudata

    both = sc.read_10x_h5(str(path), gex_only=False)
    both.var_names_make_unique()
    types = both.var["feature_types"].astype(str)
    rna = both[:, (types == "Gene Expression").to_numpy()].copy()
    atac = both[:, (types == "Peaks").to_numpy()].copy()
    if rna.n_vars == 0 or atac.n_vars == 0:
        msg = (
            f"{str(path)!r} is not a 10x multiome matrix: expected 'Gene Expression' and "
            f"'Peaks' features, found {sorted(set(types))}."
        )
        raise ValueError(msg)
    rna.var["gene_symbol"] = rna.var_names.astype(str)
    if "gene_ids" in rna.var:
        rna.var["ensembl_id"] = rna.var["gene_ids"].astype(str)
    rna.layers["counts"] = rna.X.copy()
    return to_mudata(rna, atac)


def load_dataset(
    name: str,
    *,
    home: str | os.PathLike[str] | None = None,
    backed: bool = False,
    fetch: bool = False,
) -> Any:
    """Load registered dataset ``name`` (an AnnData; a MuData for multiome sets).

    Parameters
    ----------
    name
        A registered dataset (``sceval datasets``).
    home
        The sceval home (default ``$SCEVAL_HOME`` or the user cache folder).
    backed
        Open an ``.h5ad`` backed (``X`` stays on disk) for large data.
    fetch
        Download it first when it is missing (else a missing dataset is an error naming
        ``sceval fetch-data``).

    The keys to use with it are in ``get_dataset(name).keys()``; they are also stored in
    ``adata.uns["sceval_dataset"]``.
    """
    spec = get_dataset(name)
    if spec.builtin:
        assert spec.loader is not None
        return spec.loader()
    folder = dataset_dir(name, home=home)
    if not is_downloaded(name, home=home):
        if fetch:
            fetch_dataset(name, home=home)
        else:
            msg = (
                f"dataset {name!r} is not downloaded (looked in {str(folder)!r}). Fetch it "
                f"with `sceval fetch-data {name}` ({spec.size_text() or 'size unknown'}; "
                f"license {spec.license}), or pass fetch=True."
            )
            raise DatasetNotDownloadedError(msg)
    path = folder / spec.files[0].name
    if spec.format == "10x_h5_multiome":
        return _read_10x_multiome(path)
    import anndata as ad

    adata = ad.read_h5ad(path, backed="r" if backed else None)
    if not backed:
        adata.uns["sceval_dataset"] = {"name": name, **spec.keys()}
    return adata


def list_datasets(home: str | os.PathLike[str] | None = None) -> pd.DataFrame:
    """Registered datasets: name, tasks, keys, size, license, status and how to get them."""
    rows = []
    for name in DATASETS.keys():
        spec = get_dataset(name)
        if spec.builtin:
            status, get = "built-in", ""
        elif is_downloaded(name, home=home):
            status, get = "downloaded", str(dataset_dir(name, home=home))
        else:
            status = "missing"
            get = f"sceval fetch-data {name}" + (" (manual download)" if spec.manual else "")
        rows.append(
            {
                "dataset": name,
                "tasks": ", ".join(spec.tasks),
                "cells": spec.n_cells,
                "species": spec.species,
                "batch_key": spec.batch_key or "",
                "label_key": spec.label_key or "",
                "size": spec.size_text(),
                "license": spec.license,
                "status": status,
                "get": get,
                "citation": spec.citation,
                "source": spec.homepage or (spec.files[0].url if spec.files else ""),
                "description": spec.description,
            }
        )
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------------------
# Built-in datasets
# ----------------------------------------------------------------------------------------


def _sim_3batch() -> Any:
    from sceval.data.datasets import simulated_batches

    return simulated_batches()


def _pbmc68k() -> Any:
    from sceval.data.datasets import pbmc68k_reduced

    return pbmc68k_reduced()


def _sim_perturbation() -> Any:
    from sceval.data.simulate_perturbation import simulate_perturbation

    return simulate_perturbation(seed=0)


def _sim_multiome() -> Any:
    from sceval.data.simulate_multiome import simulate_multiome, to_mudata

    rna, atac = simulate_multiome(seed=0)
    return to_mudata(rna, atac)


_SIM = "simulated by sceval (seed 0); ground truth stored in the object"
register_dataset(
    DatasetSpec(
        "sim_3batch",
        "3 batches, 6 cell types in 3 lineages, 2,000 genes, 3,000 cells (the default demo)",
        ("integration", "annotation", "imputation", "simulation", "gene_function"),
        format="builtin",
        loader=_sim_3batch,
        license="CC0 (simulated)",
        citation=_SIM,
        batch_key="batch",
        label_key="cell_type",
        counts_layer="counts",
        n_cells=3000,
        n_genes=2000,
    )
)
register_dataset(
    DatasetSpec(
        "pbmc68k_reduced",
        "scanpy's 700 PBMCs, 765 genes, 10 bulk_labels (no raw counts)",
        ("annotation",),
        format="builtin",
        loader=_pbmc68k,
        license="CC BY 4.0 (10x Genomics data, via scanpy)",
        citation="Zheng et al., Nat. Commun. 2017",
        label_key="bulk_labels",
        n_cells=700,
        n_genes=765,
    )
)
register_dataset(
    DatasetSpec(
        "sim_perturbation",
        "simulated CRISPR screen: control, single and combinatorial perturbations",
        ("perturbation",),
        format="builtin",
        loader=_sim_perturbation,
        license="CC0 (simulated)",
        citation=_SIM,
        counts_layer="counts",
        perturbation_key="condition",
        control="ctrl",
    )
)
register_dataset(
    DatasetSpec(
        "sim_multiome",
        "simulated paired RNA + ATAC with a known peak -> gene map (MuData)",
        ("multiomics",),
        format="builtin",
        loader=_sim_multiome,
        license="CC0 (simulated)",
        citation=_SIM,
        batch_key="batch",
        label_key="cell_type",
    )
)

# ----------------------------------------------------------------------------------------
# Public datasets (scIB benchmarks, scPerturb perturbation screens, atlases, multiome)
# ----------------------------------------------------------------------------------------

_FIGSHARE = "https://ndownloader.figshare.com/files"
_SCIB_CITE = "Luecken et al., Nat. Methods 2022 (scIB benchmark)"
_SCIB_HOME = "https://doi.org/10.6084/m9.figshare.12420968"
_SCIB_NOTE = "X holds normalized values; raw counts are in layers['counts']."
_SCPERTURB = "https://zenodo.org/records/7041849/files"
_SCPERTURB_HOME = "https://doi.org/10.5281/zenodo.7041849"
_SCPERTURB_NOTE = (
    "scPerturb layout: obs['perturbation'] with 'control' for control cells; X holds raw counts."
)

register_dataset(
    DatasetSpec(
        "scib_immune_human",
        "scIB human immune: 33,506 cells, 10 batches (bone marrow + PBMC), 16 cell types",
        ("integration", "annotation"),
        files=(FileSpec("Immune_ALL_human.h5ad", f"{_FIGSHARE}/25717328"),),
        license="CC BY 4.0",
        citation=_SCIB_CITE,
        homepage=_SCIB_HOME,
        batch_key="batch",
        label_key="final_annotation",
        counts_layer="counts",
        n_cells=33506,
        n_genes=12303,
        approx_size_mb=2065,
        notes=_SCIB_NOTE,
    )
)
register_dataset(
    DatasetSpec(
        "scib_pancreas",
        "scIB human pancreas: 16,382 cells from 9 technologies, 14 cell types",
        ("integration", "annotation"),
        files=(FileSpec("human_pancreas_norm_complexBatch.h5ad", f"{_FIGSHARE}/24539828"),),
        license="CC BY 4.0",
        citation=_SCIB_CITE,
        homepage=_SCIB_HOME,
        batch_key="tech",
        label_key="celltype",
        counts_layer="counts",
        n_cells=16382,
        n_genes=19093,
        approx_size_mb=316,
        notes=_SCIB_NOTE,
    )
)
register_dataset(
    DatasetSpec(
        "scib_lung",
        "scIB lung atlas: 32,472 cells, 16 batches (10x and Drop-seq), 17 cell types",
        ("integration", "annotation"),
        files=(FileSpec("Lung_atlas_public.h5ad", f"{_FIGSHARE}/24539942"),),
        license="CC BY 4.0",
        citation=_SCIB_CITE,
        homepage=_SCIB_HOME,
        batch_key="batch",
        label_key="cell_type",
        counts_layer="counts",
        n_cells=32472,
        n_genes=15148,
        approx_size_mb=1020,
        notes=_SCIB_NOTE,
    )
)
register_dataset(
    DatasetSpec(
        "adamson",
        "Adamson 2016 Perturb-seq (UPR screen, K562, single CRISPRi perturbations)",
        ("perturbation",),
        files=(
            FileSpec(
                "AdamsonWeissman2016_GSM2406681_10X010.h5ad",
                f"{_SCPERTURB}/AdamsonWeissman2016_GSM2406681_10X010.h5ad",
            ),
        ),
        license="CC BY 4.0",
        citation="Adamson et al., Cell 2016; Peidli et al., Nat. Methods 2024 (scPerturb)",
        homepage=_SCPERTURB_HOME,
        perturbation_key="perturbation",
        control="control",
        approx_size_mb=450,
        notes=_SCPERTURB_NOTE,
    )
)
register_dataset(
    DatasetSpec(
        "norman",
        "Norman 2019 Perturb-seq (K562 CRISPRa, single and double perturbations)",
        ("perturbation",),
        files=(
            FileSpec(
                "NormanWeissman2019_filtered.h5ad",
                f"{_SCPERTURB}/NormanWeissman2019_filtered.h5ad",
            ),
        ),
        license="CC BY 4.0",
        citation="Norman et al., Science 2019; Peidli et al., Nat. Methods 2024 (scPerturb)",
        homepage=_SCPERTURB_HOME,
        perturbation_key="perturbation",
        control="control",
        approx_size_mb=699,
        notes=_SCPERTURB_NOTE + " Double perturbations are written 'A_B'.",
    )
)
register_dataset(
    DatasetSpec(
        "tabula_sapiens_blood",
        "Tabula Sapiens v1 blood subset (TS_Blood.h5ad), several donors and methods",
        ("integration", "annotation"),
        files=(
            FileSpec(
                "TS_Blood.h5ad",
                "https://figshare.com/articles/dataset/Tabula_Sapiens_release_1_0/14267219",
                manual=True,
            ),
        ),
        license="CC BY 4.0",
        citation="The Tabula Sapiens Consortium, Science 2022",
        homepage="https://doi.org/10.6084/m9.figshare.14267219",
        batch_key="donor",
        label_key="cell_ontology_class",
        counts_layer="raw_counts",
        approx_size_mb=1500,
        notes=(
            "The figshare release publishes per-tissue files as zip archives: unzip "
            "TS_Blood.h5ad.zip and place TS_Blood.h5ad."
        ),
    )
)
register_dataset(
    DatasetSpec(
        "pbmc10k_multiome",
        "10x PBMC granulocyte-sorted 10k multiome: paired RNA + ATAC (Cell Ranger ARC)",
        ("multiomics",),
        files=(
            FileSpec(
                "pbmc_granulocyte_sorted_10k_filtered_feature_bc_matrix.h5",
                "https://cf.10xgenomics.com/samples/cell-arc/1.0.0/pbmc_granulocyte_sorted_10k/"
                "pbmc_granulocyte_sorted_10k_filtered_feature_bc_matrix.h5",
            ),
        ),
        format="10x_h5_multiome",
        license="CC BY 4.0 (10x Genomics)",
        citation="10x Genomics, PBMC from a healthy donor, granulocytes removed (2020)",
        homepage="https://www.10xgenomics.com/datasets",
        approx_size_mb=160,
        notes="No cell-type labels are published with the matrix; label them first.",
    )
)
