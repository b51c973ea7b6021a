"""A small local websocket server that speaks like Binance's spot kline streams
(``SUBSCRIBE`` -> ``{"result": null, "id": …}``, then ``{"e": "kline", …}`` events), so
ccxt.pro's real ``watch_ohlcv`` runs in tests. Built on aiohttp (a ccxt dependency).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from typing import Any

from aiohttp import WSMsgType, web


class FakeBinanceWS:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.clients: list[web.WebSocketResponse] = []
        self.subscriptions = 0
        self.requests: list[dict[str, Any]] = []
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self._ready.wait(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        app = web.Application()
        app.router.add_get("/{tail:.*}", self._handler)
        self.runner = web.AppRunner(app, shutdown_timeout=0.5)
        self.loop.run_until_complete(self.runner.setup())
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        self.loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._ready.set()
        self.loop.run_forever()

    @property
    def url(self) -> str:
        # ccxt treats a URL holding "/stream" as a spot stream
        return f"ws://127.0.0.1:{self.port}/stream/ws"

    async def _handler(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                break
            body = json.loads(msg.data)
            self.requests.append(body)
            if body.get("method") == "SUBSCRIBE":
                await ws.send_json({"result": None, "id": body["id"]})
                self.clients.append(ws)
                self.subscriptions += 1
        if ws in self.clients:
            self.clients.remove(ws)
        return ws

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def push(self, row: list[float], step_ms: int, *, closed: bool = False) -> None:
        """One kline update ``[open_time, o, h, l, c, v]`` to every subscriber."""
        t = int(row[0])
        event = {
            "e": "kline",
            "E": t + step_ms // 2,
            "s": "BTCUSDT",
            "k": {
                "t": t, "T": t + step_ms - 1, "s": "BTCUSDT", "i": "1h", "f": 1, "L": 2,
                "o": f"{row[1]:.2f}", "h": f"{row[2]:.2f}", "l": f"{row[3]:.2f}",
                "c": f"{row[4]:.2f}", "v": f"{row[5]:.5f}", "n": 2, "x": closed,
                "q": "0", "V": "0", "Q": "0", "B": "0",
            },
        }  # fmt: skip

        async def send() -> None:
            for ws in list(self.clients):
                await ws.send_str(json.dumps(event))

        self._call(send())

    def drop(self) -> None:
        """Close every connection, as a network failure would."""

        async def close() -> None:
            for ws in list(self.clients):
                await ws.close(code=1011, message=b"dropped")
            self.clients.clear()

        self._call(close())

    def stop(self) -> None:
        self.drop()
        # a handler still draining is cut off: the loop is stopped below regardless
        with contextlib.suppress(TimeoutError):
            asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(3)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
