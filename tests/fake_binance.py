"""A small local HTTP server that answers like Binance's public spot API
(``/api/v3/exchangeInfo`` and ``/api/v3/klines``), so ccxt's real code runs in tests.

Failure modes, set on the instance: ``fail_429`` (answer the next N kline requests with
HTTP 429), ``stall`` (delay the next N kline requests by ``stall_seconds``, longer than
the client's timeout), and ``die_after`` (stop serving after N kline responses).
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import numpy as np

HOUR_MS = 3_600_000

EXCHANGE_INFO = {
    "timezone": "UTC",
    "serverTime": 0,
    "rateLimits": [],
    "exchangeFilters": [],
    "symbols": [
        {
            "symbol": "BTCUSDT",
            "status": "TRADING",
            "baseAsset": "BTC",
            "baseAssetPrecision": 8,
            "quoteAsset": "USDT",
            "quotePrecision": 8,
            "quoteAssetPrecision": 8,
            "orderTypes": ["LIMIT", "MARKET"],
            "isSpotTradingAllowed": True,
            "isMarginTradingAllowed": False,
            "permissions": ["SPOT"],
            "permissionSets": [["SPOT"]],
            "filters": [
                {
                    "filterType": "PRICE_FILTER",
                    "minPrice": "0.01",
                    "maxPrice": "1000000.00",
                    "tickSize": "0.01",
                },
                {
                    "filterType": "LOT_SIZE",
                    "minQty": "0.00001",
                    "maxQty": "9000.00",
                    "stepSize": "0.00001",
                },
            ],
        }
    ],
}


def make_candles(start_ms: int, end_ms: int, step_ms: int = HOUR_MS, seed: int = 7) -> np.ndarray:
    """Rows ``[open_time, o, h, l, c, v]`` for every bar from ``start_ms`` whose open time is
    before ``end_ms`` (the last one may still be open)."""
    times = np.arange(start_ms, end_ms, step_ms, dtype="int64")
    rng = np.random.default_rng(seed)
    close = 30_000 * np.exp(np.cumsum(rng.normal(0, 0.004, len(times))))
    open_ = np.concatenate([[30_000.0], close[:-1]])
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.003, len(times)))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.003, len(times)))
    volume = rng.uniform(10, 100, len(times))
    return np.column_stack([times, open_, high, low, close, volume])


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that timed out and hung up is part of the test, not an error."""


class FakeBinance:
    def __init__(self, candles: np.ndarray, step_ms: int = HOUR_MS) -> None:
        self.candles = candles
        self.step_ms = step_ms
        self.fail_429 = 0
        self.stall = 0
        self.stall_seconds = 1.5
        self.die_after: int | None = None
        self.kline_starts: list[int] = []
        self.kline_times: list[float] = []
        self.served = 0
        self._lock = threading.Lock()
        self._httpd = _Server(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/api/v3"

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def _klines(self, query: dict[str, list[str]]) -> list[list[Any]]:
        start = int(query.get("startTime", ["0"])[0])
        limit = int(query.get("limit", ["500"])[0])
        rows = self.candles[self.candles[:, 0] >= start][:limit]
        return [
            [
                int(r[0]),
                f"{r[1]:.2f}",
                f"{r[2]:.2f}",
                f"{r[3]:.2f}",
                f"{r[4]:.2f}",
                f"{r[5]:.5f}",
                int(r[0]) + self.step_ms - 1,
                "0",
                10,
                "0",
                "0",
                "0",
            ]
            for r in rows
        ]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                url = urlparse(self.path)
                query = parse_qs(url.query)
                if url.path == "/api/v3/exchangeInfo":
                    self._send(200, {**EXCHANGE_INFO, "serverTime": int(time.time() * 1000)})
                    return
                if url.path != "/api/v3/klines":
                    self._send(404, {"code": -1, "msg": f"unexpected path {url.path}"})
                    return
                with fake._lock:
                    fake.kline_times.append(time.monotonic())
                    if fake.fail_429 > 0:
                        fake.fail_429 -= 1
                        self._send(429, {"code": -1003, "msg": "Too many requests"})
                        return
                    stall = fake.stall > 0
                    if stall:
                        fake.stall -= 1
                    if fake.die_after is not None and fake.served >= fake.die_after:
                        threading.Thread(target=fake.stop, daemon=True).start()
                        self.close_connection = True
                        return
                if stall:
                    time.sleep(fake.stall_seconds)
                body = fake._klines(query)
                with fake._lock:
                    fake.kline_starts.append(int(query.get("startTime", ["0"])[0]))
                    fake.served += 1
                self._send(200, body)

        return Handler
