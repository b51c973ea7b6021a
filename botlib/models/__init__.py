"""Signal models by name: ``create_model("lstm", epochs=3)``, ``load_model(path_or_uri)``.

Heavy frameworks load on demand: naming ``lstm`` imports TensorFlow, ``dqn`` imports
PyTorch; importing this package imports neither.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from difflib import get_close_matches
from pathlib import Path
from typing import Any

from botlib.errors import ConfigError, unknown_name
from botlib.models.base import (
    OUTPUT_COLUMNS,
    BaseModel,
    FitReport,
    ModelMeta,
    ModelStream,
    SignalModel,
    check_candles,
    read_meta,
    split_by_time,
)

__all__ = [
    "MODEL_NAMES",
    "OUTPUT_COLUMNS",
    "BaseModel",
    "FitReport",
    "ModelMeta",
    "ModelStream",
    "SignalModel",
    "check_candles",
    "create_model",
    "get_model_class",
    "load_model",
    "model_names",
    "register_model",
    "register_uri_resolver",
    "split_by_time",
    "takes_seed",
]

_CLASSES = {
    "lstm": "botlib.models.nn.lstm:LSTMPriceModel",
    "gru": "botlib.models.nn.gru:GRUVolatilityModel",
    "transformer": "botlib.models.nn.transformer:TransformerTrendModel",
    "dqn": "botlib.models.rl.agents:DQNModel",
    "ppo": "botlib.models.rl.agents:PPOModel",
    "ga_rules": "botlib.models.evolve.rules:GARulesModel",
    "de_rules": "botlib.models.evolve.rules:DERulesModel",
    "ensemble": "botlib.models.ensemble:EnsembleModel",
}
MODEL_NAMES = tuple(_CLASSES)
_RESOLVERS: dict[str, Callable[[str], Path]] = {}


_PLUGIN_CLASSES: dict[str, type[BaseModel]] = {}


def register_model(name: str, cls: type[BaseModel]) -> None:
    """Make ``cls`` (a ``BaseModel`` subclass whose ``name`` is ``name``) a model like
    the built-in ones: ``create_model``, ``train_session``, pipelines and the bridge's
    ``train`` build it by name, and ``load_model`` finds it again in any process that
    loads the plugin (see ``botlib.plugins``)."""
    if name in _CLASSES:
        raise ConfigError(f"model {name!r} is built in; choose another name")
    if not (isinstance(cls, type) and issubclass(cls, BaseModel)):
        raise ConfigError(f"register_model({name!r}, ...) needs a BaseModel subclass")
    if getattr(cls, "name", None) != name:
        raise ConfigError(f"{cls.__name__}.name is {getattr(cls, 'name', None)!r}, not {name!r}")
    _PLUGIN_CLASSES[name] = cls


def model_names() -> tuple[str, ...]:
    """Every model name: the built-in ones, then the plugins'."""
    return (*MODEL_NAMES, *_PLUGIN_CLASSES)


def get_model_class(name: str) -> type[BaseModel]:
    """The model class registered as ``name`` (with a did-you-mean hint)."""
    if name not in _CLASSES and name not in _PLUGIN_CLASSES:
        from botlib.plugins import load_plugins

        load_plugins()
    if name in _PLUGIN_CLASSES:
        return _PLUGIN_CLASSES[name]
    try:
        target = _CLASSES[name]
    except KeyError:
        raise unknown_name("model", name, model_names()) from None
    module, _, cls = target.partition(":")
    found: type[BaseModel] = getattr(importlib.import_module(module), cls)
    return found


def takes_seed(name: str) -> bool:
    """Whether model ``name`` takes a ``seed`` (the built-in ones but the ensemble do; a
    plugin's model may not)."""
    import inspect

    parameters = inspect.signature(get_model_class(name).__init__).parameters
    return "seed" in parameters or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()
    )


def create_model(name: str, **params: Any) -> BaseModel:
    """A new, untrained model; unknown hyperparameters raise with a hint."""
    cls = get_model_class(name)
    try:
        return cls(**params)
    except TypeError as exc:
        import inspect

        known = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
        bad = [k for k in params if k not in known]
        hints = {k: get_close_matches(k, known, n=1) for k in bad}
        detail = ", ".join(
            f"{k!r}" + (f" (did you mean {h[0]!r}?)" if h else "") for k, h in hints.items()
        )
        raise ConfigError(
            f"{name}: unknown parameter(s) {detail or exc}; parameters: {', '.join(known)}"
        ) from None


def register_uri_resolver(scheme: str, resolve: Callable[[str], Path]) -> None:
    """Let ``load_model`` accept ``scheme:/...`` URIs (the tracking layer registers
    ``models`` and ``runs``); ``resolve`` returns a local saved-model folder."""
    _RESOLVERS[scheme] = resolve


def load_model(ref: str | Path) -> BaseModel:
    """Load a saved model from a folder, or from a registered URI scheme."""
    text = str(ref)
    scheme, sep, _ = text.partition(":/")
    if sep and len(scheme) > 1:
        if scheme not in _RESOLVERS:
            importlib.import_module("botlib.tracking")  # registers models:/ and runs:/
        if scheme not in _RESOLVERS:
            raise ConfigError(f"cannot load {text!r}: no resolver for {scheme}:/ URIs")
        ref = _RESOLVERS[scheme](text)
    meta = read_meta(Path(ref))
    return get_model_class(meta["name"]).load(ref)
