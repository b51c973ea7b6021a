"""The networks' compiled forward pass (botlib.models.nn._kernels) against Keras, and
its one promise the live loop rests on: a window's output is the same bits whether it
is computed alone or among many (serial or spread over the cores)."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import pytest

from botlib.models import create_model
from botlib.models.nn._kernels import _PARALLEL_FROM, plan_for
from botlib.models.nn.lstm import LSTMPriceModel

N_FEATURES = 9
CASES = [
    ("lstm", {"layers": 2}),
    ("gru", {"layers": 1, "horizon": 24}),
    ("transformer", {"layers": 2, "heads": 2}),
]


def _windows(n: int, seq: int) -> np.ndarray:
    rng = np.random.default_rng(7)
    return rng.normal(size=(n, seq, N_FEATURES)).astype("float32")


@pytest.mark.parametrize(("name", "params"), CASES, ids=[c[0] for c in CASES])
def test_forward_pass_equals_keras_and_is_batch_independent(name: str, params: dict[str, Any]):
    keras.utils.set_random_seed(3)
    model = create_model(name, units=16, seq_len=12, **params)
    model.net = model._network(N_FEATURES)  # random weights: the arithmetic is the test
    model._compile_inference()
    assert model._plan is not None, f"{name}: no compiled forward pass"
    x = _windows(_PARALLEL_FROM + 9, 12)
    got = model._run(x)
    want = np.asarray(model.net(x, training=False), dtype="float64")
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    # each window alone (the live step) = among many (a backtest, over the cores)
    alone = np.concatenate([model._run(x[i : i + 1]) for i in range(len(x))])
    assert np.array_equal(alone, got)
    assert np.array_equal(model._run(x[:5]), got[:5])


class _Wider(LSTMPriceModel):
    """A user's own network: not the shape botlib compiles."""

    def _network(self, n_features: int) -> Any:
        inputs = keras.Input((self.params["seq_len"], n_features))
        x = keras.layers.LSTM(self.params["units"])(inputs)
        x = keras.layers.Dense(8, activation="relu")(x)
        net = keras.Model(inputs, keras.layers.Dense(1)(x))
        net.compile(optimizer="adam", loss="mse")
        return net


def test_other_networks_keep_tensorflow():
    model = _Wider(units=8, seq_len=6)
    model.net = model._network(N_FEATURES)
    assert plan_for(model.net, "lstm") is None
    model._compile_inference()
    assert model._plan is None
    x = _windows(20, 6)
    want = np.asarray(model.net(x, training=False))
    np.testing.assert_allclose(model._run(x), want, rtol=1e-5, atol=1e-6)
    # TensorFlow's fixed batches keep the bits batch-independent too
    alone = np.concatenate([model._run(x[i : i + 1]) for i in range(len(x))])
    assert np.array_equal(alone, model._run(x))
