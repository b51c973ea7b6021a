"""``NAME=VALUE`` parameters as people type them, the same for every command that takes
them (``botlib train -p``, ``botlib backtest -p``, ``botlib pipeline run -p`` and the
notebook parameters a pipeline passes on).

Values read as YAML: ``3`` and ``0.5`` and ``1e-3`` are numbers, ``true``/``false``
booleans, ``null`` None, ``[a, b]`` a list (of strings here), ``{k: 1}`` a mapping;
dates stay ISO strings (``start=2025-01-01``); anything else is the text as typed.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from botlib.errors import ConfigError

__all__ = ["parse_assignments", "parse_value", "plain"]

_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def plain(value: Any) -> Any:
    """Dates and times as ISO strings (``2025-01-01`` is a date to YAML, a string to a
    notebook parameter and to JSON), in lists and mappings too."""
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def parse_value(raw: str, *, name: str = "value", flag: str = "-p") -> Any:
    """``raw`` typed as the module says; a value that cannot be read (``[a,``) raises
    ``ConfigError`` naming the parameter."""
    import yaml

    text = raw.strip()
    if not text:
        return ""
    if _NUMBER.fullmatch(text):
        return float(text)  # YAML 1.1 reads 1e-3 as a string
    try:
        return plain(yaml.safe_load(text))
    except yaml.YAMLError as exc:
        problem = str(getattr(exc, "problem", None) or exc).splitlines()[0]
        raise ConfigError(
            f"{flag} {name}={raw!r}: cannot read the value ({problem}); e.g. {flag} "
            f"{name}=3, {name}=0.5, {name}=true, {name}=[a,b], {name}=2025-01-01"
        ) from None


def parse_assignments(items: list[str], *, flag: str = "-p") -> dict[str, Any]:
    """``["epochs=3", "start=2025-01-01", "members=[a,b]"]`` -> typed values."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{flag} {item!r}: expected NAME=VALUE, e.g. {flag} epochs=3")
        out[key.strip()] = parse_value(raw, name=key.strip(), flag=flag)
    return out
