"""Single-window inference latency through the MLflow pyfunc wrapper.

    python bench/inference.py [--calls 300]

For lstm, gru, transformer, dqn and ppo (tiny budgets: speed, not skill), each model is
trained on reference data, logged to a throw-away MLflow store, loaded back with
``mlflow.pyfunc.load_model(uri)``, and asked for the newest bar's outputs given just
enough history (``params={"last_only": True}``): features, window, network, outputs.
The agents are timed twice: replaying their policy over the window from a flat book,
and asked once from a held position (``position``, ``entry_price``: the live call).
The baseline, timed in the same process, is Keras' ``model.predict`` on one window of
the LSTM — what a naive loop would call once per bar.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import time
from collections.abc import Callable

import numpy as np

TINY = {
    "lstm": {"epochs": 1, "units": 32, "seq_len": 32},
    "gru": {"epochs": 1, "units": 32, "seq_len": 32, "horizon": 24},
    "transformer": {"epochs": 1, "units": 32, "seq_len": 32, "heads": 4},
    "dqn": {"timesteps": 256, "window": 16},
    "ppo": {"timesteps": 256, "window": 16},
}


def _times(fn: Callable[[], object], calls: int) -> list[float]:
    for _ in range(5):
        fn()
    out = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1000)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300, help="timed calls per model")
    args = parser.parse_args()
    logging.disable(logging.INFO)
    from _lab import scratch_dir

    store = scratch_dir("botlib-bench-inference-")
    os.environ["BOTLIB_MLFLOW_TRACKING_URI"] = f"sqlite:///{store}/mlflow.db"
    os.environ["BOTLIB_MLFLOW_ARTIFACTS_DIR"] = f"{store}/artifacts"

    import mlflow

    from botlib.data import load_ohlcv
    from botlib.models import create_model
    from botlib.tracking import configure, log_model

    configure("bench-inference")
    candles = load_ohlcv("BTC/USDT", "1h").iloc[-4_000:]
    train, valid = candles.iloc[:3_000], candles.iloc[3_000:3_500]
    rows = []
    baseline: list[float] | None = None
    for name, params in TINY.items():
        model = create_model(name, **params)
        model.fit(train, valid)
        with mlflow.start_run():
            log_model(model, registered_model_name=f"bench-{name}")
        pyfunc = mlflow.pyfunc.load_model(f"models:/bench-{name}/1")
        window = candles.iloc[-model.meta.required_history :]
        if name == "lstm":
            net = model.net  # type: ignore[attr-defined]
            x = np.zeros((1, params["seq_len"], net.input_shape[-1]), dtype="float32")
            baseline = _times(lambda net=net, x=x: net.predict(x, verbose=0), args.calls // 3)
        times = _times(
            lambda p=pyfunc, w=window: p.predict(w, params={"last_only": True}), args.calls
        )
        rows.append((name, times, len(window)))
        if name in ("dqn", "ppo"):  # the live call: one policy step from a held position
            held = {
                "last_only": True,
                "position": 1.0,
                "entry_price": float(window["close"].iloc[-5]),
            }
            times = _times(lambda p=pyfunc, w=window, h=held: p.predict(w, params=h), args.calls)
            rows.append((f"{name} (position)", times, len(window)))
    assert baseline is not None
    base = statistics.median(baseline)
    print(
        f"single-window latency, median of {args.calls} calls (ms); "
        f"baseline: keras model.predict on one LSTM window"
    )
    print(f"{'model':<28}{'bars in':>8}{'p50 ms':>9}{'p99 ms':>9}{'vs baseline':>13}")
    print(
        f"{'keras model.predict (base)':<28}{'-':>8}{base:>9.2f}"
        f"{np.percentile(baseline, 99):>9.2f}{1.0:>12.1f}x"
    )
    for name, times, bars in rows:
        p50 = statistics.median(times)
        print(
            f"{'pyfunc ' + name:<28}{bars:>8}{p50:>9.2f}{np.percentile(times, 99):>9.2f}"
            f"{base / p50:>12.1f}x"
        )


if __name__ == "__main__":
    main()
