"""Model streams (issue 17 §2): a model advanced one bar at a time gives the outputs
``predict`` gives over the same history — the same bits, since the live step and a
backtest share the network's fixed-size batches — and its state, through JSON,
continues in another object (another process) exactly where it stopped."""

from __future__ import annotations

import json

import numpy as np
import pytest

from botlib.models import create_model
from tests.conftest import TINY, Windows


@pytest.mark.parametrize("name", ["lstm", "gru", "transformer", "dqn", "ppo"])
def test_a_stream_is_predict_bar_by_bar_and_survives_a_restart(name: str, windows: Windows) -> None:
    model = create_model(name, **TINY[name])
    model.fit(windows.train, windows.valid)
    candles = windows.all.iloc[1_500:]  # history from mid-training on, then unseen bars
    expected = model.predict(candles).to_numpy()
    stream = model.stream()
    assert stream is not None
    seeded = 300
    stream.seed(candles.iloc[:seeded])
    bars = candles.iloc[seeded:].to_dict("records")
    half = len(bars) // 2
    rows = [stream.step(b) for b in bars[:half]]
    # a restart: the state through JSON into a fresh stream
    again = model.stream()
    assert again is not None
    again.restore(json.loads(json.dumps(stream.state())))
    rest = bars[half:]
    rows += list(again.steps(rest[:37]))  # a backlog read at once: one batched call
    rows += [again.step(b) for b in rest[37:]]
    got = np.vstack(rows)
    assert np.isfinite(got).any()
    assert np.array_equal(got, expected[seeded:], equal_nan=True), (
        name,
        np.nanmax(np.abs(got - expected[seeded:])),
    )


def test_a_single_window_gives_the_batched_bits(windows: Windows) -> None:
    """The network alone: one window per call equals the same window among many."""
    model = create_model("gru", **TINY["gru"])
    model.fit(windows.train, windows.valid)
    x, _ = model._windows(model._scaled_features(windows.test))
    together = model._run(x)
    alone = np.concatenate([model._run(x[i : i + 1]) for i in range(len(x) - 50, len(x))])
    assert np.array_equal(together[-50:], alone)


def test_models_without_an_incremental_form_say_so(trained_rules: list) -> None:
    from botlib.models import load_model

    assert load_model(trained_rules[0]).stream() is None  # rules: the window path


def test_recent_rows_are_the_last_rows_appended() -> None:
    """``RecentRows`` (the rows the loop scores for drift) holds what a bounded deque
    of the same rows holds, in order, across its internal moves and a change of size."""
    from collections import deque

    from botlib.models.base import RecentRows

    rng = np.random.default_rng(3)
    for maxlen in (1, 2, 5, 64):
        recent, kept = RecentRows(maxlen), deque[np.ndarray](maxlen=maxlen)
        assert len(recent) == 0 and recent.matrix().size == 0
        for i in range(5 * maxlen + 7):
            row = rng.random(4)
            recent.append(row)
            kept.append(row)
            assert len(recent) == len(kept)
            assert np.array_equal(recent.matrix(), np.vstack(kept)), (maxlen, i)
        assert np.array_equal(RecentRows(maxlen + 3, recent).matrix(), np.vstack(kept))
        assert np.array_equal(RecentRows(1, recent).matrix(), np.vstack(kept)[-1:])
