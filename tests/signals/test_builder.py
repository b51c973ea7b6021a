from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest

from botlib.features import indicators as ind
from botlib.signals import SignalConfig, _builder, build_signal_frame, signal_records
from tests.conftest import synthetic_candles

DESIGN_SIGNAL_FIELDS = {
    "id",
    "model_id",
    "bot_id",
    "symbol",
    "signal_type",
    "signal_strength",
    "confidence",
    "predicted_price",
    "predicted_direction",
    "predicted_volatility",
    "risk_score",
    "expected_return",
    "stop_loss",
    "take_profit",
    "position_size",
    "reasoning",
    "metadata",
    "created_at",
    "expires_at",
    "executed_at",
    "status",
}


@pytest.fixture
def c() -> pd.DataFrame:
    return synthetic_candles(200, seed=4)


def _outputs(c: pd.DataFrame, **cols: object) -> pd.DataFrame:
    return pd.DataFrame(cols, index=c.index, dtype="float64")


def test_position_model_entries_exits_and_stops(c: pd.DataFrame) -> None:
    target = np.zeros(len(c))
    target[50:80] = 1.0
    cfg = SignalConfig(stop_mult=2.0, take_mult=3.0, risk_per_trade=0.01, max_position=0.8)
    frame = build_signal_frame(_outputs(c, target=target), c, config=cfg)
    kinds = frame["signal_type"]
    assert kinds.iloc[50] == "buy" and kinds.iloc[80] == "close"
    assert set(kinds.iloc[51:80]) == {"hold"}
    atr = ind.atr(c, window=14).iloc[50]
    close = c["close"].iloc[50]
    assert frame["stop_loss"].iloc[50] == pytest.approx(close - 2 * atr)
    assert frame["take_profit"].iloc[50] == pytest.approx(close + 3 * atr)
    size = min(0.8, 0.01 / (2 * atr / close))
    assert frame["target"].iloc[50] == pytest.approx(size)
    assert frame["position_size"].iloc[60] == pytest.approx(size)  # fixed while held
    assert frame["target"].iloc[80] == 0.0
    assert frame["target"].drop(frame.index[[50, 80]]).isna().all()


def test_probabilities_long_only_sell_is_close(c: pd.DataFrame) -> None:
    up = np.full(len(c), 0.2)
    down = np.full(len(c), 0.2)
    up[40:60] = 0.7
    down[90:] = 0.7
    side = 1 - up - down
    frame = build_signal_frame(_outputs(c, p_up=up, p_down=down, p_sideways=side), c)
    assert frame["signal_type"].iloc[40] == "buy"
    assert frame["signal_type"].iloc[90] == "close"
    assert (frame["signal_type"].iloc[41:90] == "hold").all()  # forecasters keep positions
    assert frame["predicted_direction"].iloc[45] == "up"
    assert frame["predicted_direction"].iloc[70] == "sideways"
    assert frame["confidence"].iloc[45] == pytest.approx(0.7)
    shorting = build_signal_frame(
        _outputs(c, p_up=up, p_down=down, p_sideways=side), c, config=SignalConfig(allow_short=True)
    )
    assert shorting["signal_type"].iloc[90] == "sell" and shorting["target"].iloc[90] < 0
    assert shorting["stop_loss"].iloc[90] > c["close"].iloc[90]


def test_expected_return_and_volatility_scale_the_signal(c: pd.DataFrame) -> None:
    vol = np.full(len(c), 0.01)
    er = np.full(len(c), 0.0)
    er[30] = 0.02
    frame = build_signal_frame(_outputs(c, expected_return=er, volatility=vol), c, horizon=4)
    assert frame["score"].iloc[30] == pytest.approx(min(0.02 / (0.01 * 2), 1.0))
    close = c["close"].iloc[30]
    assert frame["predicted_price"].iloc[30] == pytest.approx(close * np.exp(0.02))
    # stop distance from the forecast volatility: 2 * close * sigma * sqrt(horizon)
    assert frame["stop_loss"].iloc[30] == pytest.approx(close - 2 * close * 0.01 * 2)
    only_vol = build_signal_frame(_outputs(c, volatility=vol), c)
    assert set(only_vol["signal_type"]) == {"hold"}


def test_previous_target_is_respected(c: pd.DataFrame) -> None:
    target = np.ones(len(c))
    fresh = build_signal_frame(_outputs(c, target=target), c)
    held = build_signal_frame(_outputs(c, target=target), c, previous_target=0.5)
    assert fresh["signal_type"].iloc[0] == "buy"
    assert (held["signal_type"] == "hold").all()


def test_records_carry_every_design_field(c: pd.DataFrame) -> None:
    target = np.zeros(len(c))
    target[20:] = 1.0
    frame = build_signal_frame(_outputs(c, target=target), c)
    records = signal_records(
        frame.iloc[19:22],
        model_id="ga_rules/3",
        symbol="BTC/USDT",
        bar=timedelta(hours=1),
        horizon=1,
    )
    assert [r.signal_type for r in records] == ["hold", "buy", "hold"]
    data = records[1].model_dump(mode="json")
    assert set(data) == DESIGN_SIGNAL_FIELDS
    assert data["status"] == "pending" and data["stop_loss"] < data["take_profit"]
    # the backend's reasoning column is JSONB: an object, with a line for people
    assert data["reasoning"]["summary"].startswith(data["model_id"])
    assert data["reasoning"]["stop_loss"] == data["stop_loss"]
    assert records[1].created_at == c.index[20].to_pydatetime() + timedelta(hours=1)
    again = signal_records(
        frame.iloc[20:21],
        model_id="ga_rules/3",
        symbol="BTC/USDT",
        bar=timedelta(hours=1),
        horizon=1,
    )
    assert again[0].id == records[1].id  # idempotent ids


def test_bad_config() -> None:
    with pytest.raises(ValueError, match="max_position"):
        SignalConfig(max_position=2.0)


def test_realized_volatility_from_a_start_row_is_bit_identical() -> None:
    """The live loop asks only for its new rows; they must be the very same numbers."""
    from botlib.signals._builder import _realized_volatility

    rng = np.random.default_rng(7)
    for _ in range(200):
        n = int(rng.integers(3, 400))
        close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
        window = int(rng.integers(3, 40))
        full = _realized_volatility(close, window)
        # any start, and the last few rows (the live step's own arithmetic)
        for start in (int(rng.integers(0, n)), n - 1, max(n - 4, 0)):
            tail = _realized_volatility(close, window, start)
            assert np.isnan(tail[:start]).all()
            np.testing.assert_array_equal(tail[start:], full[start:])


# -- the compiled builder against the NumPy one ------------------------------------------


def _reference(
    outputs: dict[str, np.ndarray],
    close: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    *,
    first: int,
    horizon: int,
    config: SignalConfig,
    previous_target: float,
    atr: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """The builder as NumPy expressions (what ``signal_arrays`` was before its rows were
    compiled): the oracle the compiled pass must equal bit for bit."""
    cfg = config
    n = len(close)
    h = max(int(horizon), 1)
    cols = set(outputs)

    def col(name: str) -> np.ndarray:
        return outputs[name] if name in cols else np.full(n, np.nan)

    realized = _builder._realized_volatility(close, cfg.vol_window, first)
    model_vol = col("volatility")
    sigma = np.where(np.isfinite(model_vol), model_vol, realized)
    move = sigma * math.sqrt(h)
    if "volatility" in cols:
        unit = close * move
    else:
        unit = ind.atr_values(high, low, close, cfg.atr_window) if atr is None else atr
        unit = np.where(np.isfinite(unit), unit, close * move)

    expected = col("expected_return")
    probs = {k: col(k) for k in ("p_up", "p_down", "p_sideways")}
    is_position_model = "target" in cols
    if is_position_model:
        score = np.clip(col("target"), -1, 1)
        confidence = np.abs(score)
    elif "score" in cols:
        score = np.clip(col("score"), -1, 1)
        confidence = np.abs(score)
    elif "p_up" in cols:
        score = probs["p_up"] - probs["p_down"]
        stacked = np.vstack([probs["p_up"], probs["p_down"], probs["p_sideways"]])
        confidence = np.nanmax(np.where(np.isfinite(stacked), stacked, -np.inf), axis=0)
    elif "expected_return" in cols:
        with np.errstate(divide="ignore", invalid="ignore"):
            score = np.clip(expected / move, -1, 1)
        confidence = np.abs(score)
    else:
        score = np.where(np.isfinite(sigma), 0.0, np.nan)
        confidence = np.zeros(n)

    thr = cfg.entry_threshold
    stop_dist = cfg.stop_mult * unit
    take_dist = cfg.take_mult * unit
    with np.errstate(divide="ignore", invalid="ignore"):
        stop_frac = stop_dist / close
        size = np.where(
            stop_frac > 0,
            np.minimum(cfg.max_position, cfg.risk_per_trade / stop_frac),
            cfg.max_position,
        )
    size = np.where(np.isfinite(size), size, cfg.max_position)

    target = np.full(n, np.nan)
    kind = np.zeros(n, dtype=np.int8)  # index into _TYPES
    stop = np.full(n, np.nan)
    take = np.full(n, np.nan)
    held = np.full(n, np.nan)
    current = float(previous_target)
    held[:first] = current
    for t in range(first, n):
        s = score[t]
        if not np.isfinite(s) or not np.isfinite(close[t]):
            held[t] = current
            continue
        if abs(s) >= thr:
            want = 1.0 if s > 0 else -1.0
        elif is_position_model:
            want = 0.0
        else:
            want = math.copysign(1.0, current) if current != 0 else 0.0
        if want < 0 and not cfg.allow_short:
            want = 0.0
        side = 0.0 if current == 0 else math.copysign(1.0, current)
        if want != side:
            new = want * float(size[t])
            target[t] = new
            kind[t] = 1 if new > 0 else (2 if new < 0 else 3)
            if new != 0:
                if cfg.stop_mult > 0 and np.isfinite(stop_dist[t]):
                    stop[t] = close[t] - want * stop_dist[t]
                if cfg.take_mult > 0 and np.isfinite(take_dist[t]):
                    take[t] = close[t] + want * take_dist[t]
            current = new
        held[t] = current

    # the frame holds the rows from ``start`` on (the ones that carry signals)
    rows = slice(first, n)
    sc = score[rows]
    direction = np.where(
        sc >= max(thr, 1e-12), "up", np.where(sc <= -max(thr, 1e-12), "down", "sideways")
    )
    if "p_up" in cols and not is_position_model:
        stacked = np.vstack([probs["p_up"], probs["p_down"], probs["p_sideways"]])[:, rows]
        best = np.argmax(np.where(np.isfinite(stacked), stacked, -np.inf), axis=0)
        direction = np.array(["up", "down", "sideways"])[best]
    with np.errstate(invalid="ignore"):
        risk = np.clip(stop_frac[rows] / 0.05, 0.0, 1.0)
    return {
        "score": sc,
        "signal_type": _builder._TYPES[kind[rows]],
        "signal_strength": np.clip(np.nan_to_num(np.abs(sc)), 0, 1),
        "confidence": np.clip(np.nan_to_num(confidence[rows]), 0, 1),
        "predicted_direction": direction,
        "predicted_price": close[rows] * np.exp(expected[rows]),
        "predicted_volatility": sigma[rows],
        "expected_return": expected[rows],
        "risk_score": np.nan_to_num(risk, nan=1.0),
        "stop_loss": stop[rows],
        "take_profit": take[rows],
        "position_size": np.clip(np.abs(held[rows]), 0, 1),
        "target": target[rows],
    }


def _random_case(rng: np.random.Generator, trial: int) -> tuple[dict[str, Any], dict[str, Any]]:
    n = int(rng.integers(5, 80))
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    high = close * (1 + abs(rng.normal(0, 0.005, n)))
    low = close * (1 - abs(rng.normal(0, 0.005, n)))
    kinds = [["expected_return"], ["volatility"], ["p_up", "p_down", "p_sideways"], ["target"],
             ["score"], ["expected_return", "volatility"], [],
             ["score", "p_up", "p_down", "p_sideways"],
             ["target", "p_up", "p_down", "p_sideways"]]  # fmt: skip
    outputs = {}
    for c in kinds[trial % len(kinds)]:
        if c in ("target", "score"):
            v = rng.normal(0, 0.7, n)
        elif c == "expected_return":
            v = rng.normal(0, 0.01, n)
        elif c == "volatility":
            v = abs(rng.normal(0.01, 0.005, n))
            v[rng.integers(0, n)] = 0.0
        else:
            v = rng.uniform(0, 1, n)
        v[rng.uniform(size=n) < 0.15] = np.nan
        outputs[c] = v
    cfg = SignalConfig(
        entry_threshold=float(rng.choice([0.0, 0.1, 0.3])), allow_short=bool(trial % 2),
        stop_mult=float(rng.choice([0.0, 2.0])), take_mult=float(rng.choice([0.0, 3.0])),
    )  # fmt: skip
    atr = None if trial % 3 else np.where(rng.uniform(size=n) < 0.2, np.nan, rng.uniform(0.5, 2, n))
    kw = {"first": int(rng.integers(0, n)), "horizon": int(rng.integers(1, 5)), "config": cfg,
          "previous_target": float(rng.choice([0.0, 0.5, -0.5])), "atr": atr}  # fmt: skip
    return {"outputs": outputs, "close": close, "high": high, "low": low}, kw


def test_the_compiled_builder_is_the_numpy_builder_bit_for_bit() -> None:
    from botlib.signals._builder import signal_arrays

    rng = np.random.default_rng(3)
    for trial in range(300):
        args, kw = _random_case(rng, trial)
        got = signal_arrays(*args.values(), **kw)
        want = _reference(*args.values(), **kw)
        assert list(got) == list(want)
        for name, expected in want.items():
            assert got[name].dtype == expected.dtype, (trial, name)
            if expected.dtype.kind == "U":
                assert np.array_equal(got[name], expected), (trial, name)
            else:
                np.testing.assert_array_equal(got[name], expected, err_msg=f"{trial} {name}")
