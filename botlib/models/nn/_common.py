"""What the three Keras networks share: features -> scaled windows -> a network, trained
with early stopping on a validation window that follows the training window, and
served through one compiled ``tf.function`` (never ``model.predict`` per bar)."""

from __future__ import annotations

import inspect
import logging
import os
from abc import abstractmethod
from collections import deque
from difflib import get_close_matches
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from botlib.errors import ConfigError

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import tensorflow as tf

from botlib.features import FeatureSpec, feature_matrix, get_feature_spec
from botlib.features.streaming import StreamingFeatures, streamable
from botlib.models.base import BaseModel, FitReport, ModelMeta, ModelStream
from botlib.models.nn._kernels import ForwardPlan, plan_for
from botlib.models.rows import pack_rows, unpack_rows
from botlib.progress import advance
from botlib.seed import seed_everything

log = logging.getLogger(__name__)
#: windows per network call (see ``_run``); 16 measured as the balance between one
#: window's latency and a backtest's throughput (bench/inference.py)
_CHUNK = 16


class _EpochLog(keras.callbacks.Callback):  # type: ignore[misc]
    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        shown = ", ".join(f"{k} {v:.4g}" for k, v in (logs or {}).items())
        log.info("%s epoch %d: %s", self.name, epoch + 1, shown)
        advance(f"{self.name} epochs", epoch + 1, (self.params or {}).get("epochs"))


class KerasWindowModel(BaseModel):
    """Base of the Keras models; subclasses define the label, the network and the
    mapping from network output to the output columns."""

    #: hyperparameters a subclass adds (passed through ``**extra``)
    _extra: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        *,
        seq_len: int = 32,
        units: int = 32,
        layers: int = 1,
        dropout: float = 0.1,
        learning_rate: float = 1e-3,
        epochs: int = 10,
        batch_size: int = 64,
        patience: int = 3,
        horizon: int = 1,
        feature_set: str = "default",
        jit_compile: bool = True,
        seed: int = 0,
        **extra: Any,
    ) -> None:
        unknown = sorted(set(extra) - set(self._extra))
        if unknown:
            known = [*inspect.signature(KerasWindowModel.__init__).parameters, *self._extra]
            known = [k for k in known if k not in ("self", "extra")]
            hints = [get_close_matches(k, known, n=1) for k in unknown]
            detail = ", ".join(
                f"{k!r}" + (f" (did you mean {h[0]!r}?)" if h else "")
                for k, h in zip(unknown, hints, strict=True)
            )
            raise ConfigError(
                f"{self.name}: unknown parameter(s) {detail}; parameters: {', '.join(known)}"
            )
        checks = {
            "seq_len": seq_len,
            "units": units,
            "layers": layers,
            "epochs": epochs,
            "batch_size": batch_size,
            "horizon": horizon,
        }
        for key, value in checks.items():
            if int(value) != value or value < 1:
                raise ConfigError(f"{self.name}: {key} must be a positive integer, got {value!r}")
        if not 0 <= dropout < 1:
            raise ConfigError(f"{self.name}: dropout must be in [0, 1), got {dropout}")
        if learning_rate <= 0:
            raise ConfigError(f"{self.name}: learning_rate must be > 0, got {learning_rate}")
        super().__init__(
            seq_len=seq_len,
            units=units,
            layers=layers,
            dropout=dropout,
            learning_rate=learning_rate,
            epochs=epochs,
            batch_size=batch_size,
            patience=patience,
            horizon=horizon,
            feature_set=feature_set,
            jit_compile=jit_compile,
            seed=seed,
            **extra,
        )
        self.spec: FeatureSpec = get_feature_spec(feature_set)
        self.net: keras.Model | None = None
        self._mu = np.zeros(0)
        self._sd = np.ones(0)
        self._y_scale = 1.0
        self._infer: Any = None
        self._plan: ForwardPlan | None = None

    @property
    def meta(self) -> ModelMeta:
        return self._meta(
            window=self.params["seq_len"], horizon=self.params["horizon"], spec=self.spec
        )

    # -- subclass hooks ---------------------------------------------------------------
    @abstractmethod
    def _label(self, candles: pd.DataFrame) -> pd.Series: ...

    @abstractmethod
    def _network(self, n_features: int) -> keras.Model: ...

    @abstractmethod
    def _encode(self, y: np.ndarray) -> np.ndarray: ...

    @abstractmethod
    def _decode(self, raw: np.ndarray) -> dict[str, np.ndarray]: ...

    def _valid_metrics(self, raw: np.ndarray, y: np.ndarray) -> dict[str, float]:
        return {}

    # -- shared machinery -------------------------------------------------------------
    def _scaled_features(self, candles: pd.DataFrame, tail: int | None = None) -> np.ndarray:
        """Scaled features of every bar, or of the last ``tail`` bars (the same values:
        see ``feature_matrix``)."""
        feats = feature_matrix(candles, self.spec, tail=tail)[0].astype("float32")
        return (feats - self._mu) / self._sd

    def _windows(self, feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """All windows (n, seq, F) and the bar index each one ends at; windows holding
        NaN (warm-up) are dropped."""
        seq = self.params["seq_len"]
        if len(feats) < seq:
            return np.zeros((0, seq, feats.shape[1]), "float32"), np.zeros(0, dtype=int)
        view = np.lib.stride_tricks.sliding_window_view(feats, seq, axis=0)  # (n, F, seq)
        ok = np.isfinite(view).all(axis=(1, 2))
        ends = np.flatnonzero(ok) + seq - 1
        return np.ascontiguousarray(view[ok].transpose(0, 2, 1)), ends

    def _compile_inference(self, *, kernels: bool = True) -> None:
        """Ready the network for inference: botlib's compiled forward pass where the
        network has the shape ``_network`` builds (``botlib.models.nn._kernels``), else
        (or with ``kernels=False``) one TensorFlow concrete function."""
        assert self.net is not None
        self._plan = plan_for(self.net, self.algorithm) if kernels else None
        if self._plan is not None:
            self._infer = None
            return
        log.info("%s: no compiled forward pass for this network; TensorFlow serves it",
                 self.name)  # fmt: skip
        net = self.net
        spec = tf.TensorSpec([None, self.params["seq_len"], net.input_shape[-1]], tf.float32)

        @tf.function(input_signature=[spec], jit_compile=bool(self.params["jit_compile"]))  # type: ignore[untyped-decorator]
        def infer(x: tf.Tensor) -> tf.Tensor:
            return net(x, training=False)

        # the concrete function: calling it skips tf.function's argument binding per call
        self._infer = infer.get_concrete_function()

    def _run(self, x: np.ndarray) -> np.ndarray:
        """The network on windows ``x``: the compiled forward pass (every window alone),
        or TensorFlow always in batches of exactly ``_CHUNK`` (the last one padded with
        copies): its CPU kernels' rounding depends on the batch size, so a fixed size
        makes every window's output the same bits whether it is computed alone (the
        live step) or among thousands (a backtest)."""
        n = len(x)
        if n == 0:
            return np.zeros((0, 1), "float32")
        if self._plan is not None:  # each window on its own: the same bits in any batch
            return self._plan.run(x)
        pad = (-n) % _CHUNK
        if pad:
            x = np.concatenate([x, np.repeat(x[-1:], pad, axis=0)])
        parts = [
            self._infer(tf.constant(x[i : i + _CHUNK])).numpy() for i in range(0, len(x), _CHUNK)
        ]
        return np.concatenate(parts)[:n]

    def _fit(self, train: pd.DataFrame, valid: pd.DataFrame | None) -> FitReport:
        p = self.params
        seed_everything(p["seed"])
        full = pd.concat([train, valid]) if valid is not None else train
        raw = feature_matrix(full, self.spec)[0].astype("float32")
        n_train = len(train)
        horizon = p["horizon"]
        # scaler from training rows only
        train_rows = raw[:n_train][np.isfinite(raw[:n_train]).all(axis=1)]
        self._mu = train_rows.mean(axis=0)
        self._sd = train_rows.std(axis=0) + 1e-8
        y_all = self._label(full).to_numpy(dtype="float64")
        x, ends = self._windows((raw - self._mu) / self._sd)
        labelled = np.isfinite(y_all[ends])
        # purge: a training sample's label must not reach into the validation window
        in_train = labelled & (ends <= n_train - 1 - horizon)
        in_valid = labelled & (ends >= n_train)
        if in_train.sum() < 2:
            raise ConfigError(
                f"{self.name}: the training window yields {in_train.sum()} samples; "
                "give it more bars"
            )
        y_train = y_all[ends[in_train]]
        self._fit_label_scale(y_train)
        y_enc = self._encode(y_all[ends])
        self.net = self._network(raw.shape[1])
        callbacks: list[Any] = [_EpochLog(self.name)]
        validation = None
        if in_valid.any():
            validation = (x[in_valid], y_enc[in_valid])
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor="val_loss" if validation else "loss",
                patience=p["patience"],
                restore_best_weights=True,
            )
        )
        history = self.net.fit(
            x[in_train],
            y_enc[in_train],
            validation_data=validation,
            epochs=p["epochs"],
            batch_size=p["batch_size"],
            shuffle=True,
            verbose=0,
            callbacks=callbacks,
        )
        self._compile_inference()
        curves = {k: [float(v) for v in vals] for k, vals in history.history.items()}
        key = "val_loss" if "val_loss" in curves else "loss"
        report = FitReport(
            history=curves, epochs=len(curves["loss"]), best_epoch=int(np.argmin(curves[key])) + 1
        )
        report.metrics["train_samples"] = float(in_train.sum())
        report.metrics["loss"] = float(min(curves["loss"]))
        if validation is not None:
            raw_valid = self._run(x[in_valid])
            report.metrics["val_loss"] = float(min(curves["val_loss"]))
            report.metrics["valid_samples"] = float(in_valid.sum())
            report.metrics.update(self._valid_metrics(raw_valid, y_all[ends[in_valid]]))
        return report

    def _fit_label_scale(self, y_train: np.ndarray) -> None:
        self._y_scale = 1.0

    def _predict(self, candles: pd.DataFrame) -> pd.DataFrame:
        x, ends = self._windows(self._scaled_features(candles))
        decoded = self._decode(self._run(x)) if len(x) else {}
        out = pd.DataFrame(index=candles.index, columns=list(self.outputs), dtype="float64")
        for col in self.outputs:
            values = np.full(len(candles), np.nan)
            if len(x):
                values[ends] = decoded[col]
            out[col] = values
        return out

    def _predict_last(self, candles: pd.DataFrame) -> pd.DataFrame:
        return self._predict_tail(candles, 1)

    def _predict_tail(self, candles: pd.DataFrame, n: int) -> pd.DataFrame:
        # the features predict computes, for the last windows only (recursive ones still
        # over all the history given), so the result equals predict(candles).iloc[-n:]
        # exactly; the network runs on the last n windows
        seq = self.params["seq_len"]
        feats = self._scaled_features(candles, seq + n - 1)
        x, ends = self._windows(feats)
        values = {col: np.full(n, np.nan) for col in self.outputs}
        if len(x):
            decoded = self._decode(self._run(x))
            rows = ends - (len(feats) - n)
            for col in self.outputs:
                values[col][rows] = decoded[col]
        # the dict is in output order: no columns= (it would rebuild the column index)
        return pd.DataFrame(values, index=candles.index[-n:])

    def stream(self) -> ModelStream | None:
        return _KerasStream(self) if streamable(self.spec) else None

    def infer(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """The decoded outputs of the network on windows ``x`` (scaled features)."""
        return self._decode(self._run(x))

    def _save(self, path: Path) -> None:
        assert self.net is not None
        self.net.save(path / "net.keras")
        np.savez(path / "scaler.npz", mu=self._mu, sd=self._sd, y_scale=self._y_scale)

    def _load(self, path: Path) -> None:
        self.net = keras.models.load_model(path / "net.keras", compile=False)
        with np.load(path / "scaler.npz") as data:
            self._mu, self._sd = data["mu"], data["sd"]
            self._y_scale = float(data["y_scale"])
        self._compile_inference()

    def _optimizer(self) -> keras.optimizers.Optimizer:
        return keras.optimizers.Adam(learning_rate=self.params["learning_rate"])


class _KerasStream(ModelStream):
    """The network's live state on one market: the streaming features and the last
    ``seq_len`` scaled rows; one network call per bar on that sequence."""

    def __init__(self, model: KerasWindowModel) -> None:
        self.model = model
        self.features = StreamingFeatures(model.spec)
        self.rows: deque[np.ndarray] = deque(maxlen=int(model.params["seq_len"]))
        #: the same rows as one array (the newest last), shifted by one row per bar:
        #: a window is a copy of it, not a stack of ``seq_len`` rows
        self._buf: np.ndarray | None = None

    def _advance(self, bar: dict[str, float]) -> None:
        m = self.model
        # the batch path's arithmetic, row by row: float32 features, then the scaler
        raw = self.features.update(bar)
        self._seen(raw)
        row = (raw.astype("float32") - m._mu) / m._sd
        self.rows.append(row)
        buf = self._buf
        if buf is None or buf.dtype != row.dtype or buf.shape[1] != len(row):
            buf = self._buf = np.zeros((self.rows.maxlen or 0, len(row)), row.dtype)
            buf[len(buf) - len(self.rows) :] = np.stack(self.rows)
        else:
            buf[:-1] = buf[1:]
            buf[-1] = row

    def _warm(self, bar: dict[str, float]) -> None:
        self._advance(bar)  # history needs no network call

    def step(self, bar: dict[str, float]) -> np.ndarray:
        return np.asarray(self.steps([bar])[0])

    def steps(self, bars: list[dict[str, float]]) -> np.ndarray:
        """The features bar by bar, then one network call on every ready window (its
        fixed batches make each row the bits of a call on that window alone)."""
        x, ready = self.windows(bars)
        return self.assemble(self.model.infer(x) if len(x) else {}, ready, len(bars))

    def windows(self, bars: list[dict[str, float]]) -> tuple[np.ndarray, list[int]]:
        """Advance the features over ``bars``; the network inputs of the bars whose
        window is complete, and which bars those are. With ``assemble`` this is ``steps``
        split in two, so the live loop can run one network call for every market a
        model serves (``KerasWindowModel.infer`` on the windows of all of them)."""
        windows, ready = [], []
        for j, bar in enumerate(bars):
            self._advance(bar)
            x = self._buf
            if len(self.rows) == self.rows.maxlen and x is not None and np.isfinite(x).all():
                windows.append(x.copy())
                ready.append(j)
        if not windows:
            return np.zeros((0, self.rows.maxlen or 0, len(self.model._mu)), "float32"), ready
        return (windows[0][None] if len(windows) == 1 else np.stack(windows)), ready

    def assemble(self, decoded: dict[str, np.ndarray], ready: list[int], k: int) -> np.ndarray:
        """Output rows of ``k`` bars from the decoded network outputs of the ready ones."""
        m = self.model
        out = np.full((k, len(m.outputs)), np.nan)
        if ready:
            for i, col in enumerate(m.outputs):
                out[ready, i] = decoded[col]
        return out

    def state(self) -> dict[str, Any]:
        width = len(self.model._mu)
        return {"features": self.features.state(), "rows": pack_rows(self.rows, width)}

    def restore(self, state: dict[str, Any]) -> None:
        self.features.restore(state["features"])
        self.rows = deque(unpack_rows(state["rows"]), maxlen=self.rows.maxlen)
        self._buf = None  # rebuilt from the rows at the next bar


def recurrent_stack(
    inputs: Any, layer: type[keras.layers.Layer], *, units: int, layers: int, dropout: float
) -> Any:
    """``layers`` recurrent layers (the last returns only its final state)."""
    x = inputs
    for i in range(layers):
        x = layer(units, return_sequences=i < layers - 1, dropout=dropout)(x)
    return x
