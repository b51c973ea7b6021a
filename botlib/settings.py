"""One typed settings object, read from ``BOTLIB_*`` environment variables and ``.env``.

>>> from botlib.settings import get_settings
>>> get_settings().mlflow_tracking_uri
'sqlite:///mlruns/mlflow.db'

Secrets (exchange key and secret) are ``SecretStr``: they print as ``**********`` and
are never logged. Relative paths are resolved against the project root (the folder
holding ``pyproject.toml``), so the CLI behaves the same from any working directory.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["PROJECT_ROOT", "Settings", "get_settings"]

#: The checkout this package lives in (``botlib/..``).
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _default_datasets_dir() -> Path | None:
    """``../shared/data`` beside the checkout, where the reference candles live."""
    candidate = PROJECT_ROOT.parent / "shared" / "data"
    return candidate if candidate.is_dir() else None


class Settings(BaseSettings):
    """Everything configurable about a botlib installation.

    Fees and slippage are fractions of traded value (``0.001`` = 0.1 %).
    """

    model_config = SettingsConfigDict(
        env_prefix="BOTLIB_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
    )

    datasets_dir: Path | None = Field(
        default_factory=_default_datasets_dir,
        description="Read-only reference datasets (CSV/parquet), read in place, never copied.",
    )
    data_dir: Path = Field(
        default=PROJECT_ROOT / ".cache" / "data",
        description="Cache of downloaded and imported candles (parquet).",
    )
    reports_dir: Path = Field(default=PROJECT_ROOT / "reports")
    mlflow_tracking_uri: str = "sqlite:///mlruns/mlflow.db"
    mlflow_artifacts_dir: Path = Field(default=PROJECT_ROOT / "mlruns" / "artifacts")
    redis_url: SecretStr = SecretStr("redis://127.0.0.1:6379/0")
    redis_data_dir: Path = Field(default=PROJECT_ROOT / ".cache" / "redis")
    redis_names: dict[str, str] = Field(
        default_factory=dict,
        description="Overrides of stream / channel / key names (JSON), e.g. "
        '``{"signals": "lab:signals"}``; see ``botlib.transport.RedisNames``.',
    )
    redis_stream_maxlen: int = Field(
        default=100_000, ge=100, description="Approximate bound of every output stream."
    )
    exchange_id: str = "binance"
    exchange_urls: dict[str, str] = Field(
        default_factory=dict,
        description="Overrides of the exchange's ccxt ``urls['api']`` entries (JSON), e.g. a "
        'proxy or testnet: ``{"public": "http://127.0.0.1:8080/api/v3"}``.',
    )
    exchange_options: dict[str, Any] = Field(
        default_factory=dict, description="Extra ccxt ``options`` for the exchange (JSON)."
    )
    exchange_api_key: SecretStr | None = None
    exchange_api_secret: SecretStr | None = None
    fee: float = Field(default=0.001, ge=0.0, lt=0.1, description="Commission per fill.")
    slippage: float = Field(default=0.0005, ge=0.0, lt=0.1, description="Adverse fill move.")
    initial_cash: float = Field(default=10_000.0, gt=0.0, description="Quote currency.")
    gap_policy: Literal["keep", "ffill"] = "keep"

    @field_validator(
        "datasets_dir", "data_dir", "reports_dir", "mlflow_artifacts_dir", "redis_data_dir"
    )
    @classmethod
    def _absolute(cls, value: Path | None) -> Path | None:
        if value is None:
            return None
        path = Path(value).expanduser()
        return path if path.is_absolute() else PROJECT_ROOT / path

    @field_validator("exchange_id")
    @classmethod
    def _known_exchange(cls, value: str) -> str:
        import ccxt

        if value not in ccxt.exchanges:
            from difflib import get_close_matches

            hint = get_close_matches(value, ccxt.exchanges, n=1)
            suffix = f"; did you mean {hint[0]!r}?" if hint else ""
            raise ValueError(f"unknown exchange {value!r} (not a ccxt exchange id){suffix}")
        return value


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once. Call ``get_settings.cache_clear()`` to reread."""
    return Settings()
