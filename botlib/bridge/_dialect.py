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
| train ``trainingData: {startDate, …, trainingData: {features, target}}`` | ``start``, …, |
| | ``features``, ``target`` |
| optimize ``strategyId`` | ``strategy_id`` (the rule strategy bound to it) |
| optimize ``ranges`` ``{name: [min, max]}`` | ``parameters`` |
| optimize parameter ``rsi_period``, ``fast_period``, … (``PARAMETER_ALIASES``) | the |
| | strategy's own name (``window``, ``fast``) |
| ``requestId`` / ``userId`` inside ``data`` | the envelope's ``request_id`` / ``user_id`` |

The symbol the backend sent is kept as ``symbol_as`` when it differs from the
canonical market: records and the predictions list of that model then use the
backend's spelling (its ``symbol`` column holds ``BTCUSDT``), and say the market in
``metadata``. ``trainingData`` may repeat the window fields of the command (the
backend's ``trainModel`` sends both); a value that differs from the command's is
refused, naming both.

A symbol without a separator is split at the longest known quote currency it ends
with (``QUOTES``); one that ends with none is left as sent, and validation names it.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = [
    "COMMAND_ALIASES",
    "PARAMETER_ALIASES",
    "QUOTES",
    "canonical_symbol",
    "snake",
    "strategy_parameter",
    "translate",
]

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
#: the names a backend or its users give a rule strategy's parameters -> the strategy's own
_STOP_ALIASES = {"stop_loss_atr": "stop_atr", "take_profit_atr": "take_atr",
                 "atr_period": "atr_window", "atr_length": "atr_window"}  # fmt: skip
PARAMETER_ALIASES: dict[str, dict[str, str]] = {
    "rsi_reversion": {
        "rsi_period": "window", "rsi_window": "window", "rsi_length": "window",
        "period": "window", "oversold": "lower", "rsi_lower": "lower",
        "oversold_level": "lower", "overbought": "upper", "rsi_upper": "upper",
        "overbought_level": "upper", **_STOP_ALIASES,
    },
    "sma_cross": {
        "fast_period": "fast", "slow_period": "slow", "short_window": "fast",
        "long_window": "slow", "fast_ma": "fast", "slow_ma": "slow", "sma_fast": "fast",
        "sma_slow": "slow", "short_period": "fast", "long_period": "slow", **_STOP_ALIASES,
    },
}  # fmt: skip
_TRAINING_DATA = ("start", "end", "symbol", "timeframe", "features", "target")
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


def strategy_parameter(strategy: str, name: str) -> str:
    """A parameter name of ``strategy`` in its own words (``rsi_period`` -> ``window``)."""
    return PARAMETER_ALIASES.get(strategy, {}).get(name, name)


def _training_data(payload: dict[str, Any]) -> None:
    """Lift ``training_data`` (the backend's ``trainingData``, possibly holding the
    window fields and a nested ``trainingData: {features, target}``) into the payload."""
    given = payload.pop("training_data", None)
    if given is None:
        return
    if not isinstance(given, dict):
        raise ValueError(f"trainingData: expected an object, got {type(given).__name__}")
    inner = _keys(given)
    nested = inner.pop("training_data", None)
    if isinstance(nested, dict):
        inner.update(_keys(nested))
    elif nested is not None:
        raise ValueError("trainingData.trainingData: expected an object {features, target}")
    unknown = sorted(set(inner) - set(_TRAINING_DATA))
    if unknown:
        raise ValueError(
            f"trainingData: unknown field(s) {', '.join(unknown)}; expected "
            "features, target, startDate, endDate, symbol, timeframe"
        )
    for key in _TRAINING_DATA:
        if key not in inner:
            continue
        value = inner[key]
        same = payload.get(key)
        if key == "symbol" and isinstance(same, str) and isinstance(value, str):
            agree = canonical_symbol(same) == canonical_symbol(value)
        else:
            agree = same == value
        if key in payload and same is not None and not agree:
            raise ValueError(f"trainingData.{key} {value!r} differs from {key} {same!r}")
        if same is None:
            payload[key] = value


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
    if name == "train":
        _training_data(payload)
    if isinstance(payload.get("symbol"), str):
        sent = payload["symbol"].strip()
        payload["symbol"] = canonical_symbol(sent)
        if sent != payload["symbol"] and "symbol_as" not in payload:
            payload["symbol_as"] = sent  # the backend's spelling, for its records
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
    ranges = payload.get("ranges")
    if name == "optimize" and isinstance(ranges, dict):  # {name: [min, max]} beside them
        payload.pop("ranges")
        extra = {k: {"min": v[0], "max": v[1]} if isinstance(v, list) and len(v) == 2 else v
                 for k, v in ranges.items()}  # fmt: skip
        params = payload.get("parameters")
        if isinstance(params, list):
            params = params + [{"name": k, **v} if isinstance(v, dict) else {"name": k}
                               for k, v in extra.items()]  # fmt: skip
        else:
            params = {**extra, **(params if isinstance(params, dict) else {})}
        payload["parameters"] = params
    params = payload.get("parameters")
    if name == "optimize" and isinstance(params, list):
        as_dict: dict[str, Any] = {}
        for item in params:
            if not (isinstance(item, dict) and isinstance(item.get("name"), str)):
                return name, payload  # not the list form: validation names the problem
            as_dict[item["name"]] = {k: v for k, v in item.items() if k != "name"}
        payload["parameters"] = as_dict
    return name, payload
