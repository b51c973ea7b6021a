"""Does a forecasting model add anything? Its forecasts beside naive ones.

``forecast_metrics`` scores a model's per-bar outputs on a window against what happened
``horizon`` bars later (labels computed here, after the fact):

* direction — ``directional_accuracy`` (share of bars where the forecast's sign matched
  the realized move) beside a coin (0.5) and ``persistence_accuracy`` (forecast the
  last ``horizon`` bars' move again);
* expected return — ``rmse`` beside ``random_walk_rmse`` (forecast no move);
* volatility — ``vol_rmse`` beside ``vol_persistence_rmse`` (forecast the trailing
  realized volatility).

Bars with no forecast (warm-up) or no outcome yet (the last ``horizon`` bars) are
left out; ``scored_bars`` says how many counted.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from botlib.features.labels import forward_return, forward_volatility

__all__ = ["forecast_metrics"]


def _signed_score(outputs: pd.DataFrame) -> pd.Series | None:
    for col in ("expected_return", "score", "target"):
        if col in outputs:
            return outputs[col]
    if "p_up" in outputs and "p_down" in outputs:
        return outputs["p_up"] - outputs["p_down"]
    return None


def forecast_metrics(
    outputs: pd.DataFrame, candles: pd.DataFrame, *, horizon: int
) -> dict[str, float]:
    """Forecast quality of ``outputs`` (aligned with ``candles``) and of the naive
    baselines over the same bars. Empty when the model forecasts nothing scorable."""
    h = max(int(horizon), 1)
    close = candles["close"]
    realized = forward_return(h).compute(candles)
    past = pd.Series(np.log(close / close.shift(h)), index=candles.index)
    out: dict[str, float] = {}
    score = _signed_score(outputs)
    if score is not None:
        ok = score.notna() & realized.notna() & (score != 0) & (realized != 0)
        if ok.any():
            hit = np.sign(score[ok]) == np.sign(realized[ok])
            out["directional_accuracy"] = float(hit.mean())
            out["coin_accuracy"] = 0.5
            okp = ok & past.notna() & (past != 0)
            out["persistence_accuracy"] = float(
                (np.sign(past[okp]) == np.sign(realized[okp])).mean()
            )
            out["scored_bars"] = float(ok.sum())
    if "expected_return" in outputs:
        ok = outputs["expected_return"].notna() & realized.notna()
        if ok.any():
            err = outputs["expected_return"][ok] - realized[ok]
            out["rmse"] = float(math.sqrt((err**2).mean()))
            out["random_walk_rmse"] = float(math.sqrt((realized[ok] ** 2).mean()))
    if "volatility" in outputs and h >= 2:
        actual = forward_volatility(h).compute(candles)
        trailing = pd.Series(np.log(close / close.shift(1))).rolling(h).std(ddof=1)
        ok = outputs["volatility"].notna() & actual.notna() & trailing.notna()
        if ok.any():
            out["vol_rmse"] = float(
                math.sqrt(((outputs["volatility"][ok] - actual[ok]) ** 2).mean())
            )
            out["vol_persistence_rmse"] = float(
                math.sqrt(((trailing[ok] - actual[ok]) ** 2).mean())
            )
    return out
