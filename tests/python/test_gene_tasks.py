"""Gene-embedding tasks: gene sets, gene metrics, gene_function and gene_network."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pytest

import sceval
import sceval.tasks.gene_function as gf
import sceval.tasks.gene_network as gn
from sceval._errors import DataContractError, UnknownNameError
from sceval.data.gene_sets import (
    gene_set_from_dict,
    list_gene_sets,
    load_gene_set,
    read_gene_set,
)
from sceval.metrics import genes as gm
from sceval.models.base import MODELS, Model, ModelInfo, register_model

# ---------------------------------------------------------------- hand-worked metrics


def test_auroc_hand_worked():
    # positives 0.35 and 0.8 vs negatives 0.1 and 0.4: 3 of 4 pairs ordered
    assert gm.auroc([0, 0, 1, 1], np.array([0.1, 0.4, 0.35, 0.8])) == pytest.approx(0.75)
    # a tie counts one half
    assert gm.auroc(["a", "b"], np.array([0.5, 0.5])) == pytest.approx(0.5)
    # three classes, one-vs-rest macro: class scores rank their own item first
    # except class c, whose positive ties one negative (0.75)
    y = np.array(["a", "b", "c"])
    s = np.array([[0.8, 0.1, 0.3], [0.1, 0.8, 0.3], [0.1, 0.1, 0.3]])
    expected = (1.0 + 1.0 + 0.5) / 3  # c: ties with both negatives -> 0.5
    assert gm.auroc(y, s, ["a", "b", "c"]) == pytest.approx(expected)


def test_probe_metrics_hand_worked():
    proba = np.array([[0.9, 0.1], [0.4, 0.6], [0.3, 0.7], [0.2, 0.8]])
    vals = gm.gene_probe_metrics(["n", "n", "p", "p"], proba, ["n", "p"])
    assert vals["gene_accuracy"] == pytest.approx(0.75)
    # F1: class n P=1 R=0.5 -> 2/3; class p P=2/3 R=1 -> 0.8
    assert vals["gene_f1_macro"] == pytest.approx((2 / 3 + 0.8) / 2)
    assert vals["gene_auroc"] == pytest.approx(1.0)


def test_best_match_jaccard_hand_worked():
    modules = {"m1": ["g1", "g2", "g3"], "m2": ["g4", "g5"]}
    reference = {"x": ["g1", "g2"], "y": ["g4", "g5", "g6"]}
    # x: |{1,2}| / |{1,2,3}| = 2/3 ; y: 2 / 3 = 2/3
    assert gm.best_match_jaccard(modules, reference) == pytest.approx(2 / 3)
    assert gm.best_match_jaccard(reference, reference) == pytest.approx(1.0)


def test_hypergeometric_and_bh_hand_worked():
    # N=10 genes, 4 in the reference, module of 3: P(X>=3) = C(4,3)/C(10,3) = 4/120
    assert gm.hypergeometric_sf(3, 10, 4, 3) == pytest.approx(1 / 30)
    # P(X>=2) = (C(4,2) C(6,1) + C(4,3)) / 120 = 40/120
    assert gm.hypergeometric_sf(2, 10, 4, 3) == pytest.approx(1 / 3)
    assert gm.hypergeometric_sf(0, 10, 4, 3) == 1.0
    q = gm.benjamini_hochberg([0.01, 0.04, 0.03, 0.5])
    np.testing.assert_allclose(q, [0.04, 0.16 / 3, 0.16 / 3, 0.5])


def test_module_enrichment_hand_worked():
    universe = [f"g{i}" for i in range(10)]
    modules = {"A": ["g0", "g1", "g2"], "B": [f"g{i}" for i in range(3, 10)]}
    reference = {"R": ["g0", "g1", "g2", "g3"]}
    # p(A) = 1/30, p(B) = 1 (P(X>=1) with 7 draws of 10, 6 non-reference) -> q(A) = 2/30
    res = gm.module_enrichment(modules, reference, universe, alpha=0.05)
    tab = res.table.set_index("module")
    assert tab.loc["A", "pvalue"] == pytest.approx(1 / 30)
    assert tab.loc["A", "qvalue"] == pytest.approx(2 / 30)
    assert res.share == 0.0  # 0.0667 is not < 0.05
    assert gm.module_enrichment(modules, reference, universe, alpha=0.1).share == 0.5


def test_module_ami_perfect_and_partial():
    ref = {"a": "x", "b": "x", "c": "y", "d": "y"}
    ami, n = gm.module_ami({"a": "1", "b": "1", "c": "2", "d": "2", "z": "3"}, ref)
    assert n == 4 and ami == pytest.approx(1.0)


# ---------------------------------------------------------------- gene sets


def test_shipped_gene_sets():
    sets = list_gene_sets()
    assert {"tf_dna_binding", "protein_kinase", "go_bp_5", "go_cc_5"} <= set(sets["set"])
    bp = load_gene_set("go_bp_5")
    assert len(bp.labels) == 5 and bp.n_genes > 2000
    assert not bp.table["gene_symbol"].duplicated().any()  # one label per gene
    tf = load_gene_set("tf_dna_binding")
    assert set(tf.labels) == {"tf", "other"}
    assert {"FOXP3", "SOX2"} <= set(tf.table.loc[tf.table["label"] == "tf", "gene_symbol"])
    with pytest.raises(UnknownNameError, match="go_bp_5"):
        load_gene_set("nope")


def test_read_user_gene_set(tmp_path):
    path = tmp_path / "dosage.tsv"
    pd.DataFrame(
        {"ensembl": ["ENSG00000141510.17", "ENSG00000181449", "GATA1"], "cls": ["a", "b", "b"]}
    ).to_csv(path, sep="\t", index=False)
    gs = read_gene_set(path)
    assert gs.name == "dosage"
    tab = gs.table.set_index("label", append=True)
    assert list(gs.table["ensembl_id"][:2]) == ["ENSG00000141510", "ENSG00000181449"]
    assert list(gs.table["gene_symbol"]) == ["TP53", "SOX2", "GATA1"]
    assert len(tab) == 3
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"g": ["A1BG", "A1BG"], "l": ["x", "y"]}).to_csv(bad, index=False)
    with pytest.raises(DataContractError, match="one label per gene"):
        read_gene_set(bad)


# ---------------------------------------------------------------- tasks on simulated data


class _ProgramOracle(Model):
    """Positive control: one-hot simulated program of each gene plus small noise."""

    info: ClassVar[ModelInfo] = ModelInfo(
        key="test_program_oracle",
        kind="control",
        description="test positive control: one-hot simulated programs",
    )

    def embed_cells(self, adata: Any, ctx: Any) -> np.ndarray:
        return np.zeros((adata.n_obs, 1), dtype=np.float32)

    def embed_genes(self, genes: list[str], ctx: Any) -> tuple[np.ndarray, np.ndarray]:
        program = self.params["program"]
        names = sorted({p for p in program.values() if p})
        rng = np.random.default_rng(ctx.seed)
        onehot = np.array(
            [[program.get(g, "") == n for n in names] for g in genes], dtype=np.float32
        )
        noise = rng.normal(0, 0.05, onehot.shape).astype(np.float32)
        return onehot + noise, np.ones(len(genes), dtype=bool)


@pytest.fixture(scope="module")
def oracle():
    """Register the oracle at run time (not at collection, so the model contract test
    does not pick it up)."""
    if _ProgramOracle.info.key not in MODELS:
        register_model(_ProgramOracle)
    return _ProgramOracle.info.key


@pytest.fixture(scope="module")
def sim():
    return sceval.simulate(n_cells=300, n_genes=1500, n_batches=2, seed=3)


def _table(res: pd.DataFrame) -> pd.DataFrame:
    return res.pivot_table(index="model", columns="metric", values="value")


def test_gene_network_controls_bracket_models(sim, oracle):
    program = dict(zip(sim.var_names, sim.var["program"], strict=True))
    res = sceval.run_benchmark(
        sim,
        models=["test_program_oracle", "pca", "coexpression", "shuffled", "harmony"],
        tasks=["gene_network"],
        model_params={"test_program_oracle": {"program": program}},
        store_embeddings=False,
    )
    ok = res[res["model"] != "harmony"]
    assert (ok["status"] == "ok").all(), ok["message"].tolist()
    assert (res.loc[res["model"] == "harmony", "status"] == "not_applicable").all()
    tab = _table(ok)
    for metric in gn.GENE_NETWORK_KEYS:
        assert tab.loc["test_program_oracle", metric] == pytest.approx(1.0, abs=0.02)
        assert tab[metric].idxmin() == "shuffled"
    assert tab.loc["pca", "module_ami"] > 0.5 > tab.loc["shuffled", "module_ami"]
    assert "simulated programs" in ok["message"].iloc[0]


def test_gene_function_on_go_set_reports_missing_genes(sim):
    res = sceval.run_benchmark(
        sim,
        models=["pca", "shuffled"],
        tasks=["gene_function"],
        task_params={"gene_function": {"gene_set": "go_bp_5", "n_folds": 3}},
        store_embeddings=False,
    )
    assert (res["status"] == "ok").all(), res["message"].tolist()
    assert set(res["metric"]) == set(gf.GENE_FUNCTION_KEYS)
    assert res["value"].between(0, 1).all()
    assert res["message"].str.contains(r"not in the dataset").all()
    net = sceval.run_benchmark(
        sim,
        models=["pca", "shuffled"],
        tasks=["gene_network"],
        task_params={"gene_network": {"reference": "go_bp_5"}},
        store_embeddings=False,
    )
    assert (net["status"] == "ok").all(), net["message"].tolist()
    assert net["message"].str.contains("reference 'go_bp_5'").all()


def test_gene_function_programs_pca_beats_random(sim):
    groups = {
        p: sim.var_names[sim.var["program"] == p].tolist()
        for p in sorted(set(sim.var["program"]) - {""})
    }
    res = sceval.run_benchmark(
        sim,
        models=["pca", "coexpression", "shuffled"],
        tasks=["gene_function"],
        task_params={"gene_function": {"gene_set": groups}},
        store_embeddings=False,
    )
    tab = _table(res)
    assert tab.loc["pca", "gene_auroc"] > 0.9
    assert tab.loc["coexpression", "gene_auroc"] > 0.9
    assert tab.loc["shuffled", "gene_auroc"] < 0.65


def test_bad_gene_sets_give_clear_messages(sim):
    no_overlap = {"a": ["ENSG99999999991", "FAKEGENE1"], "b": ["FAKEGENE2", "FAKEGENE3"]}
    res = sceval.run_benchmark(
        sim,
        models=["pca"],
        tasks=["gene_function"],
        task_params={"gene_function": {"gene_set": gene_set_from_dict(no_overlap)}},
        store_embeddings=False,
    )
    assert (res["status"] == "failed").all()
    assert res["message"].str.contains("shares no gene").all()
    assert res["message"].str.contains("Ensembl").all()
    genes = sim.var_names.tolist()
    tiny = {"big": genes[:20], "small": genes[20:22]}
    res = sceval.run_benchmark(
        sim,
        models=["pca"],
        tasks=["gene_function"],
        task_params={"gene_function": {"gene_set": tiny, "n_folds": 5}},
        store_embeddings=False,
    )
    assert (res["status"] == "failed").all()
    assert res["message"].str.contains("fewer folds").all()
    assert res["message"].str.contains("drop these labels").all()
    no_programs = sim[:, :50].copy()
    del no_programs.var["program"]
    with pytest.raises(DataContractError, match="reference"):
        gn.reference_modules(no_programs, None)


def test_scgpt_gene_embeddings_run(sim, tmp_path):
    from sceval.testing import tiny_checkpoint

    small = sim[:60].copy()
    ckpt = tiny_checkpoint("scgpt", tmp_path / "scgpt", small)
    res = sceval.run_benchmark(
        small,
        models=["scgpt"],
        tasks=["gene_function", "gene_network"],
        model_params={"scgpt": {"checkpoint": str(ckpt)}},
        task_params={
            "gene_function": {
                "gene_set": {
                    p: small.var_names[small.var["program"] == p].tolist()
                    for p in sorted(set(small.var["program"]) - {""})
                },
                "n_folds": 3,
            }
        },
        store_embeddings=False,
        device="cpu",
    )
    assert (res["status"] == "ok").all(), res["message"].tolist()
    assert res["message"].str.contains("model gene embeddings").all()


def test_coexpression_is_the_correlation_spectral_embedding():
    import scipy.sparse as sp

    rng = np.random.default_rng(0)
    x = np.maximum(rng.standard_normal((400, 4)) @ rng.standard_normal((4, 120)), 0)
    x += rng.random((400, 120))
    x[:, 7] = 0.0  # a constant gene gets a zero row
    emb = gf._coexpression(sp.csr_matrix(x), 4, seed=0)
    corr = np.corrcoef(np.delete(x, 7, axis=1).T)
    vals, vecs = np.linalg.eigh(corr)
    ref = vecs[:, ::-1][:, :4] * np.sqrt(vals[::-1][:4])
    np.testing.assert_allclose(
        np.delete(emb, 7, axis=0) @ np.delete(emb, 7, axis=0).T, ref @ ref.T, atol=1e-3
    )
    assert not emb[7].any()
