"""Records fit the backend's DECIMAL columns: clipped, never an overflow, and the
original kept beside the record."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from botlib.signals import Prediction
from botlib.signals._columns import DECIMALS, fit_decimals, largest


@pytest.mark.parametrize(("precision", "scale"), [(5, 4), (8, 4), (10, 6), (20, 8)])
def test_the_largest_value_still_fits_once_rounded_to_the_scale(precision: int, scale: int) -> None:
    top = largest(precision, scale)
    rounded = Decimal(top).quantize(Decimal(1).scaleb(-scale))
    digits = len(rounded.as_tuple().digits)
    assert digits <= precision, (top, rounded)
    assert top >= 0.9999 * 10 ** (precision - scale)  # clipping keeps nearly all the range


def test_an_out_of_range_prediction_is_clipped_and_the_original_kept() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    pred = Prediction(id="p", model_id="m", symbol="BTCUSDT", prediction_type="volatility",
                      prediction_value=-5e15, confidence=0.5, prediction_horizon=60,
                      created_at=now)  # fmt: skip
    assert pred.prediction_value == -largest(20, 8)
    assert pred.input_data["clipped"] == {"prediction_value": -5e15}
    fine = Prediction(id="q", model_id="m", symbol="BTCUSDT", prediction_type="price",
                      prediction_value=87_000.123456789, confidence=0.5, prediction_horizon=60,
                      created_at=now)  # fmt: skip
    assert fine.prediction_value == 87_000.123456789 and "clipped" not in fine.input_data


def test_every_numeric_column_of_the_schema_is_known() -> None:
    row = {"loss_value": 12_345.6, "validation_accuracy": 0.5}
    assert fit_decimals(row, "ai_training_sessions") == {"loss_value": 12_345.6}
    assert row["loss_value"] == largest(10, 6) and row["validation_accuracy"] == 0.5
    assert set(DECIMALS) == {"ai_signals", "ai_predictions", "ai_training_sessions"}
