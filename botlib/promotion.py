"""Promotion: the registry's candidate becomes the model the signal loop serves.

``promote(name)`` applies the gate to a registered version (default: the newest):

* **out-of-sample** — its run logged held-out backtest metrics (``test.*``);
* **beats the baselines** — on that window, net of costs, its ``metric`` beats
  buy-and-hold's and flat's by at least ``margin``;
* **trades** — it made at least ``min_trades`` round trips;
* **overfitting** (optimization runs, when set) — the winner's deflated Sharpe ratio is
  at least ``min_deflated_sharpe`` and the search's PBO at most ``max_pbo``;
* **computable** — it loads, and every feature of its spec (and its members') is one
  the loop computes, with the schema hash it was trained with.

If every check passes, alias ``@champion`` moves to it (the old champion becomes
``@previous``), its entry is written to the Redis hash ``botlib:active_models``, the
revision counter the loop watches is bumped, and the change is announced on the
``botlib:model_events`` stream and channel. A refusal lists every failed check with its
numbers. ``rollback(name)`` moves ``@champion`` back to ``@previous``.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import redis
from mlflow import MlflowClient

from botlib.errors import BotlibError, ConfigError
from botlib.models import BaseModel, load_model
from botlib.tracking import mlflow_client
from botlib.tracking.identity import identity_of
from botlib.transport import RedisNames, active_models, connect, dumps, redis_names

__all__ = [
    "Check",
    "GateConfig",
    "GateResult",
    "PromotionRefusedError",
    "activate",
    "activate_champions",
    "active_models",
    "evaluate_gate",
    "list_models",
    "promote",
    "publish_version",
    "rollback",
]

CHAMPION, PREVIOUS = "champion", "previous"
#: version tag while ``promote`` / ``rollback`` move its alias and publish it
PUBLISHING = "botlib.publishing_at"


class PromotionRefusedError(BotlibError):
    """The gate refused a candidate; ``result`` holds every check."""

    def __init__(self, result: GateResult) -> None:
        failed = "; ".join(f"{c.name}: {c.detail}" for c in result.checks if not c.passed)
        super().__init__(f"{result.name} v{result.version} refused — {failed}")
        self.result = result


@dataclass(frozen=True)
class GateConfig:
    """Thresholds of the promotion gate. ``metric`` is a backtest metric where higher is
    better (``total_return``, ``sharpe``, ``sortino``, ``calmar``); ``margin`` is in its
    units (0.02 = two percentage points of total return)."""

    metric: str = "total_return"
    margin: float = 0.0
    min_trades: int = 3
    prefix: str = "test"
    #: optimization runs: least deflated Sharpe ratio / most PBO allowed (None = off)
    min_deflated_sharpe: float | None = None
    max_pbo: float | None = None

    def __post_init__(self) -> None:
        allowed = ("total_return", "sharpe", "sortino", "calmar", "cagr")
        if self.metric not in allowed:
            from botlib.errors import unknown_name

            raise unknown_name("gate metric", self.metric, allowed)
        if self.min_trades < 0:
            raise ConfigError(f"min_trades must be >= 0, got {self.min_trades}")
        for name in ("min_deflated_sharpe", "max_pbo"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value <= 1.0:
                raise ConfigError(f"{name} must be in [0, 1], got {value}")


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str


@dataclass
class GateResult:
    name: str
    version: str
    checks: list[Check] = field(default_factory=list)
    entry: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "passed": self.passed,
            "checks": [asdict(c) for c in self.checks],
        }


def _client() -> MlflowClient:
    return mlflow_client()


def _version(client: MlflowClient, name: str, version: str | int | None) -> Any:
    known = [m.name for m in client.search_registered_models()]
    if name not in known:
        from botlib.errors import unknown_name

        raise unknown_name("registered model", name, known)
    versions = client.search_model_versions(f"name = '{name}'")
    if not versions:
        raise ConfigError(f"registered model {name!r} has no versions")
    if version is None:
        return max(versions, key=lambda v: int(v.version))
    for mv in versions:
        if str(mv.version) == str(version):
            return mv
    have = ", ".join(sorted((str(v.version) for v in versions), key=int))
    raise ConfigError(f"{name} has no version {version!r}; versions: {have}")


def _num(metrics: dict[str, float], key: str) -> float:
    value = metrics.get(key, float("nan"))
    return float(value)


def _feature_checks(model: BaseModel) -> list[str]:
    """Problems that stop the loop computing this model's inputs ([] = none)."""
    from botlib.features import FeatureSpec

    problems = []
    stack = [model]
    while stack:
        current = stack.pop()
        spec = current.meta.feature_spec
        if spec is not None:
            try:
                again = FeatureSpec.from_dict(spec.to_dict())
            except (ConfigError, ValueError) as exc:
                problems.append(f"{current.name}: {exc}")
                continue
            if again.schema_hash != spec.schema_hash:
                problems.append(f"{current.name}: schema hash changed")
        stack.extend(getattr(current, "models", []) or [])
    return problems


def evaluate_gate(
    name: str,
    version: str | int | None = None,
    *,
    gate: GateConfig | None = None,
    client: MlflowClient | None = None,
    mv: Any = None,
    run: Any = None,
    model_tags: dict[str, str] | None = None,
    artifacts: tuple[Path, Path] | None = None,
) -> GateResult:
    """Run every check of the gate on ``name`` (version ``version`` or the newest).

    What a caller fetched from the registry already need not be fetched again (each
    request to an authenticated server costs a password check): ``mv`` the model
    version, ``run`` its run, ``model_tags`` the registered model's tags,
    ``artifacts`` the version's downloaded (root, model folder). The checks are the
    same: the digest is computed over the files given."""
    gate = gate or GateConfig()
    client = client or _client()
    if mv is None:
        mv = _version(client, name, version)
    result = GateResult(name, str(mv.version))
    if run is None and mv.run_id:
        run = client.get_run(mv.run_id)
    metrics = dict(run.data.metrics) if run else {}
    params = dict(run.data.params) if run else {}
    tags = dict(run.data.tags) if run else {}
    p, m = gate.prefix, gate.metric

    strategy = _num(metrics, f"{p}.{m}")
    hold = _num(metrics, f"{p}.buy_and_hold.{m}")
    flat = _num(metrics, f"{p}.flat.{m}")
    if not math.isfinite(flat) and f"{p}.total_return" in metrics:
        flat = 0.0  # a flat book has no variance: its ratios are 0 by convention
    has_oos = all(math.isfinite(x) for x in (strategy, hold))
    result.checks.append(
        Check(
            "out-of-sample",
            has_oos,
            f"{p}.{m}={strategy:.4f} on {tags.get('test_start', '?')} → {tags.get('data_end', '?')}"
            if has_oos
            else f"run {mv.run_id} logged no {p}.{m} / {p}.buy_and_hold.{m} (no held-out backtest)",
        )
    )
    if has_oos:
        need_hold, need_flat = hold + gate.margin, flat + gate.margin
        result.checks.append(
            Check(
                "beats buy-and-hold",
                strategy >= need_hold,
                f"{m} {strategy:.4f} vs buy-and-hold {hold:.4f} + margin {gate.margin} "
                f"= {need_hold:.4f}",
            )
        )
        result.checks.append(
            Check(
                "beats flat",
                strategy >= need_flat,
                f"{m} {strategy:.4f} vs flat {flat:.4f} + margin {gate.margin} = {need_flat:.4f}",
            )
        )
    trades = _num(metrics, f"{p}.trades")
    result.checks.append(
        Check(
            "min trades",
            math.isfinite(trades) and trades >= gate.min_trades,
            f"{trades:.0f} trades, need >= {gate.min_trades}",
        )
    )
    for key, limit, above in (
        ("fit.deflated_sharpe", gate.min_deflated_sharpe, True),
        ("fit.pbo", gate.max_pbo, False),
    ):
        if limit is None:
            continue
        value = _num(metrics, key)
        label = "deflated Sharpe" if above else "PBO"
        if not math.isfinite(value):
            result.checks.append(
                Check(label, False, f"run logged no {key} (only optimization runs have it)")
            )
            continue
        ok = value >= limit if above else value <= limit
        bound = ">=" if above else "<="
        result.checks.append(Check(label, ok, f"{value:.3f}, need {bound} {limit}"))
    uri = f"models:/{name}/{mv.version}"
    model: BaseModel | None = None
    digest = ""
    stack = contextlib.ExitStack()
    try:
        from botlib.tracking.verify import DIGEST_TAG, artifact_digest, private_copy

        root, folder = artifacts or stack.enter_context(private_copy(uri))
        digest = artifact_digest(root)
        recorded = (mv.tags or {}).get(DIGEST_TAG)
        if recorded:  # promoted before: its artifacts must be the ones promoted then
            result.checks.append(
                Check("artifacts unchanged", recorded == digest,
                      f"sha256 {digest[:12]}…" + ("" if recorded == digest
                                                  else f", recorded {recorded[:12]}…"))
            )  # fmt: skip
        model = load_model(folder)
    except Exception as exc:  # any failure to load is a refusal, with the reason
        result.checks.append(Check("loads", False, f"{uri}: {type(exc).__name__}: {exc}"))
    finally:
        stack.close()
    if model is not None:
        problems = _feature_checks(model)
        logged = tags.get("feature_schema_hash")
        if logged and logged != model.meta.feature_schema_hash:
            problems.append(
                f"run logged schema {logged}, model has {model.meta.feature_schema_hash}"
            )
        result.checks.append(
            Check(
                "features computable",
                not problems,
                "; ".join(problems) or f"schema {model.meta.feature_schema_hash}",
            )
        )
        meta = model.meta
        ident = identity_of(name, client, tags=model_tags)
        result.entry = {
            "name": name,
            "version": str(mv.version),
            # the backend's UUID when the model is bound to one, else name:version
            "model_id": ident.model_id or f"{name}:{mv.version}",
            **({"user_id": ident.user_id} if ident.user_id else {}),
            # how the backend spells the market: its records and list key use it
            **({"symbol_as": ident.symbol_as} if ident.symbol_as else {}),
            "model_uri": uri,
            # what the loader checks the downloaded artifacts against (with the registry's)
            "artifact_digest": digest,
            "run_id": mv.run_id,
            "symbol": params.get("symbol", tags.get("data_symbol", "BTC/USDT")),
            "timeframe": params.get("timeframe", tags.get("data_timeframe", "1h")),
            "model_type": meta.model_type,
            "algorithm": meta.algorithm,
            "prediction_type": meta.prediction_type,
            "horizon": meta.horizon,
            "required_history": meta.required_history,
            "feature_schema_hash": meta.feature_schema_hash,
            "registered_at": int(mv.creation_timestamp or 0),
            "metrics": {
                k: v for k, v in metrics.items() if k.startswith(f"{p}.") and math.isfinite(v)
            },
        }
    return result


def _record_digest(
    client: MlflowClient,
    name: str,
    version: str,
    entry: dict[str, Any],
    tags: dict[str, str] | None = None,
) -> None:
    """Record the artifacts' digest on the version the first time it is served (a
    digest already there is never replaced: the loader compares against it).
    ``tags``: the version's tags, when the caller read them already."""
    from botlib.tracking.verify import DIGEST_TAG

    if tags is None or DIGEST_TAG not in tags:
        tags = client.get_model_version(name, version).tags or {}
    if entry.get("artifact_digest") and DIGEST_TAG not in tags:
        client.set_model_version_tag(name, version, DIGEST_TAG, entry["artifact_digest"])


def _announce(
    r: redis.Redis,
    names: RedisNames,
    event: dict[str, Any],
    entry: dict[str, Any] | None,
    *,
    was: dict[str, Any] | None = None,
) -> None:
    """Publish a change of the active models (``entry`` None: ``event["name"]`` stops
    serving; ``was`` is its last entry). A model bound to the backend's id is also
    announced on ``python:model_trained`` as ``{modelId, status}``: ``active``, or
    ``inactive`` once it stops serving — the status the backend keeps in ai_models."""
    model_id = str((entry or was or {}).get("model_id", ""))
    if _is_uuid(model_id):
        event = {**event, "model_id": model_id}
    payload = dumps(event)
    pipe = r.pipeline(transaction=True)
    if entry is None:
        pipe.hdel(names.active_models, event["name"])
    else:
        pipe.hset(names.active_models, event["name"], dumps(entry))
    pipe.incr(names.active_revision)
    pipe.xadd(names.model_events, {"data": payload}, maxlen=10_000, approximate=True)
    pipe.publish(names.model_channel, payload)
    if _is_uuid(model_id):
        # the backend's model: it learns its status on the channel it listens to
        status = {"event": event["event"], "modelId": model_id,
                  "status": "active" if entry is not None else "inactive",
                  "name": event["name"], "version": event.get("version")}  # fmt: skip
        pipe.publish(names.trained_channel, dumps(status))
    pipe.execute()


def _is_uuid(value: str) -> bool:
    import uuid

    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _redis(url: str | None, role: str) -> redis.Redis:
    r = connect(url, role=role)
    try:
        r.ping()
    except redis.RedisError as exc:
        raise BotlibError(
            f"Redis at BOTLIB_REDIS_URL is not reachable ({exc}); start it with "
            "`botlib redis start` or pass --no-redis to move the alias only"
        ) from None
    return r


def promote(
    name: str,
    version: str | int | None = None,
    *,
    gate: GateConfig | None = None,
    force: bool = False,
    publish: bool = True,
    redis_url: str | None = None,
    role: str = "admin",
) -> GateResult:
    """Gate, then move ``@champion`` and publish the active model. Raises
    ``PromotionRefusedError`` when a check fails (unless ``force``, which promotes anyway and
    records the failed checks on the version and in the Redis entry)."""
    result = evaluate_gate(name, version, gate=gate)
    if not result.passed and (not force or not result.entry):
        raise PromotionRefusedError(result)
    r = _redis(redis_url, role) if publish else None
    client = mlflow_client()
    try:
        old = client.get_model_version_by_alias(name, CHAMPION)
    except Exception:
        old = None
    previous = str(old.version) if old is not None else None
    try:
        publish_version(client, r, result, previous)
    finally:
        if r is not None:
            r.close()
    return result


def publish_version(
    client: MlflowClient,
    r: redis.Redis | None,
    result: GateResult,
    previous: str | None,
    *,
    alias_set: bool = False,
    version_tags: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Make ``result``'s version @champion (``previous``, the version served before,
    becomes @previous), tag it, and publish its entry to Redis (``r`` None: aliases
    only). Shared by ``promote`` and the registry watcher. ``alias_set``: @champion is
    on the version already (the registry watcher): its entry goes to Redis as soon as
    its digest is recorded, before the bookkeeping tags (``version_tags``: the
    version's tags as the caller read them). Returns the entry."""
    name = result.name
    failed = [c.name for c in result.checks if not c.passed]
    entry = {**result.entry, "promoted_at": time.time(), "gate": "forced" if failed else "passed"}
    if failed:
        entry["gate_failed"] = failed
    event = {"event": "promoted", "name": name, "version": result.version,
             "previous": previous, "gate": entry["gate"]}  # fmt: skip
    if not alias_set:
        # marked before the alias moves, cleared once published: a registry watcher
        # that sees the alias first leaves this publish alone (registry_watch.GRACE_S)
        client.set_model_version_tag(name, result.version, PUBLISHING, str(time.time()))
        if previous is not None and previous != result.version:
            client.set_registered_model_alias(name, PREVIOUS, previous)
        client.set_registered_model_alias(name, CHAMPION, result.version)
    _record_digest(client, name, result.version, result.entry, version_tags)  # loop checks it
    if r is not None:
        _announce(r, redis_names(), event, entry)
    client.set_model_version_tag(name, result.version, "botlib.promoted_at", str(time.time()))
    client.set_model_version_tag(
        name, result.version, "botlib.gate", "forced: " + ", ".join(failed) if failed else "passed"
    )
    if alias_set and previous is not None and previous != result.version:
        client.set_registered_model_alias(name, PREVIOUS, previous)
    if not alias_set:
        client.delete_model_version_tag(name, result.version, PUBLISHING)
    return entry


def rollback(
    name: str, *, publish: bool = True, redis_url: str | None = None, role: str = "admin"
) -> tuple[str, str]:
    """Move ``@champion`` back to ``@previous``; returns (from version, to version)."""
    client = _client()
    try:
        previous = client.get_model_version_by_alias(name, PREVIOUS)
    except Exception:
        raise ConfigError(f"{name} has no @previous version to roll back to") from None
    current = client.get_model_version_by_alias(name, CHAMPION)
    r = _redis(redis_url, role) if publish else None
    # the entry must be computed before the aliases move (it reads the version's run)
    entry = evaluate_gate(name, previous.version).entry if r is not None else {}
    if entry:
        _record_digest(client, name, str(previous.version), entry)
    # as in publish_version: marked while the alias moves (a watcher leaves it alone)
    client.set_model_version_tag(name, str(previous.version), PUBLISHING, str(time.time()))
    client.set_registered_model_alias(name, CHAMPION, previous.version)
    client.delete_registered_model_alias(name, PREVIOUS)
    client.set_model_version_tag(name, current.version, "botlib.rolled_back_at", str(time.time()))
    if r is not None:
        entry = {**entry, "promoted_at": time.time(), "gate": "rollback"}
        event = {
            "event": "rolled_back",
            "name": name,
            "version": str(previous.version),
            "previous": str(current.version),
        }
        _announce(r, redis_names(), event, entry)
        r.close()
    client.delete_model_version_tag(name, str(previous.version), PUBLISHING)
    return str(current.version), str(previous.version)


def deactivate(
    name: str, *, redis_url: str | None = None, role: str = "admin", reason: str | None = None
) -> dict[str, Any] | None:
    """Stop serving ``name``: it leaves ``botlib:active_models`` (the loop stops it at
    its next step) and loses ``@champion`` (so ``botlib up`` does not serve it again);
    its versions and ``@previous`` stay. Returns the entry it was served with (None if
    it was not active). A bound model is announced ``inactive``; ``reason`` goes on the
    model event (a demotion says why)."""
    client = _client()
    r = _redis(redis_url, role)
    try:
        raw = r.hget(redis_names().active_models, name)
        was = json.loads(raw) if raw else None
        try:
            champion = client.get_model_version_by_alias(name, CHAMPION)
        except Exception:
            champion = None
        if champion is not None:
            client.delete_registered_model_alias(name, CHAMPION)
            client.set_model_version_tag(
                name, str(champion.version), "botlib.deactivated_at", str(time.time())
            )
        if was is None and champion is None:
            raise ConfigError(f"{name} is not active (no @champion, not served)")
        version = str((was or {}).get("version") or getattr(champion, "version", ""))
        event = {"event": "deactivated", "name": name, "version": version}
        if reason:
            event["reason"] = reason
        _announce(r, redis_names(), event, None, was=was)
    finally:
        r.close()
    return was


def activate_champions(
    *, redis_url: str | None = None, role: str = "admin"
) -> list[tuple[str, str]]:
    """Write every registered model's ``@champion`` into ``botlib:active_models`` (the
    registry is the source of truth, the hash its copy in Redis: a fresh or wiped Redis
    serves the champions again). No gate is run — each was gated, or forced, when it
    was promoted. Returns the (name, version) pairs activated."""
    client = _client()
    r = _redis(redis_url, role)
    done = []
    try:
        for model in client.search_registered_models():
            version = (model.aliases or {}).get(CHAMPION)
            if version is None:
                continue
            result = evaluate_gate(model.name, version)
            if not result.entry:
                continue  # cannot be served (its run or model is gone): said by `promote`
            activate(client, r, result)
            done.append((model.name, str(version)))
    finally:
        r.close()
    return done


def activate(
    client: MlflowClient,
    r: redis.Redis,
    result: GateResult,
    version_tags: dict[str, str] | None = None,
) -> str:
    """Serve ``result``'s version again, as it was published before, without a second
    gate (event ``activated``): a fresh or wiped Redis gets the registry's champions
    back. ``version_tags``: the version's tags, when the caller read them already.
    Returns the gate it was published with (``botlib.gate``)."""
    name, version = result.name, result.version
    if version_tags is None:
        version_tags = client.get_model_version(name, version).tags or {}
    _record_digest(client, name, version, result.entry, version_tags)
    gate = str(version_tags.get("botlib.gate", "passed"))
    entry = {**result.entry, "promoted_at": time.time(),
             "gate": "forced" if gate.startswith("forced") else "passed"}  # fmt: skip
    _announce(r, redis_names(), {"event": "activated", "name": name, "version": version}, entry)
    return gate


def list_models() -> list[dict[str, Any]]:
    """Registered models as the backend's ``ai_models`` rows (from the registry)."""
    client = _client()
    rows = []
    for rm in client.search_registered_models():
        aliases = dict(rm.aliases or {})
        versions = client.search_model_versions(f"name = '{rm.name}'")
        if not versions:
            continue
        latest = max(versions, key=lambda v: int(v.version))
        shown = aliases.get(CHAMPION, latest.version)
        mv = next((v for v in versions if str(v.version) == str(shown)), latest)
        run = client.get_run(mv.run_id) if mv.run_id else None
        params = dict(run.data.params) if run else {}
        tags = dict(run.data.tags) if run else {}
        metrics = dict(run.data.metrics) if run else {}
        status = "active" if CHAMPION in aliases else "trained"
        rows.append(
            {
                "name": rm.name,
                "model_type": tags.get("model_type", ""),
                "algorithm": tags.get("algorithm", params.get("algorithm", "")),
                "status": status,
                "version": str(mv.version),
                "latest_version": str(latest.version),
                "aliases": {a: str(v) for a, v in aliases.items()},
                "configuration": {
                    k: params[k] for k in ("symbol", "timeframe", "start", "end") if k in params
                },
                "hyperparameters": {
                    k: v
                    for k, v in params.items()
                    if k not in ("symbol", "timeframe", "start", "end", "algorithm")
                },
                "performance_metrics": {
                    k: v
                    for k, v in metrics.items()
                    if k.startswith("test.") and math.isfinite(v) and k.count(".") == 1
                },
                "run_id": mv.run_id,
            }
        )
    return rows
