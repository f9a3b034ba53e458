"""Tests of sceval.data.genes: bundled gene tables, ID detection, harmonization."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from sceval._errors import DataContractError
from sceval.data import genes
from sceval.data.genes import (
    GENE_TABLE_COLUMNS,
    GeneMapping,
    detect_gene_id_type,
    detect_species,
    harmonize_genes,
    load_gene_table,
    map_genes,
)


def _adata(names: list[str], var: dict[str, list[str]] | None = None) -> ad.AnnData:
    x = np.ones((3, len(names)), dtype=np.float32)
    frame = pd.DataFrame(var or {}, index=pd.Index(names, dtype=object))
    return ad.AnnData(X=x, var=frame)


def _pair(table: pd.DataFrame, symbol: str, ensembl_id: str) -> bool:
    return bool(((table["symbol"] == symbol) & (table["ensembl_id"] == ensembl_id)).any())


# ----------------------------------------------------------------------------- tables


@pytest.mark.parametrize("species", ["human", "mouse"])
def test_tables_load_with_sane_sizes(species: str) -> None:
    table = load_gene_table(species)
    assert tuple(table.columns) == GENE_TABLE_COLUMNS
    assert not table.isna().any().any()
    assert all(table[c].map(type).eq(str).all() for c in table.columns)
    assert not table.duplicated(["symbol", "ensembl_id"]).any()
    n_coding = table.loc[table["gene_type"] == "protein-coding", "symbol"].nunique()
    assert n_coding > 18_000
    ids = table.loc[table["ensembl_id"] != "", "ensembl_id"]
    prefix = "ENSG" if species == "human" else "ENSMUSG"
    assert ids.str.match(rf"^{prefix}\d{{11}}$").all()
    assert ids.nunique() > 30_000


def test_known_pairs() -> None:
    human = load_gene_table("human")
    assert _pair(human, "TP53", "ENSG00000141510")
    assert _pair(human, "CD3E", "ENSG00000198851")
    assert _pair(human, "MT-CO1", "ENSG00000198804")  # HGNC name, not NCBI's COX1
    mouse = load_gene_table("mouse")
    assert _pair(mouse, "Trp53", "ENSMUSG00000059552")
    assert _pair(mouse, "Cd3e", "ENSMUSG00000032093")
    assert _pair(mouse, "mt-Co1", "ENSMUSG00000064351")


def test_load_gene_table_returns_a_copy_and_accepts_case() -> None:
    first = load_gene_table("Human")
    first.loc[:, "symbol"] = "x"
    assert (load_gene_table("human")["symbol"] != "x").any()


@pytest.mark.parametrize("bad", ["rat", "", None, 3])
def test_unknown_species_lists_valid_ones(bad: object) -> None:
    with pytest.raises(DataContractError, match=r"expected one of \['human', 'mouse'\]"):
        load_gene_table(bad)  # type: ignore[arg-type]


# -------------------------------------------------------------------------- detection


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (["TP53", "CD3E", "GAPDH"], "symbol"),
        (["Trp53", "Cd3e", "Gapdh"], "symbol"),
        (["ENSG00000141510", "ENSG00000198851"], "ensembl"),
        (
            ["ENSG00000139618.15", "ENSG00000141510.17", "ENSG00000182378.14_PAR_Y"],
            "ensembl_versioned",
        ),
        (["ENSMUSG00000059552", "ENSMUSG00000032093"], "ensembl"),
        (["ENSMUSG00000059552.3", "ENSMUSG00000032093.8"], "ensembl_versioned"),
        # a few odd names do not change the majority
        (
            ["ENSG00000141510", "ENSG00000198851", "ENSG00000111640", "ERCC-00002", "eGFP"],
            "ensembl",
        ),
        (["TP53", "CD3E", "GAPDH", "ENSG00000141510", ""], "symbol"),
        (pd.Index(["ENSG00000141510.1", "ENSG00000198851"]), "ensembl"),  # tie -> unversioned
        (
            np.array(["ENSG00000141510.1", "ENSG00000198851.2", "ENSG00000198852"]),
            "ensembl_versioned",
        ),
    ],
)
def test_detect_gene_id_type(names: object, expected: str) -> None:
    assert detect_gene_id_type(names) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize("names", [[], ["", "  ", None], pd.Index([], dtype=object)])
def test_detect_gene_id_type_rejects_empty(names: object) -> None:
    with pytest.raises(DataContractError, match="at least one non-empty gene ID"):
        detect_gene_id_type(names)  # type: ignore[arg-type]


def test_detect_gene_id_type_rejects_a_single_string() -> None:
    with pytest.raises(DataContractError, match="single string"):
        detect_gene_id_type("TP53")


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (["TP53", "CD3E", "MT-CO1", "C1orf112", "LINC00115"], "human"),
        (["Trp53", "Cd3e", "mt-Co1", "1700001C19Rik", "Gm12345"], "mouse"),
        (["ENSG00000141510", "ENSG00000198851.3"], "human"),
        (["ENSMUSG00000059552", "ENSMUSG00000032093.8"], "mouse"),
        (["TP53", "CD3E", "GAPDH", "ACTB", "Cd3e"], "human"),  # 80% agree
        (["TP53", "Cd3e"], "unknown"),
        (["1", "2", "3"], "unknown"),  # no letters, no votes
        (["ENSDARG00000000001"], "unknown"),  # zebrafish IDs do not vote
    ],
)
def test_detect_species(names: list[str], expected: str) -> None:
    assert detect_species(names) == expected


def test_detect_species_on_the_bundled_tables() -> None:
    assert detect_species(load_gene_table("human")["symbol"]) == "human"
    assert detect_species(load_gene_table("mouse")["symbol"]) == "mouse"
    assert detect_species(load_gene_table("mouse")["ensembl_id"]) == "mouse"


# ------------------------------------------------------------------------ harmonize


def test_harmonize_hand_built_case() -> None:
    names = ["TP53", "cd3e", "NOT_A_GENE", "MT-CO1", "Xyz-1"]
    adata = _adata(names)
    mapping = harmonize_genes(adata, species="human")

    assert isinstance(mapping, GeneMapping)
    assert mapping.species == "human"
    assert mapping.id_type == "symbol"
    assert mapping.n_genes == 5
    assert mapping.n_mapped == 3
    assert mapping.fraction_mapped == pytest.approx(0.6)
    assert mapping.unmapped == ["NOT_A_GENE", "Xyz-1"]
    assert "Mapped 3 of 5 genes (60.0%)" in mapping.message
    assert "1 symbols matched only case-insensitively" in mapping.message

    assert adata.var["gene_symbol"].tolist() == ["TP53", "CD3E", "NOT_A_GENE", "MT-CO1", "Xyz-1"]
    assert adata.var["ensembl_id"].tolist() == [
        "ENSG00000141510",
        "ENSG00000198851",
        "",
        "ENSG00000198804",
        "",
    ]
    assert list(adata.var_names) == names  # var_names are never changed
    summary = adata.uns["sceval"]["gene_mapping"]
    assert summary["n_mapped"] == 3
    assert summary["unmapped"] == ["NOT_A_GENE", "Xyz-1"]
    assert summary["gene_id_column"] == "var_names"
    assert summary["table_source"].startswith("org.Hs.eg.db")


def test_harmonize_versioned_ensembl_detects_species_and_strips_versions() -> None:
    names = [
        "ENSG00000141510.17",
        "ENSG00000198851.10",
        "ENSG00000182378.14_PAR_Y",
        "ENSG00000000000.1",
    ]
    adata = _adata(names)
    mapping = harmonize_genes(adata)
    assert (mapping.species, mapping.id_type) == ("human", "ensembl_versioned")
    assert (mapping.n_mapped, mapping.unmapped) == (3, ["ENSG00000000000.1"])
    assert adata.var["ensembl_id"].tolist() == [
        "ENSG00000141510",
        "ENSG00000198851",
        "ENSG00000182378",
        "ENSG00000000000",  # the input ID is kept even when unknown
    ]
    assert adata.var["gene_symbol"].tolist() == ["TP53", "CD3E", "PLCXD1", ""]
    assert "species detected as human" in mapping.message


@pytest.mark.parametrize(
    ("names", "id_type", "symbols", "ids"),
    [
        (
            ["Trp53", "Cd3e", "mt-Co1"],
            "symbol",
            ["Trp53", "Cd3e", "mt-Co1"],
            ["ENSMUSG00000059552", "ENSMUSG00000032093", "ENSMUSG00000064351"],
        ),
        (
            ["ENSMUSG00000059552.3", "ENSMUSG00000032093"],
            "ensembl",  # tie between versioned and plain -> "ensembl"
            ["Trp53", "Cd3e"],
            ["ENSMUSG00000059552", "ENSMUSG00000032093"],
        ),
    ],
)
def test_harmonize_mouse(
    names: list[str], id_type: str, symbols: list[str], ids: list[str]
) -> None:
    adata = _adata(names)
    mapping = harmonize_genes(adata)
    assert (mapping.species, mapping.id_type, mapping.fraction_mapped) == ("mouse", id_type, 1.0)
    assert adata.var["gene_symbol"].tolist() == symbols
    assert adata.var["ensembl_id"].tolist() == ids


def test_harmonize_reads_gene_id_column_and_handles_a_mix() -> None:
    adata = _adata(
        ["g1", "g2", "g3", "g4"],
        var={"ids": ["ENSG00000141510", "CD3E", "ENSG00000111640.15", None]},  # type: ignore[list-item]
    )
    mapping = harmonize_genes(adata, gene_id_column="ids", species="human")
    assert mapping.id_type == "ensembl"
    assert adata.var["gene_symbol"].tolist() == ["TP53", "CD3E", "GAPDH", ""]
    assert adata.var["ensembl_id"].tolist() == [
        "ENSG00000141510",
        "ENSG00000198851",
        "ENSG00000111640",
        "",
    ]
    assert mapping.n_mapped == 3
    assert mapping.unmapped == [""]
    assert adata.uns["sceval"]["gene_mapping"]["gene_id_column"] == "ids"


def test_harmonize_dry_run_writes_nothing() -> None:
    adata = _adata(["TP53", "CD3E"])
    adata.uns["sceval"] = {"other": 1}
    mapping = harmonize_genes(adata, inplace=False)
    assert mapping.n_mapped == 2
    assert "gene_symbol" not in adata.var
    assert adata.uns["sceval"] == {"other": 1}


def test_harmonize_keeps_other_sceval_uns_entries_and_writes_h5ad(tmp_path) -> None:
    adata = _adata(["TP53", "CD3E", "NOPE"])
    adata.uns["sceval"] = {"other": 1}
    harmonize_genes(adata)
    assert adata.uns["sceval"]["other"] == 1
    path = tmp_path / "x.h5ad"
    adata.write_h5ad(path)
    back = ad.read_h5ad(path)
    assert back.var["ensembl_id"].tolist() == ["ENSG00000141510", "ENSG00000198851", ""]
    assert int(back.uns["sceval"]["gene_mapping"]["n_mapped"]) == 2


def test_low_mapping_warns_but_returns() -> None:
    adata = _adata(["TP53", "foo", "bar", "baz"])
    with pytest.warns(UserWarning, match=r"only 25\.0% of the genes could be mapped"):
        mapping = harmonize_genes(adata, species="human")
    assert mapping.message.startswith("Warning:")
    assert mapping.n_mapped == 1
    assert adata.var["gene_symbol"].tolist() == ["TP53", "foo", "bar", "baz"]


def test_undetectable_species_uses_the_table_that_maps_more() -> None:
    _, mapping = map_genes(["TP53", "Cd3e", "Gapdh"])  # 1 human-style vote, 2 mouse-style
    assert mapping.species == "mouse"
    assert "could not be detected" in mapping.message


def test_unmapped_examples_are_capped_at_20() -> None:
    _, mapping = map_genes([f"FAKE{i}" for i in range(30)], species="human")
    assert mapping.unmapped == [f"FAKE{i}" for i in range(20)]
    assert mapping.n_mapped == 0


def test_map_genes_returns_columns_indexed_by_names() -> None:
    table, _ = map_genes(pd.Index(["TP53", "CD3E"]), species="human")
    assert list(table.index) == ["TP53", "CD3E"]
    assert list(table.columns) == ["gene_symbol", "ensembl_id"]


def test_missing_gene_id_column_names_the_available_ones() -> None:
    adata = _adata(["TP53"], var={"feature_name": ["TP53"], "feature_type": ["Gene Expression"]})
    with pytest.raises(DataContractError, match=r"'gene_ids'.*\['feature_name', 'feature_type'\]"):
        harmonize_genes(adata, gene_id_column="gene_ids")


def test_bad_inputs_raise() -> None:
    with pytest.raises(DataContractError, match="expected one of"):
        harmonize_genes(_adata(["TP53"]), species="zebrafish")
    with pytest.raises(DataContractError, match="no genes"):
        harmonize_genes(_adata([]))
    adata = _adata(["TP53"])
    adata.uns["sceval"] = "not a dict"
    with pytest.raises(DataContractError, match=r"adata.uns\['sceval'\] is a str"):
        harmonize_genes(adata)


# --------------------------------------------------------- deterministic choice rules


def test_many_to_many_choice_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    e = "ENSG0000000000"
    toy = pd.DataFrame(
        {
            "symbol": ["AAA", "AAA", "AAA", "BBB", "CCC", "Ddd", "DDD", "EEE"],
            "ensembl_id": [e + "9", e + "2", e + "1", e + "5", e + "5", e + "7", e + "6", ""],
            "entrez_id": ["1", "1", "1", "20", "10", "30", "31", ""],
            "gene_type": ["protein-coding"] * 2
            + ["pseudo"]
            + ["protein-coding"] * 2
            + ["ncRNA"]
            + ["protein-coding"] * 2,
            "chromosome": ["1"] * 8,
        }
    )
    genes._lookup.cache_clear()
    monkeypatch.setattr(genes, "_read_table", lambda species: toy)
    try:
        table, mapping = map_genes(
            ["AAA", "ENSG00000000005", "ddd", "DDD", "Ddd", "EEE"], species="human"
        )
    finally:
        monkeypatch.undo()
        genes._lookup.cache_clear()
    # AAA: protein-coding beats the lower pseudogene ID, then the lowest ID wins
    # ENSG..05: both symbols protein-coding -> lowest Entrez ID (CCC, 10)
    # ddd: no exact match; DDD (protein-coding) beats Ddd (ncRNA) case-insensitively
    # EEE: a symbol without Ensembl ID is not mapped
    assert table["gene_symbol"].tolist() == ["AAA", "CCC", "DDD", "DDD", "Ddd", "EEE"]
    assert table["ensembl_id"].tolist() == [
        "ENSG00000000002",
        "ENSG00000000005",
        "ENSG00000000006",
        "ENSG00000000006",
        "ENSG00000000007",
        "",
    ]
    assert mapping.n_mapped == 5
    assert mapping.unmapped == ["EEE"]
