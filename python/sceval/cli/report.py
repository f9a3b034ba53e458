"""``sceval report OUTDIR``: the HTML report and figures of a benchmark run."""

from __future__ import annotations

from pathlib import Path

import click

from sceval._errors import ScevalError
from sceval.cli.main import _fail, cli


@cli.command("report")
@click.argument("outdir", type=click.Path(path_type=Path))
@click.option("--title", default=None, help="Report title (default: from the folder name).")
@click.option(
    "--no-figures", is_flag=True, help="Tables and run record only (fast on large grids)."
)
def report_cmd(outdir: Path, title: str | None, no_figures: bool) -> None:
    """Write OUTDIR/report.html (self-contained: figures embedded) and OUTDIR/figures/*.png
    from the results of `sceval run` in OUTDIR (results.parquet, results.csv or the
    finished cells in OUTDIR/cells/) and its run record (run.json)."""
    from sceval.benchmark.report import write_report

    try:
        path = write_report(outdir, title=title, figures=not no_figures)
    except (ScevalError, ValueError, OSError) as err:
        _fail(err)
    n_png = len(list((Path(outdir) / "figures").glob("*.png")))
    click.echo(f"Report: {path} ({n_png} figures in {Path(outdir) / 'figures'})")
