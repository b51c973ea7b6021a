"""The one interface every signal model implements, and what the live loop needs to know.

A model maps *candles* to per-bar *outputs*. It computes its own features from its
``FeatureSpec``, so a caller (a backtest, the MLflow pyfunc wrapper, the live loop)
only ever passes recent OHLCV candles. Output columns come from a fixed vocabulary:

========================  ==========================================================
``target``                wanted position, a fraction of equity in [-1, 1]
``score``                 directional conviction in [-1, 1]
``p_up``/``p_down``/``p_sideways``   trend class probabilities over the horizon
``expected_return``       forecast log return over ``horizon`` bars
``volatility``            forecast std of 1-bar log returns over ``horizon`` bars
========================  ==========================================================

Rows without enough history are NaN. Models import neither MLflow nor Redis.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol, Self, runtime_checkable

import numpy as np
import pandas as pd

from botlib.data import OHLCV_COLUMNS, ohlcv_values
from botlib.errors import DataError
from botlib.features import FeatureSpec

__all__ = [
    "OUTPUT_COLUMNS",
    "BaseModel",
    "FitReport",
    "ModelMeta",
    "ModelStream",
    "SignalModel",
    "check_candles",
    "split_by_time",
]

OUTPUT_COLUMNS = (
    "target",
    "score",
    "p_up",
    "p_down",
    "p_sideways",
    "expected_return",
    "volatility",
)
MODEL_TYPES = ("neural_network", "reinforcement_learning", "evolutionary", "ensemble")
_META_FILE = "botlib_model.json"


@dataclass(frozen=True)
class ModelMeta:
    """What the live loop must know to feed a model and trust its outputs."""

    name: str
    model_type: str
    algorithm: str
    prediction_type: str  # price | direction | volatility | trend
    outputs: tuple[str, ...]
    window: int  # bars of features per prediction
    horizon: int  # bars ahead the outputs speak about
    feature_spec: FeatureSpec | None
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def required_history(self) -> int:
        """Candles needed before the first defined output."""
        warmup = self.feature_spec.warmup if self.feature_spec is not None else 0
        return warmup + self.window

    @property
    def feature_schema_hash(self) -> str:
        """The feature spec's hash; an ensemble's joins its members' (``+``)."""
        if self.feature_spec is not None:
            return self.feature_spec.schema_hash
        members = self.params.get("member_schema_hashes")
        return "+".join(members) if members else "none"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "model_type": self.model_type,
            "algorithm": self.algorithm,
            "prediction_type": self.prediction_type,
            "outputs": list(self.outputs),
            "window": self.window,
            "horizon": self.horizon,
            "required_history": self.required_history,
            "feature_schema_hash": self.feature_schema_hash,
            "feature_spec": self.feature_spec.to_dict() if self.feature_spec else None,
            "params": self.params,
        }


@dataclass
class FitReport:
    """Per-epoch / per-step / per-generation curves and final validation figures."""

    history: dict[str, list[float]] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    epochs: int = 0
    best_epoch: int | None = None


@runtime_checkable
class SignalModel(Protocol):
    """The plug-in interface (see ``BaseModel`` for the shared implementation)."""

    @property
    def meta(self) -> ModelMeta: ...

    def fit(self, train: pd.DataFrame, valid: pd.DataFrame | None = None) -> FitReport: ...

    def predict(self, candles: pd.DataFrame) -> pd.DataFrame: ...

    def save(self, path: str | Path) -> Path: ...


def check_candles(candles: Any, required: int, *, who: str) -> pd.DataFrame:
    """Refuse inputs a model cannot use, saying what was expected and what came."""
    if not isinstance(candles, pd.DataFrame):
        raise DataError("bad-input", f"{who}: expected a candle DataFrame, got {type(candles)}")
    cols = list(map(str, candles.columns))
    missing = [c for c in OHLCV_COLUMNS if c not in cols]
    extra = [c for c in cols if c not in OHLCV_COLUMNS]
    if missing or extra:
        raise DataError(
            "bad-columns",
            f"{who}: expected exactly the columns {list(OHLCV_COLUMNS)}; "
            + (f"missing {missing}" if missing else "")
            + ("; " if missing and extra else "")
            + (f"unexpected {extra}" if extra else ""),
        )
    if not isinstance(candles.index, pd.DatetimeIndex):
        raise DataError("bad-index", f"{who}: candles need a DatetimeIndex of bar open times")
    try:
        values = ohlcv_values(candles)
    except (TypeError, ValueError) as exc:
        kinds = {c: str(candles[c].dtype) for c in OHLCV_COLUMNS}
        raise DataError(
            "bad-dtype", f"{who}: expected numeric OHLCV columns, got {kinds} ({exc})"
        ) from None
    if not np.isfinite(values).all():
        bad = candles.index[~np.isfinite(values).all(axis=1)]
        raise DataError(
            "nan-values",
            f"{who}: NaN or infinite values in {len(bad)} row(s), first at {bad[0]}",
            [str(t) for t in bad[:5]],
        )
    if len(candles) < required:
        raise DataError(
            "short-window",
            f"{who}: needs at least {required} bars of history "
            f"(feature warm-up + window), got {len(candles)}",
        )
    return candles


def split_by_time(
    candles: pd.DataFrame, *, train: float = 0.7, valid: float = 0.15
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Chronological train / validation / test split (validation after training,
    test after validation)."""
    if not 0 < train < 1 or not 0 <= valid < 1 or train + valid >= 1:
        raise ValueError(f"need 0 < train, 0 <= valid and train + valid < 1; got {train}, {valid}")
    n = len(candles)
    a, b = int(n * train), int(n * (train + valid))
    parts = candles.iloc[:a], candles.iloc[a:b], candles.iloc[b:]
    for part in parts:
        part.attrs.update(candles.attrs)
    return parts


class RecentRows:
    """The last ``maxlen`` rows appended (equal-length 1-D arrays), kept in one array:
    ``matrix()`` gives them oldest first without stacking ``maxlen`` arrays (the live
    loop scores them for drift every few bars)."""

    def __init__(self, maxlen: int, rows: Iterable[np.ndarray] = ()) -> None:
        if maxlen < 1:
            raise ValueError(f"maxlen must be >= 1, got {maxlen}")
        self.maxlen = int(maxlen)
        self._buf: np.ndarray | None = None
        self._end = 0  # rows live in _buf[_end - len : _end]
        self._len = 0
        for row in rows:
            self.append(row)

    def append(self, row: np.ndarray) -> None:
        row = np.asarray(row)
        buf = self._buf
        if buf is None or buf.shape[1:] != row.shape or buf.dtype != row.dtype:
            kept = self.matrix() if buf is not None else None
            # twice the rows: the oldest are moved down once per ``maxlen`` appends
            buf = self._buf = np.empty((2 * self.maxlen, *row.shape), row.dtype)
            self._end = self._len = 0
            if kept is not None and kept.shape[1:] == row.shape:
                kept = kept[-self.maxlen :].astype(row.dtype)
                buf[: len(kept)] = kept
                self._end = self._len = len(kept)
        if self._end == len(buf):  # only reached full: the newest maxlen - 1 move down
            keep = self.maxlen - 1
            buf[:keep] = buf[self._end - keep : self._end]
            self._end = self._len = keep
        buf[self._end] = row
        self._end += 1
        self._len = min(self._len + 1, self.maxlen)

    def matrix(self) -> np.ndarray:
        """The rows, oldest first (a view: read it before the next ``append``)."""
        if self._buf is None:
            return np.empty((0, 0))
        return self._buf[self._end - self._len : self._end]

    def __len__(self) -> int:
        return self._len

    def __iter__(self) -> Iterator[np.ndarray]:
        return iter(self.matrix())


class ModelStream(ABC):
    """A model's state on one market, advanced one closed bar at a time (the live step).

    ``seed(history)`` advances it over the bars before the first live one; ``step(bar)``
    (``steps(bars)`` for several)
    returns the new bar's output row (in ``meta.outputs`` order, NaN where the model has
    none yet), equal to ``predict`` over the same history's last row — bit for bit, or
    within the streaming features' rounding (1e-12). ``state()`` is plain JSON that
    ``restore`` continues from in another process, so a restart or a takeover goes on
    where the last step ended instead of recomputing a window.

    ``watch(n)`` makes it keep its last ``n`` raw feature rows in ``recent`` (the live
    loop compares them with the training distribution: ``features.drift``).
    """

    #: the last raw feature rows seen (``watch``), None when not kept
    recent: RecentRows | None = None

    def watch(self, n: int) -> None:
        if self.recent is None or self.recent.maxlen != n:
            self.recent = RecentRows(n, self.recent or ())

    def _seen(self, row: np.ndarray) -> None:
        if self.recent is not None:
            self.recent.append(row)

    @abstractmethod
    def step(self, bar: dict[str, float]) -> np.ndarray: ...

    @abstractmethod
    def state(self) -> dict[str, Any]: ...

    @abstractmethod
    def restore(self, state: dict[str, Any]) -> None: ...

    def steps(self, bars: list[dict[str, float]]) -> np.ndarray:
        """``step`` over several bars (a backlog read at once): one row per bar. Models
        override it to batch their network call; the rows are the same bits."""
        return np.vstack([self.step(bar) for bar in bars])

    def seed(self, candles: pd.DataFrame) -> None:
        for values in candles[list(OHLCV_COLUMNS)].itertuples(index=False, name=None):
            self._warm(dict(zip(OHLCV_COLUMNS, map(float, values), strict=True)))

    def _warm(self, bar: dict[str, float]) -> None:
        """Advance over one history bar (``seed``); streams whose outputs are not
        needed for history skip computing them."""
        self.step(bar)


class BaseModel(ABC):
    """Shared plumbing: input checks, the saved-model layout, and the registry name.

    Subclasses set the class attributes, take their hyperparameters as explicit
    keyword arguments (recorded in ``self.params``), and implement ``_fit``,
    ``_predict``, ``_save`` and ``_load``.
    """

    name: ClassVar[str]
    model_type: ClassVar[str]
    algorithm: ClassVar[str]
    prediction_type: ClassVar[str]
    outputs: ClassVar[tuple[str, ...]]

    def __init__(self, **params: Any) -> None:
        self.params: dict[str, Any] = dict(params)
        self.fitted = False
        self.report: FitReport | None = None
        #: the distribution of the input features on the training window (None: not
        #: recorded, as for models trained before it was, or without a feature spec)
        self.feature_profile: dict[str, Any] | None = None

    @property
    @abstractmethod
    def meta(self) -> ModelMeta: ...

    def _meta(self, *, window: int, horizon: int, spec: FeatureSpec | None) -> ModelMeta:
        return ModelMeta(
            name=self.name,
            model_type=self.model_type,
            algorithm=self.algorithm,
            prediction_type=self.prediction_type,
            outputs=self.outputs,
            window=window,
            horizon=horizon,
            feature_spec=spec,
            params=dict(self.params),
        )

    def fit(self, train: pd.DataFrame, valid: pd.DataFrame | None = None) -> FitReport:
        """Train on ``train``; ``valid`` (which must follow it in time) is used for early
        stopping / selection and for the report's validation metrics."""
        check_candles(train, self._min_train_bars(), who=self.name)
        if valid is not None and len(valid):
            check_candles(valid, 1, who=f"{self.name} (validation)")
            if valid.index[0] <= train.index[-1]:
                raise DataError(
                    "split-order",
                    f"{self.name}: the validation window must start after the training window "
                    f"(train ends {train.index[-1]}, validation starts {valid.index[0]})",
                )
        self.report = self._fit(train, valid if valid is not None and len(valid) else None)
        self.fitted = True
        spec = self.meta.feature_spec
        if spec is not None:  # what live inputs are compared with (features.drift)
            from botlib.features import feature_matrix
            from botlib.features.drift import profile_features

            self.feature_profile = profile_features(*feature_matrix(train, spec))
        return self.report

    def predict(self, candles: pd.DataFrame) -> pd.DataFrame:
        """Per-bar outputs aligned with ``candles`` (NaN where history is too short)."""
        if not self.fitted:
            raise RuntimeError(f"{self.name}: call fit() or load() before predict()")
        check_candles(candles, self.meta.required_history, who=self.name)
        out = self._predict(candles)
        assert list(out.columns) == list(self.outputs), (list(out.columns), self.outputs)
        return out

    def predict_last(self, candles: pd.DataFrame) -> pd.DataFrame:
        """The newest bar's outputs (one row), the live loop's call. Equal to
        ``predict(candles).iloc[[-1]]``; models override it to skip older bars."""
        if not self.fitted:
            raise RuntimeError(f"{self.name}: call fit() or load() before predict_last()")
        check_candles(candles, self.meta.required_history, who=self.name)
        return self._predict_last(candles)

    def _predict_last(self, candles: pd.DataFrame) -> pd.DataFrame:
        return self._predict(candles).iloc[[-1]]

    def predict_tail(self, candles: pd.DataFrame, n: int, *, checked: bool = False) -> pd.DataFrame:
        """The newest ``n`` bars' outputs, equal to ``predict(candles).iloc[-n:]`` (the
        live loop's call when several bars arrive at once). Fewer bars than the model's
        required history give NaN rows instead of an error. ``checked=True`` skips the
        input checks for candles validated upstream (the loop checks every bar)."""
        if not self.fitted:
            raise RuntimeError(f"{self.name}: call fit() or load() before predict_tail()")
        n = max(0, min(int(n), len(candles)))
        if len(candles) < self.meta.required_history:
            if not checked:
                check_candles(candles, 0, who=self.name)
            nan = np.full((n, len(self.outputs)), np.nan)
            return pd.DataFrame(nan, index=candles.index[len(candles) - n :], columns=self.outputs)
        if not checked:
            check_candles(candles, self.meta.required_history, who=self.name)
        if n == 1:
            return self._predict_last(candles)
        return self._predict_tail(candles, n)

    def _predict_tail(self, candles: pd.DataFrame, n: int) -> pd.DataFrame:
        return self._predict(candles).iloc[len(candles) - n :]

    def stream(self) -> ModelStream | None:
        """A fresh per-market streaming state (see ``ModelStream``), or None when the
        model has no incremental form (its features lack one, or the model is path
        dependent over its whole window): the live loop then uses the window path."""
        return None

    def save(self, path: str | Path) -> Path:
        """Write the model to folder ``path`` (created); ``load_model(path)`` reads it."""
        if not self.fitted:
            raise RuntimeError(f"{self.name}: nothing to save before fit()")
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self._save(path)
        meta = self.meta.to_dict()
        meta["init"] = self.params
        meta["report"] = {"metrics": self.report.metrics if self.report else {}}
        if self.feature_profile is not None:
            meta["feature_profile"] = self.feature_profile
        (path / _META_FILE).write_text(json.dumps(meta, indent=2, default=str))
        return path

    @classmethod
    def load(cls, path: str | Path) -> Self:
        path = Path(path)
        meta = read_meta(path)
        if meta["name"] != cls.name:
            raise ValueError(f"{path} holds a {meta['name']!r} model, not {cls.name!r}")
        model = cls(**meta["init"])
        model._load(path)
        model.fitted = True
        model.report = FitReport(metrics=meta.get("report", {}).get("metrics", {}))
        model.feature_profile = meta.get("feature_profile")
        return model

    def _min_train_bars(self) -> int:
        """Fewest training bars that can yield a sample."""
        return self.meta.required_history + self.meta.horizon + 1

    @abstractmethod
    def _fit(self, train: pd.DataFrame, valid: pd.DataFrame | None) -> FitReport: ...

    @abstractmethod
    def _predict(self, candles: pd.DataFrame) -> pd.DataFrame: ...

    @abstractmethod
    def _save(self, path: Path) -> None: ...

    @abstractmethod
    def _load(self, path: Path) -> None: ...


def read_meta(path: Path) -> dict[str, Any]:
    file = Path(path) / _META_FILE
    if not file.exists():
        raise FileNotFoundError(f"{path} is not a saved botlib model (no {_META_FILE})")
    data: dict[str, Any] = json.loads(file.read_text())
    return data
