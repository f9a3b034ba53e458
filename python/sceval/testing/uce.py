"""Tiny UCE checkpoints with random weights, in the official ``model_files`` layout.

No pretrained weights are available offline, so tests build a folder with the files, names
and state-dict keys of the official UCE release (snap-stanford/UCE: ``model.py``
``TransformerModel``; ``evaluate.py`` ``check_paths`` for the file names;
``data_proc/data_utils.py`` ``get_species_to_pe`` for the protein-embedding names;
``data_proc/generate_reduced_chrom_files.py`` for the token table and the offsets),
filled with seeded random numbers. The key list is written out here independently of
:mod:`sceval.models.uce`, so loading it there checks the names.

Written files:

* ``4layer_model.torch`` (or ``model_file``): the state dict, including
  ``pe_embedding.weight`` = the token table plus one random row per chromosome category;
* ``all_tokens.torch``: the token table without the chromosome rows (pad = zeros, chromosome
  open, chromosome close, ``<cls>``, then each species' protein embeddings in sorted
  species order);
* ``species_offsets.pkl``: species -> first row of its genes;
* ``protein_embeddings/<Species>...gene_symbol_to_embedding_ESM2.pt``: symbol -> vector
  (or ``protein_embeddings.tar.gz`` with ``archive=True``, as the release ships them);
* ``species_chrom.csv``: ``gene_symbol, chromosome, start, species`` (the column order of
  ``Create New Species Files.ipynb``; symbols upper-case).
"""

from __future__ import annotations

import math
import pickle
import tarfile
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["PROTEIN_EMBEDDING_FILES", "official_keys", "write_for_adata", "write_tiny_uce"]

#: Official protein-embedding file names (``get_species_to_pe``).
PROTEIN_EMBEDDING_FILES = {
    "human": "Homo_sapiens.GRCh38.gene_symbol_to_embedding_ESM2.pt",
    "mouse": "Mus_musculus.GRCm39.gene_symbol_to_embedding_ESM2.pt",
    "frog": "Xenopus_tropicalis.Xenopus_tropicalis_v9.1.gene_symbol_to_embedding_ESM2.pt",
    "zebrafish": "Danio_rerio.GRCz11.gene_symbol_to_embedding_ESM2.pt",
}

_CHROMS = {
    "human": [str(i) for i in range(1, 23)] + ["X", "Y", "MT"],
    "mouse": [str(i) for i in range(1, 20)] + ["X", "Y", "MT"],
}


def official_keys(
    *, token_dim: int, d_model: int, nlayers: int, d_hid: int, output_dim: int, n_tokens: int
) -> list[tuple[str, tuple[int, ...], str]]:
    """(key, shape, init) of an official UCE state dict (``model.py`` with the
    ``pe_embedding`` that ``evaluate.py`` attaches before ``load_state_dict``)."""
    keys: list[tuple[str, tuple[int, ...], str]] = []

    def linear(name: str, n_out: int, n_in: int) -> None:
        keys.append((f"{name}.weight", (n_out, n_in), f"linear:{n_in}"))
        keys.append((f"{name}.bias", (n_out,), f"linear:{n_in}"))

    def norm(name: str, n: int) -> None:
        keys.append((f"{name}.weight", (n,), "norm_weight"))
        keys.append((f"{name}.bias", (n,), "norm_bias"))

    def full_block(name: str, n_in: int, n_out: int) -> None:  # Linear, LayerNorm, GELU, Dropout
        linear(f"{name}.0", n_out, n_in)
        norm(f"{name}.1", n_out)

    keys.append(("pos_encoder.pe", (1536, 1, d_model), "sinusoid"))
    linear("encoder.0", d_model, token_dim)
    norm("encoder.2", d_model)
    for i in range(nlayers):
        p = f"transformer_encoder.layers.{i}"
        linear(f"{p}.self_attn.in_proj", 3 * d_model, d_model)
        linear(f"{p}.self_attn.out_proj", d_model, d_model)
        linear(f"{p}.linear1", d_hid, d_model)
        linear(f"{p}.linear2", d_model, d_hid)
        norm(f"{p}.norm1", d_model)
        norm(f"{p}.norm2", d_model)
    full_block("decoder.0", d_model, 1024)
    full_block("decoder.1", 1024, output_dim)
    full_block("decoder.2", output_dim, output_dim)
    linear("decoder.3", output_dim, output_dim)
    full_block("binary_decoder.0", output_dim + 1280, 2048)  # 1280 is hard-coded officially
    full_block("binary_decoder.1", 2048, 512)
    full_block("binary_decoder.2", 512, 128)
    linear("binary_decoder.3", 1, 128)
    linear("gene_embedding_layer.0", d_model, token_dim)
    norm("gene_embedding_layer.2", d_model)
    keys.append(("pe_embedding.weight", (n_tokens, token_dim), "table"))
    # nn.MultiheadAttention names its packed projection in_proj_weight / in_proj_bias
    return [
        (
            k.replace("self_attn.in_proj.weight", "self_attn.in_proj_weight").replace(
                "self_attn.in_proj.bias", "self_attn.in_proj_bias"
            ),
            s,
            kind,
        )
        for k, s, kind in keys
    ]


def _sinusoid(max_len: int, d: int) -> Any:
    import torch

    position = torch.arange(max_len).unsqueeze(1)
    div = torch.exp(torch.arange(0, d, 2) * (-math.log(10000.0) / d))
    pe = torch.zeros(max_len, 1, d)
    pe[:, 0, 0::2] = torch.sin(position * div)
    pe[:, 0, 1::2] = torch.cos(position * div)
    return pe


def write_tiny_uce(
    folder: str | Path,
    *,
    genes: dict[str, list[str]],
    positions: dict[str, dict[str, tuple[str, int]]] | None = None,
    token_dim: int = 32,
    d_model: int = 40,
    nlayers: int = 2,
    d_hid: int = 64,
    output_dim: int = 24,
    model_file: str = "4layer_model.torch",
    seed: int = 0,
    archive: bool = False,
) -> Path:
    """Write a random-weight UCE checkpoint folder in the official layout.

    Parameters
    ----------
    folder
        Created if needed.
    genes
        Species -> gene symbols of its protein-embedding file (in this order).
    positions
        Species -> symbol -> (chromosome, start); genes without an entry get a seeded
        random chromosome and start.
    token_dim, d_model, nlayers, d_hid, output_dim
        Dimensions (official: 5120, 1280, 4 or 33, 5120, 1280). ``d_model`` must be a
        multiple of 20 (the official head count).
    model_file
        Name of the weights file.
    seed
        Seed of all random numbers.
    archive
        Ship the protein embeddings as ``protein_embeddings.tar.gz`` (as the release
        does) instead of the extracted folder.

    Returns
    -------
    pathlib.Path
        The folder.
    """
    import pandas as pd
    import torch

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(int(seed))
    rng = np.random.default_rng(seed)
    positions = positions or {}

    # protein embeddings, token table, offsets (generate_reduced_chrom_files.py)
    table = [torch.zeros(1, token_dim), torch.randn(3, token_dim, generator=gen)]
    offsets: dict[str, int] = {}
    n = 4
    pe_dir = folder / "protein_embeddings"
    pe_dir.mkdir(exist_ok=True)
    for species in sorted(genes):
        symbols = list(dict.fromkeys(str(g) for g in genes[species]))
        vectors = torch.randn(len(symbols), token_dim, generator=gen)
        pe = {s: vectors[i].clone() for i, s in enumerate(symbols)}
        torch.save(pe, pe_dir / PROTEIN_EMBEDDING_FILES[species])
        table.append(vectors)
        offsets[species] = n
        n += len(symbols)
    all_tokens = torch.cat(table)
    torch.save(all_tokens, folder / "all_tokens.torch")
    with open(folder / "species_offsets.pkl", "wb") as fh:
        pickle.dump(offsets, fh)
    if archive:
        with tarfile.open(folder / "protein_embeddings.tar.gz", "w:gz") as tar:
            tar.add(pe_dir, arcname="protein_embeddings")
        for p in pe_dir.iterdir():
            p.unlink()
        pe_dir.rmdir()

    # gene -> chromosome, start
    rows = []
    for species in sorted(genes):
        chroms = _CHROMS.get(species, ["1", "2", "3"])
        known = positions.get(species, {})
        for s in dict.fromkeys(str(g) for g in genes[species]):
            chrom, start = known.get(s) or (
                chroms[int(rng.integers(len(chroms)))],
                int(rng.integers(1, 200_000_000)),
            )
            rows.append((s.upper(), chrom, int(start), species))
    chrom_df = pd.DataFrame(rows, columns=["gene_symbol", "chromosome", "start", "species"])
    chrom_df.to_csv(folder / "species_chrom.csv", index=False)
    n_chrom = (chrom_df["species"] + "_" + chrom_df["chromosome"]).nunique()

    # the model
    n_tokens = all_tokens.shape[0] + n_chrom
    state: dict[str, Any] = {}
    for key, shape, kind in official_keys(
        token_dim=token_dim,
        d_model=d_model,
        nlayers=nlayers,
        d_hid=d_hid,
        output_dim=output_dim,
        n_tokens=n_tokens,
    ):
        if kind == "sinusoid":
            t = _sinusoid(shape[0], shape[2])
        elif kind == "table":
            t = torch.cat([all_tokens, torch.randn(n_chrom, token_dim, generator=gen)])
        elif kind == "norm_weight":
            t = 1.0 + 0.1 * torch.randn(shape, generator=gen)
        elif kind == "norm_bias":
            t = 0.1 * torch.randn(shape, generator=gen)
        else:
            bound = 1.0 / math.sqrt(int(kind.split(":")[1]))
            t = (torch.rand(shape, generator=gen) * 2.0 - 1.0) * bound
        state[key] = t.contiguous()
    torch.save(state, folder / model_file)
    return folder


def _species_of(adata: Any) -> str:
    params = adata.uns.get("sceval", {}).get("simulation", {}).get("params", {})
    species = params.get("species")
    if species in _CHROMS:
        return str(species)
    from sceval.data.genes import detect_species

    found = detect_species([str(g) for g in adata.var_names])
    return found if found in _CHROMS else "human"


def write_for_adata(folder: Path, adata: Any, *, seed: int = 0, size: str = "tiny") -> Path:
    """:func:`sceval.testing.tiny_checkpoint` writer: protein embeddings for ``adata``'s
    genes (its species, from the simulation parameters or the gene names) plus a few other
    genes of that species and of the other species (human/mouse), so token offsets are not
    trivial; chromosomes from the bundled gene table, random starts.

    ``size="tiny"`` has one transformer layer: only its ``<cls>`` query is evaluated, which
    keeps the shared contract test fast (a full layer over 1,024-gene sentences with the
    fixed 20 heads costs ~0.1 s per cell on one CPU thread); the tests of
    ``tests/python/test_uce.py`` use deeper checkpoints. ``size="official"``: token_dim
    5120, d_model 1280, 4 layers, d_hid 5120, output 1280 (random weights)."""
    from sceval.data.genes import load_gene_table

    species = _species_of(adata)
    other = "mouse" if species == "human" else "human"
    symbols = [
        str(g)
        for g in (adata.var["gene_symbol"] if "gene_symbol" in adata.var else adata.var_names)
    ]
    table = load_gene_table(species)
    table = table[table["symbol"].astype(str).str.len() > 0].drop_duplicates("symbol")
    chrom_of = dict(zip(table["symbol"], table["chromosome"], strict=True))
    have = {s.upper() for s in symbols}
    extra = [s for s in table["symbol"].head(200) if s.upper() not in have][:5]
    other_genes = list(load_gene_table(other)["symbol"].drop_duplicates().head(20))
    rng = np.random.default_rng(seed + 1)
    positions = {
        species: {
            s: (chrom_of[s], int(rng.integers(1, 200_000_000)))
            for s in symbols + extra
            if chrom_of.get(s)
        }
    }
    dims: dict[str, Any] = {"nlayers": 1}
    if size == "official":
        dims = {"token_dim": 5120, "d_model": 1280, "nlayers": 4, "d_hid": 5120, "output_dim": 1280}
    return write_tiny_uce(
        folder,
        genes={species: symbols + extra, other: other_genes},
        positions=positions,
        seed=seed,
        **dims,
    )
