"""The records the TypeScript backend reads (fields of its ``ai_signals`` and
``ai_predictions`` tables). JSON in, JSON out; never pickled."""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from botlib.signals._columns import DECIMALS, fit_decimals

__all__ = ["Prediction", "Signal", "record_id"]

_NAMESPACE = uuid.UUID("6b1d7a52-3f0e-4b8e-9d7e-2b6f0c6a9a11")


def record_id(kind: str, model_id: str, symbol: str, bar_time: datetime) -> str:
    """A stable id per (kind, model version, symbol, bar): reprocessing a bar yields the
    same id, so consumers can de-duplicate. It is ``uuid.uuid5(_NAMESPACE, name)``,
    computed without building a ``UUID`` (the live step makes two per bar)."""
    name = f"{kind}|{model_id}|{symbol}|{bar_time.isoformat()}"
    value = int.from_bytes(hashlib.sha1(_NAMESPACE.bytes + name.encode()).digest()[:16])
    value = (value & _CLEAR) | _VERSION_5  # RFC 4122 variant, version 5
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


_CLEAR = ~((0xC000 << 48) | (0xF000 << 64))
_VERSION_5 = (0x8000 << 48) | (5 << 76)


def _fit(record: BaseModel, table: str, notes: dict[str, Any]) -> None:
    """Clip ``record``'s numbers to ``table``'s DECIMAL columns (``_columns``); the
    originals of clipped ones go to ``notes["clipped"]``."""
    row = {name: getattr(record, name) for name in DECIMALS[table]}
    clipped = fit_decimals(row, table)
    for name in clipped:
        object.__setattr__(record, name, row[name])
    if clipped:
        notes["clipped"] = clipped


class Signal(BaseModel):
    """A trading signal. Prices in quote currency; strength, confidence, risk score and
    position size (fraction of equity) in [0, 1]."""

    model_config = ConfigDict(extra="forbid")

    id: str
    model_id: str
    bot_id: str | None = None
    symbol: str
    signal_type: Literal["buy", "sell", "hold", "close"]
    signal_strength: float = Field(ge=0.0, le=1.0)
    confidence: float = Field(ge=0.0, le=1.0)
    predicted_price: float | None = None
    predicted_direction: Literal["up", "down", "sideways"]
    predicted_volatility: float | None = None
    risk_score: float = Field(ge=0.0, le=1.0)
    expected_return: float | None = None
    stop_loss: float | None = None
    take_profit: float | None = None
    position_size: float = Field(ge=0.0, le=1.0)
    #: why, as a JSON object (the backend's column is JSONB): ``summary`` (one line for
    #: people) and the figures it names
    reasoning: dict[str, Any]
    metadata: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime
    expires_at: datetime
    executed_at: datetime | None = None
    status: Literal["pending", "executed", "expired", "cancelled"] = "pending"

    @model_validator(mode="after")
    def _fits_its_table(self) -> Signal:
        """Numbers within their DECIMAL columns; clipped ones noted in ``metadata``."""
        _fit(self, "ai_signals", self.metadata)
        return self


class Prediction(BaseModel):
    """A model's forecast for one bar, later scored against what happened."""

    model_config = ConfigDict(extra="forbid")

    id: str
    model_id: str
    symbol: str
    prediction_type: Literal["price", "direction", "volatility", "trend"]
    input_data: dict[str, Any] = Field(default_factory=dict)
    prediction_value: float
    confidence: float = Field(ge=0.0, le=1.0)
    prediction_horizon: int = Field(ge=0, description="minutes")
    actual_value: float | None = None
    accuracy: float | None = None
    created_at: datetime
    validated_at: datetime | None = None

    @model_validator(mode="after")
    def _fits_its_table(self) -> Prediction:
        """Numbers within their DECIMAL columns; clipped ones noted in ``input_data``."""
        _fit(self, "ai_predictions", self.input_data)
        return self
