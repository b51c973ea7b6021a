"""The commands the TypeScript backend sends, checked before anything runs.

An envelope arrives as JSON on ``elysia:command`` (pub/sub) or in the ``data`` field of
a ``botlib:commands`` stream entry::

    {"command": "train", "data": {"algorithm": "lstm", "symbol": "BTC/USDT", ...},
     "timestamp": 1735689600000, "request_id": "r-42", "user_id": "u-7"}

The backend's own spelling — camelCase keys, ``BTCUSDT``, ``sharpe_ratio``, the names
its client uses — is first translated to botlib's (``_dialect``, one table).
``parse_command`` never raises: it returns a ``Command`` (the envelope plus its
validated payload) or a ``Rejection`` naming what was wrong and what was expected —
which the service dead-letters and answers with an error event. Nothing is unpickled or
evaluated; payloads over ``MAX_BYTES`` are refused unread; file paths are confined to
the data directory.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from botlib.bridge._bounds import check_hyperparameters
from botlib.bridge._dialect import strategy_parameter, translate
from botlib.errors import BotlibError, did_you_mean

__all__ = [
    "ADMIN_ONLY",
    "COMMANDS",
    "MAX_BYTES",
    "Command",
    "Rejection",
    "confine_path",
    "parse_command",
]

MAX_BYTES = 64 * 1024
_ID = Field(default=None, min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:@/-]+$")


def _symbol(value: str) -> str:
    from botlib.data._store import check_symbol

    try:
        return check_symbol(value)
    except BotlibError as exc:
        raise ValueError(str(exc)) from None


def _timeframe(value: str) -> str:
    from botlib.data import timeframe_seconds

    try:
        timeframe_seconds(value)
    except BotlibError as exc:
        raise ValueError(str(exc)) from None
    return value


def _date(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"expected an ISO date such as 2024-01-31, got {value!r}") from None
    return value


def confine_path(raw: str) -> Path:
    """A file named by a command, which must lie inside the data directory."""
    from botlib.settings import get_settings

    root = get_settings().data_dir.resolve()
    path = (root / raw).resolve()
    if path != root and root not in path.parents:
        raise ValueError(f"file {raw!r} is outside the data directory {root}")
    return path


class _Payload(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=False)


#: the symbol as the backend spelled it (``BTCUSDT``): its records use it (VARCHAR(20))
_SYMBOL_AS = Field(default=None, min_length=1, max_length=20, pattern=r"^[A-Za-z0-9/_.:-]+$")


class _Market(_Payload):
    symbol: str = "BTC/USDT"
    symbol_as: str | None = _SYMBOL_AS
    timeframe: str = "1h"
    start: str | None = None
    end: str | None = None

    _check_symbol = field_validator("symbol")(classmethod(lambda cls, v: _symbol(v)))
    _check_timeframe = field_validator("timeframe")(classmethod(lambda cls, v: _timeframe(v)))
    _check_dates = field_validator("start", "end")(classmethod(lambda cls, v: _date(v)))


def _known_model(value: str) -> str:
    from botlib.models import MODEL_NAMES

    if value not in MODEL_NAMES:
        raise ValueError(f"unknown algorithm {value!r}{did_you_mean(value, MODEL_NAMES)}")
    return value


def _uuid(value: str | None) -> str | None:
    import uuid

    if value is None:
        return None
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise ValueError(f"expected the backend's model id (a UUID), got {value!r}") from None


class TrainCommand(_Market):
    """A training: of ``algorithm``, or of the backend's model ``model_id`` (bound by
    ``create_model``; its algorithm and hyperparameters are the defaults)."""

    algorithm: str | None = None
    model_id: str | None = None
    hyperparameters: dict[str, Any] = Field(default_factory=dict, max_length=50)
    #: the backend's ``trainingData.features`` (``close``, ``volume``, ``rsi``, …): the
    #: model's feature list; ``target`` (``close``): the price model's target
    features: list[str] | None = Field(default=None, min_length=1, max_length=40)
    target: str | None = Field(default=None, max_length=40)

    _check_algorithm = field_validator("algorithm")(
        classmethod(lambda cls, v: v if v is None else _known_model(v))
    )
    _check_model_id = field_validator("model_id")(classmethod(lambda cls, v: _uuid(v)))

    @model_validator(mode="after")
    def _subject(self) -> TrainCommand:
        if self.algorithm is None and self.model_id is None:
            raise ValueError("give algorithm, or the model_id of a model made by create_model")
        if self.algorithm is not None:  # a bound model's are checked once merged
            problems = check_hyperparameters(self.algorithm, self.hyperparameters)
            if problems:
                raise ValueError("; ".join(problems[:5]))
        return self


class CreateModelCommand(_Payload):
    """The backend's ``createModel``: its ``ai_models`` row, registered and bound."""

    model_id: str
    user_id: str | None = None
    name: str | None = Field(default=None, max_length=200)
    model_type: str | None = Field(default=None, max_length=50)
    algorithm: str
    configuration: dict[str, Any] = Field(default_factory=dict, max_length=50)
    hyperparameters: dict[str, Any] = Field(default_factory=dict, max_length=50)

    _check_algorithm = field_validator("algorithm")(classmethod(lambda cls, v: _known_model(v)))
    _check_ids = field_validator("model_id", "user_id")(classmethod(lambda cls, v: _uuid(v)))

    def params(self) -> dict[str, Any]:
        """The model's hyperparameters: configuration (model shape) and training
        settings in botlib's names; ``features`` (a count) is kept as information."""
        shape = {k: v for k, v in self.configuration.items() if k != "features"}
        return {**shape, **self.hyperparameters}

    @model_validator(mode="after")
    def _buildable(self) -> CreateModelCommand:
        from botlib.models import create_model

        problems = check_hyperparameters(self.algorithm, self.params())
        if problems:
            raise ValueError("; ".join(problems[:5]))
        try:
            create_model(self.algorithm, **self.params())
        except (BotlibError, TypeError, ValueError) as exc:
            raise ValueError(f"{self.algorithm}: {exc}") from None
        return self


class BacktestCommand(_Market):
    model_uri: str | None = Field(
        default=None, pattern=r"^models:/[A-Za-z0-9_.-]+(/[0-9]+|@[a-z]+)$"
    )
    strategy: str | None = None
    parameters: dict[str, float | int | bool] = Field(default_factory=dict, max_length=20)

    @model_validator(mode="after")
    def _one_subject(self) -> BacktestCommand:
        if (self.model_uri is None) == (self.strategy is None):
            raise ValueError("give exactly one of model_uri or strategy")
        return self


class Bounds(_Payload):
    min: float
    max: float

    @model_validator(mode="after")
    def _ordered(self) -> Bounds:
        if not (math.isfinite(self.min) and math.isfinite(self.max)) or self.min > self.max:
            raise ValueError(f"need finite min <= max, got {self.min}, {self.max}")
        return self


class OptimizeCommand(_Market):
    """An evolutionary search of a rule strategy's parameters: of ``strategy``, or of the
    strategy bound to the backend's ``strategy_id`` (its parameters may be given by
    the aliases of ``_dialect.PARAMETER_ALIASES``: ``rsi_period`` -> ``window``)."""

    strategy: str = "sma_cross"
    strategy_id: str | None = None
    parameters: dict[str, Bounds] = Field(default_factory=dict, max_length=10)
    objective: str = "sharpe"
    algorithm: Literal["ga", "de"] = "ga"
    _check_strategy_id = field_validator("strategy_id")(classmethod(lambda cls, v: _uuid(v)))
    population: int = Field(default=20, ge=4, le=500)
    generations: int = Field(default=8, ge=1, le=200)

    @model_validator(mode="after")
    def _known(self) -> OptimizeCommand:
        from botlib.backtest import STRATEGIES
        from botlib.models.evolve.objectives import OBJECTIVES

        if self.strategy not in STRATEGIES:
            raise ValueError(
                f"unknown strategy {self.strategy!r}{did_you_mean(self.strategy, STRATEGIES)}"
            )
        if self.objective not in OBJECTIVES:
            raise ValueError(
                f"unknown objective {self.objective!r}{did_you_mean(self.objective, OBJECTIVES)}"
            )
        if self.strategy_id is not None and "strategy" not in self.model_fields_set:
            return self  # the bound strategy is looked up, then checked, when it runs
        self.parameters = {
            strategy_parameter(self.strategy, k): v for k, v in self.parameters.items()
        }
        known = STRATEGIES[self.strategy].params
        for name in self.parameters:
            if name not in known:
                raise ValueError(
                    f"{self.strategy} has no parameter {name!r}{did_you_mean(name, known)}"
                )
        return self


class Candle(_Payload):
    timestamp: int | str
    open: float = Field(gt=0)
    high: float = Field(gt=0)
    low: float = Field(gt=0)
    close: float = Field(gt=0)
    volume: float = Field(ge=0)


class CurrentData(_Payload):
    """The backend's ``currentData``: the newest bar's values as it sees them. ``close``
    is needed; ``open``/``high``/``low``/``volume`` and the time are taken from the
    stored bar when missing; indicator values it computed itself (``rsi``, ``macd``, …)
    are compared with botlib's and the answer reports both."""

    model_config = ConfigDict(extra="allow")

    close: float = Field(gt=0)
    open: float | None = Field(default=None, gt=0)
    high: float | None = Field(default=None, gt=0)
    low: float | None = Field(default=None, gt=0)
    volume: float | None = Field(default=None, ge=0)
    timestamp: int | str | None = None

    @model_validator(mode="after")
    def _numbers(self) -> CurrentData:
        for key, value in (self.model_extra or {}).items():
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise ValueError(f"currentData.{key}: expected a number, got {value!r}")
            if not math.isfinite(value):
                raise ValueError(f"currentData.{key}: expected a finite number")
        if len(self.model_extra or {}) > 30:
            raise ValueError("currentData: at most 30 indicator values")
        return self


class GenerateSignalCommand(_Payload):
    """A signal now, from the caller's recent candles (or the stored ones); of the model
    ``model`` (registered name) or ``model_id`` (the backend's id), else the market's
    active model. ``current_data`` is the newest bar, merged with the candles."""

    symbol: str = "BTC/USDT"
    symbol_as: str | None = _SYMBOL_AS
    timeframe: str = "1h"
    model: str | None = Field(default=None, max_length=200)
    model_id: str | None = None
    market_data: list[Candle] | None = Field(default=None, max_length=5000)
    current_data: CurrentData | None = None

    _check_model_id = field_validator("model_id")(classmethod(lambda cls, v: _uuid(v)))

    _check_symbol = field_validator("symbol")(classmethod(lambda cls, v: _symbol(v)))
    _check_timeframe = field_validator("timeframe")(classmethod(lambda cls, v: _timeframe(v)))


class GetPredictionsCommand(_Payload):
    model: str | None = Field(default=None, max_length=200)
    model_id: str | None = None
    symbol: str | None = None
    symbol_as: str | None = _SYMBOL_AS

    _check_model_id = field_validator("model_id")(classmethod(lambda cls, v: _uuid(v)))
    limit: int = Field(default=100, ge=1, le=1000)


class PromoteCommand(_Payload):
    model: str = Field(min_length=1, max_length=200)
    version: int | None = Field(default=None, ge=1)
    force: bool = False


class RollbackCommand(_Payload):
    model: str = Field(min_length=1, max_length=200)


class DeactivateCommand(_Payload):
    """Stop serving a model: by registered name, or by the backend's ``model_id``."""

    model: str | None = Field(default=None, min_length=1, max_length=200)
    model_id: str | None = None

    _check_model_id = field_validator("model_id")(classmethod(lambda cls, v: _uuid(v)))

    @model_validator(mode="after")
    def _one(self) -> DeactivateCommand:
        if (self.model is None) == (self.model_id is None):
            raise ValueError("give exactly one of model or model_id")
        return self


class BindCommand(_Payload):
    """Bind the backend's ids: ``model_id`` to registered model ``name``, or
    ``strategy_id`` to rule strategy ``strategy``; ``user_id``: the owner."""

    model_id: str | None = None
    name: str | None = Field(default=None, min_length=1, max_length=200)
    strategy_id: str | None = None
    strategy: str | None = Field(default=None, min_length=1, max_length=64)
    user_id: str | None = None
    symbol_as: str | None = _SYMBOL_AS

    _check_ids = field_validator("model_id", "strategy_id", "user_id")(
        classmethod(lambda cls, v: _uuid(v))
    )

    @model_validator(mode="after")
    def _pair(self) -> BindCommand:
        model = self.model_id is not None and self.name is not None
        strategy = self.strategy_id is not None and self.strategy is not None
        if model == strategy:
            raise ValueError("give model_id and name, or strategy_id and strategy")
        return self


COMMANDS: dict[str, type[_Payload]] = {
    "create_model": CreateModelCommand,
    "train": TrainCommand,
    "backtest": BacktestCommand,
    "optimize": OptimizeCommand,
    "generate_signal": GenerateSignalCommand,
    "get_predictions": GetPredictionsCommand,
    "promote": PromoteCommand,
    "rollback": RollbackCommand,
    "deactivate": DeactivateCommand,
    "bind": BindCommand,
}


class Envelope(BaseModel):
    model_config = ConfigDict(extra="forbid")

    command: str = Field(min_length=1, max_length=64)
    data: dict[str, Any] = Field(default_factory=dict)
    timestamp: int | float | str | None = None
    request_id: str | None = _ID
    user_id: str | None = _ID


@dataclass(frozen=True)
class Command:
    name: str
    payload: _Payload
    request_id: str | None
    user_id: str | None
    timestamp: Any
    #: where it came in: ``backend`` (elysia:command, botlib:commands) or ``admin``
    #: (botlib:admin:commands, which only the admin role may write)
    path: str = "backend"


@dataclass(frozen=True)
class Rejection:
    reason: str
    command: str | None = None
    request_id: str | None = None
    user_id: str | None = None


def _errors(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err["loc"]) or "payload"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


#: what only the admin path may ask for (the backend's path is refused, by name)
ADMIN_ONLY = {"bind": "binding an existing model or strategy",
              "deactivate": "stopping a model"}  # fmt: skip


def parse_command(raw: str | bytes, path: str = "backend") -> Command | Rejection:
    """Validate one envelope (see the module doc) that came in on ``path`` (``backend``
    or ``admin``). Never raises."""
    try:
        if len(raw) > MAX_BYTES:
            return Rejection(f"payload of {len(raw)} bytes is over the {MAX_BYTES}-byte limit")
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        body = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        return Rejection(f"not JSON: {exc}")
    if not isinstance(body, dict):
        return Rejection(f"expected a JSON object, got {type(body).__name__}")
    inside: dict[str, Any] = body["data"] if isinstance(body.get("data"), dict) else {}
    ids = {}
    for key, camel in (("request_id", "requestId"), ("user_id", "userId")):
        given = body.get(key, inside.get(key, inside.get(camel)))
        ids[key] = given if isinstance(given, str) else None
    name = body.get("command") if isinstance(body.get("command"), str) else None
    try:
        envelope = Envelope.model_validate(body)
    except ValidationError as exc:
        return Rejection(f"bad envelope: {_errors(exc)}", name, **ids)
    try:  # the backend's spelling (camelCase, BTCUSDT, sharpe_ratio, …) to botlib's
        name, data = translate(envelope.command, envelope.data)
        # the backend's envelope is {command, data, timestamp}: its request id (and the
        # user it acts for) travel inside data
        lifted = {k: data.pop(k) for k in ("request_id",) if k in data}
        if "user_id" in data and name not in ("create_model", "bind"):
            lifted["user_id"] = data.pop("user_id")
        if lifted:
            kept = {k: v for k, v in lifted.items() if getattr(envelope, k) is None}
            envelope = Envelope.model_validate({**envelope.model_dump(), **kept})
    except ValidationError as exc:
        return Rejection(f"bad envelope: {_errors(exc)}", name, **ids)
    except (RecursionError, TypeError, ValueError) as exc:
        return Rejection(f"{envelope.command}: {exc}", envelope.command, **ids)
    kind = COMMANDS.get(name)
    if kind is None:
        return Rejection(
            f"unknown command {envelope.command!r}{did_you_mean(envelope.command, COMMANDS)}; "
            f"commands: {', '.join(COMMANDS)}",
            envelope.command,
            envelope.request_id,
            envelope.user_id,
        )
    try:
        payload = kind.model_validate(data)
    except ValidationError as exc:
        return Rejection(
            f"{envelope.command}: {_errors(exc)}",
            envelope.command,
            envelope.request_id,
            envelope.user_id,
        )
    except (RecursionError, TypeError, ValueError) as exc:  # pathological nesting or types
        return Rejection(f"{envelope.command}: {exc}", envelope.command, envelope.request_id)
    if path != "admin":
        why = ADMIN_ONLY.get(name)
        if name == "promote" and payload.model_dump().get("force"):
            why = "a forced promotion (force skips the gate)"
        if why:
            return Rejection(
                f"{envelope.command}: {why} is accepted only on the admin path "
                "(botlib:admin:commands), not from the backend",
                envelope.command, envelope.request_id, envelope.user_id,
            )  # fmt: skip
    return Command(name, payload, envelope.request_id, envelope.user_id, envelope.timestamp, path)
