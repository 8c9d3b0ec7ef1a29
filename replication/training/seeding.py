"""One seed for every random source, so a run is repeatable."""

from __future__ import annotations

import keras


def seed_everything(seed: int) -> None:
    """Python, NumPy and backend seeds; deterministic TensorFlow kernels on the TensorFlow backend."""
    keras.utils.set_random_seed(seed)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
