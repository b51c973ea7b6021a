"""Numbers as the backend's DECIMAL columns hold them (``schema.sql``).

A ``DECIMAL(p, s)`` column holds magnitudes up to ``10**(p-s) - 10**-s`` and rounds
what it is given to ``s`` places; a larger value is an insert error (numeric field
overflow), and the whole row is lost. So every record botlib publishes is fitted to
its table before it leaves: a value beyond the column's range is **clipped** to the
largest value the column holds (sign kept), and the original is kept beside the
record — ``metadata.clipped`` of a signal, ``input_data.clipped`` of a prediction,
``results.clipped`` of a training session — so nothing is lost silently. Values within
range are left as they are (the database rounds them to the column's scale).
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["DECIMALS", "fit_decimals", "largest"]

#: table -> column -> (precision, scale), from the backend's schema.sql
DECIMALS: dict[str, dict[str, tuple[int, int]]] = {
    "ai_signals": {
        "signal_strength": (5, 4),
        "confidence": (5, 4),
        "predicted_price": (20, 8),
        "predicted_volatility": (5, 4),
        "risk_score": (5, 4),
        "expected_return": (8, 4),
        "stop_loss": (20, 8),
        "take_profit": (20, 8),
        "position_size": (20, 8),
    },
    "ai_predictions": {
        "prediction_value": (20, 8),
        "confidence": (5, 4),
        "actual_value": (20, 8),
        "accuracy": (5, 4),
    },
    "ai_training_sessions": {
        "validation_accuracy": (5, 4),
        "test_accuracy": (5, 4),
        "loss_value": (10, 6),
    },
}


def largest(precision: int, scale: int) -> float:
    """The largest magnitude a ``DECIMAL(precision, scale)`` column holds (as a float
    that, rounded to ``scale`` places, still fits: below ``10**(precision - scale)``)."""
    bound = float(10 ** (precision - scale))
    return min(bound - 10.0**-scale, math.nextafter(bound, 0.0))


def fit_decimals(row: dict[str, Any], table: str) -> dict[str, float]:
    """Clip ``row``'s numbers (in place) to ``table``'s DECIMAL columns; returns the
    clipped fields with their original values (empty when nothing was clipped)."""
    clipped: dict[str, float] = {}
    for name, top in _TOPS[table]:
        value = row.get(name)
        if type(value) is float:  # the usual case, checked first
            if -top <= value <= top:
                continue
        elif not isinstance(value, (int, float)) or isinstance(value, bool):
            continue  # not a number
        elif math.isfinite(value) and abs(value) <= top:  # an int in range
            continue
        clipped[name] = value if math.isfinite(value) else str(value)  # type: ignore[assignment]
        row[name] = math.copysign(top, value) if not math.isnan(value) else None
    return clipped


#: table -> (column, the largest magnitude it holds), computed once
_TOPS = {table: [(name, largest(*ps)) for name, ps in cols.items()]
         for table, cols in DECIMALS.items()}  # fmt: skip
