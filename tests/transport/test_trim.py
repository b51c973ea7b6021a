"""Streams are bounded without dropping what a consumer group has not read."""

from __future__ import annotations

from pathlib import Path

import redis

from botlib.transport import RedisServer, ensure_group, free_port, trim_read
from botlib.transport.client import trim_read_many


def test_trim_keeps_every_unread_and_pending_entry(tmp_path: Path) -> None:
    server = RedisServer(free_port(), tmp_path).start()
    r = redis.Redis.from_url(server.url, decode_responses=True)
    try:
        assert trim_read(r, "s", 10) == 0  # no stream yet: nothing to do
        ids = [r.xadd("s", {"n": str(i)}) for i in range(100)]
        ensure_group(r, "s", "g")
        got = r.xreadgroup("g", "c", {"s": ">"}, count=30)[0][1]
        r.xack("s", "g", *[entry_id for entry_id, _ in got[:20]])
        # 20 read and acknowledged may go; the 10 read but pending, and the 70 unread, stay
        trim_read(r, "s", 10)
        assert r.xlen("s") == 80 and r.xrange("s", count=1)[0][0] == ids[20]
        r.xack("s", "g", *[entry_id for entry_id, _ in got[20:]])
        trim_read(r, "s", 10)  # the rest is unread: kept
        assert r.xlen("s") == 71 and r.xrange("s", count=1)[0][0] == ids[29]
        r.xreadgroup("g", "c", {"s": ">"}, count=100)
        r.xack("s", "g", *ids[30:])
        trim_read(r, "s", 10)  # all read: down to the newest 10
        assert r.xlen("s") == 10 and r.xrange("s", count=1)[0][0] == ids[90]
        # a stream nobody reads in a group is bounded by length alone
        for i in range(30):
            r.xadd("free", {"n": str(i)})
        trim_read(r, "free", 10)
        assert r.xlen("free") == 10
    finally:
        r.close()
        server.stop()


def test_several_streams_trimmed_in_one_trip_as_one_by_one(tmp_path: Path) -> None:
    """``trim_read_many`` (what a feed runs after publishing) trims each stream as
    ``trim_read`` would, the script loaded again when Redis lost it."""
    server = RedisServer(free_port(), tmp_path).start()
    r = redis.Redis.from_url(server.url, decode_responses=True)
    try:
        assert trim_read_many(r, [], 10) == []
        for name in ("read", "unread", "free"):
            for i in range(40):
                r.xadd(name, {"n": str(i)})
        for name in ("read", "unread"):
            ensure_group(r, name, "g")
        got = r.xreadgroup("g", "c", {"read": ">"}, count=40)[0][1]
        r.xack("read", "g", *[entry_id for entry_id, _ in got])
        r.script_flush()  # a restarted Redis has no scripts
        assert trim_read_many(r, ["read", "unread", "free", "missing"], 10) == [30, 0, 30, 0]
        assert [r.xlen(s) for s in ("read", "unread", "free")] == [10, 40, 10]
    finally:
        r.close()
        server.stop()
