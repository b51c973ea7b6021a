from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from botlib.data import DataError, import_ohlcv, load_ohlcv
from botlib.settings import Settings
from tests.conftest import synthetic_candles


def test_reference_dataset_matches_its_readme(btc_1h: pd.DataFrame) -> None:
    frame, report = load_ohlcv("BTC/USDT", "1h", with_report=True)
    assert len(frame) == 40_193
    assert frame.index[0] == pd.Timestamp("2021-06-01T00:00Z")
    assert frame.index[-1] == pd.Timestamp("2025-12-31T23:00Z")
    assert [g.missing for g in report.gaps] == [4, 2, 1]
    assert report.zero_volume == 1
    assert frame["low"].min() == 15_476.00
    assert frame["high"].max() == 126_199.63


def test_window_is_half_open() -> None:
    frame = load_ohlcv("BTC/USDT", "5m", start="2025-10-02", end="2025-10-03")
    assert len(frame) == 288
    assert frame.index[0] == pd.Timestamp("2025-10-02T00:00Z")
    assert frame.index[-1] == pd.Timestamp("2025-10-02T23:55Z")


def test_ffill_policy_fills_reference_gaps() -> None:
    frame = load_ohlcv("BTC/USDT", "1h", gaps="ffill")
    assert len(frame) == 40_200


def test_unknown_symbol_lists_what_exists() -> None:
    with pytest.raises(DataError, match=r"no candles for ETH/USDT 1h.*BTC/USDT 1h"):
        load_ohlcv("ETH/USDT", "1h")


@pytest.mark.parametrize("timeframe", ["1x", "hour", ""])
def test_unknown_timeframe(timeframe: str) -> None:
    with pytest.raises(DataError, match="unknown-timeframe"):
        load_ohlcv("BTC/USDT", timeframe)


def test_bad_symbol_form() -> None:
    with pytest.raises(DataError, match="BASE/QUOTE"):
        load_ohlcv("BTCUSDT", "1h")


def _write_csv(path: Path, frame: pd.DataFrame) -> Path:
    out = frame.reset_index()
    out["timestamp"] = out["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    out.to_csv(path, index=False)
    return path


def test_import_csv_roundtrip(tmp_path: Path, isolated_settings: Settings) -> None:
    source = synthetic_candles(100)
    path, report = import_ohlcv(_write_csv(tmp_path / "mine.csv", source), "ABC/USDT", "1h")
    assert path.is_relative_to(isolated_settings.data_dir) and report.rows == 100
    loaded = load_ohlcv("ABC/USDT", "1h", exchange="local")
    pd.testing.assert_frame_equal(
        loaded, source.set_axis(source.index.as_unit("ns")), check_freq=False, check_exact=False
    )


def test_import_parquet_with_epoch_ms(tmp_path: Path) -> None:
    source = synthetic_candles(50)
    raw = source.reset_index()
    raw["time"] = raw.pop("timestamp").astype("int64") // 10**6
    raw.to_parquet(tmp_path / "mine.parquet")
    import_ohlcv(tmp_path / "mine.parquet", "ABC/USDT", "1h", exchange="mine")
    loaded = load_ohlcv("ABC/USDT", "1h", exchange="mine")
    assert loaded.index.equals(source.index.as_unit("ns"))


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda f: pd.concat([f.iloc[:30], f.iloc[29:]]), "duplicate-timestamps"),
        (
            lambda f: f.assign(close=f["close"].where(f.index != f.index[5], -3.0)),
            "non-positive-price",
        ),
        (lambda f: f.drop(columns=["high"]), "missing-columns"),
    ],
)
def test_bad_csv_fails_and_writes_nothing(
    tmp_path: Path, isolated_settings: Settings, mutate: object, expected: str
) -> None:
    frame = mutate(synthetic_candles(60))  # type: ignore[operator]
    with pytest.raises(DataError, match=expected):
        import_ohlcv(_write_csv(tmp_path / "bad.csv", frame), "ABC/USDT", "1h")
    cache = isolated_settings.data_dir
    assert not cache.exists() or not any(p.is_file() for p in cache.rglob("*"))


def test_unknown_file_format(tmp_path: Path) -> None:
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(DataError, match="unknown-format"):
        import_ohlcv(tmp_path / "x.json", "ABC/USDT", "1h")


def test_one_lookup_order_and_a_source_to_choose(
    tmp_path: Path, isolated_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """issue 16: reference, then imported (local), then the configured exchange's
    downloads, then other stores; the first wins and says which others hold it."""
    from botlib.data import candle_sources, describe_source
    from botlib.settings import get_settings

    a, b = synthetic_candles(60), synthetic_candles(80)
    import_ohlcv(_write_csv(tmp_path / "a.csv", a), "ABC/USDT", "1h", exchange="kraken")
    import_ohlcv(_write_csv(tmp_path / "b.csv", b), "ABC/USDT", "1h")  # local
    import_ohlcv(_write_csv(tmp_path / "c.csv", b), "ABC/USDT", "1h", exchange="binance")
    assert [s for s, _ in candle_sources("ABC/USDT", "1h")] == ["local", "binance", "kraken"]
    first = load_ohlcv("ABC/USDT", "1h")
    assert len(first) == 80 and first.attrs["source_name"] == "local"
    assert first.attrs["also_in"] == ["binance", "kraken"]
    assert "source 'local' (also in 'binance', 'kraken': choose with --source)" in (
        describe_source(first)
    )
    assert len(load_ohlcv("ABC/USDT", "1h", source="kraken")) == 60
    assert load_ohlcv("BTC/USDT", "1h", end="2021-07-01").attrs["source_name"] == "reference"
    # a default source for every command (notebooks and pipelines too)
    monkeypatch.setenv("BOTLIB_DATA_SOURCE", "kraken")
    get_settings.cache_clear()
    assert len(load_ohlcv("ABC/USDT", "1h")) == 60
    monkeypatch.delenv("BOTLIB_DATA_SOURCE")
    get_settings.cache_clear()
    # nothing there: what exists is listed; a hint only when it differs from the input
    with pytest.raises(DataError) as err:
        load_ohlcv("ABC/USDT", "4h")
    message = str(err.value)
    assert "available:" in message and "ABC/USDT 1h (local)" in message
    assert "did you mean 'ABC/USDT 4h'" not in message and "did you mean 'ABC/USDT 1h'" in message
    with pytest.raises(DataError, match="in source 'bitstamp'; it is in 'local', 'binance'"):
        load_ohlcv("ABC/USDT", "1h", source="bitstamp")


def test_a_bad_setting_is_one_line() -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "botlib", "data", "info"],
        env={"PATH": "/usr/bin:/bin", "BOTLIB_FEE": "lots", "BOTLIB_DATA_SOURCE": "a/b"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "BOTLIB_FEE='lots'" in lines[0] and "BOTLIB_DATA_SOURCE='a/b'" in lines[0]
