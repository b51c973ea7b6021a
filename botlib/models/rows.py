"""Rings of float32 feature rows as JSON: how model streams keep their sequence buffer
in Redis (base64 of the raw bytes — exact and compact)."""

from __future__ import annotations

import base64
from collections import deque
from typing import Any

import numpy as np

__all__ = ["pack_rows", "unpack_rows"]


def pack_rows(rows: deque[np.ndarray] | list[np.ndarray], width: int) -> dict[str, Any]:
    """``rows`` (each ``width`` float32 values) as a JSON-ready dict."""
    data = np.stack(list(rows)).astype("float32") if rows else np.zeros((0, width), "float32")
    return {"n": len(data), "width": width, "b64": base64.b64encode(data.tobytes()).decode()}


def unpack_rows(saved: dict[str, Any]) -> list[np.ndarray]:
    flat = np.frombuffer(base64.b64decode(saved["b64"]), dtype="float32")
    return list(flat.reshape(int(saved["n"]), int(saved["width"])).copy())
