"""``botlib up | down | ps``: the trading server in one command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from enum import StrEnum
from typing import Annotated
from urllib.parse import urlparse

import typer
from rich.table import Table

from botlib.cli._common import console, err_console
from botlib.errors import ConfigError


class Feed(StrEnum):
    replay = "replay"
    ccxt = "ccxt"
    watch = "watch"
    none = "none"


def _children(
    loops: int,
    bridge: bool,
    feed: Feed,
    markets: list[tuple[str, str, str]],
    replay_last: int,
    replay_speed: float,
    workers: int,
    lease_ttl: float,
    registry_watch: bool = True,
    gate: tuple[float, int] = (0.0, 3),
    paper: bool = True,
) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    for i in range(loops):
        name = "serve" if loops == 1 else f"serve-{i + 1}"
        argv = ["serve", "--consumer", f"up-{name}", "--lease-ttl", str(lease_ttl)]
        out.append({"name": name, "argv": argv})
    if bridge:
        out.append({"name": "bridge", "argv": ["bridge", "--workers", str(workers)]})
    if registry_watch:
        margin, min_trades = gate
        argv = ["watch-registry", "--margin", str(margin), "--min-trades", str(min_trades)]
        out.append({"name": "registry", "argv": argv})
    if paper:
        out.append({"name": "paper", "argv": ["paper"]})
    for exchange, symbol, timeframe in markets if feed is not Feed.none else []:
        tag = f"feed-{exchange}-{symbol.replace('/', '_')}-{timeframe}"
        where = ["--symbol", symbol, "--timeframe", timeframe, "--exchange", exchange]
        if feed is Feed.replay:
            extra = ["--speed", str(replay_speed), "--last", str(replay_last)]
            out.append(
                {"name": tag, "argv": ["feed", "replay", *where, *extra], "restart": "on-failure"}
            )
        else:
            out.append({"name": tag, "argv": ["feed", feed.value, *where]})
    return out


def up(
    loops: Annotated[int, typer.Option(help="Signal-loop processes (markets shared).", min=1)] = 1,
    feed: Annotated[
        Feed,
        typer.Option(
            help="A feed per market an active model serves: replay stored candles, poll "
            "the exchange (ccxt), its websocket (watch), or none."
        ),
    ] = Feed.none,
    bridge: Annotated[
        bool, typer.Option("--bridge/--no-bridge", help="Run the command bridge.")
    ] = True,
    workers: Annotated[int, typer.Option(help="Bridge worker processes.", min=1)] = 1,
    replay_last: Annotated[
        int, typer.Option(help="--feed replay: the last N stored bars.", min=1)
    ] = 500,
    replay_speed: Annotated[
        float, typer.Option(help="--feed replay: multiple of real time (0 = at once).")
    ] = 0.0,
    lease_ttl: Annotated[
        float,
        typer.Option(help="Seconds before a dead loop's markets move to another loop.", min=1),
    ] = 10.0,
    foreground: Annotated[
        bool,
        typer.Option("--foreground", help="Supervise in this process (containers); Ctrl-C stops."),
    ] = False,
    registry_watch: Annotated[
        bool,
        typer.Option(
            "--registry-watch/--no-registry-watch",
            help="Run `botlib watch-registry`: @champion set in the MLflow UI (or its "
            "API, or a notebook) is gated and served. --no-registry-watch: only "
            "`botlib promote` changes what is served.",
        ),
    ] = True,
    gate_margin: Annotated[
        float, typer.Option(help="The registry watcher's gate: margin over the baselines.")
    ] = 0.0,
    gate_min_trades: Annotated[
        int, typer.Option(help="The registry watcher's gate: fewest round trips.", min=0)
    ] = 3,
    paper: Annotated[
        bool,
        typer.Option(
            "--paper/--no-paper",
            help="Run `botlib paper`: each served model's signals traded on paper beside "
            "its shadow backtest (parity breaks reported).",
        ),
    ] = True,
) -> None:
    """Start the trading server: Redis (the local one is started if it is not up),
    the signal loop, the command bridge, the paper accounts, the registry watcher
    (@champion set in the MLflow UI is gated and served) and the feeds, as
    supervised processes that are restarted when they die. A Redis with no active
    models gets the registry's @champion versions. Logs in logs/ of the home;
    `botlib ps` lists them, `botlib down` stops them.

        botlib up --feed ccxt

        botlib up --feed replay --replay-last 500 --loops 2
    """
    from botlib.settings import get_settings
    from botlib.supervisor import alive, read_state, state_path
    from botlib.transport import RedisServer, active_models, connect, redis_names

    settings = get_settings()
    old = read_state()
    if old is not None and alive(old.pid):
        raise ConfigError(
            f"botlib up is already running (supervisor pid {old.pid}); `botlib ps` lists "
            "it, `botlib down` stops it"
        )
    url = urlparse(settings.redis_url.get_secret_value())
    host = f"{url.hostname}:{url.port or 6379}"
    r = connect()
    started_redis = False
    try:
        r.ping()
    except Exception:
        if url.hostname not in ("127.0.0.1", "localhost"):
            raise
        server = RedisServer(
            port=url.port or 6379, data_dir=settings.redis_data_dir, password=url.password
        ).start()
        started_redis = True
        console.print(f"redis-server started on 127.0.0.1:{server.port} (pid {server.pid()})")
        r.close()
        r = connect()  # now with the password it generated
    names = redis_names()
    entries = active_models(r, names)
    if not entries:
        from botlib.promotion import activate_champions

        activated = activate_champions(redis_url=settings.redis_url.get_secret_value())
        for name, version in activated:
            console.print(f"activated {name} v{version} (@champion in the registry)")
        entries = active_models(r, names)
    markets = sorted(
        {
            (str(e.get("exchange") or settings.exchange_id), str(e["symbol"]), str(e["timeframe"]))
            for e in entries.values()
        }
    )
    if feed is not Feed.none and not markets:
        err_console.print("no active models yet: no feed started (promote a model, then `up`)")
    children = _children(
        loops, bridge, feed, markets, replay_last, replay_speed, workers, lease_ttl,
        registry_watch, (gate_margin, gate_min_trades), paper,
    )  # fmt: skip
    spec = {
        "redis_url_host": host,
        "redis_started": started_redis,
        "redis_port": url.port or 6379,
        "logs_dir": str(settings.logs_dir),
        "children": children,
    }
    run_dir = settings.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    spec_file = run_dir / "up-spec.json"
    spec_file.write_text(json.dumps(spec, indent=1))
    if foreground:
        from botlib.supervisor import main as supervise

        console.print(f"supervising {len(children)} services (Ctrl-C stops them)")
        supervise([str(spec_file)])
        return
    settings.logs_dir.mkdir(parents=True, exist_ok=True)
    state_path().unlink(missing_ok=True)
    with (settings.logs_dir / "supervisor.log").open("ab") as handle:
        proc = subprocess.Popen(
            [sys.executable, "-m", "botlib.supervisor", str(spec_file)],
            stdin=subprocess.DEVNULL,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: `down` stops all of it
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    deadline = time.monotonic() + 30
    while read_state() is None:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise ConfigError(
                f"the supervisor did not start (exit {proc.poll()}); see "
                f"{settings.logs_dir / 'supervisor.log'}"
            )
        time.sleep(0.05)
    _ps_table()
    console.print(f"logs in {settings.logs_dir}; `botlib down` stops everything")


def down() -> None:
    """Stop everything `botlib up` started (and nothing else): its services, and the
    local redis-server if `up` started it."""
    from botlib.supervisor import stop_all

    state = stop_all()
    if state is None:
        console.print("nothing to stop: `botlib up` is not running")
        return
    names = ", ".join(c.name for c in state.children)
    extra = " and the redis-server it started" if state.redis_started else ""
    console.print(f"stopped {len(state.children)} services ({names}){extra}")


def _ps_table() -> bool:
    from botlib.supervisor import alive, read_state

    state = read_state()
    if state is None:
        console.print("`botlib up` is not running")
        return False
    up_now = alive(state.pid)
    now = time.time()
    table = Table(
        title=f"botlib up: supervisor pid {state.pid} "
        + ("[green]running[/]" if up_now else "[red]gone[/]")
        + f", redis {state.redis_url_host}",
        title_justify="left",
    )
    for col in ("service", "pid", "status", "uptime", "restarts", "log"):
        table.add_column(col, overflow="fold")
    for c in state.children:
        running = c.status == "running" and alive(c.pid)
        uptime = f"{now - c.started_at:.0f} s" if running and c.started_at else "–"
        status = c.status if up_now else "gone"
        if c.exit_code is not None and c.status != "running":
            status += f" (exit {c.exit_code})"
        table.add_row(c.name, str(c.pid or "–"), status, uptime, str(c.restarts), c.log)
    console.print(table)
    return up_now


def ps(
    as_json: Annotated[bool, typer.Option("--json", help="The state file as JSON.")] = False,
) -> None:
    """The services `botlib up` runs: pid, status, uptime, restarts, log file.
    Exit status 1 when `botlib up` is not running."""
    from dataclasses import asdict

    from botlib.cli._common import print_json
    from botlib.supervisor import alive, read_state

    if as_json:
        state = read_state()
        if state is None or not alive(state.pid):
            print_json({"running": False, **(asdict(state) if state else {})})
            raise typer.Exit(1)
        print_json({"running": True, **asdict(state)})
        return
    if not _ps_table():
        raise typer.Exit(1)
