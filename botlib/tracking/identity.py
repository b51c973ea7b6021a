"""The backend's model identity, bound to a registered model.

The backend owns model identity: a model is a row of its ``ai_models`` table with a
UUID and an owner. ``bind_model`` ties that UUID (and the owner's ``user_id``) to a
registered model of the MLflow registry, as tags on it; from then on every version,
promotion and record of that model speaks in the UUID (``model_id``), and botlib's
registered name and version go into the records' ``metadata``. One UUID binds one
registered model; binding it again to another is refused.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from botlib.errors import ConfigError

__all__ = [
    "Identity",
    "StrategyBinding",
    "bind_model",
    "bind_strategy",
    "find_bound",
    "find_strategy",
    "identity_of",
    "set_symbol_as",
]

MODEL_ID_TAG = "botlib.model_id"
USER_ID_TAG = "botlib.user_id"
SPEC_TAG = "botlib.spec"
#: the symbol as the backend spells it for this model (``BTCUSDT``)
SYMBOL_AS_TAG = "botlib.symbol_as"
STRATEGY_ID_TAG = "botlib.strategy_id"
STRATEGY_TAG = "botlib.strategy"


@dataclass(frozen=True)
class Identity:
    """A registered model's backend identity (``model_id`` None: not bound)."""

    name: str
    model_id: str | None = None
    user_id: str | None = None
    spec: dict[str, Any] | None = None
    symbol_as: str | None = None


@dataclass(frozen=True)
class StrategyBinding:
    """The backend's strategy id bound to a rule strategy; ``name``: the registered
    model its optimizations are versions of."""

    name: str
    strategy_id: str
    strategy: str
    user_id: str | None = None


def _uuid(value: str, what: str) -> str:
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        raise ConfigError(f"{what} must be a UUID (the backend's id), got {value!r}") from None


def identity_of(name: str, client: Any = None, *, tags: dict[str, str] | None = None) -> Identity:
    """The identity bound to registered model ``name`` (unbound: ids are None).
    ``tags``: the registered model's tags, when the caller has them already."""
    from botlib.tracking import mlflow_client

    if tags is None:
        client = client or mlflow_client()
        tags = client.get_registered_model(name).tags or {}
    spec = json.loads(tags[SPEC_TAG]) if SPEC_TAG in tags else None
    return Identity(
        name, tags.get(MODEL_ID_TAG), tags.get(USER_ID_TAG), spec, tags.get(SYMBOL_AS_TAG)
    )


def find_bound(model_id: str, client: Any = None) -> Identity | None:
    """The registered model bound to the backend's ``model_id``, if any."""
    from botlib.tracking import mlflow_client

    wanted = _uuid(model_id, "model_id")
    client = client or mlflow_client()
    for model in client.search_registered_models():
        if (model.tags or {}).get(MODEL_ID_TAG) == wanted:
            return identity_of(model.name, client)
    return None


def bind_model(
    name: str,
    model_id: str,
    *,
    user_id: str | None = None,
    spec: dict[str, Any] | None = None,
    create: bool = False,
) -> Identity:
    """Bind the backend's ``model_id`` (and owner) to registered model ``name``;
    ``create`` registers the name first if it does not exist (``create_model``).
    ``spec``: what the backend asked for (type, algorithm, configuration,
    hyperparameters), kept for its trainings."""
    from mlflow.exceptions import MlflowException

    from botlib.tracking import mlflow_client

    model_id = _uuid(model_id, "model_id")
    if user_id is not None:
        user_id = _uuid(user_id, "user_id")
    client = mlflow_client()
    bound = find_bound(model_id, client)
    if bound is not None and bound.name != name:
        raise ConfigError(f"model_id {model_id} is already bound to {bound.name!r}")
    try:
        current = client.get_registered_model(name)
    except MlflowException:
        if not create:
            raise ConfigError(f"no registered model named {name!r}") from None
        current = client.create_registered_model(name)
    held = (current.tags or {}).get(MODEL_ID_TAG)
    if held and held != model_id:
        raise ConfigError(f"{name!r} is already bound to model_id {held}")
    client.set_registered_model_tag(name, MODEL_ID_TAG, model_id)
    if user_id is not None:
        client.set_registered_model_tag(name, USER_ID_TAG, user_id)
    if spec is not None:
        client.set_registered_model_tag(name, SPEC_TAG, json.dumps(spec, sort_keys=True))
    return identity_of(name, client)


def set_symbol_as(name: str, symbol_as: str | None, client: Any = None) -> None:
    """Record how the backend spells the market of registered model ``name`` (its
    records and predictions list then use that spelling)."""
    from botlib.tracking import mlflow_client

    if symbol_as:
        (client or mlflow_client()).set_registered_model_tag(name, SYMBOL_AS_TAG, symbol_as)


def find_strategy(strategy_id: str, client: Any = None) -> StrategyBinding | None:
    """The rule strategy bound to the backend's ``strategy_id``, if any."""
    from botlib.tracking import mlflow_client

    wanted = _uuid(strategy_id, "strategy_id")
    client = client or mlflow_client()
    for model in client.search_registered_models():
        tags = model.tags or {}
        if tags.get(STRATEGY_ID_TAG) == wanted:
            return StrategyBinding(model.name, wanted, tags[STRATEGY_TAG], tags.get(USER_ID_TAG))
    return None


def bind_strategy(
    strategy: str, strategy_id: str, *, user_id: str | None = None
) -> StrategyBinding:
    """Bind the backend's ``strategy_id`` to rule strategy ``strategy`` (``sma_cross``,
    ``rsi_reversion``, …): a registered model ``rules-STRATEGY-ID`` whose versions are
    that strategy's optimizations. Binding the id to another strategy is refused."""
    from botlib.backtest import get_strategy
    from botlib.tracking import mlflow_client

    get_strategy(strategy)  # an unknown name is refused with a hint
    strategy_id = _uuid(strategy_id, "strategy_id")
    if user_id is not None:
        user_id = _uuid(user_id, "user_id")
    client = mlflow_client()
    bound = find_strategy(strategy_id, client)
    if bound is not None and bound.strategy != strategy:
        raise ConfigError(
            f"strategy_id {strategy_id} is already bound to {bound.strategy!r} ({bound.name})"
        )
    name = bound.name if bound is not None else f"rules-{strategy}-{strategy_id}"
    if bound is None:
        client.create_registered_model(
            name, tags={STRATEGY_ID_TAG: strategy_id, STRATEGY_TAG: strategy}
        )
    if user_id is not None:
        client.set_registered_model_tag(name, USER_ID_TAG, user_id)
    found = find_strategy(strategy_id, client)
    assert found is not None
    return found
