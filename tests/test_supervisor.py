"""The supervisor of `botlib up`, in-process: restart policy, backoff, shutdown.
(`tests/e2e/test_up.py` runs it as deployed.)"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from botlib.supervisor import ChildSpec, Supervisor, UpState, alive


def _supervisor(tmp_path: Path, children: list[ChildSpec], **kw: float) -> Supervisor:
    state = UpState(pid=0, started_at=time.time(), redis_url_host="127.0.0.1:1",
                    redis_started=False, redis_port=1)  # fmt: skip
    return Supervisor(state, children, logs_dir=tmp_path / "logs", **kw)


def _run_until(sup: Supervisor, done: object, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():  # type: ignore[operator]
        assert time.monotonic() < deadline, [c.status for c in sup.state.children]
        sup.tick()
        time.sleep(0.05)


@pytest.fixture(autouse=True)
def _no_redis(monkeypatch: pytest.MonkeyPatch) -> None:
    # nothing listens there: the supervisor's Redis reporting is best effort
    monkeypatch.setenv("BOTLIB_REDIS_URL", "redis://127.0.0.1:1/0")


def test_a_failing_service_is_restarted_with_doubling_backoff(tmp_path: Path) -> None:
    sup = _supervisor(
        tmp_path, [ChildSpec("broken", ["no-such-command"])], backoff_start_s=0.2,
        backoff_max_s=0.8,
    )  # fmt: skip
    for child in sup.state.children:
        sup._start(child)
    child = sup.state.children[0]
    delays, codes = [], []
    for restarts in range(1, 4):
        _run_until(sup, lambda: child.status == "backoff")
        delays.append(round((child.next_start or 0) - time.time(), 1))
        codes.append(child.exit_code)
        _run_until(sup, lambda n=restarts: child.restarts == n and child.status == "running")
    assert codes == [2, 2, 2]  # the CLI's usage error
    assert delays[0] <= 0.2 and delays[1] <= 0.4 and 0.4 < delays[2] <= 0.8, delays
    assert "No such command" in Path(child.log).read_text()
    sup.shutdown()
    assert child.status == "stopped" and not alive(child.pid)


def test_a_one_shot_service_that_succeeds_is_not_restarted(tmp_path: Path) -> None:
    sup = _supervisor(tmp_path, [ChildSpec("once", ["--help"], restart="on-failure")])
    child = sup.state.children[0]
    sup._start(child)
    _run_until(sup, lambda: child.status == "exited")
    time.sleep(0.3)
    sup.tick()
    assert child.restarts == 0 and child.exit_code == 0


def test_shutdown_stops_a_running_service(tmp_path: Path) -> None:
    sup = _supervisor(tmp_path, [ChildSpec("long", ["feed", "ccxt", "--poll", "60"])],
                      grace_s=5.0)  # fmt: skip
    child = sup.state.children[0]
    sup._start(child)
    time.sleep(0.5)
    assert alive(child.pid)
    sup.shutdown()
    assert not alive(child.pid) and child.status == "stopped"
