"""sceval.benchmark.report and `sceval report`: a self-contained HTML report with figures,
rendered on a synthetic grid output folder and on a plain run_benchmark table."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from sceval.benchmark import analysis as A
from sceval.benchmark.report import load_results, write_report
from sceval.benchmark.results import write_results
from sceval.cli import cli
from test_analysis import grid_table, real_table

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
RUN_RECORD = {
    "sceval_version": "0.1.0",
    "seeds": [0, 1, 2],
    "executor": "process-pool",
    "grid_size": 48,
    "data_sha256": {"sim": "ab12" * 16},
}


def _grid_outdir(path: Path) -> Path:
    write_results(grid_table(), path)
    (path / "run.json").write_text(json.dumps(RUN_RECORD))
    (path / "config.yaml").write_text("seeds: [0, 1, 2]\n")
    return path


@pytest.fixture(scope="module")
def grid_report(tmp_path_factory):
    out = _grid_outdir(tmp_path_factory.mktemp("grid"))
    return out, write_report(out).read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def plain_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("plain")
    write_results(real_table(), out)
    return out, write_report(out).read_text(encoding="utf-8")


def _assert_self_contained(out: Path, page: str) -> None:
    for bad in ("http://", "https://", 'src="figures/', "<script", "<link", "url("):
        assert bad not in page, bad
    srcs = re.findall(r'<img alt="[^"]*" src="([^"]+)"', page)
    assert srcs and len(srcs) == page.count("<img")
    assert all(s.startswith("data:image/png;base64,") for s in srcs)
    pngs = sorted((out / "figures").glob("*.png"))
    assert len(pngs) == len(srcs)
    on_disk = {p.read_bytes() for p in pngs}
    for s in srcs:
        data = base64.b64decode(s.split(",", 1)[1])
        assert data.startswith(PNG_MAGIC) and data in on_disk
    assert not list(out.glob(".*.tmp")) and not list((out / "figures").glob(".*.tmp"))


def _valid_png(path: Path) -> tuple[int, int]:
    import matplotlib.image as mpimg

    assert path.read_bytes().startswith(PNG_MAGIC)
    img = mpimg.imread(path)
    assert img.ndim == 3 and img.shape[0] > 50 and img.shape[1] > 50
    return img.shape[:2]


def test_grid_report_figures_and_self_contained(grid_report):
    out, page = grid_report
    names = sorted(p.name for p in (out / "figures").glob("*.png"))
    assert "summary_sim.png" in names and "runtime.png" in names
    assert {"seeds_sim_integration.png", "seeds_sim_annotation.png"} <= set(names)
    sens = [n for n in names if n.startswith("sensitivity_")]
    assert len(sens) == 4  # 2 tasks x 2 hyperparameters
    assert "sensitivity_annotation_annotation.finetune_lr.png" in sens
    for p in (out / "figures").glob("*.png"):
        _valid_png(p)
    _assert_self_contained(out, page)


def test_grid_report_key_numbers(grid_report):
    _, page = grid_report
    df = grid_table()
    rank = A.overall_ranking(df)
    for _, r in rank.iterrows():
        assert f"<td>{r['overall']:.3f}</td>" in page
        assert f"<td>{r['runtime_s_per_cell']:.3f}</td>" in page
        assert f"<td>{r['peak_mem_mb_per_cell']:.1f}</td>" in page
    assert f'<td class="t">{rank["label"].iloc[0]}</td>' in page
    summ = A.seed_summary(df)
    pca = summ[(summ["model"] == "pca") & (summ["metric"] == "nmi")].iloc[0]
    assert f"{pca['mean']:.3f} ± {pca['sd']:.3f}" in page
    assert f"<td>{pca['ci_low']:.3f}</td>" in page and f"<td>{pca['ci_high']:.3f}</td>" in page
    stab = A.rank_stability(df)
    assert all(f"<td>{t:.3f}</td>" in page for t in stab["tau_mean"])
    sens = A.sensitivity(df)
    assert all(f"<td>{v:.3f}</td>" in page for v in sens["range"])
    assert "process-pool" in page and "ab12ab12" in page  # the run record
    assert "seeds: [0, 1, 2]" in page  # config.yaml
    assert "No hyperparameter grid" not in page


def test_plain_run_benchmark_report(plain_report):
    out, page = plain_report
    names = sorted(p.name for p in (out / "figures").glob("*.png"))
    assert names == [
        "runtime.png",
        "seeds_data_annotation.png",
        "seeds_data_integration.png",
        "summary_data.png",
    ]
    _assert_self_contained(out, page)
    assert "No hyperparameter grid in these results" in page
    assert "No run.json in the output folder" in page
    rank = A.overall_ranking(real_table())
    for _, r in rank.iterrows():
        assert f'<td class="t">{r["label"]}</td>' in page
        assert f"<td>{r['overall']:.3f}</td>" in page
    assert "results.parquet: 230 rows, 230 ok" in page


def test_reads_csv_and_cells(tmp_path):
    df = grid_table(seeds=(0, 1))
    df.loc[0, "higher_is_better"] = pd.NA  # a metric of unknown direction
    df.loc[1, ["runtime_s", "peak_mem_mb", "value"]] = np.nan
    df.loc[2, "dataset"] = "NA"  # a name, not a missing value
    csv_dir = tmp_path / "csv"
    write_results(df, csv_dir, formats=("csv",))
    back, source = load_results(csv_dir)
    assert source == "results.csv"
    assert back["cell"].tolist() == df["cell"].tolist()  # hashes stay strings
    assert back["params"].tolist() == df["params"].tolist()
    np.testing.assert_allclose(back["value"], df["value"])
    assert pd.isna(back.loc[0, "higher_is_better"]) and back["higher_is_better"].iloc[1]
    assert back.loc[1, ["runtime_s", "peak_mem_mb"]].isna().all()
    assert back.loc[2, "dataset"] == "NA" and back.loc[3, "message"] == ""
    assert "results.csv: " in write_report(csv_dir, figures=False).read_text(encoding="utf-8")
    cells_dir = tmp_path / "cells_only"
    (cells_dir / "cells").mkdir(parents=True)
    for cell, grp in df.groupby("cell"):
        grp.to_parquet(cells_dir / "cells" / f"{cell}.parquet", index=False)
    back, source = load_results(cells_dir)
    assert source == f"cells/*.parquet ({df['cell'].nunique()} files)" and len(back) == len(df)
    page = write_report(cells_dir, figures=False).read_text(encoding="utf-8")
    assert "cells/*.parquet" in page and "<img" not in page
    assert not (cells_dir / "figures").exists()


def test_unfinished_cells_are_noted(tmp_path):
    df = grid_table(seeds=(0,))
    write_results(df[df["model"] != "pca"], tmp_path)
    (tmp_path / "cells").mkdir()
    for cell, grp in df.groupby("cell"):
        grp.to_parquet(tmp_path / "cells" / f"{cell}.parquet", index=False)
    page = write_report(tmp_path, figures=False).read_text(encoding="utf-8")
    assert "the run was interrupted or is still going" in page


def _no_grid(seeds: tuple[int, ...] = (0, 1)) -> pd.DataFrame:
    df = grid_table(seeds=seeds)
    return df[df["model"] != "scgpt"].reset_index(drop=True)


def test_text_from_data_is_escaped(tmp_path):
    df = _no_grid()
    df.loc[df["model"] == "pca", "model"] = "<script>alert(1)</script>"
    df["dataset"] = "a&b"
    df.loc[0, "status"] = "failed"
    df.loc[0, "message"] = "<b>boom</b>"
    write_results(df, tmp_path)
    (tmp_path / "run.json").write_text(json.dumps({"note": "</pre><script>x</script>"}))
    page = write_report(tmp_path).read_text(encoding="utf-8")
    assert "<script" not in page and "<b>boom" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "&lt;b&gt;boom&lt;/b&gt;" in page
    assert "a&amp;b" in page
    assert (tmp_path / "figures" / "summary_a_b.png").is_file()


def test_bad_run_json_stale_figures_two_datasets(tmp_path):
    one = _no_grid()
    two = pd.concat([one, one.assign(dataset="other", cell=one["cell"] + "x")])
    write_results(two, tmp_path)
    (tmp_path / "run.json").write_text("{not json")
    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / "sensitivity_old.png").write_bytes(PNG_MAGIC)
    page = write_report(tmp_path, title="My <run>").read_text(encoding="utf-8")
    assert "run.json could not be read" in page
    assert "<title>My &lt;run&gt;</title>" in page
    assert not (tmp_path / "figures" / "sensitivity_old.png").exists()
    names = {p.name for p in (tmp_path / "figures").glob("*.png")}
    assert names == {
        "summary_sim.png",
        "summary_other.png",
        "seeds_sim_integration.png",
        "seeds_sim_annotation.png",
        "seeds_other_integration.png",
        "seeds_other_annotation.png",
        "runtime.png",
    }
    assert page.count("<h4>other</h4>") == 2  # a seed table per task on each dataset


def test_all_failed_still_renders(tmp_path):
    df = grid_table(seeds=(0,))
    df["status"] = "failed"
    df["message"] = "CUDA out of memory"
    write_results(df, tmp_path)
    page = write_report(tmp_path).read_text(encoding="utf-8")
    assert "No model produced a result." in page and "CUDA out of memory" in page
    assert not list((tmp_path / "figures").glob("*.png"))


def test_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        write_report(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match=r"No results in .*Fix: run `sceval run"):
        write_report(tmp_path)
    pd.DataFrame({"a": [1]}).to_csv(tmp_path / "results.csv", index=False)
    with pytest.raises(ValueError, match=r"not an sceval results table.*lacks the columns"):
        write_report(tmp_path)
    write_results(grid_table().iloc[:0], tmp_path, formats=("csv",))
    with pytest.raises(ValueError, match="has no rows"):
        write_report(tmp_path)


def test_cli_report(tmp_path):
    out = tmp_path / "run"
    write_results(_no_grid(seeds=(0,)), out)
    r = CliRunner().invoke(cli, ["report", str(out), "--title", "grid"])
    assert r.exit_code == 0, r.output
    assert r.output.startswith("Report: ") and (out / "report.html").is_file()
    assert "(4 figures in" in r.output
    r = CliRunner().invoke(cli, ["report", str(out), "--no-figures"])
    assert r.exit_code == 0 and "<img" not in (out / "report.html").read_text(encoding="utf-8")
    for args, match in [
        ([str(tmp_path / "missing")], "does not exist"),
        ([str(tmp_path)], "No results in"),
    ]:
        r = CliRunner().invoke(cli, ["report", *args])
        assert r.exit_code == 2
        lines = r.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: ") and match in lines[0]
