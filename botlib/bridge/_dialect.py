"""The backend's spelling of a command, translated to botlib's before validation.

The TypeScript backend writes payloads in its own words: camelCase keys (``startDate``,
``batchSize``), exchange-native symbols (``BTCUSDT``), ``objective: "sharpe_ratio"``,
``algorithm: "genetic_algorithm"``, optimization ``parameters`` as a list of
``{name, min, max}``, and command names of its client (``start_training``,
``optimize_strategy``). ``translate`` maps each onto botlib's names through the tables
below — one documented mapping, nothing guessed. Whatever remains unknown is then
refused by validation, naming the field, as before.

| the backend sends | botlib reads |
|---|---|
| command ``createModel``, ``create_ai_model`` | ``create_model`` |
| command ``start_training``, ``train_model``, ``startTraining`` | ``train`` |
| command ``optimize_strategy``, ``optimizeStrategy`` | ``optimize`` |
| command ``generate_trading_signal``, ``generateSignal`` | ``generate_signal`` |
| any camelCase key (``startDate``, ``learningRate``) | its snake_case (``start_date``) |
| ``start_date`` / ``end_date`` | ``start`` / ``end`` |
| ``symbol`` ``BTCUSDT``, ``BTC-USDT``, ``btc_usdt``, ``btc/usdt`` | ``BTC/USDT`` |
| train ``algorithm`` ``genetic_algorithm``, ``differential_evolution`` | ``ga_rules``, … |
| optimize ``algorithm`` ``genetic_algorithm``, ``differential_evolution`` | ``ga``, ``de`` |
| ``objective`` ``sharpe_ratio``, ``sortino_ratio``, ``calmar_ratio`` | ``sharpe``, … |
| optimize ``parameters`` ``[{name, min, max}, …]`` | ``{name: {min, max}}`` |
| hyperparameter / configuration ``sequence_length``, ``hidden_units`` | ``seq_len``, ``units`` |

A symbol without a separator is split at the longest known quote currency it ends
with (``QUOTES``); one that ends with none is left as sent, and validation names it.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["COMMAND_ALIASES", "QUOTES", "canonical_symbol", "snake", "translate"]

COMMAND_ALIASES = {
    "create_ai_model": "create_model",
    "start_training": "train",
    "train_model": "train",
    "optimize_strategy": "optimize",
    "generate_trading_signal": "generate_signal",
}
#: quote currencies, longest first where one ends another (FDUSD before USD)
QUOTES = (
    "FDUSD", "USDT", "USDC", "BUSD", "TUSD", "USDP", "DAI", "USD", "EUR", "GBP", "TRY",
    "BRL", "JPY", "BTC", "ETH", "BNB",
)  # fmt: skip
_KEYS = {"start_date": "start", "end_date": "end"}
_OBJECTIVES = {"sharpe_ratio": "sharpe", "sortino_ratio": "sortino", "calmar_ratio": "calmar"}
_TRAIN_ALGORITHMS = {"genetic_algorithm": "ga_rules", "differential_evolution": "de_rules"}
_SEARCH_ALGORITHMS = {"genetic_algorithm": "ga", "differential_evolution": "de"}
_HYPERPARAMETERS = {"sequence_length": "seq_len", "hidden_units": "units"}
_CAMEL = re.compile(r"(?<=[a-z0-9])([A-Z])")


def snake(key: str) -> str:
    """``startDate`` -> ``start_date`` (snake_case passes unchanged)."""
    return _CAMEL.sub(r"_\1", key).lower() if any(c.isupper() for c in key) else key


def canonical_symbol(value: str) -> str:
    """``BTCUSDT``, ``BTC-USDT``, ``btc_usdt``, ``btc/usdt`` -> ``BTC/USDT``."""
    text = value.strip().upper()
    for sep in ("-", "_"):
        if sep in text and "/" not in text:
            text = text.replace(sep, "/", 1)
    if "/" in text:
        return text
    for quote in sorted(QUOTES, key=len, reverse=True):
        if text.endswith(quote) and len(text) > len(quote):
            return f"{text[: -len(quote)]}/{quote}"
    return value


def _keys(data: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = snake(key) if isinstance(key, str) else key
        out[_KEYS.get(name, name)] = value
    return out


def translate(command: str, data: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The command's name and payload in botlib's words (see the module's table)."""
    name = snake(command)
    name = COMMAND_ALIASES.get(name, name)
    payload = _keys(data)
    if isinstance(payload.get("symbol"), str):
        payload["symbol"] = canonical_symbol(payload["symbol"])
    if isinstance(payload.get("objective"), str):
        payload["objective"] = _OBJECTIVES.get(payload["objective"], payload["objective"])
    algorithm = payload.get("algorithm")
    if isinstance(algorithm, str):
        table = _TRAIN_ALGORITHMS if name in ("train", "create_model") else _SEARCH_ALGORITHMS
        payload["algorithm"] = table.get(algorithm, algorithm)
    for section in ("hyperparameters", "configuration"):
        inner = payload.get(section)
        if isinstance(inner, dict):
            keys = _keys(inner)
            payload[section] = {_HYPERPARAMETERS.get(k, k): v for k, v in keys.items()}
    params = payload.get("parameters")
    if name == "optimize" and isinstance(params, list):
        as_dict: dict[str, Any] = {}
        for item in params:
            if not (isinstance(item, dict) and isinstance(item.get("name"), str)):
                return name, payload  # not the list form: validation names the problem
            as_dict[item["name"]] = {k: v for k, v in item.items() if k != "name"}
        payload["parameters"] = as_dict
    return name, payload
