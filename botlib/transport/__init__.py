"""The Redis transport layer (below promotion and the live loop): the server the
project runs, and — as the signal loop lands — connections, stream and channel names,
and the JSON encoding of records."""

from botlib.transport.server import RedisServer, find_redis_server, free_port

__all__ = ["RedisServer", "find_redis_server", "free_port"]
