from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import sceval
import sceval.tasks.multiomics as mm
from sceval._errors import DataContractError, ModelSkippedError
from sceval.data import validate
from sceval.data.simulate_multiome import (
    gene_activity,
    load_multiome,
    simulate_multiome,
    to_mudata,
)
from sceval.metrics import METRICS
from sceval.models.base import EmbedContext, get_model
from sceval.tasks.base import get_task


@pytest.fixture(scope="module")
def paired():
    return simulate_multiome(500, 200, 800, 4, seed=2)


def _ad(x, obs_names, var_names=None):
    import anndata as ad

    x = np.asarray(x, dtype=np.float32)
    var = pd.DataFrame(index=var_names or [f"p{i}" for i in range(x.shape[1])])
    return ad.AnnData(X=x, obs=pd.DataFrame(index=list(obs_names)), var=var)


# --- FOSCTTM on hand-worked examples ----------------------------------------------------


def test_foscttm_three_cells_by_hand():
    x = np.array([[0.0], [1.0], [2.0]])
    y = np.array([[0.0], [1.6], [1.2]])
    # from x: x0 -> y0 d=0 (0 closer); x1 -> y1 d=.6, y2 d=.2 closer (1);
    #         x2 -> y2 d=.8, y1 d=.4 closer (1)                 -> 2 / (3 * 2)
    # from y: y0 -> x0 d=0 (0); y1 -> x1 d=.6, x2 d=.4 closer (1);
    #         y2 -> x2 d=.8, x1 d=.2 closer (1)                 -> 2 / (3 * 2)
    assert mm.foscttm(x, y) == pytest.approx(1 / 3)
    assert mm.foscttm(x, x + 0.01) == 0.0
    assert mm.foscttm(x, x[::-1]) == pytest.approx(2 / 3)
    # ties count half: all cells at one point -> 0.5
    assert mm.foscttm(np.zeros((3, 2)), np.zeros((3, 2))) == pytest.approx(0.5)


def test_foscttm_random_pairing_is_about_half_and_bad_shapes_raise():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 5))
    assert mm.foscttm(x, rng.normal(size=(400, 5))) == pytest.approx(0.5, abs=0.05)
    assert mm.foscttm(x, x[rng.permutation(400)]) > 0.4
    with pytest.raises(DataContractError, match="same shape"):
        mm.foscttm(x, x[:10])
    assert not METRICS.get("foscttm").higher_is_better


# --- simulator ---------------------------------------------------------------------------


def test_simulator_truth(paired):
    rna, atac = paired
    assert rna.obs_names.equals(atac.obs_names)
    assert (rna.obs["cell_type"] == atac.obs["cell_type"]).all()
    x = atac.X.toarray()
    assert set(np.unique(x)) == {0.0, 1.0}
    genes = atac.var["gene"].to_numpy()
    linked = genes != ""
    assert 0.5 < linked.mean() < 0.9
    assert set(genes[linked]) <= set(rna.var_names)
    assert atac.uns["sceval"]["multiome"]["peak_to_gene_column"] == "gene"
    # accessibility follows the program: a type's up-regulated genes' peaks open more
    lfc = rna.varm["program_lfc"]
    t0 = (rna.obs["cell_type"] == "type_1").to_numpy()
    gpos = rna.var_names.get_indexer(genes[linked])
    up = lfc[gpos, 0] > 1.0
    open_in = x[t0][:, linked][:, up].mean()
    open_out = x[~t0][:, linked][:, up].mean()
    assert open_in > open_out + 0.1
    again = simulate_multiome(500, 200, 800, 4, seed=2)[1]
    assert (again.X != atac.X).nnz == 0


def test_to_mudata_roundtrip(paired, tmp_path):
    rna, atac = paired
    mdata = to_mudata(rna, atac)
    assert set(mdata.mod) == {"rna", "atac"}
    path = tmp_path / "m.h5mu"
    mdata.write(path)
    r2, a2 = load_multiome(str(path))
    assert r2.obs_names.equals(rna.obs_names) and a2.shape == atac.shape


# --- readers -----------------------------------------------------------------------------


def test_loader_aligns_shared_barcodes():
    rna = _ad(np.ones((3, 2)), ["a", "b", "c"], ["g1", "g2"])
    atac = _ad([[1, 0], [0, 2], [1, 1]], ["c", "x", "a"])
    r, a = load_multiome((rna, atac))
    assert list(r.obs_names) == ["a", "c"] and list(a.obs_names) == ["a", "c"]
    assert a.X.tolist() == [[1, 1], [1, 0]]


def test_loader_bad_inputs(tmp_path):
    rna = _ad(np.ones((2, 2)), ["a", "b"], ["g1", "g2"])
    atac_ok = _ad([[1, 0], [0, 1]], ["a", "b"])
    with pytest.raises(DataContractError, match="share no cell barcodes"):
        load_multiome(rna, _ad([[1, 0], [0, 1]], ["atac_a", "atac_b"]))
    with pytest.raises(DataContractError, match=r"negative.*binarize"):
        load_multiome((rna, _ad([[1, -1], [0, 1]], ["a", "b"])))
    with pytest.raises(DataContractError, match=r"non-integer.*binarize"):
        load_multiome((rna, _ad([[0.5, 0], [0, 1]], ["a", "b"])))
    with pytest.raises(DataContractError, match="modality named"):
        load_multiome(to_mudata(rna, atac_ok).__class__({"rna": rna, "protein": atac_ok}))
    with pytest.raises(DataContractError, match=r"\.h5mu"):
        load_multiome(str(tmp_path / "x.h5ad"))
    with pytest.raises(DataContractError, match="no file"):
        load_multiome(rna, str(tmp_path / "missing.h5ad"))


# --- gene activity -----------------------------------------------------------------------


def test_gene_activity_hand_built():
    atac = _ad([[1, 1, 0, 1], [0, 3, 1, 0]], ["c1", "c2"], ["p1", "p2", "p3", "p4"])
    atac.var["gene"] = ["G1", "G1", "G2", ""]
    ga = gene_activity(atac, "gene", genes=["G2", "G1", "G3"])
    assert list(ga.var_names) == ["G2", "G1", "G3"]
    # binarized: cell 2's count 3 on p2 counts once
    assert ga.X.toarray().tolist() == [[0, 2, 0], [1, 1, 0]]
    ga2 = gene_activity(atac, {"p3": "G2", "p4": "G1"})
    assert ga2.X.toarray().tolist() == [[0, 1], [1, 0]]
    with pytest.raises(DataContractError, match="peak -> gene column"):
        gene_activity(atac, "nearest_gene")


# --- baselines and the task --------------------------------------------------------------


def test_paired_baselines_embed_only_multiome(paired):
    rna, _ = paired
    ctx = EmbedContext(report=validate(rna))
    for key in ("concat_pca", "wnn"):
        model = get_model(key)
        assert model.info.provides == ("embed_multiome",) and not model.info.embeds_cells
        with pytest.raises(ModelSkippedError, match="multiomics"):
            model.embed_cells(rna, ctx)


def test_wnn_weights_favour_the_informative_modality():
    means = {}
    for coupling in (1.5, 0.0):  # coupling 0: ATAC carries no cell-type signal
        rna, atac = simulate_multiome(400, 200, 800, 4, seed=1, coupling=coupling)
        ctx = EmbedContext(report=validate(rna))
        r, a = mm._blocks(rna, atac, ctx)
        w = mm.wnn_weights(r, a)
        assert w.shape == (400,) and np.all((w >= 0) & (w <= 1))
        means[coupling] = w.mean()
    assert means[0.0] > means[1.5] + 0.05


def test_task_needs_atac(paired):
    rna, _ = paired
    task = get_task("multiomics")
    assert task.info.needs == ("atac",) and not task.info.default
    with pytest.raises(DataContractError, match="atac"):
        task._paired(rna)


def test_benchmark_paired_methods_align(paired):
    rna, atac = paired
    df = sceval.run_benchmark(
        rna,
        models=["concat_pca", "wnn", "pca", "identity"],
        tasks=["multiomics"],
        label_key="cell_type",
        task_params={"multiomics": {"atac": atac}},
    )
    ok = df[df.status == "ok"]
    val = ok.pivot_table(index="metric", columns="model", values="value")
    assert set(val.index) == set(mm.MULTIOMICS_KEYS)
    for key in ("concat_pca", "wnn"):
        assert val.loc["foscttm", key] < 0.2
        assert val.loc["mm_nmi", key] > 0.8
    # pca fits RNA and gene activity separately: scored, but no ordering is certain
    assert np.isfinite(val.loc["foscttm", "pca"])
    assert (df.loc[df.model == "identity", "status"] == "not_applicable").all()


def test_task_with_partial_barcodes_and_sparse_counts(paired):
    rna, atac = paired
    atac = atac[50:].copy()
    atac.X = sp.csr_matrix(atac.X.toarray() * 2)  # integer counts are binarized
    task = get_task("multiomics", atac=atac)
    ctx = EmbedContext(report=validate(rna, label_key="cell_type"), label_key="cell_type")
    res = task.run(rna, get_model("concat_pca"), ctx, lambda: None)
    by = {r.metric: r for r in res}
    assert by["foscttm"].status == "ok" and by["foscttm"].value < 0.2
    assert "450 paired cells" in by["foscttm"].message


def test_positive_control_broken_pairing_scores_near_chance(paired):
    rna, atac = paired
    shuffled = atac.copy()
    perm = np.random.default_rng(0).permutation(shuffled.n_obs)
    shuffled.obs_names = atac.obs_names[perm]  # same cells, pairing broken
    ctx = EmbedContext(report=validate(rna, label_key="cell_type"), label_key="cell_type")
    scores = {}
    for name, a in (("paired", atac), ("shuffled", shuffled)):
        res = get_task("multiomics", atac=a).run(rna, get_model("concat_pca"), ctx, lambda: None)
        scores[name] = {r.metric: r.value for r in res}["foscttm"]
    assert scores["paired"] < 0.2
    assert scores["shuffled"] > 0.35
    assert scores["shuffled"] > scores["paired"] + 0.2


def test_foundation_model_on_rna_and_gene_activity(paired, tmp_path):
    """A foundation model (tiny official-layout scGPT) embeds the RNA and the ATAC gene
    activity separately; both land in the table with FOSCTTM and the scIB set."""
    from sceval.testing import tiny_checkpoint

    rna, atac = paired
    ck = str(tiny_checkpoint("scgpt", tmp_path / "ck", rna))
    df = sceval.run_benchmark(
        rna.copy(),
        models=["scgpt"],
        tasks=["multiomics"],
        label_key="cell_type",
        model_params={"scgpt": {"checkpoint": ck}},
        task_params={"multiomics": {"atac": atac}},
    )
    assert set(df["status"]) == {"ok"}, df[["status", "message"]].drop_duplicates()
    v = df.set_index("metric")["value"]
    assert 0.0 <= v["foscttm"] <= 1.0
