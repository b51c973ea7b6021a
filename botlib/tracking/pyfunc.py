"""Every botlib model as an MLflow pyfunc model.

>>> info = log_model(model)                       # inside an active run
>>> mlflow.pyfunc.load_model(info.model_uri).predict(recent_candles)

The input is a candle frame (columns ``open high low close volume``, indexed by bar
open time, or with a tz-naive UTC ``timestamp`` column); the output is the model's per-bar outputs.
Pass ``params={"last_only": True}`` to get only the newest bar (live use). A
reinforcement-learning agent's output depends on the position it holds: with
``last_only``, ``params={"position": p, "entry_price": e}`` asks its policy once for the
newest bar from that position (else it replays its policy over the window from flat).

botlib checks the input itself (``check_candles``: exactly the OHLCV columns, numeric and
finite, a DatetimeIndex, enough history), with errors that name what was expected; the
logged signature therefore declares the outputs and parameters only, which spares every
call MLflow's generic schema enforcement (measured: about half of a single-bar call).
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.pyfunc.model import PythonModel
from mlflow.types.schema import ColSpec, ParamSchema, ParamSpec, Schema, TensorSpec

import botlib
from botlib.data import OHLCV_COLUMNS
from botlib.models import BaseModel, load_model

__all__ = ["BotlibPyfunc", "log_model", "signature_for"]

ARTIFACT_KEY = "botlib_model"


def _as_candles(model_input: Any) -> pd.DataFrame:
    if (
        isinstance(model_input, pd.DataFrame)
        and isinstance(model_input.index, pd.DatetimeIndex)
        and [str(c) for c in model_input.columns] == list(OHLCV_COLUMNS)
    ):
        return model_input  # already a candle frame: read as it is, not copied
    frame = pd.DataFrame(model_input)
    if "timestamp" in frame.columns:
        frame = frame.set_index(
            pd.DatetimeIndex(pd.to_datetime(frame.pop("timestamp"), utc=True), name="timestamp")
        )
    if not isinstance(frame.index, pd.DatetimeIndex):
        raise ValueError(
            "botlib models need candles indexed by bar open time (a DatetimeIndex) or a "
            "'timestamp' column"
        )
    return frame[
        [c for c in frame.columns if c in OHLCV_COLUMNS]
        + [c for c in frame.columns if c not in OHLCV_COLUMNS]
    ]


class BotlibPyfunc(PythonModel):
    """Loads the saved botlib model from the run's artifacts; caches it per process."""

    def load_context(self, context: Any) -> None:
        self.model = load_model(context.artifacts[ARTIFACT_KEY])

    # ``pd.DataFrame`` is a hint MLflow derives no schema from (the explicit signature
    # given to log_model is the schema); without one it advises adding hints, loudly
    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
        candles = _as_candles(model_input)
        params = params or {}
        if params.get("last_only"):
            position = params.get("position")
            if position is not None and hasattr(self.model, "act_last"):
                entry = params.get("entry_price")
                return self.model.act_last(candles, float(position), entry)
            return self.model.predict_last(candles)
        return self.model.predict(candles)


#: what the model reads, recorded in the model's metadata (botlib checks it per call)
INPUT = {
    "columns": list(OHLCV_COLUMNS),
    "dtype": "double",
    "index": "bar open times (DatetimeIndex), or a tz-naive UTC 'timestamp' column",
}


def signature_for(model: BaseModel) -> ModelSignature:
    """Outputs and parameters; the input is checked by botlib (see the module doc)."""
    out_cols: list[ColSpec | TensorSpec] = [ColSpec("double", c) for c in model.meta.outputs]
    specs = [ParamSpec("last_only", "boolean", False)]
    if model.meta.model_type == "reinforcement_learning":
        specs += [ParamSpec("position", "double", None), ParamSpec("entry_price", "double", None)]
    return ModelSignature(inputs=None, outputs=Schema(out_cols), params=ParamSchema(specs))


def log_model(
    model: BaseModel, *, name: str = "model", registered_model_name: str | None = None
) -> Any:
    """Log ``model`` to the active MLflow run as a pyfunc model (optionally registering
    it). The feature-schema hash and the model's metadata travel in the model's
    ``metadata``. Returns MLflow's ``ModelInfo``."""
    meta = model.meta
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        # the signature is explicit; MLflow's type-hint inference and its advice to add
        # an input example (which would run the model at logging time) do not apply
        warnings.filterwarnings("ignore", category=UserWarning, module="mlflow")
        saved = model.save(Path(tmp) / "model")
        return mlflow.pyfunc.log_model(
            name=name,
            python_model=BotlibPyfunc(),
            artifacts={ARTIFACT_KEY: str(saved)},
            signature=signature_for(model),
            registered_model_name=registered_model_name,
            metadata={
                "feature_schema_hash": meta.feature_schema_hash,
                "botlib": meta.to_dict(),
                "input": INPUT,
                "botlib_version": botlib.__version__,
            },
            pip_requirements=[f"botlib=={botlib.__version__}"],
        )


def resolve_model_uri(uri: str, *, local: Path | None = None) -> Path:
    """Download a logged botlib model (``models:/…`` or ``runs:/…``) and return the
    folder of the saved botlib model inside it (``local``: already downloaded there)."""
    if local is None:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri))
    candidate = local / "artifacts" / "model"
    if not candidate.exists():
        found = list(local.glob("artifacts/*/botlib_model.json"))
        if not found:
            raise FileNotFoundError(f"{uri} does not hold a botlib model")
        candidate = found[0].parent
    return candidate
