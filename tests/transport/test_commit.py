"""The loop's one atomic write, against a real redis-server."""

from __future__ import annotations

from pathlib import Path

import redis

from botlib.transport import Batch, Output, RedisServer, commit, ensure_group, free_port


def test_commit_writes_each_output_once_and_acks(tmp_path: Path) -> None:
    server = RedisServer(port=free_port(), data_dir=tmp_path / "r").start()
    r = redis.Redis.from_url(server.url, decode_responses=True)
    try:
        ensure_group(r, "bars", "g")
        ensure_group(r, "bars", "g")  # idempotent
        ids = [r.xadd("bars", {"n": str(i)}) for i in range(3)]
        got = r.xreadgroup("g", "c1", {"bars": ">"})
        assert len(got[0][1]) == 3
        pubsub = r.pubsub()
        pubsub.subscribe("chan")
        pubsub.get_message(timeout=1)
        batch = Batch(outputs=[Output("out", '{"a":1}', "chan", "seen:a")])
        for entry in ids:
            batch.ack("bars", entry)
        batch.hset.append(("state", "k", "1"))
        batch.zadd.append(("z", 5.0, "m"))
        assert commit(r, batch, group="g") == 1
        assert r.xpending("bars", "g")["pending"] == 0
        assert commit(r, batch, group="g") == 0  # the same record again: not written
        assert r.xlen("out") == 1
        assert r.hget("state", "k") == "1" and r.zscore("z", "m") == 5.0
        message = pubsub.get_message(timeout=2)
        assert message is not None and message["data"] == '{"a":1}'
        assert pubsub.get_message(timeout=0.2) is None
        pubsub.close()
    finally:
        r.close()
        server.stop()


def test_commit_applies_every_write_as_given_one_by_one(tmp_path: Path) -> None:
    """Increments of one field are summed, a hash's fields go in one command (more of
    them than one command takes), the last value of a field wins, and a record sent
    once serves as output, pending member and list entry alike."""
    server = RedisServer(port=free_port(), data_dir=tmp_path / "r").start()
    r = redis.Redis.from_url(server.url, decode_responses=True)
    try:
        record = '{"id": "p1", "note": "quotes \\" and \\\\ survive"}'
        batch = Batch(outputs=[Output("out", record, "", "seen:p1", list_key="list")])
        batch.zadd.append(("pending", 7.0, record))
        batch.zadd.append(("pending", 8.0, "old"))
        batch.zrem.append(("pending", "old"))
        batch.hset.extend(("h", f"f{i}", str(i)) for i in range(450))
        batch.hset.append(("h", "f3", "last"))
        batch.hset.append(("other", "x", "y"))
        batch.hincr.extend([("stats", "bars", 2), ("stats", "bars", 3), ("stats", "zero", 0)])
        assert commit(r, batch, group="g") == 1
        assert r.xrange("out")[0][1]["data"] == record
        assert r.lrange("list", 0, -1) == [record]
        assert r.zrange("pending", 0, -1, withscores=True) == [(record, 7.0)]
        fields = r.hgetall("h")
        assert len(fields) == 450 and fields["f3"] == "last" and fields["f449"] == "449"
        assert r.hgetall("other") == {"x": "y"}
        assert r.hgetall("stats") == {"bars": "5", "zero": "0"}
        replaced = record.replace("p1", "p1-scored")
        batch = Batch(outputs=[Output("out", replaced, "", "", "list", replaces=record)])
        assert commit(r, batch, group="g") == 1
        assert r.lrange("list", 0, -1) == [replaced]
    finally:
        r.close()
        server.stop()


def test_connect_uses_auth_from_the_url_and_refuses_other_schemes(tmp_path: Path) -> None:
    import pytest

    from botlib.errors import BotlibError
    from botlib.transport import connect

    server = RedisServer(port=free_port(), data_dir=tmp_path / "r", password="pa55").start()
    try:
        client = connect(server.url)
        assert client.ping() and client.set("k", "v") and client.get("k") == "v"
        client.close()
        wrong = connect(f"redis://:nope@127.0.0.1:{server.port}/0")
        with pytest.raises(redis.AuthenticationError):
            wrong.ping()
        wrong.close()
        with pytest.raises(BotlibError, match="rediss://"):
            connect(f"http://127.0.0.1:{server.port}")
    finally:
        server.stop()
