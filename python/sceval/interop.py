"""The Python half of the R bridge: build AnnData from R parts, hand tables back to R.

The R package (``R/convert.R``) takes a SingleCellExperiment or Seurat object apart and
passes plain pieces through reticulate; everything that needs care about types happens
here, so R stays thin:

* the matrix arrives genes x cells (R's orientation): a ``scipy.sparse.csc_matrix`` made
  by reticulate from a ``dgCMatrix``, or a dense Fortran-ordered array. Its transpose is
  the cells x genes CSR (or C-ordered) matrix AnnData wants, without copying the values;
* every ``colData`` / ``rowData`` column arrives as a *column spec* (a dict with ``type``,
  ``values``, ``na`` and, for factors, ``levels`` and ``ordered``) because reticulate 1.28
  turns a logical ``NA`` into ``True`` and an integer ``NA`` into ``-2147483648``. Factors
  arrive as 0-based codes plus levels, so levels, their order and unused levels survive;
* tables go back to R (:func:`frame_to_r`) as one numpy array and one missing-value mask
  per column, so R can rebuild a base ``data.frame`` with exact column types.

:func:`benchmark`, :func:`score_embeddings` and :func:`embed` are the entry points the R
functions ``run_benchmark()``, ``score_embedding()`` and ``embed_cells()`` call.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from sceval._errors import DataContractError

__all__ = [
    "anndata_from_r",
    "benchmark",
    "column_from_r",
    "embed",
    "frame_from_r",
    "frame_to_r",
    "score_embeddings",
]

COLUMN_TYPES = ("factor", "character", "integer", "double", "logical")


def _strings(x: Any) -> list[str]:
    """A flat list of str from what reticulate made of an R character vector."""
    if x is None:
        return []
    if isinstance(x, str):
        return [x]
    return [str(v) for v in np.asarray(x, dtype=object).ravel()]


def _flat(x: Any, dtype: Any = None) -> np.ndarray:
    """A 1-d array from a scalar, list or array (reticulate turns length-1 vectors to scalars)."""
    return np.atleast_1d(np.asarray(x, dtype=dtype)).ravel()


def column_from_r(spec: Mapping[str, Any], n: int, name: str = "") -> Any:
    """Build one pandas column from an R column spec.

    Parameters
    ----------
    spec
        ``type`` (one of ``factor``, ``character``, ``integer``, ``double``, ``logical``),
        ``values`` (for factors the 0-based codes), ``na`` (boolean mask, optional),
        ``levels`` and ``ordered`` (factors only).
    n
        Expected length (number of cells or genes).
    name
        Column name, for error messages.

    Returns
    -------
    pandas.Categorical | numpy.ndarray | pandas.api.extensions.ExtensionArray
        Factors -> ``Categorical`` with the R levels as categories (in order, unused
        kept); integer / logical with missing values -> nullable ``Int32`` / ``boolean``;
        character -> object array (``None`` for ``NA``); double -> float64 (``NaN``).
    """
    kind = str(spec.get("type"))
    if kind not in COLUMN_TYPES:
        msg = f"column {name!r}: unknown R column type {kind!r}; expected one of {COLUMN_TYPES}."
        raise ValueError(msg)
    na = spec.get("na")
    na = np.zeros(n, dtype=bool) if na is None else _flat(na, dtype=bool)
    if kind == "character":
        vals = np.array(_strings(spec.get("values")), dtype=object)
    else:
        vals = _flat(spec.get("values"))
    if vals.shape[0] != n or na.shape[0] != n:
        msg = (
            f"column {name!r} has {vals.shape[0]} values (mask {na.shape[0]}); expected {n}, "
            "one per row."
        )
        raise ValueError(msg)
    if kind == "factor":
        codes = vals.astype(np.int64)
        codes[na] = -1
        levels = _strings(spec.get("levels"))
        return pd.Categorical.from_codes(
            codes, categories=pd.Index(levels, dtype=object), ordered=bool(spec.get("ordered"))
        )
    if kind == "character":
        vals[na] = None
        return vals
    if kind == "integer":
        ints = vals.astype(np.int32)
        return ints if not na.any() else _masked(ints, na, "Int32")
    if kind == "logical":
        bools = vals.astype(bool)
        return bools if not na.any() else _masked(bools, na, "boolean")
    out = vals.astype(np.float64)
    out[na] = np.nan
    return out


def _masked(values: np.ndarray, na: np.ndarray, dtype: str) -> Any:
    arr = pd.array(values, dtype=dtype)
    arr[na] = pd.NA
    return arr


def frame_from_r(cols: Mapping[str, Any] | None, index: list[str], what: str) -> pd.DataFrame:
    n = len(index)
    data = {}
    for name, spec in (cols or {}).items():
        data[str(name)] = column_from_r(spec, n, f"{what}.{name}")
    return pd.DataFrame(data, index=pd.Index(index, dtype=object))


def _cells_by_genes(m: Any, n_genes: int, n_cells: int, what: str) -> Any:
    """Transpose an R genes x cells matrix to cells x genes without copying the values."""
    if sp.issparse(m):
        m = m if m.format == "csc" else m.tocsc()
        out = m.T  # CSC (genes x cells) -> CSR (cells x genes), shares data/indices/indptr
        out = sp.csr_matrix(out) if not isinstance(out, sp.csr_matrix) else out
    else:
        arr = np.asarray(m)
        if arr.ndim != 2:
            msg = f"{what} must be a 2-d matrix, got {arr.ndim} dimension(s)."
            raise DataContractError(msg)
        out = arr.T
    if out.shape != (n_cells, n_genes):
        msg = (
            f"{what} has shape {m.shape[::-1]} (cells x genes) but the object has {n_cells} "
            f"cells and {n_genes} genes."
        )
        raise DataContractError(msg)
    if not np.issubdtype(out.dtype, np.number):
        msg = f"{what} must be numeric, found dtype {out.dtype}."
        raise DataContractError(msg)
    return out


def anndata_from_r(
    matrix: Any,
    obs: Mapping[str, Any] | None = None,
    var: Mapping[str, Any] | None = None,
    obsm: Mapping[str, Any] | None = None,
    obs_names: Any = None,
    var_names: Any = None,
    layers: Mapping[str, Any] | None = None,
) -> Any:
    """Assemble an AnnData object from the pieces of an R object.

    Parameters
    ----------
    matrix
        Genes x cells matrix, as R stores it: ``scipy.sparse.csc_matrix`` (from a
        ``dgCMatrix``) or a dense array. Becomes ``X`` (cells x genes, CSR when sparse)
        by transposition, without copying the values.
    obs, var
        Column name -> column spec (see :func:`column_from_r`) for ``colData`` /
        ``meta.data`` and ``rowData`` / meta features.
    obsm
        Name -> cells x d array (reduced dimensions), stored under that key.
    obs_names, var_names
        Cell and gene names (kept exactly as given).
    layers
        Name -> genes x cells matrix, stored transposed in ``layers``.

    Returns
    -------
    anndata.AnnData
    """
    import anndata as ad

    n_genes, n_cells = (int(d) for d in matrix.shape)
    cells = _strings(obs_names) if obs_names is not None else [str(i) for i in range(n_cells)]
    genes = _strings(var_names) if var_names is not None else [str(i) for i in range(n_genes)]
    if len(cells) != n_cells or len(genes) != n_genes:
        msg = (
            f"got {len(cells)} cell names and {len(genes)} gene names for a matrix of "
            f"{n_genes} genes x {n_cells} cells."
        )
        raise DataContractError(msg)
    x = _cells_by_genes(matrix, n_genes, n_cells, "the assay")
    adata = ad.AnnData(
        X=x,
        obs=frame_from_r(obs, cells, "obs"),
        var=frame_from_r(var, genes, "var"),
    )
    for name, m in (layers or {}).items():
        adata.layers[str(name)] = _cells_by_genes(m, n_genes, n_cells, f"assay {name!r}")
    for name, emb in (obsm or {}).items():
        arr = np.asarray(emb)
        if arr.ndim == 1:
            arr = arr.reshape(-1, 1)
        if arr.shape[0] != n_cells:
            msg = f"reduced dimension {name!r} has {arr.shape[0]} rows; expected {n_cells} cells."
            raise DataContractError(msg)
        adata.obsm[str(name)] = np.ascontiguousarray(arr)
    return adata


def frame_to_r(df: pd.DataFrame) -> dict[str, Any]:
    """Split a DataFrame into arrays R can rebuild exactly.

    Returns
    -------
    dict
        ``names`` (column names), ``types`` (``character``, ``integer``, ``double`` or
        ``logical`` per column), ``values`` and ``na`` (name -> numpy array, name ->
        boolean mask). Strings become ``<U`` arrays (missing -> ``""``), integers int32
        when they fit (else double), booleans bool, everything else float64.
    """
    names = [str(c) for c in df.columns]
    types: dict[str, str] = {}
    values: dict[str, np.ndarray] = {}
    nas: dict[str, np.ndarray] = {}
    for name, col in zip(names, df.columns, strict=True):
        s = df[col]
        na = pd.isna(s).to_numpy(dtype=bool)
        if pd.api.types.is_bool_dtype(s.dtype):
            kind, vals = "logical", s.fillna(False).to_numpy(dtype=bool)
        elif pd.api.types.is_integer_dtype(s.dtype):
            ints = s.fillna(0).to_numpy(dtype=np.int64)
            fits = ints.size == 0 or (ints.min() > -(2**31) and ints.max() < 2**31)
            kind = "integer" if fits else "double"
            vals = ints.astype(np.int32) if fits else ints.astype(np.float64)
        elif pd.api.types.is_numeric_dtype(s.dtype):
            kind, vals = "double", s.to_numpy(dtype=np.float64, na_value=np.nan)
        else:
            kind = "character"
            vals = np.array(
                ["" if m else str(v) for v, m in zip(s.tolist(), na, strict=True)], dtype=str
            )
            if vals.size == 0:
                vals = np.array([], dtype="<U1")
        types[name], values[name], nas[name] = kind, vals, na
    return {"names": names, "types": types, "values": values, "na": nas}


def _as_keys(x: str | Sequence[str] | None) -> list[str]:
    if x is None:
        return []
    if isinstance(x, str):
        return [x]
    return [str(v) for v in x]


def _whole_to_int(x: Any) -> Any:
    """R numbers arrive as floats: turn whole floats into int, recursively (``50`` -> ``50``).

    Model parameters such as ``max_epochs`` must be ints, and an int where a float is
    expected is accepted everywhere in Python, so whole floats are made ints.
    """
    if isinstance(x, Mapping):
        return {str(k): _whole_to_int(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_whole_to_int(v) for v in x]
    if isinstance(x, float) and x.is_integer():
        return int(x)
    return x


def _check_names(models: list[str], embeddings: list[str]) -> None:
    names = [e[2:] if e.startswith("X_") else e for e in embeddings]
    clash = sorted(set(names) & set(models))
    if clash:
        msg = (
            f"embedding name(s) {clash} are also model keys; the results could not tell them "
            "apart. Fix: rename the reduced dimension (e.g. reducedDim(x, 'pca_r') <- ...) "
            "or drop the model."
        )
        raise ValueError(msg)
    dups = sorted({n for n in names if names.count(n) > 1})
    if dups:
        msg = f"embeddings named more than once: {dups}."
        raise ValueError(msg)


def benchmark(
    adata: Any,
    models: str | Sequence[str] | None = None,
    tasks: str | Sequence[str] | None = None,
    *,
    embeddings: str | Sequence[str] | None = None,
    seeds: int | Sequence[int] = 0,
    **kwargs: Any,
) -> dict[str, Any]:
    """:func:`sceval.run_benchmark` for R: results as :func:`frame_to_r` pieces.

    ``embeddings`` are ``obsm`` keys (``X_<name>``) scored as models of kind
    ``external``; with no ``models`` only the embeddings are scored. Embeddings are not
    written back into ``adata`` (R keeps its own object).
    """
    from sceval.benchmark.runner import run_benchmark

    emb = _as_keys(embeddings)
    model_keys = _as_keys(models) if models is not None else None
    _check_names(model_keys or [], emb)
    seeds = [int(s) for s in _flat(seeds)]
    kwargs.setdefault("store_embeddings", False)
    for key in ("model_params", "task_params"):
        if kwargs.get(key) is not None:
            kwargs[key] = _whole_to_int(kwargs[key])
    if model_keys == [] and emb:
        res = _embeddings_only(adata, tasks, emb, seeds, kwargs)
    else:
        res = run_benchmark(
            adata, models=model_keys, tasks=tasks, embeddings=emb or None, seeds=seeds, **kwargs
        )
    return frame_to_r(res)


def _embeddings_only(
    adata: Any, tasks: Any, emb: list[str], seeds: list[int], kwargs: dict[str, Any]
) -> pd.DataFrame:
    """Score only external embeddings.

    ``run_benchmark`` refuses an empty model list; until it accepts ``models=[]`` with
    ``embeddings``, run the cheapest model (the ``labels`` control, a one-hot matrix) and
    drop its rows.
    """
    from sceval.benchmark.runner import run_benchmark

    try:
        return run_benchmark(adata, models=[], tasks=tasks, embeddings=emb, seeds=seeds, **kwargs)
    except ValueError as err:
        if "models is empty" not in str(err):
            raise
    res = run_benchmark(
        adata, models=["labels"], tasks=tasks, embeddings=emb, seeds=seeds, **kwargs
    )
    keep = res["model_kind"] == "external"
    return res.loc[keep].reset_index(drop=True)


def score_embeddings(
    adata: Any,
    embeddings: str | Sequence[str],
    tasks: str | Sequence[str] | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """Score ``obsm`` embeddings only (no models); results as :func:`frame_to_r` pieces."""
    emb = _as_keys(embeddings)
    if not emb:
        msg = "embeddings is empty; name at least one obsm key (e.g. 'X_harmony')."
        raise ValueError(msg)
    return benchmark(adata, models=[], tasks=tasks, embeddings=emb, **kwargs)


def embed(
    adata: Any,
    model: str,
    *,
    seed: int = 0,
    batch_key: str | None = None,
    label_key: str | None = None,
    counts_layer: str | None = None,
    gene_id_column: str | None = None,
    params: Mapping[str, Any] | None = None,
    device: str = "auto",
) -> np.ndarray:
    """Run one model and return its cells x d float32 embedding.

    The data are validated first; a model that cannot run raises its
    :class:`~sceval.ModelSkippedError` / :class:`~sceval.MissingDependencyError` with the
    reason and the fix.
    """
    from sceval.benchmark.runner import _resolve_device, compute_embedding
    from sceval.data.contract import validate
    from sceval.models.base import EmbedContext, get_model

    m = get_model(str(model), **_whole_to_int(dict(params or {})))
    report = validate(
        adata,
        counts_layer=counts_layer,
        batch_key=batch_key,
        label_key=label_key,
        gene_id_column=gene_id_column,
    )
    ctx = EmbedContext(
        report=report,
        seed=int(seed),
        batch_key=batch_key,
        label_key=label_key,
        device=_resolve_device(device),
    )
    return compute_embedding(m, adata, ctx)
