"""The registry watcher against an authenticated MLflow server: alias set -> served.

    python bench/registry_watch.py [--switches 5]

Set-up: ``mlflow server --app-name basic-auth`` in a temporary folder (each request
pays its password check, as deployed), a redis-server, two LSTM versions trained into
the server by botlib (8 units, 8-bar windows, one epoch: speed, not skill). Each switch
moves ``@champion`` to the other version (``@previous`` cleared first, so every switch
goes through the gate), then runs one pass of the watcher, as its poll loop would right
after the change. Timed: from the alias set to the version's entry in Redis (what the
loop reads), and the whole pass (the registry's bookkeeping after the publish
included). Both cases run in this process, on the same server and versions:

* baseline: the gate downloads the version's artifacts itself, as ``botlib promote``
  does;
* fetched ahead: the watcher's background download of the newest and ``@previous``
  versions (kept only with the digest recorded at training).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

ADMIN, PASSWORD = "admin", "bench-admin-pw"


def _server(root: Path) -> tuple[subprocess.Popen[bytes], str]:
    from botlib.transport import free_port

    (root / "auth.ini").write_text(
        "[mlflow]\ndefault_permission = READ\n"
        f"database_uri = sqlite:///{root}/auth.db\nadmin_username = {ADMIN}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
    )
    port = free_port()
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(root),
        "MLFLOW_AUTH_CONFIG_PATH": str(root / "auth.ini"),
        "MLFLOW_AUTH_ADMIN_PASSWORD": PASSWORD,
        "MLFLOW_FLASK_SERVER_SECRET_KEY": "bench-" + os.urandom(8).hex(),
    }
    mlflow_bin = Path(sys.executable).with_name("mlflow")
    proc = subprocess.Popen(
        [str(mlflow_bin), "server", "--app-name", "basic-auth", "--host", "127.0.0.1",
         "--port", str(port), "--backend-store-uri", f"sqlite:///{root}/mlflow.db",
         "--artifacts-destination", str(root / "artifacts"), "--workers", "1"],
        env=env, stdout=(root / "server.log").open("w"), stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(url + "/health", timeout=2):
                return proc, url
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError("the MLflow server did not start") from None
            time.sleep(0.5)


def _switches(watcher: Any, r: Any, name: str, switches: int) -> list[tuple[float, float]]:
    """(alias set -> in Redis, whole pass) in seconds, per switch."""
    client = watcher.client
    out = []
    for i in range(switches + 1):  # the first switch warms the case up, untimed
        version = "2" if i % 2 == 0 else "1"
        if "previous" in (client.get_registered_model(name).aliases or {}):
            client.delete_registered_model_alias(name, "previous")
        watcher.fetch.settle()  # what the background had to fetch, it fetched
        seen: list[float] = []
        done = threading.Event()

        def sample(v: str = version, seen: list[float] = seen, done: Any = done) -> None:
            while not done.is_set():
                raw = r.hget("botlib:active_models", name)
                if raw and str(json.loads(raw)["version"]) == v:
                    seen.append(time.perf_counter())
                    return
                time.sleep(0.002)

        thread = threading.Thread(target=sample)
        thread.start()
        t0 = time.perf_counter()
        client.set_registered_model_alias(name, "champion", version)
        actions = watcher.poll()
        t1 = time.perf_counter()
        done.set()
        thread.join()
        if [a.action for a in actions] != ["published"] or not seen:
            raise RuntimeError(f"switch to v{version}: {actions}")
        if i:
            out.append((seen[0] - t0, t1 - t0))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--switches", type=int, default=5, help="timed switches per case")
    args = parser.parse_args()
    from _lab import throwaway_lab

    tmp, redis_server = throwaway_lab("botlib-bench-registry-")
    root = tmp / "mlflow-server"
    root.mkdir()
    proc, url = _server(root)
    try:
        os.environ.update(
            BOTLIB_MLFLOW_TRACKING_URI=url,
            BOTLIB_MLFLOW_TRACKING_USERNAME=ADMIN,
            BOTLIB_MLFLOW_TRACKING_PASSWORD=PASSWORD,
        )
        from botlib.settings import get_settings

        get_settings.cache_clear()
        import redis

        from botlib.promotion import GateConfig
        from botlib.registry_watch import FetchAhead, RegistryWatcher
        from botlib.tracking import configure
        from botlib.tracking.session import train_session
        from botlib.transport import connect

        configure("bench-registry")
        print("training two LSTM versions into the authenticated server ...", flush=True)
        for seed in (0, 1):
            session = train_session("lstm", start="2025-01-01", end="2025-04-01", seed=seed,
                                    params={"epochs": 1, "units": 8, "seq_len": 8})  # fmt: skip
        name = session.model_name
        r = redis.Redis.from_url(redis_server.url, decode_responses=True)
        gate = GateConfig(margin=-10.0, min_trades=0)

        class _Downloads(FetchAhead):
            """The gate downloads each version itself (nothing kept, nothing ahead)."""

            def files(self, name: str, version: str, recorded: str | None) -> None:
                return None

        rows = []
        for label, ahead in (("baseline: the gate downloads", False), ("fetched ahead", True)):
            watcher = RegistryWatcher(connect(), gate=gate, fetch_ahead=ahead)
            if not ahead:
                watcher.fetch = _Downloads()
            watcher.poll()  # the first look (fetches ahead what it will)
            rows.append((label, _switches(watcher, r, name, args.switches)))
            watcher.close()
            r.delete("botlib:active_models")
            r.incr("botlib:active_models:rev")
        base = statistics.median(t for t, _ in rows[0][1])
        print(f"\n@champion set -> entry in Redis, authenticated server, {args.switches} "
              "switches each (s)")  # fmt: skip
        print(f"{'case':<30} {'median':>8} {'max':>8} {'whole pass':>11} {'vs baseline':>12}")
        for label, times in rows:
            served = [t for t, _ in times]
            p50 = statistics.median(served)
            whole = statistics.median(w for _, w in times)
            print(f"{label:<30} {p50:>8.2f} {max(served):>8.2f} {whole:>11.2f} "
                  f"{base / p50:>11.1f}x")  # fmt: skip
        print("a deployed watcher adds up to one poll interval (2 s) before its pass")
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(30)
        redis_server.stop()


if __name__ == "__main__":
    main()
