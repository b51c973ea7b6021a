"""How the bridge answers: every answer published on its channel, appended to
``botlib:events`` and counted, in one round trip — and each ``request_id`` answered
once.

A command carrying a ``request_id`` is *claimed* before it runs (``botlib:request:{id}``,
kept ``ttl_s``). A second command with that id — redelivered from the stream, or sent
again on either path — is not run again: if the first has been answered, its final
answer is published again, byte for byte; while it still runs, the duplicate is only
counted (the first one's answer is on its way). A claim held by a bridge that is no
longer alive (its liveness key expired: it crashed mid-command) is taken over, so the
command runs once more rather than never. Refusals that a retry may clear (``busy``,
``rate_limited``) release the claim.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

from botlib.transport import RedisNames, dumps
from botlib.transport.stats import BridgeCounter

__all__ = ["FINAL", "Answers", "Claim"]

#: answers that end a request (``started`` and ``queued`` do not)
FINAL = {"done", "error", "invalid", "timeout", "model_trained", "optimization_complete"}
#: refusals a later retry with the same request id may get past
RETRYABLE = {"busy", "rate_limited"}


@dataclass(frozen=True)
class Claim:
    #: ``run`` (new, or taken over from a dead bridge), ``replayed`` or ``in_flight``
    state: str


class Answers:
    def __init__(self, r: Any, names: RedisNames, *, ttl_s: int = 7 * 86_400) -> None:
        self.r = r
        self.names = names
        self.ttl_s = ttl_s
        #: this bridge process; its liveness key says it still holds its claims
        self.boot = uuid.uuid4().hex[:12]

    def _key(self, request_id: str) -> str:
        return f"{self.names.request_prefix}{request_id}"

    def _alive_key(self, boot: str) -> str:
        return f"{self.names.bridge_alive_prefix}{boot}"

    def beat(self, pipe: Any, every_s: float) -> None:
        """Keep this process's liveness key (call every ``every_s``)."""
        pipe.set(self._alive_key(self.boot), "1", px=int(max(every_s * 10, 5.0) * 1000))

    # -- requests ---------------------------------------------------------------------
    def claim(self, request_id: str | None) -> Claim:
        if not request_id:
            return Claim("run")
        key = self._key(request_id)
        mine = json.dumps({"state": "running", "boot": self.boot, "at": time.time()})
        if self.r.set(key, mine, nx=True, ex=self.ttl_s):
            return Claim("run")
        raw = self.r.get(key)
        held = json.loads(raw) if raw else {}
        if held.get("state") == "answered":
            pipe = self.r.pipeline(transaction=True)
            for channel, payload in held.get("answers", []):
                pipe.xadd(self.names.events, {"data": payload}, maxlen=100_000, approximate=True)
                pipe.publish(channel, payload)
            pipe.hincrby(self.names.bridge_stats, BridgeCounter.replayed, 1)
            pipe.execute()
            return Claim("replayed")
        owner = held.get("boot")
        if owner == self.boot or (owner and self.r.exists(self._alive_key(owner))):
            self.r.hincrby(self.names.bridge_stats, BridgeCounter.duplicates, 1)
            return Claim("in_flight")
        # its bridge died while running it: run it again
        self.r.set(key, mine, ex=self.ttl_s)
        self.r.hincrby(self.names.bridge_stats, BridgeCounter.taken_over, 1)
        return Claim("run")

    # -- publishing -------------------------------------------------------------------
    def emit(
        self,
        channel: str,
        event: dict[str, Any],
        counter: str | None = None,
        **gauges: Any,
    ) -> None:
        """Publish ``event`` on ``channel`` and ``botlib:events``, count it, and when it
        ends its request, keep it as that request's answer — one transaction."""
        payload = dumps({**event, "at": time.time()})
        pipe = self.r.pipeline(transaction=True)
        pipe.xadd(self.names.events, {"data": payload}, maxlen=100_000, approximate=True)
        pipe.publish(channel, payload)
        self.count(pipe, (counter,) if counter else (), gauges)
        request_id, kind = event.get("request_id"), event.get("event")
        if request_id and kind in FINAL:
            answered = {"state": "answered", "answers": [[channel, payload]]}
            pipe.set(self._key(str(request_id)), json.dumps(answered), ex=self.ttl_s)
        elif request_id and kind in RETRYABLE:
            pipe.delete(self._key(str(request_id)))
        pipe.execute()

    def count(self, pipe: Any, fields: tuple[str, ...], gauges: dict[str, Any]) -> None:
        for name in fields:
            pipe.hincrby(self.names.bridge_stats, name, 1)
        if gauges:
            pipe.hset(self.names.bridge_stats, mapping={k: str(v) for k, v in gauges.items()})
