"""GRU that forecasts volatility: the standard deviation of 1-bar log returns over the
next ``horizon`` bars (``prediction_type`` volatility)."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import pandas as pd

from botlib.errors import ConfigError
from botlib.features import forward_volatility
from botlib.models.nn._common import KerasWindowModel, recurrent_stack


class GRUVolatilityModel(KerasWindowModel):
    name = "gru"
    model_type = "neural_network"
    algorithm = "gru"
    prediction_type = "volatility"
    outputs = ("volatility",)

    def __init__(self, *, horizon: int = 24, **params: Any) -> None:
        if horizon < 2:
            raise ConfigError(f"gru: horizon must be >= 2 bars to define volatility, got {horizon}")
        super().__init__(horizon=horizon, **params)

    def _label(self, candles: pd.DataFrame) -> pd.Series:
        return forward_volatility(self.params["horizon"])(candles)

    def _fit_label_scale(self, y_train: np.ndarray) -> None:
        self._y_scale = float(np.mean(y_train)) or 1.0

    def _encode(self, y: np.ndarray) -> np.ndarray:
        return (y / self._y_scale).astype("float32")

    def _decode(self, raw: np.ndarray) -> dict[str, np.ndarray]:
        return {"volatility": raw[:, 0].astype("float64") * self._y_scale}

    def _network(self, n_features: int) -> Any:
        p = self.params
        inputs = keras.Input((p["seq_len"], n_features))
        x = recurrent_stack(
            inputs, keras.layers.GRU, units=p["units"], layers=p["layers"], dropout=p["dropout"]
        )
        outputs = keras.layers.Dense(1, activation="softplus")(x)  # volatility > 0
        net = keras.Model(inputs, outputs, name="gru_volatility")
        net.compile(optimizer=self._optimizer(), loss="mse")
        return net

    def _valid_metrics(self, raw: np.ndarray, y: np.ndarray) -> dict[str, float]:
        pred = self._decode(raw)["volatility"]
        return {
            "val_mae": float(np.mean(np.abs(pred - y))),
            "val_mae_train_mean": float(np.mean(np.abs(self._y_scale - y))),
        }
