"""One typed settings object, read from ``BOTLIB_*`` environment variables and a
``.env`` file in the botlib home.

The **home** is where a deployed botlib keeps its state: the MLflow store
(``mlruns/``), the data cache, logs, pid files and ``.env``. It is ``BOTLIB_HOME``
when set; otherwise the source checkout the package runs from (the folder holding
``pyproject.toml``, for ``pip install -e .``); otherwise, for an installed wheel,
``$XDG_DATA_HOME/botlib`` (``~/.local/share/botlib``). Never the current directory and
never ``site-packages``: every process — a notebook, ``botlib serve`` started from any
folder, a worker — finds the same store.

>>> from botlib.settings import get_settings
>>> get_settings().mlflow_tracking_uri.endswith("/mlruns/mlflow.db")
True

Secrets (exchange key and secret, the Redis URL) are ``SecretStr``: they print as
``**********`` and are never logged. Relative paths are resolved against the home.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["PROJECT_ROOT", "Settings", "botlib_home", "get_settings"]

#: The folder above the package (``botlib/..``): the checkout for a source install,
#: ``site-packages`` for a wheel — use :func:`botlib_home` for where state lives.
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _is_checkout(root: Path) -> bool:
    return (root / "pyproject.toml").is_file() and (root / "botlib" / "__init__.py").is_file()


def botlib_home() -> Path:
    """Where this installation keeps its state (see the module docstring)."""
    env = os.environ.get("BOTLIB_HOME")
    if env:
        return Path(env).expanduser().resolve()
    if _is_checkout(PROJECT_ROOT):
        return PROJECT_ROOT
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data).expanduser().resolve() / "botlib"


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
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
    )

    home: Path = Field(
        default_factory=botlib_home,
        description="Where state lives: store, caches, logs, pid files, .env (BOTLIB_HOME).",
    )
    datasets_dir: Path | None = Field(
        default_factory=_default_datasets_dir,
        description="Read-only reference datasets (CSV/parquet), read in place, never copied.",
    )
    data_dir: Path = Field(
        default=Path(".cache/data"),
        validate_default=True,
        description="Cache of downloaded and imported candles (parquet).",
    )
    reports_dir: Path = Field(default=Path("reports"), validate_default=True)
    mlflow_tracking_uri: str = Field(
        default="sqlite:///mlruns/mlflow.db",
        validate_default=True,
        description="MLflow store; a relative sqlite path is anchored at the home. botlib "
        "uses this, never MLFLOW_TRACKING_URI.",
    )
    mlflow_artifacts_dir: Path = Field(default=Path("mlruns/artifacts"), validate_default=True)
    mlflow_tracking_username: str | None = Field(
        default=None,
        description="User for an MLflow server with authentication (`mlflow server "
        "--app-name basic-auth`); botlib passes it to MLflow's client itself.",
    )
    mlflow_tracking_password: SecretStr | None = Field(
        default=None, description="That user's password."
    )
    redis_url: SecretStr = SecretStr("redis://127.0.0.1:6379/0")
    redis_data_dir: Path = Field(default=Path(".cache/redis"), validate_default=True)
    logs_dir: Path = Field(
        default=Path("logs"), validate_default=True, description="Logs of `botlib up`'s services."
    )
    run_dir: Path = Field(
        default=Path(".cache/run"),
        validate_default=True,
        description="Pid and state files of `botlib up`.",
    )
    redis_names: dict[str, str] = Field(
        default_factory=dict,
        description="Overrides of stream / channel / key names (JSON), e.g. "
        '``{"signals": "lab:signals"}``; see ``botlib.transport.RedisNames``.',
    )
    redis_stream_maxlen: int = Field(
        default=100_000, ge=100, description="Approximate bound of every output stream."
    )
    exchange_id: str = "binance"
    plugins: str = Field(
        default="",
        description="Modules registering your own features and models (comma-separated), "
        "imported by every botlib process; see botlib.plugins.",
    )
    data_source: str | None = Field(
        default=None,
        description="Where candles come from when a command names none: reference, local "
        "(imported files) or an exchange id (its downloads). Default: the first that holds "
        "the market, in that order.",
    )
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

    def __init__(self, **values: Any) -> None:
        # .env is read from the home, never from the current directory
        if "_env_file" not in values:
            home = Path(values.get("home") or botlib_home())
            values["_env_file"] = home / ".env"
        super().__init__(**values)

    @field_validator("home")
    @classmethod
    def _home(cls, value: Path) -> Path:
        return Path(value).expanduser().resolve()

    @field_validator(
        "datasets_dir",
        "data_dir",
        "reports_dir",
        "mlflow_artifacts_dir",
        "redis_data_dir",
        "logs_dir",
        "run_dir",
    )
    @classmethod
    def _absolute(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is None:
            return None
        path = Path(value).expanduser()
        return path if path.is_absolute() else Path(info.data["home"]) / path

    @field_validator("mlflow_tracking_uri")
    @classmethod
    def _anchored_store(cls, value: str, info: ValidationInfo) -> str:
        prefix = "sqlite:///"
        if value.startswith(prefix) and not value.startswith(prefix + "/"):
            return prefix + str(Path(info.data["home"]) / value[len(prefix) :])
        return value

    @field_validator("data_source")
    @classmethod
    def _source_name(cls, value: str | None) -> str | None:
        import re

        if value is not None and not re.fullmatch(r"[A-Za-z0-9_.-]+", value):
            raise ValueError(
                f"expected reference, local or an exchange id (a plain name), got {value!r}"
            )
        return value

    @field_validator("exchange_id")
    @classmethod
    def _known_exchange(cls, value: str) -> str:
        import ccxt

        if value not in ccxt.exchanges:
            from difflib import get_close_matches

            hint = get_close_matches(value, ccxt.exchanges, n=1)
            suffix = f"; did you mean {hint[0]!r}?" if hint else ""
            if value == "local":
                suffix = "; imported candles are a data source: set BOTLIB_DATA_SOURCE=local"
            raise ValueError(f"unknown exchange {value!r} (not a ccxt exchange id){suffix}")
        return value


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once. Call ``get_settings.cache_clear()`` to reread.
    A bad value (environment or ``.env``) raises ``ConfigError`` with one line naming
    each variable, what it got and what is allowed."""
    from pydantic import ValidationError

    try:
        return Settings()
    except ValidationError as exc:
        raise settings_error(exc) from None


def settings_error(exc: Any) -> Exception:
    """A pydantic ``ValidationError`` of ``Settings`` as one ``ConfigError`` line."""
    from botlib.errors import ConfigError

    parts = []
    for err in exc.errors():
        field = str(err["loc"][0]) if err.get("loc") else "?"
        message = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        got = err.get("input")
        shown = f"={got!r}" if isinstance(got, (str, int, float)) else ""
        parts.append(f"BOTLIB_{field.upper()}{shown}: {message}")
    return ConfigError("bad setting: " + "; ".join(parts))
