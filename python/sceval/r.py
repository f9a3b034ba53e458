"""R from Python through rpy2: read ``.rds`` objects, write SingleCellExperiment, R baselines.

Importing this module is cheap and never fails: rpy2 (and R with it) starts on the
first call that needs it. Without rpy2 or anndata2ri those calls raise
:class:`~sceval.MissingDependencyError` naming ``pip install rpy2==3.5.17
anndata2ri==1.3.2`` (rpy2 3.6 does not build against R 4.2).

* :func:`read_rds`: a SingleCellExperiment (or SummarizedExperiment) or Seurat v4
  ``.rds`` file -> AnnData; the chosen assay becomes ``X``, other assays ``layers``,
  reduced dimensions ``obsm["X_<name>"]``.
* :func:`to_sce` / :func:`write_rds`: AnnData -> SingleCellExperiment (``obsm["X_<m>"]``
  becomes ``reducedDim(sce, "<m>")``).
* R methods registered as baselines in the model registry when this module is imported:

  ========== ======================================================================
  model      what
  ========== ======================================================================
  seurat_cca Seurat 4 CCA anchor integration -> PCA of the ``integrated`` assay
  seurat_rpca Seurat 4 reciprocal-PCA anchor integration -> PCA of ``integrated``
  singler    out-of-fold SingleR per-label scores (see :class:`SingleRScores`)
  combat_sva sva ``ComBat_seq`` on counts (or ``ComBat`` on log-normalized) -> PCA
  ========== ======================================================================

  Each skips with a :class:`~sceval.ModelSkippedError` naming the install command when
  R or its R package is missing.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from sceval._errors import DataContractError, MissingDependencyError, ModelSkippedError
from sceval.models import _preprocess as pp
from sceval.models.base import EmbedContext, Model, ModelInfo, register_model

__all__ = [
    "INSTALL",
    "CombatSva",
    "InsideRError",
    "SeuratCCA",
    "SeuratRPCA",
    "SingleRScores",
    "r_available",
    "read_rds",
    "to_sce",
    "write_rds",
]

logger = logging.getLogger(__name__)

RPY2_PIN = "rpy2==3.5.17"
ANNDATA2RI_PIN = "anndata2ri==1.3.2"
#: The command that installs the Python side of the bridge.
INSTALL = f"pip install {RPY2_PIN} {ANNDATA2RI_PIN}"

#: How to install each R package we use (Debian 12 package, then the generic way).
R_INSTALL = {
    "Seurat": "apt-get install r-cran-seurat  (or install.packages('Seurat'))",
    "SeuratObject": "apt-get install r-cran-seuratobject  (or install.packages('SeuratObject'))",
    "SingleR": "apt-get install r-bioc-singler  (or BiocManager::install('SingleR'))",
    "sva": "apt-get install r-bioc-sva  (or BiocManager::install('sva'))",
    "Matrix": "apt-get install r-cran-matrix  (or install.packages('Matrix'))",
    "SingleCellExperiment": (
        "apt-get install r-bioc-singlecellexperiment  "
        "(or BiocManager::install('SingleCellExperiment'))"
    ),
}

_STATE: dict[str, Any] = {}

# R helpers, evaluated once into a private environment.
_R_CODE = r"""
.dgc <- function(x, i, p, nrow, ncol) {
    Matrix::sparseMatrix(i = as.integer(i), p = as.integer(p), x = as.double(x),
        dims = c(as.integer(nrow), as.integer(ncol)), index1 = FALSE)
}

.missing_packages <- function(pkgs) {
    pkgs[!vapply(pkgs, requireNamespace, logical(1), quietly = TRUE)]
}

.seurat_matrix <- function(x, layer, seurat_assay) {
    sa <- if (is.null(seurat_assay)) SeuratObject::DefaultAssay(x) else seurat_assay
    if (!sa %in% names(x@assays)) {
        stop("Seurat assay '", sa, "' not found; available: ",
            paste(names(x@assays), collapse = ", "))
    }
    a <- x@assays[[sa]]
    if (inherits(a, "Assay5") || "Assay5" %in% methods::is(a)) {
        layers <- names(attr(a, "layers"))
        split <- grep(paste0("^", layer, "\\."), layers, value = TRUE)
        if (!layer %in% layers && length(split)) {
            stop("Seurat v5 assay '", sa, "' has its '", layer, "' layer split into ",
                paste(split, collapse = ", "), "; join them first: x[['", sa,
                "']] <- JoinLayers(x[['", sa, "']])")
        }
        get_layer <- getExportedValue("SeuratObject", "LayerData")
        m <- get_layer(x, assay = sa, layer = layer)
    } else {
        m <- SeuratObject::GetAssayData(x, slot = layer, assay = sa)
    }
    feats <- a[[]]
    if (ncol(feats) > 0L) feats <- feats[match(rownames(m), rownames(feats)), , drop = FALSE]
    else feats <- NULL
    list(m = m, feats = feats)
}

# Any supported object -> SingleCellExperiment with `assay` first, reduced dims apart.
.to_sce <- function(x, assay, seurat_assay) {
    if (methods::is(x, "Seurat")) {
        sm <- .seurat_matrix(x, assay, seurat_assay)
        rd <- lapply(stats::setNames(nm = names(x@reductions)), function(r) {
            emb <- SeuratObject::Embeddings(x[[r]])
            emb[match(colnames(sm$m), rownames(emb)), , drop = FALSE]
        })
        cd <- S4Vectors::DataFrame(x[[]], check.names = FALSE)
        rdata <- if (is.null(sm$feats)) S4Vectors::DataFrame(row.names = rownames(sm$m))
            else S4Vectors::DataFrame(sm$feats, check.names = FALSE)
        sce <- SingleCellExperiment::SingleCellExperiment(
            assays = stats::setNames(list(sm$m), assay), colData = cd, rowData = rdata)
        return(list(sce = sce, rd = rd))
    }
    if (!methods::is(x, "SummarizedExperiment")) {
        stop("expected a SingleCellExperiment, SummarizedExperiment or Seurat object; got ",
            class(x)[1L])
    }
    avail <- SummarizedExperiment::assayNames(x)
    if (!assay %in% avail) {
        stop("assay '", assay, "' not found; available assays: ", paste(avail, collapse = ", "))
    }
    rd <- list()
    if (methods::is(x, "SingleCellExperiment")) {
        rd <- as.list(SingleCellExperiment::reducedDims(x))
        SingleCellExperiment::reducedDims(x) <- list()
    }
    SummarizedExperiment::assays(x) <- c(SummarizedExperiment::assays(x)[assay],
        SummarizedExperiment::assays(x)[setdiff(avail, assay)])
    list(sce = x, rd = lapply(rd, as.matrix))
}

.add_reduced_dims <- function(sce, rd) {
    for (nm in names(rd)) SingleCellExperiment::reducedDim(sce, nm) <- rd[[nm]]
    sce
}

.seurat_integrate <- function(counts, batch, reduction, n_comps, dims, n_features,
                              k_weight, k_filter, k_anchor, k_score, seed) {
    set.seed(seed)
    rownames(counts) <- paste0("g", seq_len(nrow(counts)))
    colnames(counts) <- paste0("c", seq_len(ncol(counts)))
    so <- SeuratObject::CreateSeuratObject(counts)
    so$sceval_batch <- as.character(batch)
    objs <- Seurat::SplitObject(so, split.by = "sceval_batch")
    objs <- lapply(objs, function(o) {
        o <- Seurat::NormalizeData(o, verbose = FALSE)
        Seurat::FindVariableFeatures(o, nfeatures = n_features, verbose = FALSE)
    })
    feats <- Seurat::SelectIntegrationFeatures(objs, nfeatures = n_features, verbose = FALSE)
    min_cells <- min(vapply(objs, ncol, integer(1)))
    dims_use <- seq_len(max(2L, min(dims, min_cells - 2L, length(feats) - 1L)))
    if (reduction == "rpca") {
        objs <- lapply(objs, function(o) {
            o <- Seurat::ScaleData(o, features = feats, verbose = FALSE)
            Seurat::RunPCA(o, features = feats, npcs = max(dims_use), verbose = FALSE,
                seed.use = seed)
        })
    }
    anchors <- Seurat::FindIntegrationAnchors(objs, anchor.features = feats,
        reduction = reduction, dims = dims_use, k.anchor = min(k_anchor, min_cells - 1L),
        k.filter = min(k_filter, min_cells), k.score = min(k_score, min_cells - 1L),
        verbose = FALSE)
    # k.weight cannot exceed the anchor cells of any dataset (small or rpca data)
    a <- anchors@anchors
    pair <- paste(a$dataset1, a$dataset2)
    n_anchor_cells <- min(tapply(a$cell2, pair, function(v) length(unique(v))))
    int <- Seurat::IntegrateData(anchors, dims = dims_use,
        k.weight = max(2L, min(k_weight, min_cells - 1L, n_anchor_cells - 1L)), verbose = FALSE)
    SeuratObject::DefaultAssay(int) <- "integrated"
    int <- Seurat::ScaleData(int, verbose = FALSE)
    npcs <- min(n_comps, ncol(int) - 1L, nrow(int) - 1L)
    int <- Seurat::RunPCA(int, npcs = npcs, verbose = FALSE, seed.use = seed)
    emb <- SeuratObject::Embeddings(int, "pca")
    unname(emb[colnames(counts), , drop = FALSE])
}

.singler_scores <- function(logx, labels, folds, seed) {
    set.seed(seed)
    labels <- as.character(labels)
    n <- ncol(logx)
    fold <- integer(n)
    for (lab in sort(unique(labels))) {
        idx <- which(labels == lab)
        fold[idx] <- sample(rep_len(seq_len(folds), length(idx)))
    }
    rownames(logx) <- paste0("g", seq_len(nrow(logx)))
    colnames(logx) <- paste0("c", seq_len(n))
    labs <- sort(unique(labels))
    scores <- matrix(0, n, length(labs), dimnames = list(NULL, labs))
    for (f in seq_len(folds)) {
        test <- which(fold == f)
        ref <- which(fold != f)
        if (length(test) == 0L || length(unique(labels[ref])) < 2L) next
        trained <- SingleR::trainSingleR(logx[, ref, drop = FALSE], labels[ref])
        pred <- SingleR::classifySingleR(logx[, test, drop = FALSE], trained,
            fine.tune = FALSE)
        sc <- as.matrix(pred$scores)
        scores[test, colnames(sc)] <- sc
    }
    scores
}

.combat <- function(x, batch, method) {
    batch <- as.character(batch)
    if (method == "seq") {
        return(sva::ComBat_seq(as.matrix(x), batch = batch))
    }
    sva::ComBat(dat = as.matrix(x), batch = batch)
}
"""


# ---- starting R ---------------------------------------------------------------------


def _import_rpy2() -> Any:
    try:
        import rpy2.robjects as ro
    except ImportError as err:
        msg = f"sceval.r needs rpy2 and anndata2ri ({err}). Install them with: {INSTALL}"
        raise MissingDependencyError(msg) from err
    except Exception as err:  # rpy2 is installed but R cannot be started
        msg = (
            f"rpy2 is installed but cannot start R ({type(err).__name__}: {err}). Install R "
            "(Debian: apt-get install r-base-core) or set R_HOME to the R installation."
        )
        raise MissingDependencyError(msg) from err
    return ro


class InsideRError(ModelSkippedError, RuntimeError):
    """Python runs inside R (reticulate), where rpy2 cannot start or share R safely."""


_INSIDE_R = (
    "this Python runs inside R (reticulate), and rpy2 cannot run R code from there "
    "(it would crash the R session). Run the R method in R itself and score its "
    "result with sceval::run_benchmark(x, embeddings = '<reducedDim name>'), or "
    "use sceval from a Python process."
)


def _inside_r() -> bool:
    """Whether this Python is embedded in an R session by reticulate."""
    return "rpycall" in sys.modules


def _r() -> Any:
    """``rpy2.robjects`` with sceval's R helpers loaded (R starts on first call)."""
    if _inside_r():
        raise InsideRError(_INSIDE_R)
    if "env" not in _STATE:
        ro = _import_rpy2()
        with _r_console():
            env = ro.r["new.env"]()
            ro.r["eval"](ro.r["parse"](text=_R_CODE), envir=env)
        _STATE["ro"], _STATE["env"] = ro, env
    return _STATE["ro"]


def _fun(name: str) -> Any:
    _r()
    return _STATE["env"][name]


@contextlib.contextmanager
def _r_console() -> Iterator[list[str]]:
    """Route R's console output to the ``sceval.r`` logger (debug) while R runs."""
    from rpy2.rinterface_lib import callbacks

    lines: list[str] = []
    saved = (callbacks.consolewrite_print, callbacks.consolewrite_warnerror)

    def write(s: str) -> None:
        lines.append(s)
        logger.debug("R: %s", s.rstrip())

    callbacks.consolewrite_print = callbacks.consolewrite_warnerror = write
    try:
        yield lines
    finally:
        callbacks.consolewrite_print, callbacks.consolewrite_warnerror = saved


@contextlib.contextmanager
def _numpy_conversion() -> Iterator[None]:
    from rpy2.robjects import default_converter, numpy2ri
    from rpy2.robjects.conversion import localconverter

    with localconverter(default_converter + numpy2ri.converter), _r_console():
        yield


def _missing_r_packages(pkgs: tuple[str, ...]) -> list[str]:
    with _numpy_conversion():
        out = _fun(".missing_packages")(np.array(pkgs, dtype=str))
    return [str(p) for p in np.atleast_1d(np.asarray(out, dtype=object)) if p is not None]


def _need_r_packages(pkgs: tuple[str, ...], what: str, error: type[Exception]) -> None:
    missing = _missing_r_packages(pkgs)
    if missing:
        how = "; ".join(f"{p}: {R_INSTALL.get(p, f'install.packages({p!r})')}" for p in missing)
        r_home = str(_r().r["R.home"]()[0])
        msg = (
            f"{what} needs the R package(s) {missing}, not installed in the R at {r_home}. "
            f"Install: {how}."
        )
        raise error(msg)


def r_available(packages: tuple[str, ...] = ()) -> bool:
    """Whether rpy2 can start R and every R package in ``packages`` is installed."""
    try:
        return not _missing_r_packages(tuple(packages)) if packages else bool(_r())
    except MissingDependencyError:
        return False


def _dgc(m: Any) -> Any:
    """A genes x cells ``dgCMatrix`` in R from a cells x genes matrix in Python."""
    csc = sp.csc_matrix(m.T, dtype=np.float64)
    csc.sort_indices()
    with _numpy_conversion():
        return _fun(".dgc")(
            csc.data, csc.indices.astype(np.int32), csc.indptr.astype(np.int32), *csc.shape
        )


def _call(name: str, *args: Any, **kwargs: Any) -> np.ndarray:
    """Call an R helper with numpy conversion; return its result as a float array."""
    from rpy2.rinterface_lib.embedded import RRuntimeError

    with _numpy_conversion():
        try:
            out = _fun(name)(*args, **kwargs)
        except RRuntimeError as err:
            msg = f"R failed in {name.lstrip('.')}: {str(err).strip()}"
            raise RuntimeError(msg) from err
    return np.asarray(out, dtype=np.float64)


# ---- objects ------------------------------------------------------------------------


def read_rds(path: str | Path, assay: str = "counts", seurat_assay: str | None = None) -> Any:
    """Read a SingleCellExperiment or Seurat ``.rds`` file as AnnData.

    Parameters
    ----------
    path
        An ``.rds`` file holding a ``SingleCellExperiment`` (or ``SummarizedExperiment``)
        or a ``Seurat`` object (v4 assays; v5 assays with joined layers need
        SeuratObject >= 5 in R, split layers are an error naming ``JoinLayers()``).
    assay
        The assay (Seurat: slot or layer, e.g. ``"counts"``, ``"data"``) that becomes ``X``.
        Other SingleCellExperiment assays become ``layers``.
    seurat_assay
        For Seurat objects, the assay to read (default ``DefaultAssay``).

    Returns
    -------
    anndata.AnnData
        ``obs`` from ``colData`` / ``meta.data`` (factors as categoricals, levels kept),
        ``var`` from ``rowData`` / meta features, ``obsm["X_<name>"]`` from reduced
        dimensions (names kept as given). Sparse matrices stay sparse.

    Raises
    ------
    FileNotFoundError, DataContractError, MissingDependencyError
    """
    path = Path(path)
    if not path.is_file():
        msg = f"{str(path)!r} is not a file; expected an .rds file written by saveRDS()."
        raise FileNotFoundError(msg)
    ro = _r()
    _need_r_packages(("SingleCellExperiment",), "read_rds", MissingDependencyError)
    import anndata2ri
    from rpy2.rinterface_lib.embedded import RRuntimeError
    from rpy2.robjects.conversion import localconverter

    with _r_console():
        try:
            obj = ro.r["readRDS"](str(path))
            if "Seurat" in set(obj.rclass):
                _need_r_packages(
                    ("SeuratObject",), "reading a Seurat object", MissingDependencyError
                )
            parts = _STATE["env"][".to_sce"](
                obj, assay, ro.NULL if seurat_assay is None else seurat_assay
            )
        except RRuntimeError as err:
            msg = f"cannot convert {str(path)!r}: {str(err).strip()}"
            raise DataContractError(msg) from err
        with localconverter(anndata2ri.converter):
            adata = ro.conversion.get_conversion().rpy2py(parts.rx2("sce"))
    rd = parts.rx2("rd")
    names = [] if rd.names is ro.NULL else [str(n) for n in rd.names]
    with _numpy_conversion():
        for i, name in enumerate(names):
            emb = ro.conversion.get_conversion().rpy2py(rd[i])
            adata.obsm[f"X_{name}"] = np.asarray(emb, dtype=np.float64)
    adata.obs_names = adata.obs_names.astype(str)
    adata.var_names = adata.var_names.astype(str)
    return adata


def to_sce(adata: Any, assay_name: str = "X") -> Any:
    """Convert AnnData to an R ``SingleCellExperiment`` (an rpy2 object).

    ``X`` becomes the assay ``assay_name`` and each layer an assay of its own name;
    ``obs`` / ``var`` become ``colData`` / ``rowData``; ``obsm["X_<m>"]`` becomes
    ``reducedDim(sce, "<m>")`` (the ``X_`` dropped, so sceval model embeddings keep their
    model name). ``uns``, ``varm`` and pairwise matrices are not converted.
    """
    import anndata as ad

    ro = _r()
    _need_r_packages(("SingleCellExperiment",), "to_sce", MissingDependencyError)
    if assay_name != "X" and assay_name in adata.layers:
        msg = f"assay_name={assay_name!r} is also a layer name; pick another name for X."
        raise ValueError(msg)
    import anndata2ri
    from rpy2.robjects.conversion import localconverter

    bare = ad.AnnData(X=adata.X, obs=adata.obs, var=adata.var, layers=dict(adata.layers))
    with localconverter(anndata2ri.converter), _r_console():
        sce = ro.conversion.get_conversion().py2rpy(bare)
    if adata.X is not None and assay_name != "X":
        sce = ro.r("function(x, nm) { SummarizedExperiment::assayNames(x)[1] <- nm; x }")(
            sce, assay_name
        )
    rd = {}
    with _numpy_conversion():
        for key, emb in adata.obsm.items():
            name = key[2:] if key.startswith("X_") else key
            rd[name] = ro.conversion.get_conversion().py2rpy(np.asarray(emb, dtype=np.float64))
    if rd:
        with _r_console():
            sce = _STATE["env"][".add_reduced_dims"](sce, ro.ListVector(rd))
    return sce


def write_rds(adata: Any, path: str | Path, assay_name: str = "X") -> Path:
    """Save AnnData as a SingleCellExperiment ``.rds`` file (see :func:`to_sce`)."""
    sce = to_sce(adata, assay_name=assay_name)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _r_console():
        _STATE["ro"].r["saveRDS"](sce, str(path))
    return path


# ---- R baselines --------------------------------------------------------------------


class _RModel(Model):
    """A baseline that runs R code through rpy2 (skipped when R or a package is missing)."""

    r_packages: ClassVar[tuple[str, ...]] = ()

    def check(self, adata: Any, ctx: EmbedContext) -> None:
        if _inside_r():  # before importing rpy2, which would attach to this R session
            raise InsideRError(f"model {self.info.key!r}: {_INSIDE_R}")
        super().check(adata, ctx)
        try:
            _r()
        except (MissingDependencyError, ModelSkippedError) as err:
            raise ModelSkippedError(f"model {self.info.key!r}: {err}") from err
        _need_r_packages(self.r_packages, f"model {self.info.key!r}", ModelSkippedError)


_R_REQUIRES = ("rpy2", "anndata2ri")


class _SeuratIntegration(_RModel):
    """Seurat 4 anchor integration, then PCA of the ``integrated`` assay.

    Parameters
    ----------
    n_comps
        PCs of the integrated assay (default 50, capped by the data).
    dims
        Dimensions used for anchors and integration (default 30, capped by the smallest
        batch).
    n_features
        Integration features (default 2,000).
    k_weight, k_filter, k_anchor, k_score
        Seurat's neighbour counts (defaults 100, 200, 5, 30; capped by the smallest batch).
    """

    reduction: ClassVar[str] = "cca"
    r_packages = ("Seurat", "SeuratObject", "Matrix")

    def embed_cells(self, adata: Any, ctx: EmbedContext) -> np.ndarray:
        from sceval.data.contract import get_counts

        p = self.params
        batch = adata.obs[ctx.batch_key].astype(str).to_numpy().astype(str)
        counts = _dgc(get_counts(adata, ctx.report))
        emb = _call(
            ".seurat_integrate",
            counts,
            batch,
            self.reduction,
            int(p.get("n_comps", pp.N_COMPS)),
            int(p.get("dims", 30)),
            int(p.get("n_features", pp.N_TOP_GENES)),
            int(p.get("k_weight", 100)),
            int(p.get("k_filter", 200)),
            int(p.get("k_anchor", 5)),
            int(p.get("k_score", 30)),
            int(ctx.seed),
        )
        return emb.astype(np.float32)


@register_model
class SeuratCCA(_SeuratIntegration):
    """``seurat_cca``: Seurat 4 CCA anchors (Stuart et al., Cell 2019)."""

    reduction = "cca"
    info = ModelInfo(
        key="seurat_cca",
        kind="baseline",
        input="counts",
        needs_batch=True,
        requires=_R_REQUIRES,
        install=INSTALL + "; R: Seurat >= 4.3",
        description="R Seurat 4 CCA anchor integration, PCA of the integrated assay (rpy2)",
        citation="Stuart et al., Cell 2019 (Seurat v3 integration)",
    )


@register_model
class SeuratRPCA(_SeuratIntegration):
    """``seurat_rpca``: Seurat 4 reciprocal-PCA anchors (faster, more conservative)."""

    reduction = "rpca"
    info = ModelInfo(
        key="seurat_rpca",
        kind="baseline",
        input="counts",
        needs_batch=True,
        requires=_R_REQUIRES,
        install=INSTALL + "; R: Seurat >= 4.3",
        description="R Seurat 4 reciprocal-PCA anchor integration, PCA of integrated (rpy2)",
        citation="Stuart et al., Cell 2019; Hao et al., Cell 2021 (Seurat)",
    )


@register_model
class SingleRScores(_RModel):
    """``singler``: out-of-fold SingleR per-label correlation scores as the embedding.

    SingleR is a reference-based annotator, not an embedding method. To benchmark it
    with the same probes as every other model, each cell is embedded as its vector of
    SingleR scores (one column per label: the correlation with that label's reference
    profile on marker genes). The reference is the labelled cells themselves, used
    *out of fold*: cells are split into ``folds`` stratified folds (seeded) and each
    fold is scored by a SingleR model trained on the other folds, so no cell's own
    label shapes its scores. Because the labels do shape the embedding, it is a
    label-informed (supervised) baseline: read its integration scores with that in mind,
    like the ``labels`` positive control.

    Parameters
    ----------
    folds
        Number of folds (default 5, at least 2).
    """

    r_packages = ("SingleR", "Matrix")
    info = ModelInfo(
        key="singler",
        kind="baseline",
        input="lognorm",
        needs_labels=True,
        requires=_R_REQUIRES,
        install=INSTALL + "; R: SingleR",
        description="R SingleR per-label scores, reference = other folds' labelled cells",
        citation="Aran et al., Nat. Immunol. 2019 (SingleR)",
    )

    def embed_cells(self, adata: Any, ctx: EmbedContext) -> np.ndarray:
        folds = int(self.params.get("folds", 5))
        if folds < 2:
            msg = f"singler needs folds >= 2, got {folds}."
            raise ValueError(msg)
        labels = adata.obs[ctx.label_key].astype(str).to_numpy().astype(str)
        logx = _dgc(pp.lognorm(adata, ctx))
        return _call(".singler_scores", logx, labels, folds, int(ctx.seed)).astype(np.float32)


@register_model
class CombatSva(_RModel):
    """``combat_sva``: the reference R ComBat (sva), then scaled PCA.

    Parameters
    ----------
    method
        ``"seq"`` (default): ``sva::ComBat_seq`` on the raw counts of the highly variable
        genes (negative-binomial ComBat, Zhang et al. 2020), then log-normalization;
        ``"lognorm"``: ``sva::ComBat`` on log-normalized HVGs (Johnson et al. 2007).
    n_comps
        Number of principal components (default 50).
    """

    r_packages = ("sva",)
    info = ModelInfo(
        key="combat_sva",
        kind="baseline",
        input="lognorm",
        needs_batch=True,
        requires=_R_REQUIRES,
        install=INSTALL + "; R: sva",
        description="R sva ComBat_seq on HVG counts (or ComBat on log-normalized), then PCA",
        citation="Zhang et al., NAR Genom. Bioinform. 2020; Johnson et al., Biostatistics 2007",
    )

    def check(self, adata: Any, ctx: EmbedContext) -> None:
        method = self.params.get("method", "seq")
        if method not in ("seq", "lognorm"):
            msg = f"combat_sva method must be 'seq' or 'lognorm', got {method!r}."
            raise ValueError(msg)
        if method == "seq" and not ctx.report.has_counts:
            msg = (
                "model 'combat_sva' (method='seq') needs raw counts, but none were found. "
                "Store raw counts in adata.layers['counts'] or pass "
                "model_params={'combat_sva': {'method': 'lognorm'}}."
            )
            raise ModelSkippedError(msg)
        super().check(adata, ctx)

    def embed_cells(self, adata: Any, ctx: EmbedContext) -> np.ndarray:
        method = self.params.get("method", "seq")
        batch = adata.obs[ctx.batch_key].astype(str).to_numpy().astype(str)
        x = pp.hvg_counts(adata, ctx) if method == "seq" else pp.lognorm(adata, ctx)
        if method != "seq":
            x = x[:, pp.hvg_mask(adata, ctx)]
        dense = np.asarray(x.toarray(), dtype=np.float64).T  # genes x cells
        adj = _call(".combat", dense, batch, method).T  # cells x genes
        if method == "seq":  # log-normalize with the library sizes of all genes
            from sceval.data.contract import get_counts

            totals = np.asarray(get_counts(adata, ctx.report).sum(axis=1), dtype=np.float64)
            totals[totals == 0] = 1.0
            adj = np.log1p(adj / totals * 1e4)
        n_comps = int(self.params.get("n_comps", pp.N_COMPS))
        return pp.pca(pp.scale(adj), n_comps, seed=ctx.seed)
