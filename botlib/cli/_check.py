"""``botlib check leakage``: look-ahead in features and models."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from botlib.cli._common import console

app = typer.Typer(
    rich_markup_mode="markdown", help="Research integrity checks.", no_args_is_help=True
)

#: tiny budgets: a leak does not need a good model to show
_TINY: dict[str, dict[str, Any]] = {
    "lstm": {"epochs": 1, "units": 8, "seq_len": 8},
    "gru": {"epochs": 1, "units": 8, "seq_len": 8, "horizon": 4},
    "transformer": {"epochs": 1, "units": 8, "seq_len": 8, "heads": 2},
    "dqn": {"timesteps": 64, "window": 4, "hidden": 16, "episode_length": 128},
    "ppo": {"timesteps": 64, "window": 4, "hidden": 16, "episode_length": 128},
    "ga_rules": {"population": 6, "generations": 1},
    "de_rules": {"population": 6, "generations": 1},
}


def _builtin_models(candles: Any) -> list[Any]:
    """Every built-in model family, trained with tiny budgets on the first half."""
    import tempfile

    from botlib.models import create_model, split_by_time

    train, valid, _ = split_by_time(candles.iloc[: len(candles) // 2], train=0.8, valid=0.1)
    models, saved = [], []
    for name, params in _TINY.items():
        model = create_model(name, **params)
        model.fit(train, valid)
        models.append(model)
        if name in ("ga_rules", "lstm"):
            saved.append(str(model.save(tempfile.mkdtemp(prefix=f"leak-{name}-"))))
    ensemble = create_model("ensemble", members=saved)
    ensemble.fit(train, valid)
    return [*models, ensemble]


@app.command("leakage")
def leakage(
    features: Annotated[
        str | None,
        typer.Option(
            help="Your feature function, module:function (candles -> frame), or feature "
            "names, comma-separated (built in or registered by a plugin: rsi,range_pct)."
        ),
    ] = None,
    model: Annotated[
        list[str] | None, typer.Option(help="A saved model folder or models:/NAME/VERSION.")
    ] = None,
    builtin_models: Annotated[
        bool, typer.Option(help="Train every built-in model family (tiny) and check it.")
    ] = False,
    symbol: Annotated[str, typer.Option(help="Market.")] = "BTC/USDT",
    timeframe: Annotated[str, typer.Option(help="Bar length.")] = "1h",
    start: Annotated[str | None, typer.Option(help="First bar (UTC).")] = "2025-01-01",
    end: Annotated[str | None, typer.Option(help="Stop before (UTC).")] = "2025-07-01",
    cuts: Annotated[int, typer.Option(help="Cut points per check.", min=1)] = 5,
) -> None:
    """Recompute features (the default set, or --features) and model predictions on
    history cut at several points; any value that changes is a look-ahead leak (exit 1).
    Values that depend on how much warm-up history was given are reported too.

        botlib check leakage --features myfeatures:build --model models:/nn-lstm-btc_usdt-1h/3
    """
    from botlib.data import load_ohlcv
    from botlib.features import DEFAULT_SPEC, build_features
    from botlib.models import load_model
    from botlib.research import check_leakage, load_function

    candles = load_ohlcv(symbol, timeframe, start=start, end=end)
    reports = []
    if features and ":" in features:
        reports.append(check_leakage(load_function(features), candles, name=features, cuts=cuts))
    else:
        from botlib.features import get_feature_spec

        names = [f.strip() for f in (features or "").split(",") if f.strip()]
        spec = get_feature_spec(names) if names else DEFAULT_SPEC
        reports.append(
            check_leakage(
                lambda c: build_features(c, spec),
                candles,
                name=f"features {spec.name}",
                cuts=cuts,
                warmup=spec.warmup,
            )
        )
    models = [load_model(ref) for ref in model or []]
    if builtin_models:
        models += _builtin_models(candles)
    for m in models:
        need = m.meta.required_history
        reports.append(
            check_leakage(m.predict, candles, name=f"model {m.name}", cuts=cuts, min_history=need)
        )
    for report in reports:
        style = "green" if report.ok else "bold red"
        for i, line in enumerate(report.lines()):
            console.print(f"[{style}]{line}[/]" if i == 0 else line, highlight=False)
    if not all(r.ok for r in reports):
        raise typer.Exit(1)
