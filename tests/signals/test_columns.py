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


def test_every_kind_of_value_is_fitted_or_left_as_it_was() -> None:
    """Floats in range and at the edge stay; beyond it, inf and NaN are clipped (NaN
    to None) with the original kept; ints count as numbers, bools and text do not."""
    top = largest(5, 4)
    row: dict[str, object] = {
        "signal_strength": top, "confidence": -top, "risk_score": float("nan"),
        "predicted_volatility": 12.5, "expected_return": float("-inf"), "position_size": 3,
        "stop_loss": True, "take_profit": "7", "predicted_price": None,
    }  # fmt: skip
    clipped = fit_decimals(row, "ai_signals")
    assert clipped == {"risk_score": "nan", "predicted_volatility": 12.5,
                       "expected_return": "-inf"}  # fmt: skip
    assert row["signal_strength"] == top and row["confidence"] == -top
    assert row["risk_score"] is None and row["predicted_volatility"] == top
    assert row["expected_return"] == -largest(8, 4)
    assert row["position_size"] == 3 and row["stop_loss"] is True and row["take_profit"] == "7"


def test_record_ids_are_rfc_4122_version_5_uuids_of_their_name() -> None:
    import random
    import uuid
    from datetime import timedelta

    from botlib.signals._records import _NAMESPACE, record_id

    rng = random.Random(7)
    start = datetime(2020, 1, 1, tzinfo=UTC)
    for _ in range(2_000):
        kind = rng.choice(["signal", "prediction"])
        model = "".join(rng.choices("abcXYZ:-_/é→ 019", k=rng.randint(0, 30)))
        at = start + timedelta(minutes=rng.randint(0, 10**7))
        name = f"{kind}|{model}|BTC/USDT|{at.isoformat()}"
        assert record_id(kind, model, "BTC/USDT", at) == str(uuid.uuid5(_NAMESPACE, name))
