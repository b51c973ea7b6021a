"""How much of a backtest's edge survives the search that found it.

* ``deflated_sharpe_ratio`` — Bailey & López de Prado (2014), "The Deflated Sharpe Ratio:
  Correcting for Selection Bias, Backtest Overfitting and Non-Normality": the
  probability that the selected strategy's true Sharpe ratio is above the best one
  expected from ``n_trials`` skill-less trials, given the track record's length,
  skewness and kurtosis.
* ``probability_of_backtest_overfitting`` — Bailey, Borwein, López de Prado & Zhu
  (2015), "The Probability of Backtest Overfitting": combinatorially symmetric
  cross-validation over a matrix of per-period returns (one column per trial); the
  share of splits where the in-sample winner ranks in the bottom half out of sample.

All Sharpe ratios here are per period (not annualized) unless a name says otherwise.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import norm

from botlib.errors import ConfigError

__all__ = [
    "PBOResult",
    "deflated_sharpe_ratio",
    "expected_max_sharpe",
    "probabilistic_sharpe_ratio",
    "probability_of_backtest_overfitting",
    "search_statistics",
    "sharpe_ratio",
]

EULER_GAMMA = 0.5772156649015329


def sharpe_ratio(returns: np.ndarray) -> float:
    """Mean over sample standard deviation (ddof 1) of per-period returns."""
    r = np.asarray(returns, dtype="float64")
    sd = r.std(ddof=1) if len(r) > 1 else 0.0
    return float(r.mean() / sd) if sd > 0 else float("nan")


def expected_max_sharpe(n_trials: int, sharpe_variance: float) -> float:
    """Expected maximum Sharpe ratio of ``n_trials`` independent skill-less trials
    whose Sharpe ratios have variance ``sharpe_variance`` (the paper's SR0)."""
    if n_trials < 1:
        raise ConfigError(f"n_trials must be >= 1, got {n_trials}")
    if n_trials == 1:
        return 0.0
    z1 = norm.ppf(1.0 - 1.0 / n_trials)
    z2 = norm.ppf(1.0 - 1.0 / (n_trials * math.e))
    return float(math.sqrt(sharpe_variance) * ((1 - EULER_GAMMA) * z1 + EULER_GAMMA * z2))


def probabilistic_sharpe_ratio(
    sharpe: float, benchmark: float, n_obs: int, skew: float = 0.0, kurtosis: float = 3.0
) -> float:
    """P(true Sharpe > ``benchmark``) given an observed per-period ``sharpe`` over
    ``n_obs`` returns with that skewness and (non-excess) kurtosis."""
    if n_obs < 2:
        raise ConfigError(f"need at least 2 returns, got {n_obs}")
    denom = 1.0 - skew * sharpe + (kurtosis - 1.0) / 4.0 * sharpe**2
    if denom <= 0:
        return float("nan")
    return float(norm.cdf((sharpe - benchmark) * math.sqrt(n_obs - 1) / math.sqrt(denom)))


def deflated_sharpe_ratio(
    sharpe: float,
    *,
    n_obs: int,
    n_trials: int,
    sharpe_variance: float,
    skew: float = 0.0,
    kurtosis: float = 3.0,
) -> float:
    """The DSR: the probabilistic Sharpe ratio against ``expected_max_sharpe``. All
    Sharpe figures per period; ``kurtosis`` is non-excess (3 for a normal)."""
    benchmark = expected_max_sharpe(n_trials, sharpe_variance)
    return probabilistic_sharpe_ratio(sharpe, benchmark, n_obs, skew, kurtosis)


@dataclass(frozen=True)
class PBOResult:
    pbo: float  # share of splits with logit <= 0
    logits: np.ndarray  # one per split
    splits: int
    degradation: float  # slope of OOS vs IS Sharpe of the selected trials


def _sharpe_from_sums(total: np.ndarray, squares: np.ndarray, count: int) -> np.ndarray:
    mean = total / count
    var = (squares - count * mean**2) / (count - 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = mean / np.sqrt(var)
    return np.where(var > 1e-300, out, -np.inf)


def probability_of_backtest_overfitting(
    returns: pd.DataFrame | np.ndarray, *, blocks: int = 16
) -> PBOResult:
    """CSCV over a (periods × trials) matrix of returns, cut into ``blocks`` (even)
    contiguous blocks: every half of the blocks is in-sample once, its complement out
    of sample; performance is the Sharpe ratio."""
    m = np.asarray(returns, dtype="float64")
    if m.ndim != 2 or m.shape[1] < 2:
        raise ConfigError("need a 2-D matrix with one column per trial (at least 2 trials)")
    if blocks < 2 or blocks % 2:
        raise ConfigError(f"blocks must be an even number >= 2, got {blocks}")
    if m.shape[0] < 2 * blocks:
        raise ConfigError(f"{m.shape[0]} periods are too few for {blocks} blocks")
    if not np.isfinite(m).all():
        raise ConfigError("returns hold NaN or infinite values")
    parts = np.array_split(np.arange(m.shape[0]), blocks)
    # per-block sums make every split's Sharpe ratios O(blocks x trials)
    sums = np.array([m[p].sum(axis=0) for p in parts])
    squares = np.array([(m[p] ** 2).sum(axis=0) for p in parts])
    sizes = np.array([len(p) for p in parts])
    all_sum, all_sq, all_n = sums.sum(axis=0), squares.sum(axis=0), int(sizes.sum())
    n = m.shape[1]
    logits, is_best, oos_best = [], [], []
    for chosen in itertools.combinations(range(blocks), blocks // 2):
        pick = list(chosen)
        in_sum, in_sq, in_n = sums[pick].sum(axis=0), squares[pick].sum(axis=0), sizes[pick].sum()
        sr_in = _sharpe_from_sums(in_sum, in_sq, int(in_n))
        sr_out = _sharpe_from_sums(all_sum - in_sum, all_sq - in_sq, all_n - int(in_n))
        best = int(np.argmax(sr_in))
        # relative rank of the in-sample winner out of sample, in (0, 1)
        rank = float((sr_out < sr_out[best]).sum() + 0.5 * ((sr_out == sr_out[best]).sum() + 1))
        omega = rank / (n + 1)
        logits.append(math.log(omega / (1 - omega)))
        is_best.append(sr_in[best])
        oos_best.append(sr_out[best])
    arr = np.array(logits)
    ok = np.isfinite(is_best) & np.isfinite(oos_best)
    slope = (
        float(np.polyfit(np.array(is_best)[ok], np.array(oos_best)[ok], 1)[0])
        if ok.sum() > 2
        else float("nan")
    )
    return PBOResult(float((arr <= 0).mean()), arr, len(arr), slope)


def search_statistics(
    returns: pd.DataFrame | np.ndarray, best: int, *, blocks: int = 16
) -> dict[str, float]:
    """DSR of trial ``best`` and PBO over the trial set (columns of per-period returns,
    one per distinct trial actually evaluated)."""
    from scipy.stats import kurtosis, skew

    m = np.asarray(returns, dtype="float64")
    sharpes = np.array([sharpe_ratio(m[:, j]) for j in range(m.shape[1])])
    finite = sharpes[np.isfinite(sharpes)]
    r = m[:, best]
    out = {
        "n_trials": float(m.shape[1]),
        "best_sharpe_per_bar": float(sharpes[best]),
        "trial_sharpe_variance": float(finite.var(ddof=1)) if len(finite) > 1 else 0.0,
    }
    out["deflated_sharpe"] = (
        deflated_sharpe_ratio(
            float(sharpes[best]),
            n_obs=len(r),
            n_trials=m.shape[1],
            sharpe_variance=out["trial_sharpe_variance"],
            skew=float(skew(r)),
            kurtosis=float(kurtosis(r, fisher=False)),
        )
        if np.isfinite(sharpes[best])
        else float("nan")
    )
    if m.shape[1] >= 2 and m.shape[0] >= 2 * blocks:
        out["pbo"] = probability_of_backtest_overfitting(m, blocks=blocks).pbo
    return out
