"""Exchange API keys are handed to ccxt only for account calls: candles are public."""

from __future__ import annotations

import pytest

from botlib.data import make_exchange
from botlib.settings import Settings


def test_keys_only_for_private_calls(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(exchange_api_key="k-123", exchange_api_secret="s-456")  # type: ignore[arg-type]
    public = make_exchange("binance", settings)
    assert not public.apiKey and not public.secret
    private = make_exchange("binance", settings, private=True)
    assert private.apiKey == "k-123" and private.secret == "s-456"
