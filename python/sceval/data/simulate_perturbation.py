"""Seeded simulation of genetic-perturbation screens (Perturb-seq) with known truth,
and the reader / validator of the GEARS / scPerturb condition convention.

Convention: ``obs["condition"]`` names what was perturbed in each cell: ``ctrl`` for
control cells, ``A+ctrl`` (or ``ctrl+A``) for a single perturbation of gene ``A`` and
``A+B`` for a two-gene combination. Perturbed genes are looked up in ``var_names`` and,
when present, ``var["gene_symbol"]``.

The generative model extends :func:`sceval.data.simulate` (gamma-Poisson counts):

* genes have log-normal base means; ``n_programs`` disjoint gene programs each have
  loadings ``L_k`` (mostly positive), and every cell has a program activity
  ``a_ck ~ N(0, program_sd^2)``, so genes of a program co-vary in control cells;
* each perturbed gene (a *regulator*) is a member of one program; perturbing it changes
  its own expression by ``knockdown_lfc`` (``-knockdown_lfc`` for activation) and shifts
  its program by ``-s_g * L_k`` (``+s_g * L_k`` for activation, ``s_g > 0``: regulators
  activate their program), plus, for half the regulators, ``0.4`` times that shift of a
  second, random program; so co-expression carries part of the information;
* a combination ``A+B`` has the log fold change ``delta_A + delta_B`` (additive in log
  space) plus ``interaction * z_AB`` with ``z_AB ~ N(0, 0.5^2)`` on the genes of the
  programs of ``A`` and ``B``;
* counts ``~ NB(mean = s_c * mu_g * exp(sum_k a_ck L_kg + delta_condition,g), dispersion)``.

The true log fold changes are in ``varm["perturbation_lfc"]`` (genes x conditions, the
columns named by ``uns["perturbation"]["conditions"]``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from sceval._errors import DataContractError

__all__ = [
    "PerturbationSummary",
    "check_perturbation",
    "condition_name",
    "gene_index",
    "parse_condition",
    "read_perturbation_h5ad",
    "simulate_perturbation",
]

#: Tokens that mean "no gene" inside a condition (besides the user's control name).
CONTROL_TOKENS = ("ctrl", "control", "")


def parse_condition(condition: str, control: str = "ctrl") -> tuple[str, ...]:
    """The perturbed genes of a condition string, sorted; ``()`` for control cells.

    ``"ctrl"`` -> ``()``, ``"A+ctrl"`` and ``"ctrl+A"`` -> ``("A",)``,
    ``"B+A"`` -> ``("A", "B")``.
    """
    tokens = [t.strip() for t in str(condition).split("+")]
    skip = {control, *CONTROL_TOKENS}
    return tuple(sorted({t for t in tokens if t not in skip}))


def condition_name(genes: Sequence[str], control: str = "ctrl") -> str:
    """The canonical condition string of ``genes``: ``ctrl``, ``A+ctrl`` or ``A+B``."""
    g = sorted(set(genes))
    if not g:
        return control
    if len(g) == 1:
        return f"{g[0]}+{control}"
    return "+".join(g)


def gene_index(adata: Any) -> dict[str, int]:
    """Gene name -> column index, from ``var_names`` and ``var["gene_symbol"]``."""
    out: dict[str, int] = {}
    if "gene_symbol" in adata.var.columns:
        for i, s in enumerate(adata.var["gene_symbol"].astype(str)):
            out.setdefault(s, i)
    for i, s in enumerate(adata.var_names.astype(str)):
        out[s] = i
    return out


class PerturbationSummary(dict):
    """What :func:`check_perturbation` found (a dict with attribute access).

    Keys: ``canonical`` (canonical condition per cell, numpy array), ``conditions``
    (sorted non-control conditions), ``genes`` (condition -> tuple of genes),
    ``singles``, ``combos`` (lists of conditions), ``n_control`` (control cells).
    """

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError as err:
            raise AttributeError(name) from err


def check_perturbation(
    adata: Any, condition_key: str = "condition", control: str = "ctrl"
) -> PerturbationSummary:
    """Validate the perturbation convention and summarize the conditions.

    Raises
    ------
    DataContractError
        When the column is missing, there are no control cells, a condition perturbs
        more than two genes, or a perturbed gene is not among the measured genes.
    """
    if condition_key not in adata.obs.columns:
        msg = (
            f"perturbation_key={condition_key!r} is not a column of adata.obs (found "
            f"{list(adata.obs.columns)[:10]}). Expected a column naming each cell's "
            f"condition ('{control}', 'A+{control}', 'A+B'). Fix: pass perturbation_key= "
            "naming that column."
        )
        raise DataContractError(msg)
    raw = adata.obs[condition_key].astype(str).to_numpy()
    uniq, inverse = np.unique(raw, return_inverse=True)
    genes_of = {u: parse_condition(u, control) for u in uniq}
    canon_of = np.array([condition_name(genes_of[u], control) for u in uniq], dtype=object)
    canonical = canon_of[inverse].astype(str)
    n_control = int(np.sum(canonical == control))
    if n_control == 0 or control not in set(np.char.strip(uniq.astype(str)).tolist()):
        msg = (
            f"no control cells: no value of obs[{condition_key!r}] equals {control!r} "
            f"(found {sorted(uniq.tolist())[:8]}). Expected unperturbed cells labelled "
            f"{control!r}. Fix: pass control= naming the control value, or relabel them."
        )
        raise DataContractError(msg)
    big = [u for u, g in genes_of.items() if len(g) > 2]
    if big:
        msg = (
            f"conditions perturbing more than two genes are not supported, found {big[:5]}. "
            "Expected 'A+ctrl' or 'A+B'. Fix: drop those cells."
        )
        raise DataContractError(msg)
    index = gene_index(adata)
    missing = sorted({x for g in genes_of.values() for x in g if x not in index})
    if missing:
        bad = sorted({u for u, g in genes_of.items() if any(x in missing for x in g)})
        msg = (
            f"{len(missing)} perturbed gene(s) are not among the measured genes "
            f"(var_names or var['gene_symbol']): {missing[:8]}; conditions {bad[:8]}. "
            "Expected every perturbed gene to be measured. Fix: drop those cells, e.g. "
            f"adata = adata[~adata.obs[{condition_key!r}].isin({bad[:3]}...)]."
        )
        raise DataContractError(msg)
    conditions = sorted({c for c in canon_of.tolist() if c != control})
    genes = {c: parse_condition(c, control) for c in conditions}
    return PerturbationSummary(
        canonical=canonical,
        conditions=conditions,
        genes=genes,
        singles=[c for c in conditions if len(genes[c]) == 1],
        combos=[c for c in conditions if len(genes[c]) == 2],
        n_control=n_control,
    )


def read_perturbation_h5ad(
    path: str | Path, condition_key: str = "condition", control: str = "ctrl"
) -> Any:
    """Read an ``.h5ad`` perturbation screen and validate its condition column.

    Parameters
    ----------
    path
        The file.
    condition_key
        ``obs`` column with ``ctrl`` / ``A+ctrl`` / ``A+B`` values.
    control
        The value marking control cells.

    Returns
    -------
    anndata.AnnData
        The object, with ``uns["perturbation"]`` recording the key, the control value
        and the numbers of single and combination perturbations.
    """
    import anndata as ad

    p = Path(path)
    if not p.exists():
        msg = f"{p} does not exist. Expected an .h5ad file. Fix: check the path."
        raise FileNotFoundError(msg)
    adata = ad.read_h5ad(p)
    s = check_perturbation(adata, condition_key, control)
    info = dict(adata.uns.get("perturbation", {}))
    info.update(
        condition_key=condition_key,
        control=control,
        n_singles=len(s.singles),
        n_combos=len(s.combos),
        n_control_cells=s.n_control,
    )
    adata.uns["perturbation"] = info
    return adata


def _check_args(
    n_control: int, n_pert: int, n_genes: int, n_programs: int, program_size: int, cpc: int
) -> None:
    checks = [
        (n_control >= 10, f"n_control must be >= 10, found {n_control}"),
        (n_pert >= 1, f"perturbations must be >= 1, found {n_pert}"),
        (n_genes >= 20, f"n_genes must be >= 20, found {n_genes}"),
        (n_programs >= 1, f"n_programs must be >= 1, found {n_programs}"),
        (program_size >= 2, f"program_size must be >= 2, found {program_size}"),
        (cpc >= 1, f"cells_per_condition must be >= 1, found {cpc}"),
        (
            n_programs * program_size <= n_genes,
            f"n_programs * program_size = {n_programs * program_size} exceeds n_genes="
            f"{n_genes}; lower them or raise n_genes",
        ),
        (
            n_pert <= n_programs * program_size,
            f"perturbations={n_pert} exceeds the {n_programs * program_size} program genes",
        ),
    ]
    for ok, msg in checks:
        if not ok:
            raise ValueError(msg)


def simulate_perturbation(
    n_control: int = 1000,
    perturbations: int = 20,
    n_genes: int = 1000,
    *,
    n_combos: int = 20,
    cells_per_condition: int = 100,
    n_programs: int = 10,
    program_size: int = 40,
    effect_size: float = 1.0,
    knockdown_lfc: float = -2.0,
    up_fraction: float = 0.2,
    interaction: float = 0.0,
    program_sd: float = 0.3,
    library_size: float = 3000.0,
    library_sd: float = 0.3,
    dispersion: float = 0.2,
    control: str = "ctrl",
    species: str = "human",
    seed: int = 0,
) -> Any:
    """Simulate a Perturb-seq screen: control cells, single and two-gene perturbations.

    Parameters
    ----------
    n_control
        Number of control cells.
    perturbations
        Number of perturbed genes (each gets a single perturbation ``A+ctrl``).
    n_genes
        Number of measured genes.
    n_combos
        Number of two-gene combinations ``A+B`` drawn among the perturbed genes
        (capped at the number of pairs).
    cells_per_condition
        Cells per perturbation.
    n_programs, program_size
        Disjoint downstream gene programs and their size.
    effect_size
        Mean absolute shift ``|s_g|`` of a regulator's program (times the loadings).
    knockdown_lfc
        Log fold change of the perturbed gene itself (knockdown; activation flips it).
    up_fraction
        Share of perturbations that activate instead of knocking down (CRISPRa).
    interaction
        Scale of the non-additive term of combinations (0: exactly additive in log space).
    program_sd
        Sd of the per-cell program activities (co-expression in every condition).
    library_size, library_sd, dispersion
        Median total count, log-normal sd of size factors, NB dispersion.
    control
        The control value of ``obs["condition"]``.
    species
        ``"human"`` or ``"mouse"`` gene names.
    seed
        Seed of every random draw.

    Returns
    -------
    anndata.AnnData
        ``X`` raw counts (CSR float32, also ``layers["counts"]``); ``obs["condition"]``
        (``ctrl``, ``A+ctrl``, ``A+B``), ``obs["control"]`` (1 for control cells),
        ``obs["n_perturbed"]``, ``obs["size_factor"]``; ``var`` with ``gene_symbol``,
        ``ensembl_id``, ``program``, ``base_mean``, ``regulator``;
        ``varm["perturbation_lfc"]`` the true log fold change of the mean per condition
        and ``varm["interaction_lfc"]`` its non-additive part; ``uns["perturbation"]``
        with the condition key, control value, ``conditions`` (column order),
        ``programs``, ``regulators`` (program, shift, direction) and the parameters.
    """
    import anndata as ad

    from sceval.data.simulate import _pick_genes

    _check_args(n_control, perturbations, n_genes, n_programs, program_size, cells_per_condition)
    rng = np.random.default_rng(seed)
    table = _pick_genes(n_genes, species, rng)
    symbols = table["symbol"].astype(str).to_numpy()
    base = np.exp(rng.normal(-1.0, 1.3, size=n_genes))
    base = base / base.sum()

    # disjoint programs with mostly positive loadings
    members = rng.permutation(n_genes)[: n_programs * program_size].reshape(n_programs, -1)
    loadings = np.zeros((n_programs, n_genes))
    program_of = np.array([""] * n_genes, dtype=object)
    for k in range(n_programs):
        sign = np.where(rng.random(program_size) < 0.85, 1.0, -1.0)
        loadings[k, members[k]] = sign * np.abs(rng.normal(1.0, 0.3, size=program_size))
        program_of[members[k]] = f"program_{k + 1}"

    # regulators: spread round-robin over programs
    reg_idx = np.array(
        [members[i % n_programs, i // n_programs] for i in range(perturbations)], dtype=int
    )
    reg_prog = np.arange(perturbations) % n_programs
    up = rng.random(perturbations) < up_fraction
    single_delta = np.zeros((perturbations, n_genes))
    regulators: dict[str, dict[str, Any]] = {}
    for j in range(perturbations):
        # regulators activate their program: a knockdown lowers it, an activation raises it
        s = np.abs(rng.normal(effect_size, 0.25 * effect_size))
        direction = 1.0 if up[j] else -1.0
        d = direction * s * loadings[reg_prog[j]]
        second = -1
        if n_programs > 1 and rng.random() < 0.5:
            second = int(rng.choice([k for k in range(n_programs) if k != reg_prog[j]]))
            d = d + direction * 0.4 * s * loadings[second]
        d[reg_idx[j]] += -knockdown_lfc if up[j] else knockdown_lfc
        single_delta[j] = d
        regulators[str(symbols[reg_idx[j]])] = {
            "program": f"program_{reg_prog[j] + 1}",
            "second_program": f"program_{second + 1}" if second >= 0 else "",
            "shift": round(float(direction * s), 4),
            "direction": "up" if up[j] else "down",
        }

    # combinations
    pairs = [(a, b) for a in range(perturbations) for b in range(a + 1, perturbations)]
    n_c = min(n_combos, len(pairs))
    chosen = [pairs[i] for i in np.sort(rng.choice(len(pairs), size=n_c, replace=False))]
    cond_names = [condition_name([symbols[reg_idx[j]]], control) for j in range(perturbations)]
    deltas = [single_delta[j] for j in range(perturbations)]
    inter = [np.zeros(n_genes) for _ in range(perturbations)]
    for a, b in chosen:
        z = np.zeros(n_genes)
        genes_ab = np.union1d(members[reg_prog[a]], members[reg_prog[b]])
        z[genes_ab] = rng.normal(0.0, 0.5, size=genes_ab.size) * interaction
        cond_names.append(condition_name([symbols[reg_idx[a]], symbols[reg_idx[b]]], control))
        deltas.append(single_delta[a] + single_delta[b] + z)
        inter.append(z)

    # cells, block by block (control first)
    blocks, conds = [], []
    shape = 1.0 / dispersion
    all_names = [control, *cond_names]
    all_deltas = [np.zeros(n_genes), *deltas]
    sizes = []
    for name, delta in zip(all_names, all_deltas, strict=True):
        n = n_control if name == control else cells_per_condition
        act = rng.normal(0.0, program_sd, size=(n, n_programs))
        size = library_size * np.exp(rng.normal(0.0, library_sd, size=n))
        rates = base[None, :] * np.exp(act @ loadings + delta[None, :])
        rates /= rates.sum(axis=1, keepdims=True)
        mean = size[:, None] * rates
        counts = rng.poisson(rng.gamma(shape, mean * dispersion))
        blocks.append(sp.csr_matrix(counts.astype(np.float32)))
        conds += [name] * n
        sizes.append(size / library_size)
    X = sp.vstack(blocks, format="csr")
    n_cells = X.shape[0]
    n_pert = np.array([len(parse_condition(c, control)) for c in conds])
    obs = pd.DataFrame(
        {
            "condition": pd.Categorical(conds, categories=all_names),
            "control": (n_pert == 0).astype(int),
            "n_perturbed": n_pert,
            "size_factor": np.concatenate(sizes),
        },
        index=[f"cell_{i:06d}" for i in range(n_cells)],
    )
    is_reg = np.zeros(n_genes, dtype=bool)
    is_reg[reg_idx] = True
    var = pd.DataFrame(
        {
            "gene_symbol": symbols,
            "ensembl_id": table["ensembl_id"].astype(str).to_numpy(),
            "program": program_of.astype(str),
            "base_mean": base,
            "regulator": is_reg,
        },
        index=pd.Index(symbols),
    )
    adata = ad.AnnData(X=X, obs=obs, var=var)
    adata.layers["counts"] = X.copy()
    # rates are proportions of the library, so the observed log fold change equals delta
    # up to a per-condition constant (the renormalization), small next to the effects
    adata.varm["perturbation_lfc"] = np.stack(deltas, axis=1).astype(np.float32)
    adata.varm["interaction_lfc"] = np.stack(inter, axis=1).astype(np.float32)
    adata.uns["perturbation"] = {
        "condition_key": "condition",
        "control": control,
        "conditions": cond_names,
        "programs": {f"program_{k + 1}": symbols[members[k]].tolist() for k in range(n_programs)},
        "regulators": regulators,
        "params": {
            "n_control": n_control,
            "perturbations": perturbations,
            "n_genes": n_genes,
            "n_combos": n_c,
            "cells_per_condition": cells_per_condition,
            "n_programs": n_programs,
            "program_size": program_size,
            "effect_size": effect_size,
            "knockdown_lfc": knockdown_lfc,
            "up_fraction": up_fraction,
            "interaction": interaction,
            "program_sd": program_sd,
            "library_size": library_size,
            "library_sd": library_sd,
            "dispersion": dispersion,
            "species": species,
            "seed": seed,
        },
    }
    return adata
