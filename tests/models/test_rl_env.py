from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

from botlib.features import build_features
from botlib.models.rl.env import BUY, HOLD, SELL, TradingEnv


def _env(candles: pd.DataFrame, **kwargs: object) -> TradingEnv:
    feats = build_features(candles).iloc[400:]
    c = candles.iloc[400:]
    scaled = (feats - feats.mean()) / feats.std()
    return TradingEnv(scaled.to_numpy(), c["open"].to_numpy(), c["close"].to_numpy(), **kwargs)


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {
            "allow_short": True,
            "reward": "sharpe",
            "window": 8,
            "episode_length": 50,
            "fee": 0.0,
            "slippage": 0.0,
        },
    ],
    ids=["default", "short-sharpe-episodes"],
)
def test_env_passes_both_checkers(btc_1h: pd.DataFrame, kwargs: dict[str, object]) -> None:
    env = _env(btc_1h.iloc[-1_000:], **kwargs)
    gym_check_env(env, skip_render_check=True)
    sb3_check_env(env, warn=True)


def test_observation_ignores_altered_future(btc_1h: pd.DataFrame) -> None:
    candles = btc_1h.iloc[-1_200:]
    altered = candles.copy()
    cut = 900
    altered.iloc[cut + 1 :, :4] *= 1.3  # every price after bar `cut` changes
    # features come from each history; the scaler is fixed (fitted on the past)
    feats_a, feats_b = build_features(candles), build_features(altered)
    mu, sd = feats_a.iloc[400:cut].mean(), feats_a.iloc[400:cut].std()
    envs = []
    for frame, feats in ((candles, feats_a), (altered, feats_b)):
        scaled = ((feats - mu) / sd).iloc[400:]
        envs.append(
            TradingEnv(
                scaled.to_numpy(),
                frame["open"].to_numpy()[400:],
                frame["close"].to_numpy()[400:],
                window=16,
            )
        )
    obs = [env.reset(seed=1)[0] for env in envs]
    actions = [BUY, HOLD, HOLD, SELL, BUY] * 200
    step = 0
    while envs[0]._t + 400 < cut:  # observations up to bar `cut`
        np.testing.assert_array_equal(obs[0], obs[1], err_msg=f"obs differ at step {step}")
        obs = [env.step(actions[step])[0] for env in envs]
        step += 1
    np.testing.assert_array_equal(obs[0], obs[1])
    assert step > 400
    # one more step crosses into the altered bars: now they differ (the check can fail)
    obs = [env.step(HOLD)[0] for env in envs]
    assert not np.array_equal(obs[0], obs[1])


def test_reward_every_step_and_costs(btc_1h: pd.DataFrame) -> None:
    env = _env(btc_1h.iloc[-800:], fee=0.001, slippage=0.0005)
    env.reset(seed=0)
    rewards = [env.step(BUY)[1]]
    t = env._t
    rewards += [env.step(HOLD)[1] for _ in range(10)]
    assert all(r != 0 for r in rewards), "a held position earns a reward every bar"
    # the first step paid the entry cost: its reward is below the pure price move
    c, o = env.closes, env.opens
    move = np.log(c[t] / o[t])
    assert rewards[0] == pytest.approx(move + np.log(1 - 0.0015), rel=1e-9)
    flat = _env(btc_1h.iloc[-800:])
    flat.reset(seed=0)
    assert all(flat.step(HOLD)[1] == 0.0 for _ in range(20))


def test_long_only_sell_goes_flat_and_bounds_hold(btc_1h: pd.DataFrame) -> None:
    env = _env(btc_1h.iloc[-800:])
    env.reset(seed=0)
    env.step(BUY)
    _, _, _, _, info = env.step(SELL)
    assert info["position"] == 0.0
    short = _env(btc_1h.iloc[-800:], allow_short=True)
    short.reset(seed=0)
    assert short.step(SELL)[4]["position"] == -1.0
    obs = short.reset(seed=0)[0]
    assert short.observation_space.contains(obs)
    with pytest.raises(ValueError, match="invalid action"):
        short.step(7)
