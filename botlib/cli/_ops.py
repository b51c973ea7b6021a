"""``botlib status | metrics | config | backup``: running the lab day to day."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from botlib.cli._common import console, err_console, print_json

config_app = typer.Typer(
    rich_markup_mode="markdown",
    help="Runtime configuration (thresholds, risk, rate limits): applied by running "
    "services within a second, no restart.",
    no_args_is_help=True,
)
backup_app = typer.Typer(
    rich_markup_mode="markdown",
    help="Back up or restore the MLflow store and the Redis signal history.",
    no_args_is_help=True,
)


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _state(part: dict[str, Any]) -> str:
    """``up (heartbeat 0.1 s ago)``, ``down (…)`` or ``not started``."""
    age = part["heartbeat_age_s"]
    if age is None:
        return "not started"
    return f"{'[green]up[/]' if part['up'] else '[red]down[/]'} (heartbeat {_age(age)} ago)"


def _print_status(status: dict[str, Any]) -> None:
    loop, bridge = status["loop"], status["bridge"]
    up = _state(loop)
    console.print(
        f"[bold]signal loop[/] {up}: "
        f"{loop['bars']} bars, {loop['predictions']} predictions, {loop['signals']} signals, "
        f"{loop['validated']} scored, {loop['deadletters']} dead-lettered, "
        f"{loop['errors']} errors"
    )
    if loop["streamed"] or loop["windowed"]:
        console.print(
            f"  model steps: {loop['streamed']} streamed (state continued bar by bar), "
            f"{loop['windowed']} recomputed the window; {loop['stream_seeds']} states built "
            "from the window"
        )
    for name, view in status.get("registry", {}).items():
        champion, served = view.get("champion"), view.get("served")
        state = "[green]in sync[/]" if view["in_sync"] else "[red]differs[/]"
        last = view.get("last_action") or {}
        note = f"; last: {last['action']} v{last['version']}" if last else ""
        console.print(
            f"  registry {escape(name)}: @champion v{champion or '–'}, served "
            f"v{served or '–'} {state} (looked {_age(view['age_s'])} ago{escape(note)})"
        )
    for d in status.get("drift", []):
        where = f"{d['model_id']} on {d.get('market', '?')}"
        if "unknown" in d:
            console.print(f"  feature drift of {escape(where)}: unknown ({d['unknown']})")
            continue
        worst = ", ".join(f"{n} {v:.2f}" for n, v in d["worst"])
        flag = "[red]moved[/]" if d.get("moved") else "[green]stable[/]"
        console.print(
            f"  feature drift of {escape(where)} over {d['rows']} bars: {flag} "
            f"(PSI, threshold {d['threshold']}): {escape(worst)}"
        )
    paper = status.get("paper") or {}
    for a in paper.get("accounts", []):
        where = f"{a['model_id']} on {a['exchange']} {a['market']} {a['timeframe']}"
        if a.get("parity_error"):
            verdict = f"[yellow]shadow failed[/]: {escape(a['parity_error'])}"
        elif a.get("parity_skipped"):
            verdict = f"[yellow]shadow backtest skipped[/]: {escape(a['parity_skipped'])}"
        elif a.get("parity_ok") is None:
            verdict = "shadow backtest not run yet"
        elif a["parity_ok"]:
            verdict = f"[green]= shadow backtest[/] (to {a['parity_checked_to']})"
        else:
            first = a.get("first_break") or {}
            why = escape(str(first.get("why")))
            verdict = (
                f"[red]{a['parity_breaks']} bar(s) differ from the shadow backtest[/], "
                f"first {first.get('bar_time')}: {why}"
            )
        console.print(
            f"  paper {escape(where)}: equity {a['equity']:,.2f} ({a['return']:+.2%}), "
            f"max drawdown {a['max_drawdown']:.2%}, {a['fills']} fills over {a['bars']} "
            f"bars; {verdict}"
        )
    if paper.get("accounts") and not paper.get("up"):
        console.print("  paper accounts: [red]`botlib paper` is not running[/]")
    if loop["last_error"]:
        console.print(f"  last error: {escape(loop['last_error'])}", highlight=False)
    table = Table(title="active models", title_justify="left")
    columns = ("model", "market", "algorithm", "preds", "signals", "scored", "accuracy",
               "95% CI", "persistence", "test (persist.)")  # fmt: skip
    for col in columns:
        table.add_column(
            col,
            justify="left" if col in ("model", "market", "algorithm") else "right",
            overflow="fold",
        )

    def pct(value: float | None) -> str:
        return "–" if value is None else f"{value:.1%}"

    for m in status["active_models"]:
        acc = m["accuracy"]
        ci = m.get("hit_rate_ci")
        test = pct(m.get("test_hit_rate"))
        if m.get("test_persistence") is not None:
            test += f" ({pct(m['test_persistence'])})"
        table.add_row(
            m["model_id"],
            f"{m['symbol']} {m['timeframe']}",
            str(m["algorithm"]),
            str(m["predictions"]),
            str(m["signals"]),
            str(m["validated"]),
            "–" if acc is None else f"{acc:.1%}",
            "–" if not ci else f"{ci[0]:.0%}–{ci[1]:.0%}",
            pct(m.get("persistence")),
            test,
        )
    console.print(table if status["active_models"] else "no active models (botlib promote …)")
    for s in status["streams"]:
        console.print(
            f"  {s['stream']}: last bar {s['last_bar'] or '–'} (closed "
            f"{_age(s['last_bar_age_s'])} ago"
            + (
                f", processed {_age(s['lag_at_processing_s'])} after its close), "
                if s["lag_at_processing_s"] is not None
                else "), "
            )
            + f"{s['unread'] if s['unread'] is not None else '–'}"
            f" unread, {s['pending'] if s['pending'] is not None else '–'} pending",
            highlight=False,
        )
    for f in status.get("feeds", []):
        up = _state(f)
        console.print(
            f"[bold]feed[/] {escape(f['feed'])} {up}: {f['bars']} bars, "
            f"last {f['last_bar'] or '–'}, {f['errors']} errors",
            highlight=False,
        )
        if f["last_error"]:
            console.print(f"  last error: {escape(f['last_error'])}", highlight=False)
    up = _state(bridge)
    console.print(
        f"[bold]bridge[/] {up}: "
        f"{bridge['handled']} commands, {bridge['done']} done, {bridge['failed']} failed, "
        f"{bridge['invalid']} invalid, {bridge['rate_limited']} rate-limited; "
        f"{bridge['running']} running, {bridge['queue_depth']} queued; "
        f"{bridge['model_loads']} model loads, {bridge['model_cache_hits']} cache hits"
    )
    if bridge.get("demoted"):
        console.print(f"  [red]{bridge['demoted']} model(s) stopped by feature drift[/] "
                      "(runtime drift_demote; see botlib:model_events)")  # fmt: skip
    if bridge["last_error"]:
        console.print(f"  last error: {escape(bridge['last_error'])}", highlight=False)
    sup = status.get("supervisor", {})
    if sup.get("status"):
        services = ", ".join(
            f"{name} {sup['status'][name]} ({sup['restarts'].get(name, 0)} restarts)"
            for name in sorted(sup["status"])
        )
        console.print(f"[bold]botlib up[/]: {escape(services)}", highlight=False)
    for component, info in sorted(status["config"].items()):
        mark = "[green]ok[/]" if info.get("ok") else "[red]REFUSED[/]"
        note = f": {escape(info.get('error', ''))}" if info.get("error") else ""
        console.print(f"runtime config ({component}) {info.get('digest', '?')} {mark}{note}")
    out = status["outputs"]
    console.print(
        f"streams: {out['signals']} signals, {out['predictions']} predictions, "
        f"{out['deadletter']} dead letters, {out['events']} bridge events",
        highlight=False,
    )


def status(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    watch: Annotated[
        float | None, typer.Option(help="Refresh every N seconds until Ctrl-C.", min=0.5)
    ] = None,
) -> None:
    """What runs and how it does: active models, bars processed, signals emitted, lag,
    queue depth, last error per component, prediction accuracy to date per model."""
    from botlib.monitor import collect_status
    from botlib.transport import connect, redis_names

    r, names = connect(), redis_names()
    while True:
        current = collect_status(r, names)
        if as_json:
            print_json(current)
        else:
            if watch:
                console.clear()
            _print_status(current)
        if not watch:
            return
        try:
            time.sleep(watch)
        except KeyboardInterrupt:
            return


def metrics(
    port: Annotated[int, typer.Option(help="TCP port.", min=1, max=65535)] = 9464,
    host: Annotated[
        str, typer.Option(help="Address to bind (loopback by default: no auth here).")
    ] = "127.0.0.1",
) -> None:
    """Serve the status figures as Prometheus text on http://HOST:PORT/metrics (and JSON
    on /status) until Ctrl-C."""
    from botlib.monitor import serve_metrics
    from botlib.transport import connect, redis_names

    if host not in ("127.0.0.1", "localhost", "::1"):
        err_console.print(f"warning: serving metrics on {host}, not only on loopback")
    server = serve_metrics(connect(), redis_names(), host=host, port=port)
    console.print(f"metrics on http://{host}:{server.server_address[1]}/metrics (Ctrl-C to stop)")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.shutdown()


def _stored(r: Any, key: str) -> dict[str, Any]:
    from botlib.runtime import stored_overrides

    return stored_overrides(r.get(key), key)


@config_app.command("show")
def config_show(
    file: Annotated[
        Path | None, typer.Option("--file", "-f", help="Include this config file.")
    ] = None,
) -> None:
    """The effective runtime config (defaults, file, Redis overrides) and what each
    running service applied."""
    from botlib.runtime import RuntimeConfig, config_digest, merge, read_config_file
    from botlib.transport import connect, redis_names

    r, names = connect(), redis_names()
    document = read_config_file(file) if file else {}
    overrides = _stored(r, names.runtime_config)
    effective = RuntimeConfig.from_document(merge(document, overrides))
    print_json(
        {
            "digest": config_digest(effective),
            "overrides": overrides,
            "effective": effective.model_dump(mode="json"),
            "applied": {
                k: json.loads(v) for k, v in r.hgetall(names.runtime_config_status).items()
            },
        }
    )


@config_app.command("set")
def config_set(
    assignments: Annotated[
        list[str],
        typer.Argument(
            help="KEY=VALUE, e.g. signal.entry_threshold=0.2 signal.max_position=0.5 "
            "rate_limits.train=10/3600 max_model_age_days=14"
        ),
    ],
) -> None:
    """Change runtime settings. The change is validated first (an invalid one is
    refused and nothing is written); running services apply it within a second."""
    from botlib.runtime import RuntimeConfig, config_digest, merge, parse_assignment
    from botlib.transport import connect, redis_names

    r, names = connect(), redis_names()
    overrides = _stored(r, names.runtime_config)
    for item in assignments:
        overrides = merge(overrides, parse_assignment(item))
    effective = RuntimeConfig.from_document(overrides)  # raises ConfigError, nothing written
    r.set(names.runtime_config, json.dumps(overrides, sort_keys=True))
    console.print(f"runtime config {config_digest(effective)} stored in {names.runtime_config}")


@config_app.command("reset")
def config_reset() -> None:
    """Drop every runtime override (services go back to their start-up values)."""
    from botlib.transport import connect, redis_names

    names = redis_names()
    connect().delete(names.runtime_config)
    console.print(f"{names.runtime_config} cleared")


@config_app.command("validate")
def config_validate(
    file: Annotated[Path, typer.Argument(help="A JSON or YAML runtime-config file.")],
) -> None:
    """Check a runtime-config file without applying it (exit 2 with the reason)."""
    from botlib.runtime import RuntimeConfig, config_digest, read_config_file

    config = RuntimeConfig.from_document(read_config_file(file))
    console.print(f"{file}: valid (digest {config_digest(config)})")


@backup_app.command("create")
def backup_create(
    dest: Annotated[
        Path, typer.Argument(help="Archive to write (.tar.gz) or a folder for a dated one.")
    ] = Path("backups"),
    no_redis: Annotated[
        bool, typer.Option("--no-redis", help="Only the MLflow store (Redis not needed).")
    ] = False,
) -> None:
    """Archive the MLflow database and artifacts plus the Redis streams of predictions,
    signals, dead letters and model events, and the active models."""
    from botlib.backup import create_backup

    if not dest.suffix:
        dest.mkdir(parents=True, exist_ok=True)
    summary = create_backup(
        dest, client=False if no_redis else None, progress=lambda m: err_console.print(m)
    )
    console.print(
        f"backup {summary.path}: {summary.registered_models} models, {summary.model_versions} "
        f"versions, {summary.runs} runs, {summary.artifact_files} artifact files, "
        + (", ".join(f"{k} {v}" for k, v in summary.streams.items()) or "no Redis history"),
        highlight=False,
    )


@backup_app.command("restore")
def backup_restore(
    archive: Annotated[Path, typer.Argument(help="A backup made by `botlib backup create`.")],
    no_redis: Annotated[
        bool, typer.Option("--no-redis", help="Restore only the MLflow store.")
    ] = False,
) -> None:
    """Restore a backup into an EMPTY project (the MLflow store and Redis the settings
    point at); refuses to overwrite anything."""
    from botlib.backup import restore_backup

    summary = restore_backup(
        archive, client=False if no_redis else None, progress=lambda m: err_console.print(m)
    )
    for note in summary.notes:
        err_console.print(note)
    console.print(
        f"restored {summary.registered_models} models, {summary.model_versions} versions, "
        f"{summary.runs} runs; "
        + (", ".join(f"{k} {v}" for k, v in summary.streams.items()) or "no Redis history"),
        highlight=False,
    )
