"""Which loop process serves which market, when several run.

Every market (bar stream) is owned by at most one live loop process at a time: a
lease ``botlib:lease:{stream}`` holding the owner's token, set with ``NX`` and an
expiry, renewed while the owner lives. Each process beats in ``botlib:loop:members``;
the live members share the markets evenly (a process holds at most
``ceil(markets / members)``, releasing the excess between two steps, after all it
read is committed). A process that dies stops renewing; once its leases expire the
others take its markets over — its unacknowledged bars included (``XAUTOCLAIM``) —
and rebuild each market's window and positions from Redis. The same consumer started
again (a restart) takes its own leases back at once.

The step's atomic commit is *fenced* by the leases of the markets it writes: a
process that lost a lease (paused past its expiry) writes nothing, so two processes
never both serve a bar.
"""

from __future__ import annotations

import math
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from botlib.transport import RedisNames

__all__ = ["Leases"]

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
# free, or held by an earlier run of this same consumer (a restarted process: the
# consumer name is stable across restarts and unique among live processes)
_ACQUIRE = """
local held = redis.call('GET', KEYS[1])
if (not held) or held == ARGV[1] or string.sub(held, 1, string.len(ARGV[3])) == ARGV[3] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


@dataclass
class Leases:
    """This process's market leases. ``tick(streams)`` every ``ttl_s / 3`` seconds."""

    r: Any
    names: RedisNames
    consumer: str
    ttl_s: float = 10.0
    owned: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.token = f"{self.consumer}:{uuid.uuid4().hex[:8]}"
        self._renew = self.r.register_script(_RENEW)
        self._release = self.r.register_script(_RELEASE)
        self._acquire = self.r.register_script(_ACQUIRE)
        self._next = 0.0

    @property
    def ttl_ms(self) -> int:
        return int(self.ttl_s * 1000)

    def key(self, stream: str) -> str:
        return f"{self.names.lease_prefix}{stream}"

    def fence(self, streams: list[str]) -> list[tuple[str, str]]:
        """What the commit must check: each stream's lease still names this process."""
        return [(self.key(s), self.token) for s in streams]

    def due(self) -> bool:
        return time.monotonic() >= self._next

    def tick(self, streams: list[str]) -> tuple[set[str], set[str]]:
        """Renew, release the excess, acquire free markets up to the fair share.
        Returns (gained, lost)."""
        self._next = time.monotonic() + self.ttl_s / 3
        now_ms = int(time.time() * 1000)
        pipe = self.r.pipeline(transaction=False)
        pipe.hset(self.names.loop_members, self.token, now_ms)
        pipe.hgetall(self.names.loop_members)
        _, members = pipe.execute()
        live = [t for t, beat in members.items() if now_ms - int(beat) <= self.ttl_ms]
        stale = [t for t, beat in members.items() if now_ms - int(beat) > 3 * self.ttl_ms]
        if stale:
            self.r.hdel(self.names.loop_members, *stale)
        lost = {s for s in self.owned if s not in streams}
        for stream in sorted(self.owned - lost):
            if not self._renew(keys=[self.key(stream)], args=[self.token, self.ttl_ms]):
                lost.add(stream)
        for stream in lost:
            self._release(keys=[self.key(stream)], args=[self.token])
        self.owned -= lost
        share = math.ceil(len(streams) / max(1, len(live)))
        for stream in sorted(self.owned, reverse=True)[: max(0, len(self.owned) - share)]:
            self._release(keys=[self.key(stream)], args=[self.token])
            self.owned.discard(stream)
            lost.add(stream)
        gained: set[str] = set()
        for stream in streams:
            if len(self.owned) >= share:
                break
            if stream in self.owned or stream in lost:
                continue
            mine = self._acquire(
                keys=[self.key(stream)], args=[self.token, self.ttl_ms, f"{self.consumer}:"]
            )
            if mine:
                self.owned.add(stream)
                gained.add(stream)
        return gained, lost

    def drop(self) -> None:
        """Forget every lease (after a Redis error: re-checked at the next tick)."""
        self.owned.clear()
        self._next = 0.0

    def release_all(self) -> None:
        for stream in list(self.owned):
            self._release(keys=[self.key(stream)], args=[self.token])
        self.owned.clear()
        self.r.hdel(self.names.loop_members, self.token)
