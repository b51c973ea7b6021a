"""Named feature sets: which indicators, with which parameters, make a model's inputs.

A ``FeatureSpec`` is data (a name and a tuple of ``FeatureDef``), so it can be saved
with a model, compared, and hashed: ``spec.schema_hash`` changes whenever a feature,
a parameter or the output columns change, and the live loop refuses a model whose
hash it cannot reproduce.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from botlib.errors import ConfigError, unknown_name
from botlib.features import _kernels as _k
from botlib.features import indicators as ind

Bars = Mapping[str, np.ndarray]
Columns = dict[str, np.ndarray]
FeatureFn = Callable[..., Columns]


def _div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(a / b)


def _returns(b: Bars, *, periods: int = 1) -> Columns:
    ind._check_window(periods, "periods")
    return {f"ret_{periods}": b["close"] / _k.shift(b["close"], periods) - 1.0}


def _log_returns(b: Bars, *, periods: int = 1) -> Columns:
    ind._check_window(periods, "periods")
    return {f"logret_{periods}": ind.log_returns_values(b["close"], periods)}


def _sma_ratio(b: Bars, *, window: int = 20) -> Columns:
    ind._check_window(window)
    return {f"close_over_sma_{window}": b["close"] / _k.rolling_mean(b["close"], window) - 1.0}


def _ema_ratio(b: Bars, *, window: int = 20) -> Columns:
    ind._check_window(window)
    return {f"close_over_ema_{window}": b["close"] / ind.ema_values(b["close"], window) - 1.0}


def _rsi(b: Bars, *, window: int = 14) -> Columns:
    ind._check_window(window)
    return {f"rsi_{window}": ind.rsi_values(b["close"], window)}


def _macd_pct(b: Bars, *, fast: int = 12, slow: int = 26, signal: int = 9) -> Columns:
    for value, name in ((fast, "fast"), (slow, "slow"), (signal, "signal")):
        ind._check_window(value, name)
    line, sig, hist = ind.macd_values(b["close"], fast, slow, signal)
    c = b["close"]
    return {"macd_pct": line / c, "macd_signal_pct": sig / c, "macd_hist_pct": hist / c}


def _bb_position(b: Bars, *, window: int = 20, k: float = 2.0) -> Columns:
    ind._check_window(window)
    upper, mid, lower = ind.bollinger_values(b["close"], window, k)
    span = upper - lower
    pos = np.where(span == 0, 0.5, _div(b["close"] - lower, span))
    return {"bb_pos": pos, "bb_width": span / mid}


def _atr_pct(b: Bars, *, window: int = 14) -> Columns:
    ind._check_window(window)
    atr = ind.atr_values(b["high"], b["low"], b["close"], window)
    return {f"atr_pct_{window}": atr / b["close"]}


def _realized_volatility(b: Bars, *, window: int = 24) -> Columns:
    ind._check_window(window)
    return {f"rvol_{window}": ind.realized_volatility_values(b["close"], window)}


def _volume_zscore(b: Bars, *, window: int = 24) -> Columns:
    ind._check_window(window)
    return {f"vol_z_{window}": ind.volume_zscore_values(b["volume"], window)}


def _obv_slope(b: Bars, *, window: int = 24) -> Columns:
    """Change of OBV over ``window`` bars, in units of the window's mean volume."""
    ind._check_window(window)
    obv = ind.obv_values(b["close"], b["volume"])
    change = obv - _k.shift(obv, window)
    mean_vol = _k.rolling_mean(b["volume"], window)
    out = np.where(mean_vol > 0, _div(change, mean_vol * window), 0.0)
    out[np.isnan(mean_vol) | np.isnan(change)] = np.nan
    return {f"obv_slope_{window}": out}


def _close(b: Bars) -> Columns:
    """The close itself (a model scales it on its training split, like any feature)."""
    return {"close": np.array(b["close"], dtype="float64")}


def _volume(b: Bars) -> Columns:
    """The volume itself (scaled on the training split by the model)."""
    return {"volume": np.array(b["volume"], dtype="float64")}


#: Feature functions by name. Each maps the candle columns (NumPy arrays) to one or
#: more named columns; the public, pandas-level versions live in ``indicators``.
FEATURES: dict[str, FeatureFn] = {
    "close": _close,
    "volume": _volume,
    "returns": _returns,
    "log_returns": _log_returns,
    "sma_ratio": _sma_ratio,
    "ema_ratio": _ema_ratio,
    "rsi": _rsi,
    "macd": _macd_pct,
    "bollinger": _bb_position,
    "atr": _atr_pct,
    "realized_volatility": _realized_volatility,
    "volume_zscore": _volume_zscore,
    "obv_slope": _obv_slope,
}


#: Rows before a row that a finite-memory feature reads to compute it: its value there
#: depends on those rows alone (window by window, never a running sum), so computing
#: the last rows from a slice gives the very same bits. Recursive features (EMA, RSI,
#: MACD, ATR, OBV) are absent: they read every row before.
LOOKBACK: dict[str, Callable[..., int]] = {
    "close": lambda: 0,
    "volume": lambda: 0,
    "returns": lambda periods=1: periods,
    "log_returns": lambda periods=1: periods,
    "sma_ratio": lambda window=20: window - 1,
    "bollinger": lambda window=20, k=2.0: window - 1,
    "realized_volatility": lambda window=24: window,
    "volume_zscore": lambda window=24: window - 1,
}


def _known(name: str) -> None:
    """``name`` is a feature (built in, or registered by a plugin), else a hint."""
    if name not in FEATURES:
        from botlib.plugins import load_plugins

        load_plugins()
    if name not in FEATURES:
        raise unknown_name("feature", name, FEATURES)


@dataclass(frozen=True)
class FeatureDef:
    """One feature function and its keyword parameters."""

    name: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _known(self.name)


@dataclass(frozen=True)
class FeatureSpec:
    """A named, ordered set of features."""

    name: str
    features: tuple[FeatureDef, ...]
    version: int = 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "features": [{"name": f.name, "params": dict(f.params)} for f in self.features],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureSpec:
        return cls(
            name=str(data["name"]),
            version=int(data.get("version", 1)),
            features=tuple(
                FeatureDef(f["name"], dict(f.get("params", {}))) for f in data["features"]
            ),
        )

    @property
    def schema_hash(self) -> str:
        """Short, stable hash of the spec (names, parameters, version)."""
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    @property
    def warmup(self) -> int:
        """A safe upper bound on bars needed before every feature is defined."""
        longest = 1
        for f in self.features:
            numbers = [int(v) for v in f.params.values() if isinstance(v, int)]
            longest = max([longest, *numbers])
        return 3 * longest + 1


DEFAULT_SPEC = FeatureSpec(
    name="default",
    features=(
        FeatureDef("log_returns", {"periods": 1}),
        FeatureDef("log_returns", {"periods": 4}),
        FeatureDef("log_returns", {"periods": 24}),
        FeatureDef("sma_ratio", {"window": 20}),
        FeatureDef("sma_ratio", {"window": 100}),
        FeatureDef("ema_ratio", {"window": 50}),
        FeatureDef("rsi", {"window": 14}),
        FeatureDef("macd", {"fast": 12, "slow": 26, "signal": 9}),
        FeatureDef("bollinger", {"window": 20, "k": 2.0}),
        FeatureDef("atr", {"window": 14}),
        FeatureDef("realized_volatility", {"window": 24}),
        FeatureDef("volume_zscore", {"window": 24}),
        FeatureDef("obv_slope", {"window": 24}),
    ),
)

FEATURE_SETS: dict[str, FeatureSpec] = {DEFAULT_SPEC.name: DEFAULT_SPEC}
_BUILTIN = frozenset(FEATURES)


def register_feature(
    name: str, fn: FeatureFn, *, lookback: Callable[..., int] | None = None
) -> None:
    """Make ``fn`` the feature ``name``: ``fn(bars, **params)`` gets the candle columns
    as NumPy arrays (``open``, ``high``, ``low``, ``close``, ``volume``) and returns named
    columns of the same length, each value at ``t`` computed from rows ``<= t`` only
    (``botlib check leakage`` verifies it). ``lookback(**params)``, when given, says how
    many earlier rows a value reads, which lets the live loop compute only the newest
    rows. Re-registering a name replaces it (a model trained on the old one keeps its
    schema hash, and the live loop refuses it if the columns change)."""
    if name in _BUILTIN:
        raise ConfigError(f"feature {name!r} is built in; choose another name")
    FEATURES[name] = fn
    if lookback is not None:
        LOOKBACK[name] = lookback
    else:
        LOOKBACK.pop(name, None)


def register_feature_set(spec: FeatureSpec) -> None:
    """Make ``spec`` a named feature set (``get_feature_spec(spec.name)``)."""
    if spec.name == DEFAULT_SPEC.name:
        raise ConfigError("the default feature set cannot be replaced")
    FEATURE_SETS[spec.name] = spec


def _defaults(name: str) -> dict[str, Any]:
    """A feature's default parameters, written out (so the warm-up and the schema hash
    see them)."""
    import inspect

    _known(name)
    signature = inspect.signature(FEATURES[name])
    return {
        k: p.default for k, p in signature.parameters.items()
        if p.kind is inspect.Parameter.KEYWORD_ONLY and p.default is not inspect.Parameter.empty
    }  # fmt: skip


def get_feature_spec(name: str | list[str] | tuple[str, ...]) -> FeatureSpec:
    """A registered feature set by name (with a did-you-mean hint), or a list of
    feature names, each with its default parameters (the backend's
    ``trainingData.features``: ``["close", "volume", "rsi", "macd"]``)."""
    if isinstance(name, (list, tuple)):
        if not name:
            raise ConfigError("a feature list needs at least one feature")
        defs = tuple(FeatureDef(str(n), _defaults(str(n))) for n in name)
        if len(set(name)) != len(name):
            raise ConfigError(f"feature list {list(name)} names a feature twice")
        return FeatureSpec(name="+".join(name), features=defs)
    if name not in FEATURE_SETS:
        from botlib.plugins import load_plugins

        load_plugins()
    try:
        return FEATURE_SETS[name]
    except KeyError:
        raise unknown_name("feature set", name, FEATURE_SETS) from None


def feature_matrix(
    candles: pd.DataFrame, spec: FeatureSpec = DEFAULT_SPEC, *, tail: int | None = None
) -> tuple[np.ndarray, list[str]]:
    """The features of ``spec`` as a float64 array (rows = candles) and column names;
    the fast path behind ``build_features`` (no DataFrame is built).

    ``tail``: only the last ``tail`` rows, equal bit for bit to the last rows of the
    whole matrix — finite-memory features (``LOOKBACK``) read just the rows they need,
    recursive ones still run over every row (the live loop asks for its new bars)."""
    cols = ["open", "high", "low", "close", "volume"]
    if [str(c) for c in candles.columns] == cols:
        # the frame's own block (a column selection deep-copies the frame's attrs)
        block = candles.to_numpy(dtype="float64")
        bars = {c: np.ascontiguousarray(block[:, i]) for i, c in enumerate(cols)}
    else:
        bars = {c: candles[c].to_numpy(dtype="float64") for c in cols}
    n = len(candles)
    rows = n if tail is None else max(0, min(int(tail), n))
    columns: Columns = {}
    for f in spec.features:
        params = dict(f.params)
        given: Bars = bars
        look = LOOKBACK.get(f.name) if rows < n else None
        if look is not None and rows + look(**params) < n:
            need = rows + look(**params)
            given = {k: v[n - need :] for k, v in bars.items()}
        for name, values in FEATURES[f.name](given, **params).items():
            if name in columns:
                raise ConfigError(f"feature set {spec.name!r} produces duplicate column {name!r}")
            columns[name] = values[len(values) - rows :]
    matrix = np.column_stack(list(columns.values())) if columns else np.zeros((rows, 0))
    matrix[~np.isfinite(matrix)] = np.nan
    return matrix, list(columns)


def build_features(
    candles: pd.DataFrame, spec: FeatureSpec = DEFAULT_SPEC, *, dropna: bool = False
) -> pd.DataFrame:
    """The feature frame of ``spec`` over ``candles`` (same index; warm-up rows NaN unless
    ``dropna``). Column names are unique and in spec order; infinities become NaN."""
    matrix, names = feature_matrix(candles, spec)
    frame = pd.DataFrame(matrix, index=candles.index, columns=names)
    return frame.dropna() if dropna else frame
