"""``botlib up | down | ps``: the trading server as supervised child processes.

``botlib up`` starts (or connects to) Redis, then one detached **supervisor** process
that runs the services as its children — the signal loop (``--loops N`` processes), the
command bridge and a feed per market an active model serves — each a ``botlib …``
command with its output in its own log file (``logs/NAME.log`` in the home). A child
that dies is started again after a backoff that doubles up to a ceiling (and resets
once a child has run a while); every restart is counted, in the state file and in the
Redis hash ``botlib:supervisor:stats`` that ``botlib status`` shows. One-shot children
(a replay feed) are restarted only when they fail.

``botlib down`` stops the supervisor, which stops its children (SIGTERM, then SIGKILL
after a grace period); the children share the supervisor's process group, so even a
supervisor killed outright leaves nothing behind — ``down`` signals that group, and
the Redis server only if ``up`` started it. Nothing else is touched.

The state (``.cache/run/up.json`` in the home) is written atomically on every change;
``botlib ps`` reads it. Why not supervisord or circus: both bring their own config
language and control socket; the jobs here are few and fixed, and the restart counts
belong in botlib's own status.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from botlib.errors import ConfigError
from botlib.transport.stats import SupervisorCounter, keyed

__all__ = [
    "ChildSpec",
    "ChildState",
    "Supervisor",
    "UpState",
    "alive",
    "read_state",
    "state_path",
    "stop_all",
]

log = logging.getLogger("botlib.up")

Restart = Literal["always", "on-failure"]


@dataclass(frozen=True)
class ChildSpec:
    """One supervised service: ``argv`` after ``botlib``."""

    name: str
    argv: list[str]
    restart: Restart = "always"


@dataclass
class ChildState:
    name: str
    argv: list[str]
    restart: Restart
    log: str
    pid: int | None = None
    started_at: float | None = None
    restarts: int = 0
    status: str = "starting"  # running | backoff | exited | failed | stopped
    exit_code: int | None = None
    next_start: float | None = None


@dataclass
class UpState:
    pid: int
    started_at: float
    redis_url_host: str
    redis_started: bool
    redis_port: int | None
    children: list[ChildState] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> UpState:
        data = json.loads(text)
        data["children"] = [ChildState(**c) for c in data.get("children", [])]
        return cls(**data)


def state_path() -> Path:
    from botlib.settings import get_settings

    return get_settings().run_dir / "up.json"


def read_state() -> UpState | None:
    path = state_path()
    try:
        return UpState.from_json(path.read_text())
    except FileNotFoundError:
        return None
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{path} is not a botlib up state file ({exc}); remove it") from None


def _write_state(state: UpState) -> None:
    path = state_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(state.to_json())
    tmp.replace(path)


def alive(pid: int | None) -> bool:
    """Whether ``pid`` is a running process (a zombie counts as gone)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    return True


class Supervisor:
    """Runs ``children`` until SIGTERM/SIGINT; restarts them with backoff.

    ``backoff_start_s`` doubles per consecutive failure up to ``backoff_max_s``; a
    child that ran at least ``healthy_after_s`` starts the count again.
    """

    def __init__(
        self,
        state: UpState,
        children: list[ChildSpec],
        *,
        logs_dir: Path,
        backoff_start_s: float = 0.5,
        backoff_max_s: float = 30.0,
        healthy_after_s: float = 30.0,
        grace_s: float = 10.0,
    ) -> None:
        self.state = state
        self.logs_dir = logs_dir
        self.backoff_start_s = backoff_start_s
        self.backoff_max_s = backoff_max_s
        self.healthy_after_s = healthy_after_s
        self.grace_s = grace_s
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._failures: dict[str, int] = {}
        self._stopping = False
        logs_dir.mkdir(parents=True, exist_ok=True)
        state.children = [
            ChildState(c.name, c.argv, c.restart, str(logs_dir / f"{c.name}.log")) for c in children
        ]
        self._redis: Any = None

    # -- status in Redis (best effort: the supervisor never depends on it) ----------
    def _report(self, child: ChildState, *, restarted: bool = False) -> None:
        try:
            if self._redis is None:
                from botlib.transport import connect, redis_names

                self._redis = (connect(), redis_names())
            r, names = self._redis
            pipe = r.pipeline(transaction=False)
            key = names.supervisor_stats
            if restarted:
                pipe.hincrby(key, keyed(SupervisorCounter.restarts, child.name), 1)
            pipe.hset(
                key,
                mapping={
                    keyed(SupervisorCounter.pid, child.name): str(child.pid or ""),
                    keyed(SupervisorCounter.status, child.name): child.status,
                    SupervisorCounter.heartbeat: repr(time.time()),
                },
            )
            pipe.execute()
        except Exception as exc:  # Redis down: the state file still says it all
            log.debug("supervisor stats not written: %s", exc)
            self._redis = None

    # -- children ---------------------------------------------------------------------
    def _start(self, child: ChildState) -> None:
        handle = Path(child.log).open("ab")  # noqa: SIM115 - handed to the child
        handle.write(
            f"\n=== {time.strftime('%Y-%m-%dT%H:%M:%S')} botlib {' '.join(child.argv)}\n".encode()
        )
        handle.flush()
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "botlib", *child.argv],
                stdin=subprocess.DEVNULL,
                stdout=handle,
                stderr=subprocess.STDOUT,
                env=env,
            )
        finally:
            handle.close()
        self._procs[child.name] = proc
        child.pid, child.started_at = proc.pid, time.time()
        child.status, child.exit_code, child.next_start = "running", None, None
        log.info("%s started (pid %d)", child.name, proc.pid)

    def _reap(self, child: ChildState) -> None:
        proc = self._procs.get(child.name)
        if proc is None or proc.poll() is None:
            return
        del self._procs[child.name]
        child.exit_code = proc.returncode
        ran = time.time() - (child.started_at or time.time())
        if child.restart == "on-failure" and proc.returncode == 0:
            child.status = "exited"
            log.info("%s finished", child.name)
            return
        if ran >= self.healthy_after_s:
            self._failures[child.name] = 0
        failures = self._failures.get(child.name, 0)
        delay = min(self.backoff_start_s * 2**failures, self.backoff_max_s)
        self._failures[child.name] = failures + 1
        child.status, child.next_start = "backoff", time.time() + delay
        log.warning(
            "%s exited with %s after %.1f s; restarting in %.1f s",
            child.name,
            proc.returncode,
            ran,
            delay,
        )

    def tick(self) -> bool:
        """Reap, restart what is due; True when the state changed."""
        changed = False
        now = time.time()
        for child in self.state.children:
            before = (child.status, child.pid)
            if child.status == "running":
                self._reap(child)
            elif child.status == "backoff" and child.next_start and now >= child.next_start:
                child.restarts += 1
                self._start(child)
                self._report(child, restarted=True)
            if (child.status, child.pid) != before:
                changed = True
                if child.status != "running":
                    self._report(child)
        return changed

    def run(self) -> None:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        for child in self.state.children:
            self._start(child)
            self._report(child)
        _write_state(self.state)
        while not self._stopping:
            if self.tick():
                _write_state(self.state)
            time.sleep(0.1)
        self.shutdown()

    def _on_signal(self, *_: Any) -> None:
        self._stopping = True

    def shutdown(self) -> None:
        """SIGTERM every child, SIGKILL what is left after ``grace_s``."""
        for proc in self._procs.values():
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.grace_s
        for proc in self._procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(max(0.0, deadline - time.monotonic()))
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for child in self.state.children:
            child.status = "stopped"
            self._report(child)
        _write_state(self.state)


def stop_all(*, wait_s: float = 30.0) -> UpState | None:
    """Stop what ``botlib up`` started: the supervisor (which stops its children),
    then its process group, then Redis if ``up`` started it. Returns the state it
    stopped, or None when nothing was running."""
    state = read_state()
    if state is None:
        return None
    if alive(state.pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(state.pid, signal.SIGTERM)
        deadline = time.monotonic() + wait_s
        while alive(state.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
    # the children are in the supervisor's process group: nothing of it may survive
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(state.pid, signal.SIGKILL)
    for child in state.children:
        if child.pid and alive(child.pid) and _in_group(child.pid, state.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signal.SIGKILL)
    if state.redis_started:
        from botlib.settings import get_settings
        from botlib.transport import RedisServer

        settings = get_settings()
        RedisServer(port=state.redis_port or 6379, data_dir=settings.redis_data_dir).stop()
    state_path().unlink(missing_ok=True)
    return state


def _in_group(pid: int, group: int) -> bool:
    try:
        return os.getpgid(pid) == group
    except ProcessLookupError:
        return False


def main(argv: list[str] | None = None) -> None:
    """The supervisor process itself: ``python -m botlib.supervisor SPEC.json``."""
    args = argv if argv is not None else sys.argv[1:]
    spec = json.loads(Path(args[0]).read_text())
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    state = UpState(
        pid=os.getpid(),
        started_at=time.time(),
        redis_url_host=spec["redis_url_host"],
        redis_started=spec["redis_started"],
        redis_port=spec.get("redis_port"),
    )
    children = [ChildSpec(**c) for c in spec["children"]]
    Supervisor(state, children, logs_dir=Path(spec["logs_dir"]), **spec.get("tuning", {})).run()


if __name__ == "__main__":
    main()
