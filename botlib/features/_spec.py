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
from difflib import get_close_matches
from typing import Any

import numpy as np
import pandas as pd

from botlib.features import indicators as ind

FeatureFn = Callable[..., pd.Series | pd.DataFrame]


def _price_ratio(fn: Callable[..., pd.Series]) -> FeatureFn:
    def feature(candles: pd.DataFrame, **params: Any) -> pd.Series:
        line = fn(candles["close"], **params)
        return (candles["close"] / line - 1.0).rename(f"close_over_{line.name}")

    return feature


def _on_close(fn: Callable[..., Any]) -> FeatureFn:
    def feature(candles: pd.DataFrame, **params: Any) -> Any:
        return fn(candles["close"], **params)

    return feature


def _atr_pct(candles: pd.DataFrame, *, window: int = 14) -> pd.Series:
    return (ind.atr(candles, window=window) / candles["close"]).rename(f"atr_pct_{window}")


def _bb_position(candles: pd.DataFrame, *, window: int = 20, k: float = 2.0) -> pd.DataFrame:
    bands = ind.bollinger(candles["close"], window=window, k=k)
    span = bands["bb_upper"] - bands["bb_lower"]
    with np.errstate(divide="ignore", invalid="ignore"):
        pos = (candles["close"] - bands["bb_lower"]) / span
    return pd.DataFrame({"bb_pos": pos.mask(span == 0, 0.5), "bb_width": bands["bb_width"]})


def _macd_pct(candles: pd.DataFrame, **params: Any) -> pd.DataFrame:
    frame = ind.macd(candles["close"], **params)
    return frame.div(candles["close"], axis=0).add_suffix("_pct")


def _obv_slope(candles: pd.DataFrame, *, window: int = 24) -> pd.Series:
    """Change of OBV over ``window`` bars, in units of the window's mean volume."""
    change = ind.obv(candles).diff(window)
    mean_vol = candles["volume"].rolling(window, min_periods=window).mean()
    with np.errstate(divide="ignore", invalid="ignore"):
        out = change / (mean_vol * window)
    return out.where(mean_vol > 0, 0.0).where(mean_vol.notna()).rename(f"obv_slope_{window}")


#: Feature functions by name. Each maps a candle frame to one or more named columns.
FEATURES: dict[str, FeatureFn] = {
    "returns": lambda c, **p: ind.returns(c["close"], **p),
    "log_returns": _on_close(ind.log_returns),
    "sma_ratio": _price_ratio(ind.sma),
    "ema_ratio": _price_ratio(ind.ema),
    "rsi": _on_close(ind.rsi),
    "macd": _macd_pct,
    "bollinger": _bb_position,
    "atr": _atr_pct,
    "realized_volatility": _on_close(ind.realized_volatility),
    "volume_zscore": lambda c, **p: ind.volume_zscore(c["volume"], **p),
    "obv_slope": _obv_slope,
}


@dataclass(frozen=True)
class FeatureDef:
    """One feature function and its keyword parameters."""

    name: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.name not in FEATURES:
            hint = get_close_matches(self.name, FEATURES, n=1)
            raise ValueError(
                f"unknown feature {self.name!r}"
                + (f"; did you mean {hint[0]!r}?" if hint else "")
                + f"; known: {sorted(FEATURES)}"
            )


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


def get_feature_spec(name: str) -> FeatureSpec:
    """A registered feature set by name (with a did-you-mean hint)."""
    try:
        return FEATURE_SETS[name]
    except KeyError:
        hint = get_close_matches(name, FEATURE_SETS, n=1)
        raise ValueError(
            f"unknown feature set {name!r}"
            + (f"; did you mean {hint[0]!r}?" if hint else "")
            + f"; known: {sorted(FEATURE_SETS)}"
        ) from None


def build_features(
    candles: pd.DataFrame, spec: FeatureSpec = DEFAULT_SPEC, *, dropna: bool = False
) -> pd.DataFrame:
    """The feature frame of ``spec`` over ``candles`` (same index; warm-up rows NaN unless
    ``dropna``). Column names are unique and in spec order."""
    parts: list[pd.Series | pd.DataFrame] = []
    for f in spec.features:
        parts.append(FEATURES[f.name](candles, **dict(f.params)))
    frame = pd.concat(parts, axis=1)
    if frame.columns.duplicated().any():
        dups = sorted(set(frame.columns[frame.columns.duplicated()]))
        raise ValueError(f"feature set {spec.name!r} produces duplicate columns {dups}")
    frame = frame.replace([np.inf, -np.inf], np.nan)
    return frame.dropna() if dropna else frame
