"""The exception hierarchy: what a caller may retry, and what it must fix.

``BotlibError`` is the root. ``RetryableError`` marks transient failures (network,
rate limits, a server that went away); everything else is fatal until the input or
configuration is corrected. Messages say what was expected and what came.
"""

from __future__ import annotations

from collections.abc import Iterable
from difflib import get_close_matches

__all__ = [
    "BotlibError",
    "ConfigError",
    "DataError",
    "FetchError",
    "RetryableError",
    "did_you_mean",
    "unknown_name",
]


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """``"; did you mean 'lstm'?"`` for the closest known name, or ``""``."""
    hint = get_close_matches(name, list(known), n=1)
    return f"; did you mean {hint[0]!r}?" if hint else ""


def unknown_name(kind: str, name: str, known: Iterable[str]) -> ConfigError:
    """The error for a name that is not registered, with a hint and the known names."""
    names = list(known)
    return ConfigError(
        f"unknown {kind} {name!r}{did_you_mean(name, names)}; known: {', '.join(names)}"
    )


class BotlibError(Exception):
    """Root of every error raised on purpose by botlib."""


class ConfigError(BotlibError, ValueError):
    """A setting or parameter is invalid (fix the input, do not retry)."""


class DataError(BotlibError, ValueError):
    """Market data broke a rule: the message names the rule and the offending rows."""

    def __init__(self, rule: str, message: str, rows: list[str] | None = None) -> None:
        self.rule = rule
        self.rows = list(rows or [])
        super().__init__(f"[{rule}] {message}")


class RetryableError(BotlibError):
    """A transient failure: the same call may succeed later."""


class FetchError(RetryableError):
    """Downloading market data failed after all retries; the cache holds what was fetched."""
