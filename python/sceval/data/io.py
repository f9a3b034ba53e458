"""Reading input files with errors that say what went wrong."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sceval._errors import DataContractError

__all__ = ["read_h5ad"]


def read_h5ad(path: str | Path) -> Any:
    """Read an ``.h5ad`` file.

    Raises
    ------
    DataContractError
        When the path does not exist, is a folder, or is not a readable h5ad file.
    """
    import anndata as ad

    p = Path(path)
    if not p.exists():
        msg = f"Input file {str(p)!r} does not exist. Expected a path to an .h5ad file."
        raise DataContractError(msg)
    if p.is_dir():
        msg = f"Input path {str(p)!r} is a folder; expected an .h5ad file."
        raise DataContractError(msg)
    try:
        return ad.read_h5ad(p)
    except Exception as err:
        msg = (
            f"Could not read {str(p)!r} as h5ad ({type(err).__name__}: {err}). Expected an "
            "AnnData file written by anndata.write_h5ad / scanpy. Fix: check the file is "
            "complete and not another format (for .loom use anndata.read_loom, for 10x "
            "folders scanpy.read_10x_mtx), then save it with adata.write_h5ad()."
        )
        raise DataContractError(msg) from err
