"""Long commands (train, optimize, backtest), each in a process of its own.

At most ``workers`` run at once; the rest wait in order. One process per command
(spawned: TensorFlow and fork do not mix) means a command that runs past its time
limit is killed and answered ``timeout``, and a process killed from outside — the
kernel's out-of-memory killer, an operator — is answered with an error naming the
signal, while the next command simply gets a fresh process. A process pool cannot do
either: one dead worker breaks the whole pool.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import signal
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from botlib.bridge import _work

__all__ = ["Finished", "Job", "Jobs"]


@dataclass
class Job:
    """One long command; ``token`` is the caller's (what to answer when it ends)."""

    name: str
    payload: dict[str, Any]
    token: Any
    time_limit_s: float
    process: Any = None
    conn: Any = None
    started: float | None = None


@dataclass(frozen=True)
class Finished:
    job: Job
    #: ``ok`` (``value`` = the result), ``error`` or ``timeout`` (``value`` = the reason)
    outcome: str
    value: Any


@dataclass
class Jobs:
    workers: int
    experiment: str
    running: list[Job] = field(default_factory=list)
    waiting: deque[Job] = field(default_factory=deque)

    def __post_init__(self) -> None:
        self._context = multiprocessing.get_context("spawn")

    def __len__(self) -> int:
        return len(self.running) + len(self.waiting)

    def submit(self, job: Job) -> int:
        """Queue ``job``; returns how many are ahead of it (0: it starts now)."""
        ahead = max(0, len(self) - self.workers + 1)
        self.waiting.append(job)
        self._fill()
        return ahead

    def _fill(self) -> None:
        while self.waiting and len(self.running) < self.workers:
            job = self.waiting.popleft()
            parent, child = self._context.Pipe(duplex=False)
            job.process = self._context.Process(
                target=_work.run_job,
                args=(job.name, job.payload, self.experiment, child),
                name=f"botlib-{job.name}",
                daemon=True,
            )
            job.process.start()
            child.close()
            job.conn, job.started = parent, time.monotonic()
            self.running.append(job)

    def poll(self) -> list[Finished]:
        """Jobs that ended since the last call (and start the next waiting ones)."""
        done: list[Finished] = []
        now = time.monotonic()
        for job in list(self.running):
            finished = self._check(job, now)
            if finished is not None:
                self.running.remove(job)
                with contextlib.suppress(OSError):
                    job.conn.close()
                done.append(finished)
        if done:
            self._fill()
        return done

    def _check(self, job: Job, now: float) -> Finished | None:
        message = None
        with contextlib.suppress(EOFError, OSError):
            if job.conn.poll():
                message = job.conn.recv()
        if message is not None:
            job.process.join(10)
            return Finished(job, message[0], message[1])
        if job.process.is_alive():
            if now - (job.started or now) > job.time_limit_s:
                self._kill(job)
                return Finished(
                    job,
                    "timeout",
                    f"{job.name} ran past its time limit of {job.time_limit_s:g} s and was stopped",
                )
            return None
        job.process.join()
        code = job.process.exitcode
        if code is not None and code < 0:
            try:
                what = signal.Signals(-code).name
            except ValueError:
                what = f"signal {-code}"
            why = f"the worker process was killed by {what}"
            if -code == signal.SIGKILL:
                why += " (out of memory?)"
        else:
            why = f"the worker process exited with code {code} before answering"
        return Finished(job, "error", why)

    def _kill(self, job: Job) -> None:
        job.process.kill()
        job.process.join(10)

    def shutdown(self, *, wait: bool) -> list[Finished]:
        """Stop taking work; with ``wait`` let the running ones finish (answered),
        otherwise kill them. Waiting jobs are returned as not run."""
        dropped = [Finished(j, "error", "the bridge stopped before it ran") for j in self.waiting]
        self.waiting.clear()
        finished: list[Finished] = []
        while self.running:
            if not wait:
                for job in self.running:
                    self._kill(job)
            finished.extend(self.poll())
            time.sleep(0.05)
        return finished + dropped
