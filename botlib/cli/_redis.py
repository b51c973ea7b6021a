"""``botlib redis``: the project's own local redis-server."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlparse

import typer

from botlib.cli._common import console, err_console
from botlib.errors import ConfigError
from botlib.settings import get_settings
from botlib.transport import RedisServer

app = typer.Typer(
    rich_markup_mode="markdown",
    help="Start, stop or check the project's local redis-server.",
    no_args_is_help=True,
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
    from botlib.transport.server import local_roles

    server = _server().start()
    roles = local_roles(server.data_dir, server.port)
    console.print(
        f"redis-server up on 127.0.0.1:{server.port} (pid {server.pid()}), "
        f"data in {server.data_dir}, password in {server.secret_file}; "
        + (f"users per role: {', '.join(roles)}" if roles else "no users per role")
    )


@app.command("url")
def url(
    role: Annotated[
        str, typer.Option(help="Whose URL: loop, bridge, feed, paper, backend or admin.")
    ] = "admin",
) -> None:
    """Print the local server's URL for a role, with its password (`--role backend` is
    the one for the backend's configuration; botlib's own commands find theirs
    themselves). Keep it out of logs."""
    from botlib.transport.acl import ROLES

    if role not in ROLES:
        raise ConfigError(f"--role must be one of {', '.join(ROLES)}, got {role!r}")
    server = _server()
    if server._password() is None:
        raise ConfigError(
            f"no password kept for port {server.port} in {server.data_dir}: "
            "start it with `botlib redis start`"
        )
    print(server.role_url(role))


@app.command("users")
def users(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object, role -> URL.")] = False,
) -> None:
    """Print the URL (with its password) of each role's Redis user: loop (`botlib
    serve`), bridge (`botlib bridge`), feed (`botlib feed`), backend (the TypeScript
    backend) and admin (operators' commands). botlib's own processes pick theirs
    themselves; give the backend its `backend` URL. Keep them out of logs."""
    import json

    from botlib.transport.acl import ROLES, stored_role_url

    configured = get_settings().redis_url.get_secret_value()
    if urlparse(configured).hostname in ("127.0.0.1", "localhost"):
        server = _server()
        if server._password() is None:
            raise ConfigError(
                f"no password kept for port {server.port} in {server.data_dir}: "
                "start it with `botlib redis start`"
            )
        urls = {role: server.role_url(role) for role in ROLES}
        if len(set(urls.values())) == 1:
            err_console.print(
                "[bold red]WARNING[/]: this Redis has no users per role (Redis < 7): every "
                "role shares the admin URL. Install Redis 7+ and restart it."
            )
    else:
        found = {role: stored_role_url(configured, role) for role in ROLES}
        if not all(found.values()):
            raise ConfigError(
                "no users per role recorded for this Redis: create them with "
                "`botlib redis acl` (needs an admin URL in BOTLIB_REDIS_URL)"
            )
        urls = {role: str(url) for role, url in found.items()}
    if as_json:
        print(json.dumps(urls, indent=1))
    else:
        for role, url in urls.items():
            print(f"{role:8} {url}")


@app.command("acl")
def acl(
    url: Annotated[
        str | None, typer.Option(help="An admin URL of the Redis (default: BOTLIB_REDIS_URL).")
    ] = None,
) -> None:
    """Create or reset a user per role (loop, bridge, feed, paper, backend, admin) on an
    external Redis 7+, each with a new random password and only the keys, channels and
    commands its role needs; their URLs are kept in a file only you can read, where
    every botlib command finds its own (`botlib redis users` prints them). Running it
    again rotates every password. The local server (`botlib redis start`) has them
    already."""
    from botlib.transport.acl import apply_users

    target = url or get_settings().redis_url.get_secret_value()
    urls = apply_users(target)
    console.print(
        f"users {', '.join(sorted(urls))} set on {urlparse(target).hostname}; "
        "`botlib redis users` prints their URLs"
    )


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
