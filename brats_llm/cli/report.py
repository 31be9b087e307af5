"""The report command: the reproduction report from the evaluation outputs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from brats_llm.cli.options import friendly_errors, guard, params_option, resolve


@click.command()
@click.argument("models_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--card", type=click.Path(dir_okay=False, path_type=Path),
              help="Dataset card of the published data (data/hub/README.md): its 'synthetic' tag labels the report; "
                   "its counts and params give the cohort size, folds and inputs in 'Differences from the paper'.")
@click.option("--examples", type=click.IntRange(min=0), help="Example figures per group [params: report.examples].")
@click.option("--digits", type=click.IntRange(min=0), help="Decimals of our numbers [params: report.digits].")
@params_option
@friendly_errors
def report(models_dir: Path, out_dir: Path, card: Path | None, params_file: Path | None, **overrides: Any) -> None:
    """Write the reproduction report to OUT_DIR: report.md (+ figures/) and a self-contained report.html.

    For each of the paper's Tables 1-10: the paper's numbers (brats_llm/report/paper_numbers.yaml),
    ours with 95% bootstrap intervals and n, the trivial baselines, the oracle (Tables 5-10) and
    where ours came from (a summary first; provenance folded); the paper's setting and ours in each
    title; then the consistency test (agreement among parsed answers, parse rate), figures (GLDR,
    points / boxes / polygons over slices, CNN overlays, distributions) and the differences from
    the paper. Reads only what the evaluation stages wrote under MODELS_DIR; loads no model. Runs
    on the synthetic cohort or the smoke model are labelled at the top. Same inputs, same bytes.
    Preview the HTML offline: chromium --headless --screenshot=report.png OUT_DIR/report.html
    """
    guard([card, params_file], [out_dir], containers=[models_dir])
    from brats_llm.report.build import ReportParams, build_report

    params = resolve(ReportParams, "report", params_file, **overrides)
    summary = build_report(models_dir, out_dir, params, card=card)
    click.echo(f"report: tables {summary['tables']}, {summary['figures']} figures -> {out_dir}/report.html", err=True)


#: The commands this module adds to ``brats-llm``.
COMMANDS: tuple[click.Command, ...] = (report,)
