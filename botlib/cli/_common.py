"""Shared CLI plumbing: consoles, progress bars, parameter parsing, JSON output."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

#: where candles come from, for every command that reads them
Source = Annotated[
    str | None,
    typer.Option(
        "--source",
        "--exchange",
        help="Where the candles come from: reference, local (imported files) or an exchange "
        "id (its downloads). Default: the first that holds the market, in that order.",
    ),
]

console = Console()
err_console = Console(stderr=True)


def _bars(amount: str) -> Progress:
    """Transient bars on stderr: description, bar, ``amount``, elapsed, remaining."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn(amount),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
    )


@contextmanager
def progress_bar(description: str, *, enabled: bool = True) -> Iterator[Callable[[int, int], None]]:
    """A rich progress bar driven by ``update(done, total)`` callbacks (to stderr)."""
    if not enabled or quiet():
        yield lambda done, total: None
        return
    with _bars("{task.percentage:>5.1f}%") as bar:
        task = bar.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def quiet() -> bool:
    """``botlib --quiet``: results and errors only, no progress bars."""
    import os

    return os.environ.get("BOTLIB_QUIET") == "1"


@contextmanager
def progress_bars(*, enabled: bool = True) -> Iterator[None]:
    """Rich bars (to stderr) for every task ``botlib.progress.advance`` reports inside
    the block: epochs, timesteps, generations, pipeline steps."""
    from botlib.progress import reporting

    if not enabled or quiet():
        yield
        return
    with _bars("{task.completed:>6.0f}/{task.total:<6.0f}") as bar:
        tasks: dict[str, Any] = {}

        def report(task: str, done: float, total: float | None) -> None:
            if task not in tasks:
                tasks[task] = bar.add_task(task, total=total)
            bar.update(tasks[task], completed=done, total=total)

        with reporting(report):
            yield


def jsonable(value: Any) -> Any:
    """NaN/inf become null; timestamps become ISO strings."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "item"):
        return jsonable(value.item())
    return value


def print_json(value: Any) -> None:
    print(json.dumps(jsonable(value), indent=2, sort_keys=False))
