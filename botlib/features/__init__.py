"""Features (pure functions of the past) and labels (the only look into the future).

>>> from botlib.features import build_features, DEFAULT_SPEC
>>> features = build_features(candles, DEFAULT_SPEC)
"""

from botlib.features import indicators
from botlib.features._spec import (
    DEFAULT_SPEC,
    FEATURE_SETS,
    FEATURES,
    FeatureDef,
    FeatureSpec,
    build_features,
    feature_matrix,
    get_feature_spec,
    register_feature,
    register_feature_set,
)
from botlib.features.labels import Label, direction, forward_return, forward_volatility

__all__ = [
    "DEFAULT_SPEC",
    "FEATURES",
    "FEATURE_SETS",
    "FeatureDef",
    "FeatureSpec",
    "Label",
    "build_features",
    "direction",
    "feature_matrix",
    "forward_return",
    "forward_volatility",
    "get_feature_spec",
    "indicators",
    "register_feature",
    "register_feature_set",
]
