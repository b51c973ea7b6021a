"""One helper seeds every source of randomness botlib uses."""

from __future__ import annotations

import contextlib
import os
import random
import sys

import numpy as np

__all__ = ["seed_everything"]


def seed_everything(seed: int) -> None:
    """Seed Python's ``random`` (DEAP draws from it), NumPy, and — where they are
    already imported — TensorFlow/Keras (with deterministic ops) and PyTorch. Importing
    this module does not import TensorFlow or PyTorch."""
    if int(seed) != seed or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    seed = int(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)
    random.seed(seed)
    np.random.seed(seed)
    if "keras" in sys.modules or "tensorflow" in sys.modules:
        import keras
        import tensorflow as tf

        keras.utils.set_random_seed(seed)
        with contextlib.suppress(Exception):  # older TF builds lack it
            tf.config.experimental.enable_op_determinism()
    if "torch" in sys.modules:
        import torch

        torch.manual_seed(seed)
