"""Signal records (the backend's contract) and the one signal builder."""

from botlib.signals._builder import (
    SignalConfig,
    build_signal_frame,
    records_from_arrays,
    signal_arrays,
    signal_records,
)
from botlib.signals._records import Prediction, Signal, record_id

__all__ = [
    "Prediction",
    "Signal",
    "SignalConfig",
    "build_signal_frame",
    "record_id",
    "records_from_arrays",
    "signal_arrays",
    "signal_records",
]
