"""An ensemble: member models' directional scores combined into one, weighted by each
member's validation Sharpe ratio (members that lost money on validation get no weight;
if none made money, weights are equal). Its volatility is the mean of the members'
forecasts, or the realized volatility of the last 24 bars where none forecasts it.
Members are declared by saved-model folders or registry URIs
(``models:/nn-lstm-btc_usdt-1h@champion``); a saved ensemble carries copies of its
members, so it loads anywhere."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from botlib.backtest import compute_metrics, normalize_signals, simulate
from botlib.errors import ConfigError
from botlib.models.base import BaseModel, FitReport, ModelMeta
from botlib.signals import build_signal_frame


class EnsembleModel(BaseModel):
    name = "ensemble"
    model_type = "ensemble"
    algorithm = "weighted_vote"
    prediction_type = "direction"
    outputs = ("score", "volatility")

    def __init__(
        self, *, members: list[str], weighting: str = "sharpe", weights: list[float] | None = None
    ) -> None:
        if not members:
            raise ConfigError("ensemble: give at least one member model (folder or URI)")
        if weighting not in ("sharpe", "equal"):
            raise ConfigError(f"ensemble: weighting must be 'sharpe' or 'equal', got {weighting!r}")
        super().__init__(members=[str(m) for m in members], weighting=weighting, weights=weights)
        self.models: list[BaseModel] = []

    def _load_members(self) -> None:
        if not self.models:
            from botlib.models import load_model

            self.models = [load_model(ref) for ref in self.params["members"]]

    @property
    def meta(self) -> ModelMeta:
        self._load_members()
        metas = [m.meta for m in self.models]
        meta = self._meta(
            window=max(m.required_history for m in metas),
            horizon=max(m.horizon for m in metas),
            spec=None,
        )
        meta.params["member_schema_hashes"] = [m.feature_schema_hash for m in metas]
        return meta

    def _member_scores(self, candles: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        scores, vols = [], []
        for model in self.models:
            out = model.predict(candles)
            frame = build_signal_frame(out, candles, horizon=model.meta.horizon)
            scores.append(frame["score"].to_numpy())
            vols.append(
                out["volatility"].to_numpy()
                if "volatility" in out
                else np.full(len(candles), np.nan)
            )
        return np.vstack(scores), np.vstack(vols)

    def _fit(self, train: pd.DataFrame, valid: pd.DataFrame | None) -> FitReport:
        from botlib.models.evaluate import model_signal_frame

        self._load_members()
        report = FitReport()
        n = len(self.models)
        weights = np.ones(n)
        if self.params["weighting"] == "sharpe" and valid is not None:
            need = max(m.meta.required_history for m in self.models)
            context = pd.concat([train.iloc[-need:], valid])
            timeframe = train.attrs.get("timeframe", "1h")
            sharpes = []
            for i, model in enumerate(self.models):
                # the same path as every backtest: the book starts flat at valid's start
                frame = model_signal_frame(model, context, valid.index[0])
                sig = normalize_signals(
                    frame[["target", "stop_loss", "take_profit"]], pd.DatetimeIndex(valid.index)
                )
                sim = simulate(valid, sig)
                sharpe = compute_metrics(sim.equity, timeframe=timeframe, initial_cash=10_000.0)[
                    "sharpe"
                ]
                sharpes.append(sharpe if math.isfinite(sharpe) else 0.0)
                report.metrics[f"member_{i}_val_sharpe"] = sharpes[-1]
            positive = np.maximum(np.array(sharpes), 0.0)
            weights = positive if positive.sum() > 0 else np.ones(n)
        self.params["weights"] = (weights / weights.sum()).tolist()
        for i, w in enumerate(self.params["weights"]):
            report.metrics[f"member_{i}_weight"] = w
        return report

    def _predict(self, candles: pd.DataFrame) -> pd.DataFrame:
        self._load_members()
        scores, vols = self._member_scores(candles)
        w = np.asarray(self.params["weights"])[:, None]
        score = (w * scores).sum(axis=0)  # NaN until every member speaks
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN warm-up columns
            vol = np.nanmean(vols, axis=0)
        # where no member forecasts volatility, report the realized one (24 bars)
        close = candles["close"]
        logret = pd.Series(np.log(close / close.shift(1)), index=candles.index)
        realized = logret.rolling(24, min_periods=24).std().to_numpy()
        vol = np.where(np.isfinite(vol), vol, realized)
        return pd.DataFrame({"score": score, "volatility": vol}, index=candles.index)

    def _save(self, path: Path) -> None:
        self._load_members()
        for i, model in enumerate(self.models):
            model.save(path / "members" / str(i))

    def _load(self, path: Path) -> None:
        from botlib.models import load_model

        self.models = [
            load_model(path / "members" / str(i)) for i in range(len(self.params["members"]))
        ]
