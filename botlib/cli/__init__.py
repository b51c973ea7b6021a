"""The ``botlib`` command line. Every command has ``--help``.

botlib data info                      what data is available
botlib data fetch BTC/USDT 1h --start 2024-01-01
botlib data import my.csv --symbol BTC/USDT --timeframe 1h
botlib strategies                     rule strategies and their parameters
botlib backtest --strategy sma_cross --param fast=20 --param slow=100
botlib promote nn-lstm-btc_usdt-1h     gate, then @champion and botlib:active_models
botlib models                         registered models, aliases, metrics
botlib bind NAME MODEL_ID             a registered model is the backend's ai_models row
botlib bind-strategy RULE STRATEGY_ID  a rule strategy is the backend's strategy id
botlib feed replay --last 500         candles onto the Redis bar stream
botlib up --feed ccxt                 the trading server: Redis, loop, bridge, feeds
botlib ps | down                      its services (pid, uptime, restarts) | stop them
botlib serve                          the signal loop
botlib bridge                         answer the backend's commands
botlib paper                          paper accounts + shadow backtests of served models
botlib status                         what runs, lag, queue, errors, accuracy
botlib metrics --port 9464            the same as Prometheus text on loopback
botlib config set signal.entry_threshold=0.2   runtime settings, no restart
botlib backup create backups/         MLflow store + Redis history in one archive
botlib check leakage [--features m:f] look-ahead in features and models
botlib rerun RUN_ID                   reproduce a run, compare metric by metric
botlib demo                           the main job on the reference data
"""

from __future__ import annotations

import logging
import os
import sys

import typer

from botlib.cli import (
    _backtest,
    _check,
    _data,
    _demo,
    _live,
    _ops,
    _pipeline,
    _redis,
    _rerun,
    _train,
    _up,
)
from botlib.errors import BotlibError

__all__ = ["app", "main"]

app = typer.Typer(
    name="botlib",
    help="botlib — an ML research lab for crypto trading.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)


@app.callback()
def _options(
    verbose: bool = typer.Option(
        False,
        "--verbose",
        help="Show botlib's progress log and the frameworks' own notices (TensorFlow, "
        "Jupyter kernels), which otherwise go to logs/frameworks.log.",
    ),
    quiet: bool = typer.Option(
        False, "--quiet", help="Results and errors only: no progress bars or step lines."
    ),
) -> None:
    """botlib — an ML research lab for crypto trading."""
    if verbose:
        logging.getLogger("botlib").setLevel(logging.INFO)
    if quiet:
        os.environ["BOTLIB_QUIET"] = "1"


app.add_typer(_data.app, name="data")
app.add_typer(_pipeline.app, name="pipeline")
app.add_typer(_redis.app, name="redis")
app.command("backtest")(_backtest.backtest)
app.command("strategies")(_backtest.strategies)
app.command("train")(_train.train)
app.command("demo")(_demo.demo)
app.command("promote")(_live.promote)
app.command("rollback")(_live.rollback)
app.command("deactivate")(_live.deactivate)
app.command("models")(_live.models)
app.command("bind")(_live.bind)
app.command("bind-strategy")(_live.bind_strategy)
app.command("serve")(_live.serve)
app.command("bridge")(_live.bridge)
app.command("watch-registry")(_live.watch_registry)
app.command("paper")(_live.paper)
app.command("up")(_up.up)
app.command("down")(_up.down)
app.command("ps")(_up.ps)
app.add_typer(_live.feed_app, name="feed")
app.add_typer(_check.app, name="check")
app.command("rerun")(_rerun.rerun)
app.command("status")(_ops.status)
app.command("metrics")(_ops.metrics)
app.add_typer(_ops.config_app, name="config")
app.add_typer(_ops.backup_app, name="backup")


def main() -> None:
    """Entry point: known errors print one clear line and exit 2 (no traceback)."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    _quiet_console()
    import redis

    try:
        app()
    except BotlibError as exc:
        _fail(str(exc))
    except redis.ConnectionError as exc:
        _fail(f"cannot reach Redis at {_redis_where()} ({exc}); start the local one with "
              "`botlib redis start` or point BOTLIB_REDIS_URL at yours")  # fmt: skip


def _quiet_console() -> None:
    """Frameworks' notices (TensorFlow/absl, Jupyter kernels, MLflow hints) go to
    ``logs/frameworks.log``; ``BOTLIB_VERBOSE=1`` (or ``--verbose``) keeps them."""
    for arg in sys.argv[1:]:
        if not arg.startswith("-"):
            break  # options after the command are the command's
        if arg == "--verbose":
            os.environ["BOTLIB_VERBOSE"] = "1"
    from botlib._quiet import filter_native_stderr, silence_framework_warnings

    if os.environ.get("BOTLIB_VERBOSE") == "1":
        return
    silence_framework_warnings()
    try:
        from botlib.settings import get_settings

        logs = get_settings().logs_dir
    except BotlibError:
        return  # a bad setting: main reports it
    filter_native_stderr(logs / "frameworks.log")


def _redis_where() -> str:
    from urllib.parse import urlparse

    from botlib.settings import get_settings

    url = urlparse(get_settings().redis_url.get_secret_value())
    return f"{url.hostname}:{url.port or 6379}"  # never the password


def _fail(message: str) -> None:
    from rich.markup import escape

    from botlib.cli._common import err_console

    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    sys.exit(2)
