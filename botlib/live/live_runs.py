"""Live runs in MLflow (issue 18 §4): each served model version's paper account on a
market gets an MLflow run, ``live``, beside the version's training run (its child in
the UI, the same experiment), which ``botlib paper`` updates as the account goes:

* once, at creation: the version's test metrics as promoted (``test.*``), so one run
  shows the test and live figures of the version side by side;
* every update (step = bars traded on paper): ``live.paper_equity``,
  ``live.paper_return``, ``live.max_drawdown``, ``live.fills``, ``live.missing_signals``,
  ``live.parity_breaks``, ``live.shadow_equity``, the loop's live hit rate
  (``live.hit_rate``, with ``live.persistence_hit_rate`` beside it) and the feature
  drift scores (``live.drift.{feature}``, ``live.drift.max``);
* ``figures/live_equity.html``: the paper equity against the shadow backtest's.

The version carries a tag per market naming its live run
(``botlib.live_run.{exchange}.{market}.{timeframe}``), so the registry page leads to it.
"""

from __future__ import annotations

import logging
import math
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["LiveRuns", "live_run_tag"]

log = logging.getLogger("botlib.paper")


def live_run_tag(exchange: str, market: str, timeframe: str) -> str:
    """The registry version tag naming its live run on a market."""
    return f"botlib.live_run.{exchange}.{market.replace('/', '_')}.{timeframe}"


def _finite(values: dict[str, Any]) -> dict[str, float]:
    out = {}
    for key, value in values.items():
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        if math.isfinite(number):
            out[key] = number
    return out


class LiveRuns:
    """Creates and updates the ``live`` runs; at most one update per account every
    ``every_s`` seconds (MLflow writes are slow beside a bar)."""

    def __init__(self, *, every_s: float = 300.0) -> None:
        self.every_s = every_s
        self._last: dict[str, float] = {}
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            from botlib.tracking import mlflow_client

            self._client = mlflow_client()
        return self._client

    def due(self, key: str) -> bool:
        return time.monotonic() - self._last.get(key, -math.inf) >= self.every_s

    def _create(self, acc: Any, entry: dict[str, Any] | None) -> str:
        client = self.client
        version = client.get_model_version(acc.model_name, acc.version)
        source = client.get_run(version.run_id) if version.run_id else None
        if source is not None:
            experiment_id = source.info.experiment_id
        else:
            from botlib.tracking import configure

            experiment_id = configure("botlib-live")
        tags = {
            "mlflow.runName": f"live {acc.model_name} v{acc.version} {acc.market} "
            f"{acc.timeframe} ({acc.exchange})",
            "botlib.kind": "live",
            "botlib.model": acc.model_name,
            "botlib.version": acc.version,
            "botlib.model_id": acc.model_id,
            "botlib.market": acc.stream,
            "botlib.paper_account": acc.key,
        }
        if source is not None:
            tags["mlflow.parentRunId"] = source.info.run_id
            tags["botlib.training_run"] = source.info.run_id
        run = client.create_run(experiment_id, tags=tags)
        run_id = str(run.info.run_id)
        client.set_model_version_tag(
            acc.model_name, acc.version, live_run_tag(acc.exchange, acc.market, acc.timeframe),
            run_id,
        )  # fmt: skip
        tested = _finite((entry or {}).get("metrics") or {})
        if not tested and source is not None:
            tested = {k: v for k, v in source.data.metrics.items() if k.startswith("test.")}
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(k, v, now, 0) for k, v in sorted(tested.items()) if k.startswith("test.")]
        if metrics:
            client.log_batch(run_id, metrics=metrics)
        log.info("%s: live run %s created", acc.key, run_id)
        return run_id

    def update(
        self,
        acc: Any,
        *,
        entry: dict[str, Any] | None,
        times: np.ndarray,
        paper_equity: np.ndarray,
        shadow_equity: np.ndarray | None,
        figures: dict[str, float],
    ) -> str:
        """Log the account's figures (and the equity figure) to its live run, created
        first if need be; returns the run id (kept on the account)."""
        from mlflow.entities import Metric

        run_id = getattr(acc, "live_run", None) or self._create(acc, entry)
        now = int(time.time() * 1000)
        values = _finite(figures)
        metrics = [Metric(f"live.{k}", v, now, int(acc.bars)) for k, v in sorted(values.items())]
        self.client.log_batch(run_id, metrics=metrics)
        self._figure(run_id, acc, times, paper_equity, shadow_equity)
        self._last[acc.key] = time.monotonic()
        return str(run_id)

    def _figure(
        self,
        run_id: str,
        acc: Any,
        times: np.ndarray,
        paper: np.ndarray,
        shadow: np.ndarray | None,
    ) -> None:
        import plotly.graph_objects as go

        index = pd.to_datetime(times, unit="ms", utc=True)
        fig = go.Figure()
        fig.add_trace(go.Scatter(x=index, y=paper, name="paper account (live signals)"))
        if shadow is not None:
            fig.add_trace(
                go.Scatter(x=index, y=shadow, name="shadow backtest", line={"dash": "dot"})
            )
        fig.update_layout(
            title=f"{acc.model_id} on {acc.exchange} {acc.market} {acc.timeframe}: live "
            "equity against the shadow backtest",
            xaxis_title="bar (UTC)",
            yaxis_title="equity",
            template="plotly_white",
        )
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "live_equity.html"
            fig.write_html(path, include_plotlyjs="cdn")
            self.client.log_artifact(run_id, str(path), artifact_path="figures")
