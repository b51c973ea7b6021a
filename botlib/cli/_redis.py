"""``botlib redis``: the project's own local redis-server."""

from __future__ import annotations

from urllib.parse import urlparse

import typer

from botlib.cli._common import console
from botlib.errors import ConfigError
from botlib.settings import get_settings
from botlib.transport import RedisServer

app = typer.Typer(
    help="Start, stop or check the project's local redis-server.", no_args_is_help=True
)


def _server() -> RedisServer:
    settings = get_settings()
    url = urlparse(settings.redis_url.get_secret_value())
    if url.hostname not in ("127.0.0.1", "localhost"):
        raise ConfigError(
            f"BOTLIB_REDIS_URL points at {url.hostname}: botlib only runs a "
            "local server; that Redis is managed elsewhere"
        )
    return RedisServer(
        port=url.port or 6379, data_dir=settings.redis_data_dir, password=url.password
    )


@app.command("start")
def start() -> None:
    """Start redis-server on 127.0.0.1 (port from BOTLIB_REDIS_URL), append-only
    persistence on, data under .cache/redis, a generated password (kept in a file only
    you can read; `botlib redis url` prints the URL with it), administrative commands
    off. A no-op when it already runs."""
    server = _server().start()
    console.print(
        f"redis-server up on 127.0.0.1:{server.port} (pid {server.pid()}), "
        f"data in {server.data_dir}, password in {server.secret_file}"
    )


@app.command("url")
def url() -> None:
    """Print the local server's URL with its password (for the backend's configuration:
    botlib's own commands find the password themselves). Keep it out of logs."""
    from botlib.transport.client import with_local_secret

    server = _server()
    full = with_local_secret(f"redis://127.0.0.1:{server.port}/0")
    if full == f"redis://127.0.0.1:{server.port}/0":
        raise ConfigError(
            f"no password kept for port {server.port} in {server.data_dir}: "
            "start it with `botlib redis start`"
        )
    print(full)


@app.command("stop")
def stop() -> None:
    """Stop the local redis-server (its append-only file is flushed first)."""
    server = _server()
    console.print("stopped" if server.stop() else f"not running on port {server.port}")


@app.command("status")
def status() -> None:
    """Whether the local redis-server runs and answers PING."""
    server = _server()
    pid = server.pid()
    up = pid is not None and server.ping()
    console.print(f"port {server.port}: " + (f"running (pid {pid})" if up else "not running"))
    if not up:
        raise typer.Exit(1)
