"""Transformer encoder that classifies the trend over the next ``horizon`` bars as up,
down or sideways (a move beyond ``threshold``, a fraction)."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import pandas as pd

from botlib.errors import ConfigError
from botlib.features import direction
from botlib.models.nn._common import KerasWindowModel

_CLASSES = np.array([-1.0, 0.0, 1.0])  # down, sideways, up


@keras.saving.register_keras_serializable(package="botlib")
class PositionalEncoding(keras.layers.Layer):  # type: ignore[misc]
    """Adds the fixed sinusoidal position code of Vaswani et al. (2017)."""

    def build(self, input_shape: tuple[int, ...]) -> None:
        seq, dim = int(input_shape[-2]), int(input_shape[-1])
        pos = np.arange(seq)[:, None]
        i = np.arange(dim)[None, :]
        angle = pos / np.power(10_000.0, (2 * (i // 2)) / dim)
        code = np.where(i % 2 == 0, np.sin(angle), np.cos(angle)).astype("float32")
        self.code = keras.ops.convert_to_tensor(code[None])
        super().build(input_shape)

    def call(self, x: Any) -> Any:
        return x + self.code


class TransformerTrendModel(KerasWindowModel):
    name = "transformer"
    model_type = "neural_network"
    algorithm = "transformer"
    prediction_type = "trend"
    outputs = ("p_up", "p_down", "p_sideways")
    _extra = ("heads", "threshold")

    def __init__(
        self, *, heads: int = 2, threshold: float = 0.002, horizon: int = 4, **params: Any
    ) -> None:
        if heads < 1:
            raise ConfigError(f"transformer: heads must be >= 1, got {heads}")
        if threshold < 0:
            raise ConfigError(f"transformer: threshold must be >= 0, got {threshold}")
        super().__init__(heads=heads, threshold=threshold, horizon=horizon, **params)

    def _label(self, candles: pd.DataFrame) -> pd.Series:
        return direction(self.params["horizon"], threshold=self.params["threshold"])(candles)

    def _encode(self, y: np.ndarray) -> np.ndarray:
        return np.where(np.isfinite(y), np.nan_to_num(y) + 1, -1).astype("int32")

    def _decode(self, raw: np.ndarray) -> dict[str, np.ndarray]:
        p = raw.astype("float64")
        return {"p_up": p[:, 2], "p_down": p[:, 0], "p_sideways": p[:, 1]}

    def _network(self, n_features: int) -> Any:
        p = self.params
        d_model = p["units"]
        inputs = keras.Input((p["seq_len"], n_features))
        x = keras.layers.Dense(d_model)(inputs)
        x = PositionalEncoding()(x)
        for _ in range(p["layers"]):
            attn = keras.layers.MultiHeadAttention(
                num_heads=p["heads"], key_dim=max(d_model // p["heads"], 4), dropout=p["dropout"]
            )(x, x)
            x = keras.layers.LayerNormalization(epsilon=1e-6)(x + attn)
            ff = keras.layers.Dense(2 * d_model, activation="relu")(x)
            ff = keras.layers.Dense(d_model)(keras.layers.Dropout(p["dropout"])(ff))
            x = keras.layers.LayerNormalization(epsilon=1e-6)(x + ff)
        x = keras.layers.GlobalAveragePooling1D()(x)
        outputs = keras.layers.Dense(3, activation="softmax")(x)
        net = keras.Model(inputs, outputs, name="transformer_trend")
        net.compile(
            optimizer=self._optimizer(),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
        return net

    def _valid_metrics(self, raw: np.ndarray, y: np.ndarray) -> dict[str, float]:
        pred = _CLASSES[np.argmax(raw, axis=1)]
        majority = float(np.max(np.unique(y, return_counts=True)[1]) / len(y))
        return {"val_accuracy": float(np.mean(pred == y)), "val_accuracy_majority": majority}
