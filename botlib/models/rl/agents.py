"""stable-baselines3 DQN and PPO agents trading ``TradingEnv``; as models they output the
position their deterministic policy holds after each bar (``target``)."""

from __future__ import annotations

import logging
from collections import deque
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
from stable_baselines3 import DQN, PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import Logger

from botlib.errors import ConfigError
from botlib.features import FeatureSpec, feature_matrix, get_feature_spec
from botlib.features.streaming import StreamingFeatures, streamable
from botlib.models.base import BaseModel, FitReport, ModelMeta, ModelStream, check_candles
from botlib.models.rl.env import OBS_CLIP, TradingEnv, next_position
from botlib.models.rows import pack_rows, unpack_rows
from botlib.progress import advance
from botlib.seed import seed_everything

log = logging.getLogger(__name__)


class _Progress(BaseCallback):
    """Logs progress every 10 % and records episode returns per timestep."""

    def __init__(self, name: str, total: int) -> None:
        super().__init__()
        self.name, self.total = name, total
        self.next_report = 0.1
        self.curve: dict[str, list[float]] = {"timestep": [], "episode_reward": []}
        self._episode = 0.0

    def _on_step(self) -> bool:
        self._episode += float(np.sum(self.locals["rewards"]))
        if bool(np.any(self.locals["dones"])):
            self.curve["timestep"].append(float(self.num_timesteps))
            self.curve["episode_reward"].append(self._episode)
            self._episode = 0.0
        if self.num_timesteps >= self.next_report * self.total:
            log.info("%s: %d/%d timesteps", self.name, self.num_timesteps, self.total)
            self.next_report += 0.1
        if self.num_timesteps % 64 == 0 or self.num_timesteps >= self.total:
            advance(f"{self.name} timesteps", self.num_timesteps, self.total)
        return True


class RLAgentModel(BaseModel):
    model_type = "reinforcement_learning"
    prediction_type = "direction"
    outputs = ("target",)
    _algo: ClassVar[type[BaseAlgorithm]]

    def __init__(
        self,
        *,
        timesteps: int = 20_000,
        window: int = 16,
        learning_rate: float = 3e-4,
        hidden: int = 64,
        fee: float = 0.001,
        slippage: float = 0.0005,
        allow_short: bool = False,
        reward: str = "log_return",
        episode_length: int = 512,
        feature_set: str = "default",
        seed: int = 0,
    ) -> None:
        if timesteps < 1 or window < 1 or hidden < 1:
            raise ConfigError(f"{self.name}: timesteps, window and hidden must be >= 1")
        if reward not in ("log_return", "sharpe"):
            raise ConfigError(
                f"{self.name}: reward must be 'log_return' or 'sharpe', got {reward!r}"
            )
        super().__init__(
            timesteps=timesteps,
            window=window,
            learning_rate=learning_rate,
            hidden=hidden,
            fee=fee,
            slippage=slippage,
            allow_short=allow_short,
            reward=reward,
            episode_length=episode_length,
            feature_set=feature_set,
            seed=seed,
        )
        self.spec: FeatureSpec = get_feature_spec(feature_set)
        self.agent: BaseAlgorithm | None = None
        self._mu = np.zeros(0)
        self._sd = np.ones(0)

    @property
    def meta(self) -> ModelMeta:
        return self._meta(window=self.params["window"], horizon=1, spec=self.spec)

    def _agent_kwargs(self) -> dict[str, Any]:
        return {}

    def _scaled(self, candles: pd.DataFrame) -> np.ndarray:
        feats = feature_matrix(candles, self.spec)[0].astype("float32")
        return np.asarray(np.clip((feats - self._mu) / self._sd, -OBS_CLIP, OBS_CLIP))

    def _env(self, candles: pd.DataFrame, *, episode_length: int | None) -> TradingEnv:
        feats = self._scaled(candles)
        ok = np.isfinite(feats).all(axis=1)
        first = int(np.argmax(ok))
        p = self.params
        return TradingEnv(
            feats[first:],
            candles["open"].to_numpy()[first:],
            candles["close"].to_numpy()[first:],
            window=p["window"],
            fee=p["fee"],
            slippage=p["slippage"],
            allow_short=p["allow_short"],
            reward=p["reward"],
            episode_length=episode_length,
        )

    def _fit(self, train: pd.DataFrame, valid: pd.DataFrame | None) -> FitReport:
        p = self.params
        seed_everything(p["seed"])
        torch.set_num_threads(1)
        raw = feature_matrix(train, self.spec)[0].astype("float32")
        rows = raw[np.isfinite(raw).all(axis=1)]
        self._mu, self._sd = rows.mean(axis=0), rows.std(axis=0) + 1e-8
        env = self._env(train, episode_length=p["episode_length"])
        self.agent = self._algo(
            "MlpPolicy",
            env,
            learning_rate=p["learning_rate"],
            seed=p["seed"],
            device="cpu",
            policy_kwargs={"net_arch": [p["hidden"], p["hidden"]]},
            verbose=0,
            **self._agent_kwargs(),
        )
        # a logger that writes nowhere: SB3's default makes a folder in the temp dir
        # (``SB3-<date>``) on every ``learn``, left behind empty
        self.agent.set_logger(Logger(None, []))
        progress = _Progress(self.name, p["timesteps"])
        self.agent.learn(total_timesteps=p["timesteps"], callback=progress)
        report = FitReport(history=progress.curve, epochs=p["timesteps"])
        report.metrics["train_log_return"] = self._policy_log_return(train)
        if valid is not None:
            context = pd.concat([train.iloc[-self.meta.required_history :], valid])
            report.metrics["val_log_return"] = self._policy_log_return(context, len(valid))
        return report

    def _policy_log_return(self, candles: pd.DataFrame, last: int | None = None) -> float:
        """Log growth of the env's portfolio following the policy over the last ``last``
        bars (or all)."""
        target = self._positions(candles)
        close, open_ = candles["close"].to_numpy(), candles["open"].to_numpy()
        start = len(candles) - last if last else 0
        total, cost = 0.0, self.params["fee"] + self.params["slippage"]
        held = np.nan_to_num(target)
        for t in range(max(start, 1), len(candles) - 1):
            old, new = held[t - 1], held[t]
            g = (1 + old * (open_[t + 1] / close[t] - 1)) * (1 - cost * abs(new - old))
            g *= 1 + new * (close[t + 1] / open_[t + 1] - 1)
            total += float(np.log(max(g, 1e-12)))
        return total

    def _act(self, rows: np.ndarray, position: float, entry: float, close: float) -> float:
        """One policy call: the position held after a bar whose last ``window`` scaled
        feature rows are ``rows``, from ``position`` entered at ``entry``."""
        assert self.agent is not None
        unreal = position * (close / entry - 1.0) if position != 0.0 else 0.0
        obs = np.concatenate(
            [rows.ravel(), [position, np.clip(unreal * 10.0, -OBS_CLIP, OBS_CLIP)]]
        )
        with torch.no_grad():  # the policy network directly: no per-call checks
            action = int(
                self.agent.policy._predict(
                    torch.as_tensor(obs[None], dtype=torch.float32), deterministic=True
                )[0]
            )
        return next_position(action, position, allow_short=bool(self.params["allow_short"]))

    def _positions(self, candles: pd.DataFrame) -> np.ndarray:
        """Replays the deterministic policy over ``candles`` from a flat book."""
        assert self.agent is not None
        feats = self._scaled(candles)
        ok = np.isfinite(feats).all(axis=1)
        w = self.params["window"]
        out = np.full(len(candles), np.nan)
        position, entry = 0.0, 0.0
        close, open_ = candles["close"].to_numpy(), candles["open"].to_numpy()
        self.agent.policy.set_training_mode(False)
        for t in range(w - 1, len(candles)):
            if not ok[t - w + 1 : t + 1].all():
                continue
            new = self._act(feats[t - w + 1 : t + 1], position, entry, close[t])
            if new != position and new != 0.0:
                entry = open_[t + 1] if t + 1 < len(candles) else close[t]
            position = new
            out[t] = position
        return out

    def act_last(self, candles: pd.DataFrame, position: float, entry: float | None = None
                 ) -> pd.DataFrame:  # fmt: skip
        """The newest bar's ``target`` from a held ``position`` (entered at ``entry``,
        default the newest close: no open profit): one policy call, where
        ``predict_last`` replays the policy over the whole window from flat."""
        if not self.fitted:
            raise RuntimeError(f"{self.name}: call fit() or load() before act_last()")
        if position not in (-1.0, 0.0, 1.0):
            raise ConfigError(f"{self.name}: position must be -1, 0 or 1, got {position}")
        check_candles(candles, self.meta.required_history, who=self.name)
        w = self.params["window"]
        feats = feature_matrix(candles, self.spec, tail=w)[0].astype("float32")
        rows = np.clip((feats - self._mu) / self._sd, -OBS_CLIP, OBS_CLIP)
        close = float(candles["close"].iloc[-1])
        target = np.nan
        if len(rows) == w and np.isfinite(rows).all():
            assert self.agent is not None
            self.agent.policy.set_training_mode(False)
            target = self._act(rows, position, close if entry is None else float(entry), close)
        return pd.DataFrame({"target": [target]}, index=candles.index[-1:])

    def stream(self) -> ModelStream | None:
        return _AgentStream(self) if streamable(self.spec) else None

    def _predict(self, candles: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame({"target": self._positions(candles)}, index=candles.index)

    def _save(self, path: Path) -> None:
        assert self.agent is not None
        self.agent.save(path / "agent.zip")
        np.savez(path / "scaler.npz", mu=self._mu, sd=self._sd)

    def _load(self, path: Path) -> None:
        self.agent = self._algo.load(path / "agent.zip", device="cpu")
        with np.load(path / "scaler.npz") as data:
            self._mu, self._sd = data["mu"], data["sd"]


class _AgentStream(ModelStream):
    """The agent's live state on one market: streaming features, its last ``window``
    observation rows, and the position it holds (with its entry price): one policy call
    per bar, the decisions ``_positions`` replays over a whole history."""

    def __init__(self, model: RLAgentModel) -> None:
        self.model = model
        self.features = StreamingFeatures(model.spec)
        self.rows: deque[np.ndarray] = deque(maxlen=int(model.params["window"]))
        self.position, self.entry = 0.0, 0.0
        #: a position opened on the last bar: its entry is the next bar's open
        self.pending = False
        if model.agent is not None:
            model.agent.policy.set_training_mode(False)

    def step(self, bar: dict[str, float]) -> np.ndarray:
        m = self.model
        full = self.features.update(bar)
        self._seen(full)
        raw = full.astype("float32")
        self.rows.append(np.clip((raw - m._mu) / m._sd, -OBS_CLIP, OBS_CLIP))
        if self.pending:
            self.entry, self.pending = float(bar["open"]), False
        if len(self.rows) < (self.rows.maxlen or 0):
            return np.array([np.nan])
        rows = np.stack(self.rows)
        if not np.isfinite(rows).all():
            return np.array([np.nan])
        new = m._act(rows, self.position, self.entry, float(bar["close"]))
        if new != self.position and new != 0.0:
            self.pending = True
        self.position = new
        return np.array([new])

    def state(self) -> dict[str, Any]:
        return {
            "features": self.features.state(),
            "rows": pack_rows(self.rows, len(self.model._mu)),
            "position": self.position,
            "entry": self.entry,
            "pending": self.pending,
        }

    def restore(self, state: dict[str, Any]) -> None:
        self.features.restore(state["features"])
        self.rows = deque(unpack_rows(state["rows"]), maxlen=self.rows.maxlen)
        self.position, self.entry = float(state["position"]), float(state["entry"])
        self.pending = bool(state["pending"])


class DQNModel(RLAgentModel):
    name = "dqn"
    algorithm = "dqn"
    _algo = DQN

    def _agent_kwargs(self) -> dict[str, Any]:
        steps = self.params["timesteps"]
        return {
            "learning_starts": min(1_000, max(steps // 10, 16)),
            "buffer_size": 50_000,
            "batch_size": 64,
            "train_freq": 4,
            "target_update_interval": 500,
            "exploration_fraction": 0.3,
        }


class PPOModel(RLAgentModel):
    name = "ppo"
    algorithm = "ppo"
    _algo = PPO

    def _agent_kwargs(self) -> dict[str, Any]:
        steps = self.params["timesteps"]
        n_steps = int(min(2_048, max(64, steps)))
        return {"n_steps": n_steps, "batch_size": min(64, n_steps), "n_epochs": 4}
