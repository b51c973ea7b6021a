"""A gymnasium trading environment over a feature frame.

At step ``t`` the agent sees the last ``window`` rows of (scaled) features up to bar
``t``, its position and its unrealized return — nothing later. Its action (0 hold,
1 buy, 2 sell) is filled at bar ``t+1``'s open, the same convention as the backtest
engine; fees and slippage are charged on every position change. The reward, paid every
step, is the change in log portfolio value from close ``t`` to close ``t+1`` net of
costs, or with ``reward="sharpe"`` the differential Sharpe ratio of that return
(Moody & Saffell, 2001).

Long-only by default: "sell" goes flat. With ``allow_short`` it goes short.
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np

HOLD, BUY, SELL = 0, 1, 2
OBS_CLIP = 10.0


def next_position(action: int, position: float, *, allow_short: bool) -> float:
    """The position (-1, 0 or 1) an action leads to from ``position``."""
    if action == BUY:
        return 1.0
    if action == SELL:
        return -1.0 if allow_short else 0.0
    return position


class TradingEnv(gym.Env[np.ndarray, int]):
    metadata = {"render_modes": []}  # noqa: RUF012 - gymnasium's convention

    def __init__(
        self,
        features: np.ndarray,
        open_: np.ndarray,
        close: np.ndarray,
        *,
        window: int = 16,
        fee: float = 0.001,
        slippage: float = 0.0005,
        allow_short: bool = False,
        reward: str = "log_return",
        episode_length: int | None = None,
        sharpe_eta: float = 0.01,
    ) -> None:
        super().__init__()
        features = np.asarray(features, dtype="float32")
        if features.ndim != 2 or len(features) != len(open_) or len(open_) != len(close):
            raise ValueError("features (T, F), open (T,) and close (T,) must share T")
        if not np.isfinite(features).all():
            raise ValueError("features hold NaN/inf: drop the warm-up rows first")
        if window < 1 or len(features) < window + 2:
            raise ValueError(f"need at least window + 2 = {window + 2} bars, got {len(features)}")
        if reward not in ("log_return", "sharpe"):
            raise ValueError(f"reward must be 'log_return' or 'sharpe', got {reward!r}")
        self.features = np.clip(features, -OBS_CLIP, OBS_CLIP)
        self.opens = np.asarray(open_, dtype="float64")
        self.closes = np.asarray(close, dtype="float64")
        self.window = int(window)
        self.cost = float(fee) + float(slippage)
        self.allow_short = bool(allow_short)
        self.reward_kind = reward
        self.episode_length = episode_length
        self.eta = float(sharpe_eta)
        n_obs = self.window * features.shape[1] + 2
        self.observation_space: gym.spaces.Box = gym.spaces.Box(
            -OBS_CLIP, OBS_CLIP, (n_obs,), np.float32
        )
        self.action_space: gym.spaces.Discrete = gym.spaces.Discrete(3)  # type: ignore[assignment]
        self._t = self.window - 1
        self._end = len(self.closes) - 1
        self._position = 0.0
        self._entry = 0.0
        self._value = 1.0
        self._a = 0.0
        self._b = 0.0

    def _obs(self) -> np.ndarray:
        t = self._t
        win = self.features[t - self.window + 1 : t + 1].ravel()
        unreal = 0.0
        if self._position != 0.0:
            unreal = self._position * (self.closes[t] / self._entry - 1.0)
        extra = np.array(
            [self._position, np.clip(unreal * 10.0, -OBS_CLIP, OBS_CLIP)], dtype="float32"
        )
        return np.concatenate([win, extra]).astype("float32")

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        first = self.window - 1
        last_start = len(self.closes) - 2
        if self.episode_length is not None and last_start - first > self.episode_length:
            start = int(self.np_random.integers(first, last_start - self.episode_length + 1))
            self._end = start + self.episode_length
        else:
            start, self._end = first, len(self.closes) - 1
        self._t = start
        self._position, self._entry, self._value = 0.0, 0.0, 1.0
        self._a = self._b = 0.0
        return self._obs(), {"t": self._t}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if not self.action_space.contains(action):
            raise ValueError(f"invalid action {action!r}; expected 0 (hold), 1 (buy), 2 (sell)")
        t = self._t
        old = self._position
        new = next_position(int(action), old, allow_short=self.allow_short)
        # hold the old position overnight to the next open, trade there, mark to close
        growth = 1.0 + old * (self.opens[t + 1] / self.closes[t] - 1.0)
        growth *= 1.0 - self.cost * abs(new - old)
        growth *= 1.0 + new * (self.closes[t + 1] / self.opens[t + 1] - 1.0)
        growth = max(float(growth), 1e-12)
        log_ret = math.log(growth)
        if new != old and new != 0.0:
            self._entry = self.opens[t + 1]
        self._position = new
        self._value *= growth
        self._t = t + 1
        reward = (
            log_ret if self.reward_kind == "log_return" else self._differential_sharpe(growth - 1.0)
        )
        terminated = bool(self._value <= 1e-6)
        truncated = bool(self._t >= self._end)
        return (
            self._obs(),
            float(reward),
            terminated,
            truncated,
            {"t": self._t, "position": new, "value": self._value},
        )

    def _differential_sharpe(self, r: float) -> float:
        a, b = self._a, self._b
        da, db = r - a, r * r - b
        denom = (b - a * a) ** 1.5
        d = (b * da - 0.5 * a * db) / denom if denom > 1e-12 else 0.0
        self._a, self._b = a + self.eta * da, b + self.eta * db
        return float(np.clip(d, -OBS_CLIP, OBS_CLIP))
