"""``sceval datasets`` and ``sceval fetch-data``: the public dataset registry."""

from __future__ import annotations

from pathlib import Path

import click

from sceval._errors import ScevalError
from sceval.cli.main import _fail, _print_table, cli

_HOME_HELP = (
    "sceval home folder (default: $SCEVAL_HOME or the user cache folder); datasets go to "
    "HOME/datasets/NAME."
)


@cli.command("datasets")
@click.option(
    "--home", default=None, type=click.Path(file_okay=False, path_type=Path), help=_HOME_HELP
)
@click.option("--long", "long_", is_flag=True, help="Also show citation and source URL.")
def datasets_cmd(home: Path | None, long_: bool) -> None:
    """List the registered datasets (built-in, downloaded or missing) with their tasks,
    keys, size, license and how to get them."""
    from sceval.data.registry import list_datasets

    df = list_datasets(home=home)
    cols = ["dataset", "tasks", "batch_key", "label_key", "size", "license", "status", "get"]
    if long_:
        cols += ["citation", "source"]
    _print_table(df[cols])


@cli.command("fetch-data")
@click.argument("names", nargs=-1, required=True, metavar="NAME...")
@click.option(
    "--home", default=None, type=click.Path(file_okay=False, path_type=Path), help=_HOME_HELP
)
@click.option(
    "--mirror",
    default=None,
    metavar="URL",
    help="Download from a mirror serving the official relative paths "
    "(default: $SCEVAL_DATA_MIRROR).",
)
@click.option("--force", is_flag=True, help="Download again even if present.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def fetch_data_cmd(
    names: tuple[str, ...], home: Path | None, mirror: str | None, force: bool, quiet: bool
) -> None:
    """Download public datasets (see `sceval datasets`) into the cache, verify their
    sha256 and record it. Interrupted downloads resume when the command is run again."""
    from sceval.data.registry import fetch_dataset, get_dataset

    try:
        for name in names:
            get_dataset(name)
        for name in names:
            spec = get_dataset(name)
            if spec.builtin:
                click.echo(f"{name}: built in, nothing to download")
                continue
            path = fetch_dataset(name, home=home, url_base=mirror, force=force, progress=not quiet)
            click.echo(f"{name}: downloaded to {path} (license {spec.license})")
    except (ScevalError, ValueError, OSError) as err:
        _fail(err)
