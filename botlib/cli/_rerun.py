"""``botlib rerun RUN_ID``: reproduce a recorded run and compare its metrics."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from botlib.cli._common import console, print_json


def rerun(
    run_id: Annotated[
        str, typer.Argument(help="The MLflow run id (a training, walk-forward or pipeline run).")
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Every metric as JSON.")] = False,
    show_all: Annotated[bool, typer.Option("--all", help="List matching metrics too.")] = False,
) -> None:
    """Run a recorded run again from its manifest (same code path, arguments, seed and
    data) and report, metric by metric, whether the results match; exit 1 if any differs.

        botlib rerun 3f2a9c…
    """
    from botlib.rerun import rerun as do_rerun

    report = do_rerun(run_id)
    if as_json:
        print_json(
            {
                "run_id": report.run_id,
                "rerun_id": report.rerun_id,
                "kind": report.kind,
                "ok": report.ok,
                "notes": report.notes,
                "metrics": [
                    {"scope": c.scope, "metric": c.metric, "original": c.original,
                     "rerun": c.rerun, "matches": c.matches}
                    for c in report.checks
                ],
            }
        )  # fmt: skip
    else:
        shown = report.checks if show_all else report.mismatches()
        table = Table(title=f"rerun of {run_id} ({report.kind}) as {report.rerun_id}")
        for col in ("step", "metric", "original", "rerun", ""):
            table.add_column(col)
        for c in shown:
            table.add_row(
                c.scope or "–",
                c.metric,
                f"{c.original:.10g}",
                f"{c.rerun:.10g}",
                "[green]match[/]" if c.matches else "[red]DIFFERS[/]",
            )
        if shown:
            console.print(table)
        for note in report.notes:
            console.print(f"note: {note}")
        same = sum(c.matches for c in report.checks)
        verdict = "[green]reproduced[/]" if report.ok else "[bold red]NOT reproduced[/]"
        console.print(f"{verdict}: {same} of {len(report.checks)} metrics match")
    if not report.ok:
        raise typer.Exit(1)
