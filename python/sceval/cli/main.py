"""``sceval run | models | tasks | metrics | fetch``.

Errors in user input print one ``Error: ...`` line (what was expected, what was found,
how to fix it) and exit with status 2; they never print a traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
import pandas as pd

from sceval import __version__
from sceval._errors import ScevalError

#: Metrics shown in the printed summary, per task (all are in the results files).
HEADLINE = {
    "integration": ["bio_conservation", "batch_correction", "total", "ilisi", "nmi", "ari"],
    "annotation": ["knn_accuracy", "knn_f1_macro", "logreg_accuracy", "logreg_f1_macro"],
}
SORT_BY = {"integration": "total", "annotation": "logreg_f1_macro"}


def _fail(err: BaseException) -> None:
    click.echo(f"Error: {err}", err=True)
    sys.exit(2)


def _parse_seeds(text: str) -> list[int]:
    try:
        out = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        msg = f"--seeds must be comma-separated non-negative integers like 0,1,2; got {text!r}."
        raise click.BadParameter(msg) from None
    if not out or any(s < 0 for s in out):
        msg = f"--seeds must be comma-separated non-negative integers like 0,1,2; got {text!r}."
        raise click.BadParameter(msg)
    return out


def format_summary(results: pd.DataFrame) -> str:
    """A printable summary: per dataset and task, models x headline metrics (mean over
    seeds, +- sd when several), then the models that were skipped or failed."""
    from sceval.benchmark.results import summarize

    if "params" in results.columns and (results["params"].fillna("{}") != "{}").any():
        # grid runs: each hyperparameter setting is its own contender
        from sceval.benchmark.analysis import model_label

        results = results.assign(
            model=[
                model_label(m, p)
                for m, p in zip(results["model"], results["params"].fillna("{}"), strict=True)
            ]
        )
    summ = summarize(results)
    lines: list[str] = []
    for (ds, task), grp in summ.groupby(["dataset", "task"], sort=False):
        ok = grp[grp["status"] == "ok"]
        lines.append(f"\n== {ds} / {task} ==")
        if ok.empty:
            lines.append("  (no model produced results)")
        else:
            cols = [m for m in HEADLINE.get(task, []) if m in set(ok["metric"])]
            cols = cols or list(dict.fromkeys(ok["metric"]))[:6]
            multi = (ok["n"] > 1).any()
            cell = ok.assign(
                txt=[
                    f"{m:.3f}" + (f"±{s:.3f}" if multi and pd.notna(s) else "")
                    for m, s in zip(ok["mean"], ok["sd"], strict=True)
                ]
            )
            table = cell.pivot_table(
                index=["model", "model_kind"], columns="metric", values="txt", aggfunc="first"
            )
            means = ok.pivot_table(index=["model", "model_kind"], columns="metric", values="mean")
            sort = SORT_BY.get(task)
            if sort in means.columns:
                table = table.loc[means[sort].sort_values(ascending=False).index]
            table = table.reindex(columns=cols).fillna("n/a")
            lines.append(table.to_string())
        bad = grp[grp["status"].isin(["skipped", "failed"])].drop_duplicates("model")
        for _, r in bad.iterrows():
            lines.append(f"  {r['model']}: {r['status']} - {r['message']}")
        na = grp[(grp["status"] == "not_applicable")].drop_duplicates("message")
        for _, r in na.head(3).iterrows():
            lines.append(f"  not applicable ({r['metric']}, ...): {r['message']}")
    return "\n".join(lines)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="sceval")
def cli() -> None:
    """sceval: does a foundation model beat simpler methods on your data?"""


@cli.command("run")
@click.argument("data", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--models",
    "-m",
    default=None,
    help="Comma-separated model keys (default: all baselines and controls). See `sceval models`.",
)
@click.option(
    "--tasks",
    "-t",
    default=None,
    help="Comma-separated task keys (default: those the given keys allow). See `sceval tasks`.",
)
@click.option("--batch-key", default=None, help="obs column with the batch of each cell.")
@click.option("--label-key", default=None, help="obs column with the cell-type label.")
@click.option(
    "--counts-layer",
    default=None,
    help="Layer with raw counts ('X', 'raw' or a layer name); default: detected.",
)
@click.option(
    "--gene-id-column", default=None, help="var column with gene IDs (default var_names)."
)
@click.option(
    "--embeddings",
    default=None,
    help="Comma-separated obsm keys of embeddings computed elsewhere, scored as 'external' models.",
)
@click.option("--seeds", default="0", show_default=True, help="Comma-separated seeds.")
@click.option(
    "--dataset-name", default=None, help="Dataset name in the results (default: the file name)."
)
@click.option(
    "--device", default="auto", show_default=True, type=click.Choice(["auto", "cpu", "cuda"])
)
@click.option(
    "--out",
    "-o",
    default="sceval-out",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Output folder.",
)
@click.option(
    "--format",
    "formats",
    default="csv,parquet",
    show_default=True,
    help="Comma-separated output formats (csv, parquet).",
)
@click.option(
    "--checkpoint",
    "checkpoints",
    multiple=True,
    metavar="MODEL=PATH|NAME",
    help="Checkpoint of a foundation model: a local folder in the official layout or a "
    "registered name (see `sceval models`). MODEL=... also applies to MODEL.random. "
    "Repeatable.",
)
@click.option(
    "--param",
    "params",
    multiple=True,
    metavar="MODEL.KEY=VALUE",
    help="A model or task parameter, e.g. scvi.max_epochs=50 or annotation.test_size=0.3. "
    "Repeatable.",
)
@click.option(
    "--split-key",
    default=None,
    help="obs column marking reference/query (train/test) cells for annotation.",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@click.option(
    "--config",
    "config",
    default=None,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Run the grid of a YAML benchmark config (datasets x models x tasks x seeds x "
    "hyperparameters); see inst/examples/. Resumes: finished cells are skipped.",
)
@click.option("--dry-run", is_flag=True, help="With --config: print the grid and its size only.")
@click.option(
    "--processes",
    "n_processes",
    type=click.IntRange(min=1),
    default=None,
    help="With --config: run jobs in a local pool of N processes.",
)
@click.option(
    "--dask",
    "dask_address",
    default=None,
    metavar="ADDRESS",
    help="With --config: run jobs on the Dask cluster at ADDRESS (e.g. tcp://host:8786). "
    "GPU workers must be started with --resources GPU=1.",
)
@click.option(
    "--dask-local",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="With --config: start a local Dask cluster of N worker processes.",
)
@click.option(
    "--no-resume", is_flag=True, help="With --config: run every cell again (ignore finished)."
)
@click.option("--retry-failed", is_flag=True, help="With --config: run cells that failed again.")
@click.pass_context
def run_cmd(
    click_ctx: click.Context,
    data: Path | None,
    models: str | None,
    tasks: str | None,
    batch_key: str | None,
    label_key: str | None,
    counts_layer: str | None,
    gene_id_column: str | None,
    embeddings: str | None,
    seeds: str,
    dataset_name: str | None,
    device: str,
    out: Path,
    formats: str,
    checkpoints: tuple[str, ...],
    params: tuple[str, ...],
    split_key: str | None,
    quiet: bool,
    config: Path | None,
    dry_run: bool,
    n_processes: int | None,
    dask_address: str | None,
    dask_local: int | None,
    no_resume: bool,
    retry_failed: bool,
) -> None:
    """Benchmark models on DATA.h5ad (or, without DATA, on the embedded default:
    pbmc68k_reduced for annotation and a simulated 3-batch dataset for integration).

    Writes OUT/results.csv and OUT/results.parquet (one row per dataset, task, model,
    seed, metric) and prints a summary.

    With --config X.yaml, runs the config's grid instead: each finished cell is saved in
    OUT/cells/ (a rerun skips it), embeddings are cached in OUT/cache/, and OUT/run.json
    records versions, hardware, checksums and the config. Jobs run in this process
    (default), in a process pool (--processes N) or on Dask (--dask ADDRESS,
    --dask-local N).
    """
    grid_opts = {
        "--dry-run": dry_run,
        "--processes": n_processes is not None,
        "--dask": dask_address is not None,
        "--dask-local": dask_local is not None,
        "--no-resume": no_resume,
        "--retry-failed": retry_failed,
    }
    if config is not None:
        _run_config(
            click_ctx, data, config, grid_opts, out, dask_address, dask_local, n_processes, quiet
        )
        return
    used = [k for k, v in grid_opts.items() if v]
    if used:
        _fail(click.BadParameter(f"{', '.join(used)} only apply with --config X.yaml."))
        return
    from sceval.benchmark.results import write_results
    from sceval.benchmark.runner import DEFAULT_MODELS, _as_list, _resolve_device, run_benchmark
    from sceval.data.io import read_h5ad
    from sceval.models.base import MODELS
    from sceval.tasks.base import TASKS

    seed_list = _parse_seeds(seeds)
    fmt = tuple(f.strip() for f in formats.split(",") if f.strip())
    try:
        model_keys = _as_list(models, "--models")
        for k in model_keys or []:
            MODELS.get(k)
        for k in _as_list(tasks, "--tasks") or []:
            TASKS.get(k)
        for f in fmt:
            if f not in ("csv", "parquet"):
                msg = f"--format {f!r} is not supported; use csv and/or parquet."
                raise click.BadParameter(msg)
        model_params, task_params = _parse_params(params, checkpoints, model_keys)
        if split_key is not None:
            task_params.setdefault("annotation", {})["split_key"] = split_key
        jobs = _jobs(data, tasks, batch_key, label_key, dataset_name)
        if data is None and model_keys is None and _resolve_device(device) == "cpu":
            model_keys = [k for k in DEFAULT_MODELS if k != "scvi"]
            click.echo(
                "Note: scvi is left out of the default run on CPU (training takes several "
                "minutes per seed on 2 cores); add it with --models "
                + ",".join(DEFAULT_MODELS)
                + ".",
                err=True,
            )
        n_models = len(model_keys or DEFAULT_MODELS) + len(_as_list(embeddings, "e") or [])
        total = len(jobs) * len(seed_list) * n_models
        frames = []
        with click.progressbar(
            length=total,
            label="benchmark",
            file=sys.stderr,
            show_pos=True,
            item_show_func=lambda s: s,
            hidden=quiet,
        ) as bar:
            for job in jobs:
                adata = job["adata"] if job["adata"] is not None else read_h5ad(data)
                frames.append(
                    run_benchmark(
                        adata,
                        model_keys,
                        job["tasks"],
                        seeds=seed_list,
                        batch_key=job["batch_key"],
                        label_key=job["label_key"],
                        counts_layer=counts_layer,
                        gene_id_column=gene_id_column,
                        dataset=job["name"],
                        embeddings=embeddings,
                        model_params=model_params,
                        task_params=task_params,
                        device=device,
                        callback=lambda s: bar.update(1, s),
                    )
                )
        results = pd.concat(frames, ignore_index=True)
        written = write_results(results, out, fmt)
    except (ScevalError, ValueError, click.BadParameter) as err:
        _fail(err)
        return
    click.echo(format_summary(results))
    n_bad = int(results["status"].isin(["failed"]).sum())
    click.echo(f"\n{len(results)} rows -> " + ", ".join(str(p) for p in written.values()))
    if n_bad:
        click.echo(f"{n_bad} rows failed; see the message column.", err=True)


#: ``sceval run`` options that a config replaces (an error to combine with --config).
_CONFIG_REPLACES = {
    "models": "models:",
    "tasks": "tasks:",
    "batch_key": "batch_key: (per dataset)",
    "label_key": "label_key: (per dataset)",
    "counts_layer": "counts_layer: (per dataset)",
    "gene_id_column": "gene_id_column: (per dataset)",
    "embeddings": None,
    "seeds": "seeds:",
    "dataset_name": "name: (per dataset)",
    "device": "device:",
    "formats": None,
    "checkpoints": "checkpoint: (per model)",
    "params": "params: (per model or task)",
    "split_key": "task_params: {annotation: {split_key: ...}} (per dataset)",
}


def _run_config(
    click_ctx: click.Context,
    data: Path | None,
    config: Path,
    opts: dict[str, bool],
    out: Path,
    dask_address: str | None,
    dask_local: int | None,
    n_processes: int | None,
    quiet: bool,
) -> None:
    """``sceval run --config``: the grid runner (dry run, executors, resume)."""
    from click.core import ParameterSource

    from sceval.benchmark.config import load_config
    from sceval.benchmark.runner import plan_grid, run_grid

    try:
        if data is not None:
            msg = f"give either DATA ({data}) or --config, not both; name datasets in the config."
            raise click.BadParameter(msg)
        for name, instead in _CONFIG_REPLACES.items():
            if click_ctx.get_parameter_source(name) == ParameterSource.COMMANDLINE:
                opt = (
                    "--" + name.replace("_", "-").rstrip("s")
                    if name in ("checkpoints", "params", "formats")
                    else "--" + name.replace("_", "-")
                )
                where = f"; set {instead} in the config" if instead else ""
                raise click.BadParameter(f"{opt} cannot be combined with --config{where}.")
        executors = [k for k in ("--processes", "--dask", "--dask-local") if opts[k]]
        if len(executors) > 1:
            raise click.BadParameter(f"choose one executor; got {', '.join(executors)}.")
        cfg = load_config(config)
        out_explicit = click_ctx.get_parameter_source("out") == ParameterSource.COMMANDLINE
        outdir = out if out_explicit else None
        if opts["--dry-run"]:
            plan = plan_grid(cfg, outdir)
            with pd.option_context(
                "display.max_colwidth", 60, "display.width", 200, "display.max_rows", None
            ):
                click.echo(plan.to_string(index=False))
            n_done = int(plan["done"].sum())
            click.echo(
                f"\n{len(plan)} cells ({plan['dataset'].nunique()} datasets x "
                f"{plan['model'].nunique()} models x {plan['task'].nunique()} tasks x "
                f"{plan['seed'].nunique()} seeds, with hyperparameter grids); "
                f"{n_done} done, {len(plan) - n_done} to run."
            )
            return
        kind: str | None = None
        workers = address = None
        if n_processes is not None:
            kind, workers = "processes", n_processes
        elif dask_address is not None:
            kind, address = "dask", dask_address
        elif dask_local is not None:
            kind, workers = "dask", dask_local
        results = run_grid(
            cfg,
            outdir,
            executor=kind,
            workers=workers,
            address=address,
            resume=not opts["--no-resume"],
            retry_failed=opts["--retry-failed"],
            progress=False if quiet else None,
        )
    except KeyboardInterrupt:
        click.echo(
            "\nInterrupted: finished cells are saved; run the same command again to resume.",
            err=True,
        )
        sys.exit(130)
    except (
        ScevalError,
        ValueError,
        click.BadParameter,
        RuntimeError,
        ImportError,
        OSError,
        TimeoutError,
    ) as err:
        _fail(err)
        return
    # format_summary tells hyperparameter settings apart: "pca n_comps=10"
    click.echo(format_summary(results))
    target = outdir or (cfg.out or "sceval-out")
    click.echo(f"\n{len(results)} rows, {results['cell'].nunique()} cells -> {target}")
    n_bad = int((results["status"] == "failed").sum())
    if n_bad:
        click.echo(f"{n_bad} rows failed; see the message column.", err=True)


def _value(text: str) -> object:
    """Parse a --param value: int, float, true/false/none, else the string."""
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def _parse_params(
    params: tuple[str, ...], checkpoints: tuple[str, ...], model_keys: list[str] | None
) -> tuple[dict[str, dict[str, object]], dict[str, dict[str, object]]]:
    """``--param MODEL.KEY=VALUE`` and ``--checkpoint MODEL=REF`` -> per-key parameters."""
    from sceval.models.base import MODELS
    from sceval.tasks.base import TASKS

    model_params: dict[str, dict[str, object]] = {}
    task_params: dict[str, dict[str, object]] = {}
    for item in params:
        head, sep, value = item.partition("=")
        owner, dot, key = head.rpartition(".")
        if not sep or not dot or not owner or not key:
            msg = f"--param must look like MODEL.KEY=VALUE (e.g. scvi.max_epochs=50); got {item!r}."
            raise click.BadParameter(msg)
        if owner in TASKS:
            task_params.setdefault(owner, {})[key] = _value(value)
        else:
            MODELS.get(owner)  # unknown -> did-you-mean error
            model_params.setdefault(owner, {})[key] = _value(value)
    for item in checkpoints:
        owner, sep, ref = item.partition("=")
        if not sep or not owner or not ref:
            msg = (
                "--checkpoint must look like MODEL=PATH (e.g. scgpt=/data/scGPT_human); "
                f"got {item!r}."
            )
            raise click.BadParameter(msg)
        MODELS.get(owner)
        targets = [owner] + [k for k in (model_keys or MODELS.keys()) if k.startswith(owner + ".")]
        for k in targets:
            model_params.setdefault(k, {})["checkpoint"] = ref
    return model_params, task_params


def _jobs(
    data: Path | None,
    tasks: str | None,
    batch_key: str | None,
    label_key: str | None,
    name: str | None,
) -> list[dict[str, Any]]:
    from sceval.data.datasets import load_default_datasets

    if data is not None:
        return [
            {
                "adata": None,
                "name": name or data.stem,
                "tasks": tasks,
                "batch_key": batch_key,
                "label_key": label_key,
            }
        ]
    jobs = []
    wanted = [t.strip() for t in tasks.split(",")] if tasks else None
    for d in load_default_datasets():
        keep = [t for t in d.tasks if wanted is None or t in wanted]
        if not keep:
            continue
        t = ",".join(keep)
        jobs.append(
            {
                "adata": d.adata,
                "name": d.name,
                "tasks": t,
                "batch_key": d.batch_key,
                "label_key": d.label_key,
            }
        )
    return jobs


def _print_table(df: pd.DataFrame) -> None:
    with pd.option_context("display.max_colwidth", 70, "display.width", 200):
        click.echo(df.to_string(index=False))


def _default_checkpoints(models: list[str]) -> list[str]:
    """``"<checkpoint> (installed|missing)"`` for models with a default checkpoint, else ""."""
    from sceval.models.base import MODELS
    from sceval.models.checkpoints import CHECKPOINTS, is_installed

    out = []
    for key in models:
        name = getattr(MODELS.get(key), "default_checkpoint", "") or ""
        if name and name in CHECKPOINTS:
            name += " (installed)" if is_installed(name) else " (missing)"
        out.append(name)
    return out


@cli.command("models")
def models_cmd() -> None:
    """List models with their kind, input and requirements, then the pretrained
    checkpoints (installed or missing, and how to get them)."""
    from sceval.listing import list_checkpoints, list_models
    from sceval.models.checkpoints import sceval_home

    df = list_models()
    cols = ["model", "kind", "input", "requirements", "available", "license", "description"]
    ckpt = _default_checkpoints(list(df["model"]))
    if any(ckpt):
        df = df.assign(checkpoint=ckpt)
        cols.insert(6, "checkpoint")
    _print_table(df[cols])
    ck = list_checkpoints()
    if ck.empty:
        return
    click.echo(f"\nCheckpoints (installed in {sceval_home() / 'checkpoints'}):")
    _print_table(
        ck.assign(get=[g or p for g, p in zip(ck["get"], ck["path"], strict=True)])[
            ["checkpoint", "model", "status", "get", "size", "license"]
        ].rename(columns={"get": "how to get it / where"})
    )


@cli.command("fetch")
@click.argument("names", nargs=-1, required=True, metavar="NAME...")
@click.option(
    "--home",
    default=None,
    type=click.Path(file_okay=False, path_type=Path),
    help="sceval home folder (default: $SCEVAL_HOME or the user cache folder); "
    "checkpoints go to HOME/checkpoints/NAME.",
)
@click.option(
    "--mirror",
    default=None,
    metavar="URL",
    help="Download from a mirror serving the official relative paths "
    "(default: $SCEVAL_CHECKPOINT_MIRROR).",
)
@click.option("--force", is_flag=True, help="Download again even if installed.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def fetch_cmd(
    names: tuple[str, ...], home: Path | None, mirror: str | None, force: bool, quiet: bool
) -> None:
    """Download pretrained checkpoints (see `sceval models`), verify their sha256 and
    install them. Interrupted downloads resume when the command is run again."""
    from sceval.models.checkpoints import CHECKPOINTS, fetch

    try:
        for name in names:
            CHECKPOINTS.get(name)
        for name in names:
            spec = CHECKPOINTS.get(name)
            path = fetch(name, home=home, url_base=mirror, force=force, progress=not quiet)
            click.echo(f"{name}: installed in {path} (license {spec.license})")
    except (ScevalError, ValueError, OSError) as err:
        _fail(err)


@cli.command("tasks")
def tasks_cmd() -> None:
    """List tasks with their requirements and metrics."""
    from sceval.listing import list_tasks

    _print_table(list_tasks())


@cli.command("metrics")
def metrics_cmd() -> None:
    """List metrics with category and direction."""
    from sceval.listing import list_metrics

    _print_table(list_metrics())


def _register_command_modules() -> None:
    """Import the other modules of :mod:`sceval.cli`; each adds its commands to ``cli``
    with ``@cli.command`` (e.g. ``report.py``, ``datasets.py``)."""
    import importlib
    import pkgutil

    import sceval.cli as pkg

    for mod in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
        if mod.name != "main" and not mod.name.startswith("_"):
            importlib.import_module(f"sceval.cli.{mod.name}")


_register_command_modules()


def main() -> None:
    """Entry point of the ``sceval`` console script."""
    cli()
