"""The Redis transport layer (below promotion and the live loop): the server the
project runs, connections, stream and channel names, and the JSON encoding of bars and
records."""

from botlib.transport.client import (
    Batch,
    Output,
    active_models,
    commit,
    connect,
    ensure_group,
    trim_read,
)
from botlib.transport.codec import Bar, BarError, decode_bar, dumps, encode_bar
from botlib.transport.names import RedisNames, redis_names
from botlib.transport.server import RedisServer, find_redis_server, free_port

__all__ = [
    "Bar",
    "BarError",
    "Batch",
    "Output",
    "RedisNames",
    "RedisServer",
    "active_models",
    "commit",
    "connect",
    "decode_bar",
    "dumps",
    "encode_bar",
    "ensure_group",
    "find_redis_server",
    "free_port",
    "redis_names",
    "trim_read",
]
