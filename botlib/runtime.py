"""Runtime configuration: thresholds, risk parameters and rate limits that change
without a restart.

The effective configuration is the defaults, overlaid by an optional file (JSON or
YAML, ``--config-file``), overlaid by the JSON document in the Redis key
``botlib:config`` (``botlib config set …`` writes it). Running services
(``botlib serve``, ``botlib bridge``) poll both every ``reload_check_s`` (0.2 s by
default) through a ``RuntimeConfigWatcher``: a valid change takes effect at the next
bar or command; an invalid one is refused with its reason and the old value stays.
Each service reports what it applied (or refused) in the hash ``botlib:config:status``
— one JSON entry per component, with the digest of the document it runs on.

>>> cfg = RuntimeConfig.from_document({"signal": {"entry_threshold": 0.2}})
>>> cfg.signal_config().entry_threshold
0.2
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any, Literal

import redis
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from botlib.errors import ConfigError
from botlib.signals import SignalConfig
from botlib.transport import RedisNames

__all__ = [
    "RateLimit",
    "RuntimeConfig",
    "RuntimeConfigWatcher",
    "SignalSettings",
    "config_digest",
    "merge",
    "parse_assignment",
    "read_config_file",
    "stored_overrides",
]

log = logging.getLogger("botlib.runtime")

LimitedCommand = Literal[
    "train", "optimize", "backtest", "generate_signal", "get_predictions", "promote", "rollback",
    "create_model", "bind", "deactivate",
]  # fmt: skip


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


_S = SignalConfig  # the builder's own defaults: one source


class SignalSettings(_Strict):
    """The signal builder's risk and threshold settings (fractions, not percent)."""

    entry_threshold: float = Field(default=_S.entry_threshold, ge=0.0, lt=1.0)
    allow_short: bool = _S.allow_short
    risk_per_trade: float = Field(default=_S.risk_per_trade, gt=0.0, le=1.0)
    max_position: float = Field(default=_S.max_position, gt=0.0, le=1.0)
    stop_mult: float = Field(default=_S.stop_mult, ge=0.0, le=100.0)
    take_mult: float = Field(default=_S.take_mult, ge=0.0, le=100.0)
    atr_window: int = Field(default=_S.atr_window, ge=2, le=1000)
    vol_window: int = Field(default=_S.vol_window, ge=3, le=1000)


class RateLimit(_Strict):
    """At most ``requests`` per ``per_s`` seconds per user (0 requests = refused)."""

    requests: int = Field(ge=0, le=1_000_000)
    per_s: int = Field(ge=1, le=7 * 86_400)


def _default_limits() -> dict[LimitedCommand, RateLimit]:
    return {
        "train": RateLimit(requests=5, per_s=3600),
        "optimize": RateLimit(requests=5, per_s=3600),
        "generate_signal": RateLimit(requests=120, per_s=60),
        "backtest": RateLimit(requests=30, per_s=3600),
        "get_predictions": RateLimit(requests=600, per_s=60),
        "promote": RateLimit(requests=20, per_s=3600),
        "rollback": RateLimit(requests=20, per_s=3600),
        "create_model": RateLimit(requests=30, per_s=3600),
        "bind": RateLimit(requests=30, per_s=3600),
        "deactivate": RateLimit(requests=30, per_s=3600),
    }


class RuntimeConfig(_Strict):
    """Everything that may change while the services run."""

    signal: SignalSettings = Field(default_factory=lambda: SignalSettings())
    rate_limits: dict[LimitedCommand, RateLimit] = Field(default_factory=_default_limits)
    max_model_age_days: float | None = Field(default=30.0, gt=0.0)
    #: generate_signal's ``currentData.close`` may differ from the market's last close
    #: by at most this fraction; beyond it the request is refused with both numbers
    current_data_max_gap: float = Field(default=0.10, gt=0.0, le=10.0)
    #: the rate limits hold per user_id; all users of one path (the backend's channel
    #: and stream, or the admin stream) together get this many times a user's limit —
    #: a ceiling no payload can dodge by changing its user_id
    path_ceiling: int = Field(default=10, ge=1, le=10_000)
    #: a feature-drift alert (``botlib:alerts``) stops serving the model version it
    #: names: the bridge deactivates it as ``botlib deactivate`` does, with the reason
    drift_demote: bool = False

    @classmethod
    def from_parts(cls, signal: SignalConfig, max_model_age_days: float | None) -> RuntimeConfig:
        """The configuration a service was started with (its flags)."""
        return cls(signal=SignalSettings(**signal.to_dict()), max_model_age_days=max_model_age_days)

    @classmethod
    def from_document(
        cls, document: dict[str, Any] | None, base: RuntimeConfig | None = None
    ) -> RuntimeConfig:
        """``base`` (default: the defaults) overlaid by ``document``; a bad value raises
        ``ConfigError`` naming the field, the value and what was expected."""
        if document is not None and not isinstance(document, dict):
            raise ConfigError(
                f"runtime config must be a JSON object, got {type(document).__name__}"
            )
        merged = merge((base or cls()).model_dump(), document or {})
        try:
            return cls.model_validate(merged)
        except ValidationError as exc:
            raise ConfigError(_describe(exc)) from None

    def signal_config(self) -> SignalConfig:
        return SignalConfig(**self.signal.model_dump())

    def limits(self) -> dict[str, tuple[int, int]]:
        return {k: (v.requests, v.per_s) for k, v in self.rate_limits.items()}


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "config"
        got = err.get("input")
        shown = json.dumps(got, default=str)[:80] if not isinstance(got, dict) else "{…}"
        parts.append(f"{where}: {err['msg']} (got {shown})")
    return "invalid runtime config: " + "; ".join(parts)


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` deep-merged onto ``base`` (dicts merge, everything else replaces)."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def parse_assignment(text: str) -> dict[str, Any]:
    """``"signal.entry_threshold=0.2"`` → ``{"signal": {"entry_threshold": 0.2}}``.
    ``rate_limits.train=10/3600`` is a rate limit; values are JSON where they parse
    (numbers, true/false, null), else strings."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"expected KEY=VALUE (e.g. signal.entry_threshold=0.2), got {text!r}")
    path = [p for p in key.strip().split(".") if p]
    raw = raw.strip()
    value: Any
    if len(path) == 2 and path[0] == "rate_limits" and "/" in raw:
        count, _, per = raw.partition("/")
        try:
            value = {"requests": int(count), "per_s": int(per)}
        except ValueError:
            raise ConfigError(
                f"{key}: expected REQUESTS/SECONDS (e.g. 10/3600), got {raw!r}"
            ) from None
    else:
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
    for part in reversed(path):
        value = {part: value}
    return dict(value)


def stored_overrides(text: str | None, key: str) -> dict[str, Any]:
    """The JSON object held by the Redis key ``key`` (``{}`` when unset);
    ``ConfigError`` when it is not JSON or not an object."""
    if not text:
        return {}
    try:
        stored = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{key} is not JSON: {exc} (`botlib config reset` clears it)") from None
    except RecursionError:
        raise ConfigError(
            f"{key} is nested too deeply to parse (at most {MAX_DEPTH} levels)"
        ) from None
    if not isinstance(stored, dict):
        raise ConfigError(f"{key} must hold a JSON object, got {type(stored).__name__}")
    _check_depth(stored, key)
    return stored


#: deepest nesting a runtime-config document may have (the real ones have 3)
MAX_DEPTH = 16


def _check_depth(value: Any, where: str) -> None:
    """``ConfigError`` when ``value`` nests deeper than ``MAX_DEPTH`` (checked without
    recursion, so no document can exhaust the stack)."""
    todo: list[tuple[Any, int]] = [(value, 1)]
    while todo:
        item, depth = todo.pop()
        if depth > MAX_DEPTH:
            raise ConfigError(f"{where} is nested deeper than {MAX_DEPTH} levels")
        if isinstance(item, dict):
            todo.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            todo.extend((v, depth + 1) for v in item)


def read_config_file(path: Path) -> dict[str, Any]:
    """A JSON or YAML runtime-config file as a dict (``ConfigError`` if unreadable)."""
    import yaml

    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read runtime config {path}: {exc.strerror}") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        kind = "JSON" if path.suffix == ".json" else "YAML"
        raise ConfigError(f"{path} is not valid {kind}: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{path} is nested too deeply to parse") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: runtime config must be a mapping, got {type(data).__name__}")
    _check_depth(data, str(path))
    return data


def config_digest(config: RuntimeConfig) -> str:
    """Short digest of the effective configuration (what ``botlib:config:status`` names)."""
    text = json.dumps(config.model_dump(mode="json"), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


class RuntimeConfigWatcher:
    """Polls the config file and the Redis key; ``poll()`` returns the new config when
    a valid change arrived, else ``None``. Refusals are logged and reported."""

    def __init__(
        self,
        r: Any,
        names: RedisNames,
        component: str,
        *,
        path: Path | None = None,
        base: RuntimeConfig | None = None,
    ) -> None:
        self.r = r
        self.names = names
        self.component = component
        self.path = Path(path) if path is not None else None
        #: what the service was started with; file and Redis key overlay it
        self.base = base or RuntimeConfig()
        self.current = self.base
        self.error = ""
        self._seen: tuple[Any, ...] | None = None

    def _file_stamp(self) -> bytes | None:
        """The file's bytes (small; re-read each poll so no edit is missed)."""
        if self.path is None:
            return None
        try:
            return self.path.read_bytes()
        except OSError:
            return b"\0missing"

    def poll(self, redis_text: str | Literal[False] | None = False) -> RuntimeConfig | None:
        """Check for a change. ``redis_text``: the key's value when the caller already
        read it in its own round trip (``False``: read it here)."""
        text: str | None = (
            self.r.get(self.names.runtime_config) if redis_text is False else redis_text
        )
        stamp = (self._file_stamp(), text)
        if stamp == self._seen:
            return None
        self._seen = stamp
        try:
            document: dict[str, Any] = {}
            if self.path is not None:
                document = read_config_file(self.path)
            document = merge(document, stored_overrides(text, self.names.runtime_config))
            config = RuntimeConfig.from_document(document, self.base)
        except Exception as exc:  # any refusal keeps the old config; never fatal
            self.error = (
                str(exc) if isinstance(exc, ConfigError) else f"{type(exc).__name__}: {exc!s:.200}"
            )
            log.error("%s: runtime config refused, keeping the old one: %s", self.component, exc)
            self._report(ok=False)
            return None
        changed = config != self.current
        self.current, self.error = config, ""
        self._report(ok=True)
        if changed:
            log.info("%s: runtime config %s applied", self.component, config_digest(config))
            return config
        return None

    def _report(self, *, ok: bool) -> None:
        status = {
            "ok": ok,
            "digest": config_digest(self.current),
            "error": self.error,
            "at": time.time(),
        }
        with contextlib.suppress(redis.RedisError):
            self.r.hset(self.names.runtime_config_status, self.component, json.dumps(status))
