"""Redis users per role: who may touch which key and channel (least privilege).

Every botlib process connects as the role it plays; none but an operator's commands has
full rights. Per-key read/write permissions need Redis 7 or newer.

==========  ===============================================================  ==============
role        may                                                              process
==========  ===============================================================  ==============
loop        read bars and active models; write predictions, signals, dead    ``botlib serve``
            letters, its own state, counters, leases and ``predictions:*``
bridge      read and acknowledge commands (both paths); write answers,       ``botlib bridge``
            events, active models (promotion), its counters
feed        write bar streams and feed counters; publish market data         ``botlib feed``
paper       read signals, bars, active models and the loop's state; write    ``botlib paper``
            its accounts, fills, counters and parity alerts
backend     publish on the command channel, ``XADD`` to the command stream;  the backend
            read record streams, ``predictions:*`` and ``python:*`` channels
admin       everything the server offers (its administrative commands are    operators' CLI
            disabled for all)
==========  ===============================================================  ==============

On the project's local server (``botlib redis start``) the admin role is the ``default``
user with the generated password; each other role is the user ``botlib-ROLE`` whose
password is derived from it (HMAC-SHA256), so every botlib command finds its own without
another file. An external Redis gets the same users from ``botlib redis acl``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import fields
from pathlib import Path

from botlib.transport.names import RedisNames

__all__ = [
    "ROLES",
    "acl_rules",
    "apply_users",
    "glob",
    "role_password",
    "stored_role_url",
    "username",
]

#: every role, the operator's (admin) last
ROLES = ("loop", "bridge", "feed", "paper", "backend", "admin")

_GLOB_SPECIAL = re.compile(r"([\\*?\[\]])")

#: what a service never needs: server administration, blocking the server, wiping keys,
#: server-side functions (scripts are enough: what they touch is checked per key)
_SERVICE_COMMANDS = ("+@all", "-@dangerous", "-@admin", "-function", "-script|flush",
                     "-script|kill", "+info")  # fmt: skip
#: the backend's whole command set: connect, publish and subscribe, add to the command
#: stream, read streams and lists
_BACKEND_COMMANDS = (
    "-@all", "+ping", "+echo", "+info", "+select", "+hello", "+client|setname",
    "+client|id", "+client|getname", "+publish", "+subscribe",
    "+psubscribe", "+unsubscribe", "+punsubscribe", "+xadd", "+xread", "+xrange",
    "+xrevrange", "+xlen", "+lrange", "+llen", "+lindex",
)  # fmt: skip


def username(role: str) -> str:
    """The Redis user of ``role`` (the local server's admin is its ``default`` user)."""
    _check(role)
    return f"botlib-{role}"


def role_password(admin_password: str, role: str) -> str:
    """The password of ``role``, derived from the admin password (HMAC-SHA256, hex)."""
    _check(role)
    digest = hmac.new(admin_password.encode(), f"botlib-role:{role}".encode(), hashlib.sha256)
    return digest.hexdigest()


def glob(template: str) -> str:
    """A key or channel pattern matching every name ``template`` makes: literal parts
    escaped, each ``{field}`` a ``*``."""
    parts = re.split(r"\{[a-z_]+\}", template)
    return "*".join(_GLOB_SPECIAL.sub(r"\\\1", part) for part in parts)


def _check(role: str) -> None:
    if role not in ROLES:
        from botlib.errors import unknown_name

        raise unknown_name("redis role", role, list(ROLES))


def _keys(prefix: str, *templates: str) -> list[str]:
    return [f"{prefix}~{glob(t)}" for t in templates]


def _channels(*templates: str) -> list[str]:
    return [f"&{glob(t)}" for t in templates]


def acl_rules(role: str, names: RedisNames | None = None) -> list[str]:
    """The ``ACL SETUSER`` rules of ``role`` over ``names`` (without ``on`` and the
    password). ``admin`` gets every key, channel and command."""
    _check(role)
    n = names or RedisNames()
    base = ["resetkeys", "resetchannels"]
    if role == "admin":
        return [*base, "~*", "&*", "+@all", "-@dangerous", "+info"]
    if role == "backend":
        return [
            *base,
            *_BACKEND_COMMANDS,
            *_keys("%W", n.commands),
            *_keys(
                "%R", n.predictions, n.signals, n.events, n.model_events, n.deadletter, n.alerts
            ),
            *_keys("%R", n.prediction_list),
            # what it may publish (the command channel) and every channel it reads
            *_channels(n.command_channel, *_answer_channels(n)),
            "&python:*",  # a pattern the backend subscribes with (PSUBSCRIBE python:*)
        ]
    stats = _keys("%R", n.loop_stats, n.feed_stats, n.bridge_stats, n.supervisor_stats,
                  n.runtime_config_status)  # fmt: skip
    config = [*_keys("%R", n.runtime_config), *_keys("", n.runtime_config_status)]
    if role == "loop":
        rules = [
            *_keys(
                "",
                n.bars,
                n.predictions,
                n.signals,
                n.deadletter,
                n.pending_predictions,
                n.loop_state,
                n.loop_stats,
                n.seen_prefix + "{id}",
                n.prediction_list,
                n.lease_prefix + "{id}",
                n.loop_members,
                n.drift,
                n.alerts,
            ),
            *_keys("%R", n.active_models, n.active_revision, n.events),
            *_channels(
                n.prediction_channel,
                n.signal_channel,
                n.market_data_channel,
                n.model_alert_channel,
            ),
        ]
    elif role == "bridge":
        rules = [
            *_keys(
                "",
                n.commands,
                n.admin_commands,
                n.events,
                n.deadletter,
                n.signals,
                n.request_prefix + "{id}",
                n.bridge_alive_prefix + "{id}",
                n.bridge_stats,
                n.rate_limit_prefix + "{id}",
                n.active_models,
                n.active_revision,
                n.model_events,
                n.registry,
            ),
            *_keys("%R", n.bars, n.predictions, n.prediction_list, n.loop_state, n.alerts),
            *_channels(n.command_channel, *_answer_channels(n)),
        ]
    elif role == "paper":
        rules = [
            *_keys(
                "", n.paper, n.paper_curve, n.paper_fills, n.paper_stats, n.paper_cursor, n.alerts
            ),
            *_keys(
                "%R",
                n.signals,
                n.bars,
                n.active_models,
                n.active_revision,
                n.loop_state,
                n.drift,
            ),
            *_channels(n.model_alert_channel),
        ]
    else:  # feed
        rules = [
            *_keys("", n.bars, n.feed_stats),
            *_channels(n.market_data_channel),
        ]
    return [*base, *_SERVICE_COMMANDS, *rules, *stats, *config]


def _answer_channels(n: RedisNames) -> list[str]:
    """Every ``python:*``-side channel of the contract (names may be overridden)."""
    return [
        getattr(n, f.name)
        for f in fields(n)
        if f.name.endswith("_channel") and f.name != "command_channel"
    ]


def _users_file(url: str) -> Path:
    from urllib.parse import urlparse

    from botlib.settings import get_settings

    parsed = urlparse(url)
    host = re.sub(r"[^A-Za-z0-9.-]", "_", parsed.hostname or "localhost")
    return Path(get_settings().redis_data_dir) / f"users-{host}-{parsed.port or 6379}.json"


def stored_role_url(url: str, role: str) -> str | None:
    """The URL of ``role`` kept by ``apply_users`` for the Redis ``url`` names (None when
    its users were never applied from this project)."""
    import json

    try:
        found = json.loads(_users_file(url).read_text()).get(role)
    except (OSError, ValueError):
        return None
    return str(found) if found else None


def apply_users(admin_url: str, names: RedisNames | None = None) -> dict[str, str]:
    """Create (or reset) a user per role on the Redis at ``admin_url`` with a fresh
    random password each, keep their URLs in a file only the owner can read (where every
    botlib command finds its role's), and return them."""
    import json
    import secrets
    from urllib.parse import urlparse

    from botlib.errors import ConfigError
    from botlib.transport.client import connect

    r = connect(admin_url)
    version = str(r.info("server").get("redis_version", "0"))
    if tuple(int(x) for x in re.findall(r"\d+", version)[:1]) < (7,):
        raise ConfigError(
            f"Redis {version} has no per-key permissions (ACL selectors need Redis 7 or "
            "newer): upgrade it, or keep one admin password for every process"
        )
    parsed = urlparse(admin_url)
    urls = {}
    for role in ROLES:
        password = secrets.token_urlsafe(32)
        r.execute_command(  # type: ignore[no-untyped-call]
            "ACL", "SETUSER", username(role), "reset", "on", f">{password}",
            *acl_rules(role, names),
        )  # fmt: skip
        netloc = f"{username(role)}:{password}@{parsed.hostname}:{parsed.port or 6379}"
        urls[role] = parsed._replace(netloc=netloc).geturl()
    from botlib.transport.server import _private

    path = _users_file(admin_url)
    path.parent.mkdir(parents=True, exist_ok=True)
    _private(path, json.dumps(urls, indent=1))
    return urls
