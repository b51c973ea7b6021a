"""LSTM that forecasts the log return over the next ``horizon`` bars (``prediction_type``
price: the signal's predicted price is ``close * exp(expected_return)``)."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import pandas as pd

from botlib.features import forward_return
from botlib.models.nn._common import KerasWindowModel, recurrent_stack


class LSTMPriceModel(KerasWindowModel):
    name = "lstm"
    model_type = "neural_network"
    algorithm = "lstm"
    prediction_type = "price"
    outputs = ("expected_return",)

    def _label(self, candles: pd.DataFrame) -> pd.Series:
        return forward_return(self.params["horizon"])(candles)

    def _fit_label_scale(self, y_train: np.ndarray) -> None:
        self._y_scale = float(np.std(y_train)) or 1.0

    def _encode(self, y: np.ndarray) -> np.ndarray:
        return (y / self._y_scale).astype("float32")

    def _decode(self, raw: np.ndarray) -> dict[str, np.ndarray]:
        return {"expected_return": raw[:, 0].astype("float64") * self._y_scale}

    def _network(self, n_features: int) -> Any:
        p = self.params
        inputs = keras.Input((p["seq_len"], n_features))
        x = recurrent_stack(
            inputs, keras.layers.LSTM, units=p["units"], layers=p["layers"], dropout=p["dropout"]
        )
        outputs = keras.layers.Dense(1)(x)
        net = keras.Model(inputs, outputs, name="lstm_price")
        net.compile(optimizer=self._optimizer(), loss="mse")
        return net

    def _valid_metrics(self, raw: np.ndarray, y: np.ndarray) -> dict[str, float]:
        pred = self._decode(raw)["expected_return"]
        moved = y != 0
        hit = float(np.mean(np.sign(pred[moved]) == np.sign(y[moved]))) if moved.any() else 0.0
        return {
            "val_directional_accuracy": hit,
            "val_rmse": float(np.sqrt(np.mean((pred - y) ** 2))),
            "val_rmse_zero_forecast": float(np.sqrt(np.mean(y**2))),
        }
