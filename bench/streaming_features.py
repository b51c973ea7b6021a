"""The live step's features: one bar at a time (streaming state) against the window path.

    python bench/streaming_features.py [--bars 2000] [--window 1330]

The window path is what the signal loop did for every new bar before it streamed:
``feature_matrix`` over its bounded window with ``tail=1`` (finite-memory features read
only the rows they need, recursive ones run over the whole window). The streaming path
advances each feature's state by the new bar (``botlib.features.streaming``): compiled
(what the loop runs for built-in features) and in its plain-Python forms (the reference
the compiled one is tested against, and what a spec with a plugin's feature runs). Same
bars, same process; per-bar medians and p99 in microseconds, and the ratios of the
medians. The rows are compared too: equal bit for bit is printed as "identical".
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from botlib.data import load_ohlcv
from botlib.features import DEFAULT_SPEC, feature_matrix
from botlib.features.streaming import StreamingFeatures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, default=2000)
    parser.add_argument("--window", type=int, default=1330)
    args = parser.parse_args()
    candles = load_ohlcv("BTC/USDT", "1h").iloc[-(args.window + args.bars) :]
    stream = StreamingFeatures(DEFAULT_SPEC)
    python = StreamingFeatures(DEFAULT_SPEC, compiled=False)
    stream.seed(candles.iloc[: args.window])
    python.seed(candles.iloc[: args.window])
    records = candles.iloc[args.window :].to_dict("records")
    window_us, stream_us, python_us, same, same_python = [], [], [], 0, 0
    for i, bar in enumerate(records):
        end = args.window + i + 1
        t0 = time.perf_counter()
        row_w = feature_matrix(candles.iloc[end - args.window : end], DEFAULT_SPEC, tail=1)[0][-1]
        t1 = time.perf_counter()
        row_s = stream.update(bar)
        t2 = time.perf_counter()
        row_p = python.update(bar)
        t3 = time.perf_counter()
        window_us.append((t1 - t0) * 1e6)
        stream_us.append((t2 - t1) * 1e6)
        python_us.append((t3 - t2) * 1e6)
        same += bool(np.array_equal(row_w, row_s, equal_nan=True))
        same_python += bool(np.array_equal(row_p, row_s, equal_nan=True))
    print(f"{args.bars} bars after a {args.window}-bar window, default feature set "
          f"({len(stream.columns)} columns)")  # fmt: skip
    rows = (("window path (baseline)", window_us), ("streaming, Python forms", python_us),
            ("streaming, compiled", stream_us))  # fmt: skip
    for name, xs in rows:
        p99 = float(np.percentile(xs, 99))
        ratio = statistics.median(window_us) / statistics.median(xs)
        print(f"  {name:<24} p50 {statistics.median(xs):8.1f} us   p99 {p99:8.1f} us"
              f"   {ratio:6.2f}x the window path")  # fmt: skip
    print(
        f"  compiled rows identical to the Python forms': {same_python}/{len(records)}; "
        f"to the window path's: {same}/{len(records)} (the window path restarts "
        "recursive features at the window's start, the stream continues them)"
    )


if __name__ == "__main__":
    main()
