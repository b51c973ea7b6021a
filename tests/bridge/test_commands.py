"""Every backend command is validated; anything else is refused with a reason."""

from __future__ import annotations

import json
import random
import string
from typing import Any

import pytest

from botlib.bridge import MAX_BYTES, Command, Rejection, parse_command
from botlib.bridge._dialect import COMMAND_ALIASES
from botlib.bridge.commands import ADMIN_ONLY, BacktestCommand, OptimizeCommand, TrainCommand

API_CREATE_MODEL = {  # shared/backend/api.md §1, verbatim, plus the id the backend adds
    "modelId": "6f1c2a4e-8d3b-4c5a-9e7f-0a1b2c3d4e5f",
    "name": "LSTM Price Predictor",
    "modelType": "neural_network",
    "algorithm": "lstm",
    "configuration": {"sequenceLength": 60, "features": 10, "hiddenUnits": 50},
    "hyperparameters": {"learningRate": 0.001, "epochs": 100, "batchSize": 32},
}

API_TRAIN = {  # shared/backend/api.md §2, verbatim
    "startDate": "2024-01-01",
    "endDate": "2024-12-31",
    "symbol": "BTCUSDT",
    "timeframe": "1h",
    "trainingData": {"features": ["close", "volume", "rsi", "macd"], "target": "close"},
}
#: what the backend's services send (backend-services.ts): api.md's bodies in its envelope
MODEL_ID = "6f1c2a4e-8d3b-4c5a-9e7f-0a1b2c3d4e5f"
SEED_FORMAT: dict[str, dict[str, Any]] = {
    "create_model": API_CREATE_MODEL,
    "start_training": {"modelId": MODEL_ID, "trainingData": API_TRAIN, "startDate": "2024-01-01",
                       "endDate": "2024-12-31", "symbol": "BTCUSDT", "timeframe": "1h",
                       "requestId": "r-1"},
    "generate_trading_signal": {"modelId": MODEL_ID, "symbol": "BTCUSDT",
                                "currentData": {"close": 50000, "volume": 1000, "rsi": 45,
                                                "macd": 0.5}},
    "optimize_strategy": {"strategyId": "0b6f0d1e-3c2a-4f5e-8d7c-9a1b2c3d4e5f",
                          "parameters": [{"name": "rsi_period", "min": 10, "max": 30}],
                          "objective": "sharpe_ratio"},
    "get_predictions": {"modelId": MODEL_ID, "symbol": "BTCUSDT", "limit": 100},
    # the admin path's (botlib:admin:commands)
    "bind": {"strategyId": "0b6f0d1e-3c2a-4f5e-8d7c-9a1b2c3d4e5f", "strategy": "rsi_reversion"},
    "deactivate": {"modelId": MODEL_ID},
}  # fmt: skip
VALID: dict[str, dict[str, Any]] = {
    "train": {"algorithm": "lstm", "symbol": "BTC/USDT", "timeframe": "1h",
              "start": "2024-01-01", "end": "2024-06-01", "hyperparameters": {"epochs": 3}},
    "backtest": {"strategy": "sma_cross", "parameters": {"fast": 20, "slow": 100}},
    "optimize": {"strategy": "sma_cross", "parameters": {"fast": {"min": 5, "max": 50}},
                 "objective": "sharpe", "algorithm": "de", "population": 10, "generations": 3},
    "generate_signal": {"symbol": "BTC/USDT", "market_data": [
        {"timestamp": 1735689600000, "open": 1, "high": 2, "low": 0.5, "close": 1.5, "volume": 3}]},
    "get_predictions": {"model": "nn-lstm-btc_usdt-1h", "symbol": "BTC/USDT", "limit": 5},
    "promote": {"model": "nn-lstm-btc_usdt-1h", "version": 3},
    "rollback": {"model": "nn-lstm-btc_usdt-1h"},
}  # fmt: skip
CORPUS = {**VALID, **{f"seed:{k}": v for k, v in SEED_FORMAT.items()}}


def _envelope(command: str, data: Any, **extra: Any) -> str:
    return json.dumps({"command": command, "data": data, "timestamp": 1, **extra})


@pytest.mark.parametrize("name", list(CORPUS))
def test_each_valid_command_parses(name: str) -> None:
    """botlib's spelling, and the backend's (``seed:``: as its services send api.md's
    bodies; the request id may travel inside ``data``)."""
    command = name.removeprefix("seed:")
    path = "admin" if command in ADMIN_ONLY else "backend"
    parsed = parse_command(_envelope(command, CORPUS[name], request_id="r-1", user_id="u-1"), path)
    assert isinstance(parsed, Command), parsed
    assert parsed.name == COMMAND_ALIASES.get(command, command)
    assert parsed.request_id == "r-1" and parsed.user_id == "u-1"


def test_defaults_and_types() -> None:
    parsed = parse_command(_envelope("train", {"algorithm": "gru"}))
    assert isinstance(parsed, Command) and isinstance(parsed.payload, TrainCommand)
    assert parsed.payload.symbol == "BTC/USDT" and parsed.payload.timeframe == "1h"
    opt = parse_command(_envelope("optimize", VALID["optimize"]))
    assert isinstance(opt, Command) and isinstance(opt.payload, OptimizeCommand)
    assert opt.payload.parameters["fast"].max == 50


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("{not json", "not JSON"),
        ("[1, 2]", "JSON object"),
        (_envelope("trian", {}), "did you mean 'train'"),
        (_envelope("train", {"algorithm": "lstn"}), "did you mean 'lstm'"),
        (_envelope("train", {"algorithm": "lstm", "symbol": "BTCXYZ"}), "BASE/QUOTE"),
        (_envelope("train", {"algorithm": "lstm", "timeframe": "1x"}), "timeframe"),
        (_envelope("train", {"algorithm": "lstm", "start": "yesterday"}), "ISO date"),
        (_envelope("train", {"algorithm": "lstm", "gpu": True}), "gpu"),
        (_envelope("backtest", {}), "exactly one of model_uri or strategy"),
        (_envelope("backtest", {"strategy": "sma_cross", "data_file": "x.csv"}), "data_file"),
        (_envelope("optimize", {"parameters": {"fats": {"min": 1, "max": 2}}}),
         "did you mean 'fast'"),
        (_envelope("optimize", {"parameters": {"fast": {"min": 9, "max": 2}}}), "min <= max"),
        (_envelope("promote", {"model": "x", "version": 0}), "version"),
        (_envelope("get_predictions", {"limit": 10**6}), "limit"),
        (json.dumps({"command": "train", "data": {}, "request_id": "r 1; DROP"}), "request_id"),
        (json.dumps({"data": {}}), "command"),
        ("x" * (MAX_BYTES + 1), "byte limit"),
    ],
)  # fmt: skip
def test_bad_commands_are_refused_with_a_reason(raw: str, reason: str) -> None:
    parsed = parse_command(raw)
    assert isinstance(parsed, Rejection), parsed
    assert reason in parsed.reason


def test_a_rejection_keeps_the_request_id_for_the_answer() -> None:
    parsed = parse_command(_envelope("train", {"algorithm": "nope"}, request_id="r-9", user_id="u"))
    assert isinstance(parsed, Rejection)
    assert parsed.request_id == "r-9" and parsed.command == "train"


def test_backtest_model_uri_form() -> None:
    ok = parse_command(_envelope("backtest", {"model_uri": "models:/nn-lstm-btc_usdt-1h@champion"}))
    assert isinstance(ok, Command) and isinstance(ok.payload, BacktestCommand)
    bad = parse_command(_envelope("backtest", {"model_uri": "file:///etc/passwd"}))
    assert isinstance(bad, Rejection)


def _mutate(rng: random.Random, value: Any, depth: int = 0) -> Any:
    """A random corruption of a JSON value: wrong types, huge numbers, NaN, nesting."""
    choices: list[Any] = [None, True, -1, 0, 10**30, float("nan"), float("inf"), "",
                          "x" * rng.randint(1, 300), [], {}, [value], {"k": value},
                          "".join(rng.choice(string.printable) for _ in range(20))]  # fmt: skip
    if isinstance(value, dict) and value and depth < 3:
        out = dict(value)
        key = rng.choice(list(out))
        action = rng.random()
        if action < 0.3:
            del out[key]
        elif action < 0.6:
            out[key] = _mutate(rng, out[key], depth + 1)
        else:
            out[rng.choice(["extra", key + "_", "__class__"])] = rng.choice(choices)
        return out
    return rng.choice(choices)


def test_fuzz_1000_random_and_malformed_commands_never_raise() -> None:
    rng = random.Random(7)
    valid_seen = rejected = 0
    for i in range(1000):
        name = rng.choice([*CORPUS, "train", "unknown", ""])
        body: Any = {"command": name.removeprefix("seed:"), "data": CORPUS.get(name, {}),
                     "timestamp": i}  # fmt: skip
        roll = rng.random()
        if roll < 0.1:
            raw: str | bytes = bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 200)))
        elif roll < 0.2:
            raw = json.dumps(body)[: rng.randint(0, 60)]  # truncated
        elif roll < 0.3:
            raw = "[" * rng.randint(1, 5000) + "]" * rng.randint(0, 10)  # deep nesting
        elif roll < 0.4:
            raw = json.dumps(body)  # left valid: must still succeed
        else:
            raw = json.dumps(_mutate(rng, body), allow_nan=True)
        parsed = parse_command(raw)
        assert isinstance(parsed, Command | Rejection)
        if isinstance(parsed, Rejection):
            assert parsed.reason
            rejected += 1
        else:
            valid_seen += 1
    assert rejected > 500 and valid_seen > 50


def test_paths_from_commands_stay_in_the_data_directory() -> None:
    from botlib.bridge.commands import confine_path
    from botlib.settings import get_settings

    root = get_settings().data_dir.resolve()
    assert confine_path("binance/BTC_USDT-1h.parquet") == root / "binance" / "BTC_USDT-1h.parquet"
    for bad in ("../../etc/passwd", "/etc/passwd", "a/../../b"):
        with pytest.raises(ValueError, match="outside the data directory"):
            confine_path(bad)


# -- the backend's own spelling (shared/backend: api.md, backend-services.ts) ----------


@pytest.mark.parametrize(
    ("sent", "canonical"),
    [("BTCUSDT", "BTC/USDT"), ("BTC-USDT", "BTC/USDT"), ("btc_usdt", "BTC/USDT"),
     ("btc/usdt", "BTC/USDT"), ("ETHFDUSD", "ETH/FDUSD"), ("SOLBTC", "SOL/BTC"),
     ("ETHUSD", "ETH/USD")],
)  # fmt: skip
def test_exchange_native_symbols_resolve_to_one_market(sent: str, canonical: str) -> None:
    parsed = parse_command(_envelope("generate_signal", {"symbol": sent}))
    assert isinstance(parsed, Command), parsed
    assert parsed.payload.model_dump()["symbol"] == canonical


def test_a_symbol_with_no_known_quote_is_refused_by_name() -> None:
    parsed = parse_command(_envelope("generate_signal", {"symbol": "FOOBAR"}))
    assert isinstance(parsed, Rejection) and "'FOOBAR'" in parsed.reason


def test_the_backends_training_command_reads_as_botlibs() -> None:
    """``startTraining`` as the backend's client sends it: camelCase dates, BTCUSDT,
    hyperparameters in its words."""
    backend = {"command": "start_training", "timestamp": "2026-11-29T12:00:00.000Z",
               "data": {"algorithm": "lstm", "startDate": "2024-01-01", "endDate": "2024-12-31",
                        "symbol": "BTCUSDT", "timeframe": "1h",
                        "hyperparameters": {"learningRate": 0.001, "epochs": 2,
                                            "batchSize": 32, "sequenceLength": 16,
                                            "hiddenUnits": 8}}}  # fmt: skip
    ours = {"algorithm": "lstm", "start": "2024-01-01", "end": "2024-12-31",
            "symbol": "BTC/USDT", "timeframe": "1h",
            "hyperparameters": {"learning_rate": 0.001, "epochs": 2, "batch_size": 32,
                                "seq_len": 16, "units": 8}}  # fmt: skip
    theirs = parse_command(json.dumps(backend))
    mine = parse_command(_envelope("train", ours))
    assert isinstance(theirs, Command) and isinstance(mine, Command), theirs
    assert theirs.name == "train"
    assert theirs.payload.model_dump() == {**mine.payload.model_dump(), "symbol_as": "BTCUSDT"}


def test_the_backends_train_model_call_reads_as_botlibs() -> None:
    """What ``AIMLIntegrationService.trainModel`` publishes for api.md §2's body: the
    whole body again under ``trainingData`` (whose own ``trainingData`` holds features
    and target), and the request id inside ``data`` (its envelope has no other room)."""
    model_id = "6f1c2a4e-8d3b-4c5a-9e7f-0a1b2c3d4e5f"
    data = {"modelId": model_id, "trainingData": API_TRAIN, "startDate": "2024-01-01",
            "endDate": "2024-12-31", "symbol": "BTCUSDT", "timeframe": "1h",
            "requestId": "r-7"}  # fmt: skip
    parsed = parse_command(json.dumps({"command": "start_training", "data": data,
                                       "timestamp": "2026-11-29T12:00:00.000Z"}))  # fmt: skip
    assert isinstance(parsed, Command), parsed
    assert parsed.request_id == "r-7"
    p = parsed.payload.model_dump()
    assert p["model_id"] == model_id and p["symbol"] == "BTC/USDT" and p["symbol_as"] == "BTCUSDT"
    assert (p["start"], p["end"]) == ("2024-01-01", "2024-12-31")
    assert p["features"] == ["close", "volume", "rsi", "macd"] and p["target"] == "close"
    # trainingData that contradicts the command is refused, naming both values
    data["trainingData"] = {**API_TRAIN, "timeframe": "4h"}
    refused = parse_command(_envelope("start_training", data))
    assert isinstance(refused, Rejection) and "'4h'" in refused.reason and "'1h'" in refused.reason
    assert refused.request_id == "r-7"  # the answer still reaches the waiting client
    data["trainingData"] = {**API_TRAIN, "labels": "x"}
    refused = parse_command(_envelope("start_training", data))
    assert isinstance(refused, Rejection) and "labels" in refused.reason


def test_the_backends_optimization_body_reads_as_botlibs() -> None:
    """api.md §5's objective, algorithm and parameter list (on a strategy botlib has)."""
    body = {"strategy": "rsi_reversion", "objective": "sharpe_ratio",
            "algorithm": "genetic_algorithm",
            "parameters": [{"name": "window", "min": 10, "max": 30}]}  # fmt: skip
    parsed = parse_command(_envelope("optimize_strategy", body))
    assert isinstance(parsed, Command), parsed
    p = parsed.payload.model_dump()
    assert parsed.name == "optimize" and p["objective"] == "sharpe" and p["algorithm"] == "ga"
    assert p["parameters"] == {"window": {"min": 10.0, "max": 30.0}}
    # the backend's name for it (api.md §5's rsi_period) is the strategy's window
    body["parameters"] = [{"name": "rsi_period", "min": 10, "max": 30}]
    parsed = parse_command(_envelope("optimize_strategy", body))
    assert isinstance(parsed, Command), parsed
    assert parsed.payload.model_dump()["parameters"] == {"window": {"min": 10.0, "max": 30.0}}
    # a name neither the strategy nor its aliases know is still refused, named
    body["strategy"] = "sma_cross"
    refused = parse_command(_envelope("optimize_strategy", body))
    assert isinstance(refused, Rejection) and "'rsi_period'" in refused.reason
    # api.md §5 as optimizeStrategy sends it: a strategy id, no strategy, no dates
    sent = {"strategyId": "0b6f0d1e-3c2a-4f5e-8d7c-9a1b2c3d4e5f", "objective": "sharpe_ratio",
            "parameters": [{"name": "rsi_period", "min": 10, "max": 30}]}  # fmt: skip
    parsed = parse_command(_envelope("optimize_strategy", sent))
    assert isinstance(parsed, Command), parsed
    assert parsed.payload.model_dump()["strategy_id"] == sent["strategyId"]


def test_train_maps_the_backends_evolutionary_algorithms() -> None:
    for sent, family in (("genetic_algorithm", "ga_rules"), ("differential_evolution", "de_rules")):
        parsed = parse_command(_envelope("train", {"algorithm": sent}))
        assert isinstance(parsed, Command), parsed
        assert parsed.payload.model_dump()["algorithm"] == family


def test_the_backends_create_model_body_validates() -> None:
    parsed = parse_command(json.dumps({"command": "create_model", "data": API_CREATE_MODEL,
                                       "timestamp": "2026-11-29T12:00:00.000Z"}))  # fmt: skip
    assert isinstance(parsed, Command), parsed
    params = parsed.payload.params()  # type: ignore[attr-defined]
    assert params == {"seq_len": 60, "units": 50, "learning_rate": 0.001, "epochs": 100,
                      "batch_size": 32}  # fmt: skip
    bad = dict(API_CREATE_MODEL, hyperparameters={"learningRate": -1})
    refused = parse_command(_envelope("create_model", bad))
    assert isinstance(refused, Rejection) and "learning_rate" in refused.reason
    not_uuid = dict(API_CREATE_MODEL, modelId="model-7")
    refused = parse_command(_envelope("create_model", not_uuid))
    assert isinstance(refused, Rejection) and "UUID" in refused.reason


HOSTILE = {
    "a Dask scheduler to connect to": (
        "train", {"algorithm": "ga_rules", "hyperparameters": {"compute": "tcp://10.0.0.5:8786"}},
        "compute is not accepted over Redis"),
    "ensemble members as paths": (
        "train", {"algorithm": "ensemble", "hyperparameters": {"members": ["/tmp/evil"]}},
        "paths are not accepted over Redis"),
    "a hundred million epochs": (
        "train", {"algorithm": "lstm", "hyperparameters": {"epochs": 100_000_000}},
        "epochs=100000000 outside [1, 500]"),
    "a forced promotion": (
        "promote", {"model": "nn-lstm-btc_usdt-1h", "force": True},
        "accepted only on the admin path"),
    "binding from the backend": (
        "bind", {"modelId": "6f1c2a4e-8d3b-4c5a-9e7f-0a1b2c3d4e5f", "name": "x"},
        "accepted only on the admin path"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_commands_are_refused_with_the_reason(case: str) -> None:
    """issue 15: each parsed as a valid command before; each is refused now, by name."""
    command, data, reason = HOSTILE[case]
    parsed = parse_command(_envelope(command, data, request_id="h-1"))
    assert isinstance(parsed, Rejection), parsed
    assert reason in parsed.reason and parsed.request_id == "h-1"


def test_the_admin_path_may_force_and_bind() -> None:
    for command, data, _ in (HOSTILE["a forced promotion"], HOSTILE["binding from the backend"]):
        parsed = parse_command(_envelope(command, data), path="admin")
        assert isinstance(parsed, Command) and parsed.path == "admin", parsed


def test_registry_members_and_bounded_hyperparameters_pass() -> None:
    ok = {"algorithm": "ensemble", "hyperparameters": {"members": ["models:/nn-lstm-x/3"]}}
    assert isinstance(parse_command(_envelope("train", ok)), Command)
    unknown = {"algorithm": "lstm", "hyperparameters": {"optimizer": "adam"}}
    refused = parse_command(_envelope("train", unknown))
    assert isinstance(refused, Rejection) and "optimizer is not a hyperparameter" in refused.reason
