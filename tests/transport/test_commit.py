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
