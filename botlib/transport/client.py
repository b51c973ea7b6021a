"""Connections and the one atomic write of the signal loop.

``connect`` opens a client on ``BOTLIB_REDIS_URL`` (``redis://`` or ``rediss://``, AUTH
in the URL) that decodes replies as text. ``commit`` runs one server-side script that,
atomically, writes a batch's outputs (each at most once, keyed by its record id),
dead-letters bad input, updates the loop's state and acknowledges the bars — so a crash
never leaves a bar acknowledged without its outputs, nor outputs written twice.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson
import redis

from botlib.errors import BotlibError
from botlib.transport.names import RedisNames, redis_names

_I = TypeVar("_I")

__all__ = [
    "TRIM_READ",
    "Batch",
    "Output",
    "active_models",
    "commit",
    "connect",
    "ensure_group",
    "trim_read",
    "trim_read_many",
]


def connect(url: str | None = None, *, timeout: float = 5.0, role: str = "admin") -> redis.Redis:
    """A client for ``url`` (default: the configured ``BOTLIB_REDIS_URL``); replies are
    ``str``. Nothing is sent until the first command.

    ``role`` is what the caller does (``loop``, ``bridge``, ``feed``, ``backend``,
    ``admin``): on the project's local server it connects as that role's Redis user
    (see ``botlib.transport.acl``); a URL that names a user is used as given."""
    if url is None:
        from botlib.settings import get_settings

        url = get_settings().redis_url.get_secret_value()
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise BotlibError(
            f"BOTLIB_REDIS_URL must start with redis://, rediss:// or unix://, got {url[:12]!r}…"
        )
    url = with_local_secret(url, role=role)
    return redis.Redis.from_url(
        url,
        decode_responses=True,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        health_check_interval=30,
    )


_WARNED: set[str] = set()


def with_local_secret(url: str, *, role: str = "admin") -> str:
    """``url`` with the credentials of ``role`` on the project's local server (``botlib
    redis start``) when it names 127.0.0.1/localhost without a user name: the generated
    admin password (from the URL or the server's secret file) and, for any other role
    where the server has roles (Redis 7+), that role's user and derived password."""
    from urllib.parse import urlparse

    from botlib.transport.acl import role_password, stored_role_url, username

    parsed = urlparse(url)
    if parsed.username:
        return url
    if parsed.hostname not in ("127.0.0.1", "localhost"):
        # an external Redis: the role's user, when `botlib redis acl` created them
        return (stored_role_url(url, role) or url) if role != "admin" else url
    from botlib.settings import get_settings
    from botlib.transport.server import local_roles, local_secret

    data_dir, port = get_settings().redis_data_dir, parsed.port or 6379
    secret = parsed.password or local_secret(data_dir, port)
    if secret is None:
        return url
    user = ""
    if role != "admin":
        if role in local_roles(data_dir, port):
            user, secret = username(role), role_password(secret, role)
        elif role not in _WARNED:
            _WARNED.add(role)
            import logging

            logging.getLogger("botlib").warning(
                "WARNING: the Redis on port %d has no user for role %r (Redis < 7, or not "
                "started by `botlib redis start` with data in %s): connecting with the "
                "admin password",
                port,
                role,
                data_dir,
            )
    netloc = f"{user}:{secret}@{parsed.hostname}:{port}"
    return parsed._replace(netloc=netloc).geturl()


def ensure_group(client: redis.Redis, stream: str, group: str, *, start: str = "0") -> None:
    """Create consumer group ``group`` on ``stream`` (and the stream) unless it exists.
    ``start="0"`` means bars written before the first loop started are processed too."""
    try:
        client.xgroup_create(stream, group, id=start, mkstream=True)
    except redis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


@dataclass(frozen=True)
class Output:
    """One record for a stream (``data`` = JSON) and, optionally, a pub/sub channel.
    ``dedupe`` is the key that makes it idempotent ("" = always write)."""

    stream: str
    payload: str
    channel: str = ""
    dedupe: str = ""
    #: also keep it in this Redis list, newest first, bounded (the backend's
    #: ``predictions:{modelId}:{symbol}``)
    list_key: str = ""
    #: the list's earlier version of this record, replaced in place ("" = push anew)
    replaces: str = ""


@dataclass
class Batch:
    """Everything one step of the loop writes, applied atomically by ``commit``."""

    outputs: list[Output] = field(default_factory=list)
    acks: dict[str, list[str]] = field(default_factory=dict)  # stream -> entry ids
    zadd: list[tuple[str, float, str]] = field(default_factory=list)
    zrem: list[tuple[str, str]] = field(default_factory=list)
    hset: list[tuple[str, str, str]] = field(default_factory=list)
    hincr: list[tuple[str, str, int]] = field(default_factory=list)

    def ack(self, stream: str, entry_id: str) -> None:
        self.acks.setdefault(stream, []).append(entry_id)

    def extend(self, other: Batch) -> None:
        """Add everything ``other`` holds (a part built on its own, kept only if it
        completed)."""
        self.outputs.extend(other.outputs)
        for stream, ids in other.acks.items():
            self.acks.setdefault(stream, []).extend(ids)
        self.zadd.extend(other.zadd)
        self.zrem.extend(other.zrem)
        self.hset.extend(other.hset)
        self.hincr.extend(other.hincr)

    def __bool__(self) -> bool:
        return bool(self.outputs or self.acks or self.zadd or self.zrem or self.hset)


# The plan is JSON (cjson ships with Redis): ARGV[1] = plan, ARGV[2] = MAXLEN, ARGV[3] =
# seconds to remember written record ids, ARGV[4] = length of the lists. The records
# themselves, and every other value written, follow as ARGV[5...]: the plan names them
# by position (a string used twice, a prediction and its pending entry, is sent once),
# so no record is escaped into the plan and decoded again.
_COMMIT = """
local plan = cjson.decode(ARGV[1])
local maxlen, ttl, listlen = ARGV[2], ARGV[3], tonumber(ARGV[4])
local written = 0
for _, f in ipairs(plan.fence) do
  if redis.call('GET', f[1]) ~= f[2] then return -1 end
end
for _, o in ipairs(plan.outputs) do
  local fresh = true
  if o[4] ~= '' then fresh = redis.call('SET', o[4], '1', 'NX', 'EX', ttl) end
  if fresh then
    local data = ARGV[o[2]]
    redis.call('XADD', o[1], 'MAXLEN', '~', maxlen, '*', 'data', data)
    if o[3] ~= '' then redis.call('PUBLISH', o[3], data) end
    if o[5] ~= '' then
      if o[6] > 0 then
        if redis.call('LINSERT', o[5], 'BEFORE', ARGV[o[6]], data) > 0 then
          redis.call('LREM', o[5], 1, ARGV[o[6]])
        end
      else
        redis.call('LPUSH', o[5], data)
        redis.call('LTRIM', o[5], 0, listlen - 1)
      end
    end
    written = written + 1
  end
end
for _, z in ipairs(plan.zadd) do redis.call('ZADD', z[1], z[2], ARGV[z[3]]) end
for _, z in ipairs(plan.zrem) do redis.call('ZREM', z[1], ARGV[z[2]]) end
for _, h in ipairs(plan.hset) do
  local args = {}
  for i = 2, #h, 2 do
    args[#args + 1] = h[i]
    args[#args + 1] = ARGV[h[i + 1]]
  end
  redis.call('HSET', h[1], unpack(args))
end
for _, h in ipairs(plan.hincr) do redis.call('HINCRBY', h[1], h[2], h[3]) end
for _, a in ipairs(plan.acks) do
  local ids = a[3]
  for i = 1, #ids, 500 do
    redis.call('XACK', a[1], a[2], unpack(ids, i, math.min(i + 499, #ids)))
  end
end
return written
"""

#: fields per HSET in the commit script (Lua's unpack has a bounded stack)
_HSET_CHUNK = 200


def commit(
    client: redis.Redis,
    batch: Batch,
    *,
    group: str,
    maxlen: int = 100_000,
    remember_s: int = 7 * 24 * 3600,
    fence: Sequence[tuple[str, str]] = (),
    list_len: int = 1000,
) -> int:
    """Apply ``batch`` in one atomic script; returns how many outputs were new, or -1
    when a ``fence`` key (a market lease) no longer holds its value: then nothing at
    all was written. Increments of one field are summed and a hash's fields set in one
    command (the last value of a field wins, as when set one by one)."""
    values: dict[str, int] = {}
    args: list[Any] = ["", maxlen, remember_s, list_len]

    def ref(value: str) -> int:
        at = values.get(value)
        if at is None:
            args.append(value)
            at = values[value] = len(args)  # ARGV is 1-based
        return at

    hset: dict[str, dict[str, str]] = {}
    for key, name, value in batch.hset:
        hset.setdefault(key, {})[name] = value
    hincr: dict[tuple[str, str], int] = {}
    for key, name, by in batch.hincr:
        hincr[key, name] = hincr.get((key, name), 0) + int(by)
    plan: dict[str, Sequence[Any]] = {
        "fence": [list(f) for f in fence],
        "outputs": [
            [
                o.stream,
                ref(o.payload),
                o.channel,
                o.dedupe,
                o.list_key,
                ref(o.replaces) if o.replaces else 0,
            ]
            for o in batch.outputs
        ],
        "acks": [[stream, group, ids] for stream, ids in batch.acks.items() if ids],
        "zadd": [[key, when, ref(member)] for key, when, member in batch.zadd],
        "zrem": [[key, ref(member)] for key, member in batch.zrem],
        "hset": [
            [key, *[x for name, value in chunk for x in (name, ref(value))]]
            for key, fields in hset.items()
            for chunk in _chunks(list(fields.items()), _HSET_CHUNK)
        ],
        "hincr": [[key, name, by] for (key, name), by in hincr.items()],
    }
    # cjson decodes an empty JSON array as an empty table, which ipairs handles
    try:
        args[0] = orjson.dumps(plan)
    except TypeError:  # text orjson refuses (not UTF-8): the standard library's escapes
        args[0] = json.dumps(plan)
    return int(client.register_script(_COMMIT)(args=args))


def _chunks(items: list[_I], size: int) -> list[list[_I]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


TRIM_READ = """
-- Trim a stream to about ARGV[1] entries, but never past what a consumer group has not
-- yet read or acknowledged: entries older than every group's first unread or pending
-- entry may go, the newest ARGV[1] always stay.
local key, keep = KEYS[1], tonumber(ARGV[1])
local excess = redis.call('XLEN', key) - keep
if excess <= 0 then return 0 end
local function older(a, b)  -- stream ids 'ms-seq': a < b
  local am, as = string.match(a, '(%d+)-(%d+)')
  local bm, bs = string.match(b, '(%d+)-(%d+)')
  am, as, bm, bs = tonumber(am), tonumber(as), tonumber(bm), tonumber(bs)
  return am < bm or (am == bm and as < bs)
end
local head = redis.call('XRANGE', key, '-', '+', 'COUNT', excess + 1)
local limit = head[#head][1]  -- keeps this entry and every newer one
for _, group in ipairs(redis.call('XINFO', 'GROUPS', key)) do
  local info = {}
  for i = 1, #group, 2 do info[group[i]] = group[i + 1] end
  local last = info['last-delivered-id']
  -- the first entry after the last delivered one is unread: keep from 'last' on
  if older(last, limit) then limit = last end
  if tonumber(info['pending']) > 0 then
    local summary = redis.call('XPENDING', key, info['name'])
    if summary[2] and older(summary[2], limit) then limit = summary[2] end
  end
end
return redis.call('XTRIM', key, 'MINID', limit)
"""


def trim_read(client: Any, stream: str, keep: int) -> int:
    """Trim ``stream`` to about ``keep`` entries without dropping anything a consumer
    group has not read and acknowledged yet (a stream whose reader is down grows until
    it is back). Returns the number of entries removed."""
    return int(client.register_script(TRIM_READ)(keys=[stream], args=[int(keep)]))


def trim_read_many(client: Any, streams: Sequence[str], keep: int) -> list[int]:
    """``trim_read`` on each of ``streams``, in one round trip (a feed publishing a bar
    for twenty markets trims twenty streams)."""
    if not streams:
        return []
    script = client.register_script(TRIM_READ)
    pipe = client.pipeline(transaction=False)
    for stream in streams:
        script(keys=[stream], args=[int(keep)], client=pipe)
    return [int(n) for n in pipe.execute()]


def active_models(r: Any, names: RedisNames | None = None) -> dict[str, dict[str, Any]]:
    """The ``botlib:active_models`` hash, decoded (bad entries are skipped with a
    warning: they are never evaluated)."""
    import json
    import warnings

    names = names or redis_names()
    out = {}
    for key, value in r.hgetall(names.active_models).items():
        try:
            out[str(key)] = json.loads(value)
        except (TypeError, json.JSONDecodeError):
            warnings.warn(f"active model {key!r}: entry is not JSON; ignored", stacklevel=2)
    return out
