"""``botlib pipeline``: run, list and show notebook pipelines."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from botlib.cli._common import console, err_console, progress_bars, quiet

app = typer.Typer(
    rich_markup_mode="markdown",
    help="Run, list and show notebook pipelines (pipelines/*.yaml).",
    no_args_is_help=True,
)


@app.command("run")
def run(
    pipeline: Annotated[str, typer.Argument(help="A pipelines/ name (quick) or a YAML path.")],
    param: Annotated[
        list[str] | None,
        typer.Option("--param", "-p", help="Override NAME=VALUE for every step that declares it."),
    ] = None,
) -> None:
    """Execute the pipeline's notebooks with papermill: one MLflow parent run, a child run
    per step, stopping at the first failure with the step, cell and error.

        botlib pipeline run quick -p epochs=3
    """
    from botlib.pipeline import parse_overrides, run_pipeline

    def say(message: str) -> None:
        if not quiet():
            err_console.print(message, highlight=False)

    with progress_bars():
        result = run_pipeline(pipeline, overrides=parse_overrides(param or []), progress=say)
    table = Table(title=f"pipeline {result.name}: parent run {result.run_id}", title_justify="left")
    for col in ("step", "seconds", "run id", "model"):
        table.add_column(col)
    for step in result.steps:
        table.add_row(
            step.name, f"{step.seconds:.0f}", step.run_id, step.outputs.get("model_uri", "")
        )
    console.print(table)


@app.command("list")
def list_() -> None:
    """The pipelines in pipelines/."""
    from botlib.pipeline import list_pipelines, load_pipeline

    for path in list_pipelines():
        spec = load_pipeline(path)
        console.print(f"[bold]{spec.name}[/] ({len(spec.steps)} steps) — {spec.description}")


@app.command("show")
def show(name: Annotated[str, typer.Argument(help="Pipeline name or YAML path.")]) -> None:
    """A pipeline's steps, notebooks and parameters."""
    from botlib.pipeline import load_pipeline

    spec = load_pipeline(name)
    console.print(
        f"[bold]{spec.name}[/]: {spec.description}\nexperiment: {spec.experiment}\n"
        f"parameters: {spec.parameters}"
    )
    table = Table()
    for col in ("step", "notebook", "parameters"):
        table.add_column(col)
    for step in spec.steps:
        table.add_row(step.name, step.notebook, str(step.parameters))
    console.print(table)
