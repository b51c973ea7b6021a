"""The three networks' forward pass, compiled (numba), for inference everywhere.

Keras trains the networks; once trained (or loaded), their weights are read into a
:class:`ForwardPlan` and every prediction — a backtest over thousands of windows, the
live loop's one window per bar, the pyfunc flavour — goes through these kernels:

* **one path, the same bits.** Each window is computed on its own, by the same loops
  in the same order, so its output does not depend on which other windows share the
  call (TensorFlow's CPU kernels round differently with the batch size). A backtest
  and the live step therefore give the same signals bit for bit.
* **no framework per call.** A TensorFlow call costs ~0.5 ms before any arithmetic;
  these loops cost a few microseconds to enter, which is what a per-bar step and a
  loop serving many markets need.

Arithmetic is in float64 over the float32 weights: outputs agree with Keras' float32
graph to ~1e-6 (tested), and are deterministic. Compiled once per machine (numba's
on-disk cache). A network of another shape (a user's own subclass) has no plan and
keeps TensorFlow.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numba import njit, prange

__all__ = ["ForwardPlan", "plan_for"]

_LINEAR, _SOFTPLUS, _SOFTMAX, _RELU = 0, 1, 2, 3
#: windows per call from which they are spread over the cores (a thread pool costs
#: more than one window; the per-window arithmetic, and so the bits, are the same)
_PARALLEL_FROM = 64
_ACTIVATIONS = {"linear": _LINEAR, "softplus": _SOFTPLUS, "softmax": _SOFTMAX, "relu": _RELU}


@njit(cache=True)
def _sigmoid(v: float) -> float:
    if v >= 0:
        return 1.0 / (1.0 + math.exp(-v))
    e = math.exp(v)
    return e / (1.0 + e)


@njit(cache=True)
def _dense_rows(x: np.ndarray, w: np.ndarray, b: np.ndarray, act: int) -> np.ndarray:
    """``act(x @ w + b)`` for rows ``x`` (m, F): out (m, n_out)."""
    m, n_in = x.shape
    n_out = w.shape[1]
    out = np.empty((m, n_out))
    for r in range(m):
        for j in range(n_out):
            out[r, j] = b[j]
        for i in range(n_in):
            xi = x[r, i]
            for j in range(n_out):
                out[r, j] += xi * w[i, j]
        if act == _SOFTPLUS:
            for j in range(n_out):
                v = out[r, j]
                out[r, j] = v + math.log1p(math.exp(-v)) if v > 0 else math.log1p(math.exp(v))
        elif act == _RELU:
            for j in range(n_out):
                if out[r, j] < 0:
                    out[r, j] = 0.0
        elif act == _SOFTMAX:
            top = out[r, 0]
            for j in range(1, n_out):
                top = max(top, out[r, j])
            total = 0.0
            for j in range(n_out):
                out[r, j] = math.exp(out[r, j] - top)
                total += out[r, j]
            for j in range(n_out):
                out[r, j] /= total
    return out


@njit(cache=True)
def _lstm_one(xs: np.ndarray, w: np.ndarray, u: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
    """One LSTM layer (Keras: gates i, f, c, o; tanh, sigmoid) over one sequence ``xs``
    (T, F), from zero state: every step's output into ``out`` (T, units); ``b`` is the
    bias as one row (1, 4 units)."""
    steps, n_in = xs.shape
    units = u.shape[0]
    z = np.empty(4 * units)
    h = np.zeros(units)
    c = np.zeros(units)
    for t in range(steps):
        for j in range(4 * units):
            z[j] = b[0, j]
        for i in range(n_in):
            xi = xs[t, i]
            for j in range(4 * units):
                z[j] += xi * w[i, j]
        for i in range(units):
            hi = h[i]
            for j in range(4 * units):
                z[j] += hi * u[i, j]
        for j in range(units):
            gate_i = _sigmoid(z[j])
            gate_f = _sigmoid(z[units + j])
            cand = math.tanh(z[2 * units + j])
            gate_o = _sigmoid(z[3 * units + j])
            c[j] = gate_f * c[j] + gate_i * cand
            h[j] = gate_o * math.tanh(c[j])
            out[t, j] = h[j]


@njit(cache=True)
def _gru_one(xs: np.ndarray, w: np.ndarray, u: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
    """One GRU layer (Keras: gates z, r, h; ``reset_after``: input and recurrent biases
    apart) over one sequence ``xs`` (T, F), from zero state: every step's output."""
    steps, n_in = xs.shape
    units = u.shape[0]
    zx = np.empty(3 * units)
    zh = np.empty(3 * units)
    h = np.zeros(units)
    for t in range(steps):
        for j in range(3 * units):
            zx[j] = b[0, j]
            zh[j] = b[1, j]
        for i in range(n_in):
            xi = xs[t, i]
            for j in range(3 * units):
                zx[j] += xi * w[i, j]
        for i in range(units):
            hi = h[i]
            for j in range(3 * units):
                zh[j] += hi * u[i, j]
        for j in range(units):
            gate_z = _sigmoid(zx[j] + zh[j])
            gate_r = _sigmoid(zx[units + j] + zh[units + j])
            cand = math.tanh(zx[2 * units + j] + gate_r * zh[2 * units + j])
            h[j] = gate_z * h[j] + (1.0 - gate_z) * cand
            out[t, j] = h[j]


@njit(cache=True)
def _recurrent(
    xs: np.ndarray, w: np.ndarray, u: np.ndarray, b: np.ndarray, gru: bool
) -> np.ndarray:
    """A recurrent layer over windows ``xs`` (n, T, F), one after another."""
    out = np.empty((xs.shape[0], xs.shape[1], u.shape[0]))
    for s in range(xs.shape[0]):
        if gru:
            _gru_one(xs[s], w, u, b, out[s])
        else:
            _lstm_one(xs[s], w, u, b, out[s])
    return out


@njit(cache=True, parallel=True)
def _recurrent_par(
    xs: np.ndarray, w: np.ndarray, u: np.ndarray, b: np.ndarray, gru: bool
) -> np.ndarray:
    """``_recurrent`` with the windows spread over the cores (the same per-window
    arithmetic: the same bits)."""
    out = np.empty((xs.shape[0], xs.shape[1], u.shape[0]))
    for s in prange(xs.shape[0]):
        if gru:
            _gru_one(xs[s], w, u, b, out[s])
        else:
            _lstm_one(xs[s], w, u, b, out[s])
    return out


@njit(cache=True)
def _layer_norm(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float) -> np.ndarray:
    m, d = x.shape
    out = np.empty((m, d))
    for r in range(m):
        mean = 0.0
        for j in range(d):
            mean += x[r, j]
        mean /= d
        var = 0.0
        for j in range(d):
            var += (x[r, j] - mean) ** 2
        var /= d
        inv = 1.0 / math.sqrt(var + eps)
        for j in range(d):
            out[r, j] = (x[r, j] - mean) * inv * gamma[j] + beta[j]
    return out


@njit(cache=True)
def _self_attention(
    x: np.ndarray,
    wq: np.ndarray,
    bq: np.ndarray,
    wk: np.ndarray,
    bk: np.ndarray,
    wv: np.ndarray,
    bv: np.ndarray,
    wo: np.ndarray,
    bo: np.ndarray,
    heads: int,
) -> np.ndarray:
    """Keras' MultiHeadAttention of one sequence on itself (no mask): ``x`` (T, D);
    query/key/value kernels (D, H*K) with heads side by side, output kernel (H*K, D)."""
    steps = x.shape[0]
    key_dim = wq.shape[1] // heads
    scale = 1.0 / math.sqrt(key_dim)
    q = _dense_rows(x, wq, bq, _LINEAR)
    k = _dense_rows(x, wk, bk, _LINEAR)
    v = _dense_rows(x, wv, bv, _LINEAR)
    mixed = np.zeros((steps, heads * key_dim))
    scores = np.empty(steps)
    for hd in range(heads):
        base = hd * key_dim
        for a in range(steps):
            top = -np.inf
            for c in range(steps):
                acc = 0.0
                for d in range(key_dim):
                    acc += (q[a, base + d] * scale) * k[c, base + d]
                scores[c] = acc
                top = max(top, acc)
            total = 0.0
            for c in range(steps):
                scores[c] = math.exp(scores[c] - top)
                total += scores[c]
            for c in range(steps):
                weight = scores[c] / total
                for d in range(key_dim):
                    mixed[a, base + d] += weight * v[c, base + d]
    return _dense_rows(mixed, wo, bo, _LINEAR)


@njit(cache=True)
def _encoder_one(
    xs: np.ndarray,
    w_in: np.ndarray,
    b_in: np.ndarray,
    code: np.ndarray,
    wq: np.ndarray,
    bq: np.ndarray,
    wk: np.ndarray,
    bk: np.ndarray,
    wv: np.ndarray,
    bv: np.ndarray,
    wo: np.ndarray,
    bo: np.ndarray,
    g1: np.ndarray,
    be1: np.ndarray,
    wf1: np.ndarray,
    bf1: np.ndarray,
    wf2: np.ndarray,
    bf2: np.ndarray,
    g2: np.ndarray,
    be2: np.ndarray,
    heads: int,
    eps: float,
    w_out: np.ndarray,
    b_out: np.ndarray,
    out: np.ndarray,
) -> None:
    """The transformer on one window ``xs`` (T, F): Dense, positional code, blocks of
    (self-attention, add & norm, ReLU feed-forward, add & norm) — their weights stacked
    along a first axis, one entry per block — mean over time, Dense softmax."""
    steps = xs.shape[0]
    x = _dense_rows(xs, w_in, b_in, _LINEAR) + code
    for i in range(wq.shape[0]):
        attn = _self_attention(x, wq[i], bq[i], wk[i], bk[i], wv[i], bv[i], wo[i], bo[i], heads)
        x = _layer_norm(x + attn, g1[i], be1[i], eps)
        ff = _dense_rows(_dense_rows(x, wf1[i], bf1[i], _RELU), wf2[i], bf2[i], _LINEAR)
        x = _layer_norm(x + ff, g2[i], be2[i], eps)
    pooled = np.empty((1, x.shape[1]))
    for j in range(x.shape[1]):
        acc = 0.0
        for t in range(steps):
            acc += x[t, j]
        pooled[0, j] = acc / steps
    out[:] = _dense_rows(pooled, w_out, b_out, _SOFTMAX)[0]


@njit(cache=True)
def _encoder(
    xs: np.ndarray,
    w_in: np.ndarray,
    b_in: np.ndarray,
    code: np.ndarray,
    wq: np.ndarray,
    bq: np.ndarray,
    wk: np.ndarray,
    bk: np.ndarray,
    wv: np.ndarray,
    bv: np.ndarray,
    wo: np.ndarray,
    bo: np.ndarray,
    g1: np.ndarray,
    be1: np.ndarray,
    wf1: np.ndarray,
    bf1: np.ndarray,
    wf2: np.ndarray,
    bf2: np.ndarray,
    g2: np.ndarray,
    be2: np.ndarray,
    heads: int,
    eps: float,
    w_out: np.ndarray,
    b_out: np.ndarray,
) -> np.ndarray:
    out = np.empty((xs.shape[0], w_out.shape[1]))
    for s in range(xs.shape[0]):
        _encoder_one(
            xs[s],
            w_in,
            b_in,
            code,
            wq,
            bq,
            wk,
            bk,
            wv,
            bv,
            wo,
            bo,
            g1,
            be1,
            wf1,
            bf1,
            wf2,
            bf2,
            g2,
            be2,
            heads,
            eps,
            w_out,
            b_out,
            out[s],
        )
    return out


@njit(cache=True, parallel=True)
def _encoder_par(
    xs: np.ndarray,
    w_in: np.ndarray,
    b_in: np.ndarray,
    code: np.ndarray,
    wq: np.ndarray,
    bq: np.ndarray,
    wk: np.ndarray,
    bk: np.ndarray,
    wv: np.ndarray,
    bv: np.ndarray,
    wo: np.ndarray,
    bo: np.ndarray,
    g1: np.ndarray,
    be1: np.ndarray,
    wf1: np.ndarray,
    bf1: np.ndarray,
    wf2: np.ndarray,
    bf2: np.ndarray,
    g2: np.ndarray,
    be2: np.ndarray,
    heads: int,
    eps: float,
    w_out: np.ndarray,
    b_out: np.ndarray,
) -> np.ndarray:
    out = np.empty((xs.shape[0], w_out.shape[1]))
    for s in prange(xs.shape[0]):
        _encoder_one(
            xs[s],
            w_in,
            b_in,
            code,
            wq,
            bq,
            wk,
            bk,
            wv,
            bv,
            wo,
            bo,
            g1,
            be1,
            wf1,
            bf1,
            wf2,
            bf2,
            g2,
            be2,
            heads,
            eps,
            w_out,
            b_out,
            out[s],
        )
    return out


@dataclass
class ForwardPlan:
    """A trained network's weights in the kernels' layout; ``run(x)`` is its forward pass
    on windows ``x`` (n, T, F) -> (n, outputs), float64."""

    kind: str
    layers: list[tuple[np.ndarray, ...]]
    head: tuple[np.ndarray, np.ndarray, int]
    extra: dict[str, Any]

    def run(self, x: np.ndarray) -> np.ndarray:
        xs = np.ascontiguousarray(x, dtype="float64")
        many = len(xs) >= _PARALLEL_FROM
        if self.kind == "transformer":
            e = self.extra
            encoder: Any = _encoder_par if many else _encoder
            args = (e["w_in"], e["b_in"], e["code"], *e["blocks"], e["heads"], e["eps"])
            return encoder(xs, *args, self.head[0], self.head[1])  # type: ignore[no-any-return]
        layer = _recurrent_par if many else _recurrent
        for w, u, b in self.layers:
            xs = layer(xs, w, u, b, self.kind == "gru")
        last = np.ascontiguousarray(xs[:, -1, :])
        return _dense_rows(last, self.head[0], self.head[1], self.head[2])


def _f64(*arrays: Any) -> tuple[np.ndarray, ...]:
    return tuple(np.ascontiguousarray(np.asarray(a), dtype="float64") for a in arrays)


def _activation(layer: Any) -> int | None:
    name = getattr(layer.activation, "__name__", "")
    return _ACTIVATIONS.get(name)


def plan_for(net: Any, kind: str) -> ForwardPlan | None:
    """The plan of a network built by botlib's ``_network`` for ``kind`` (lstm, gru,
    transformer), or None where its layers are not that shape (TensorFlow serves it)."""
    import keras

    layers = [la for la in net.layers if not isinstance(la, keras.layers.InputLayer)]
    try:
        if kind in ("lstm", "gru"):
            return _recurrent_plan(layers, kind)
        if kind == "transformer":
            return _encoder_plan(layers)
    except (ValueError, AttributeError, IndexError):
        return None
    return None


def _recurrent_plan(layers: list[Any], kind: str) -> ForwardPlan | None:
    import keras

    cell = keras.layers.LSTM if kind == "lstm" else keras.layers.GRU
    *rnn, head = layers
    if not rnn or not all(type(la) is cell for la in rnn) or type(head) is not keras.layers.Dense:
        return None
    plans: list[tuple[np.ndarray, ...]] = []
    for la in rnn:
        cfg = la.get_config()
        if (cfg["activation"], cfg["recurrent_activation"]) != ("tanh", "sigmoid"):
            return None
        if not cfg["use_bias"] or cfg.get("go_backwards") or cfg.get("stateful"):
            return None
        if kind == "gru" and not cfg.get("reset_after", True):
            return None
        w, u, b = _f64(*la.get_weights())
        plans.append((w, u, b.reshape(-1, b.shape[-1])))  # LSTM (4U,), GRU (2, 3U)
    act = _activation(head)
    if act is None or act in (_RELU,) or not head.use_bias:
        return None
    w, b = _f64(*head.get_weights())
    return ForwardPlan(kind, plans, (w, b, act), {})


def _encoder_plan(layers: list[Any]) -> ForwardPlan | None:
    import keras

    from botlib.models.nn.transformer import PositionalEncoding

    dense, pos, *rest = layers
    if type(dense) is not keras.layers.Dense or type(pos) is not PositionalEncoding:
        return None
    *body, pool, head = rest
    if type(pool) is not keras.layers.GlobalAveragePooling1D or _activation(head) != _SOFTMAX:
        return None
    w_in, b_in = _f64(*dense.get_weights())
    code = _f64(np.asarray(pos.code)[0])[0]
    blocks, heads, eps = [], 0, 0.0
    per_block = 6  # attention, norm, dense relu, dropout, dense, norm
    if len(body) % per_block:
        return None
    for at in range(0, len(body), per_block):
        mha, ln1, ff1, _, ff2, ln2 = body[at : at + per_block]
        kinds = (
            keras.layers.MultiHeadAttention,
            keras.layers.LayerNormalization,
            keras.layers.Dense,
            keras.layers.Dropout,
            keras.layers.Dense,
            keras.layers.LayerNormalization,
        )
        if any(type(la) is not t for la, t in zip(body[at : at + per_block], kinds, strict=True)):
            return None
        if _activation(ff1) != _RELU or _activation(ff2) != _LINEAR:
            return None
        if ln1.epsilon != ln2.epsilon or (eps and ln1.epsilon != eps):
            return None
        eps, heads = float(ln1.epsilon), int(mha.num_heads)
        wq, bq, wk, bk, wv, bv, wo, bo = (np.asarray(a) for a in mha.get_weights())
        d_model, key_dim = wq.shape[0], wq.shape[2]
        if wv.shape[2] != key_dim or wo.shape[2] != d_model:
            return None
        flat = (
            wq.reshape(d_model, heads * key_dim),
            bq.reshape(-1),
            wk.reshape(d_model, heads * key_dim),
            bk.reshape(-1),
            wv.reshape(d_model, heads * key_dim),
            bv.reshape(-1),
            wo.reshape(heads * key_dim, d_model),
            bo,
        )
        blocks.append(
            _f64(
                *flat,
                *ln1.get_weights(),
                *ff1.get_weights(),
                *ff2.get_weights(),
                *ln2.get_weights(),
            )
        )
    w_out, b_out = _f64(*head.get_weights())
    # each weight stacked over the blocks (numba's parallel loop takes arrays, not tuples)
    stacked = tuple(np.ascontiguousarray(np.stack(ws)) for ws in zip(*blocks, strict=True))
    extra = {
        "w_in": w_in,
        "b_in": b_in,
        "code": code,
        "blocks": stacked,
        "heads": heads,
        "eps": eps,
    }
    return ForwardPlan("transformer", [], (w_out, b_out, _SOFTMAX), extra)
