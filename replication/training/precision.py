"""Mixed precision where it helps (a GPU) and a note where it is ignored (a CPU)."""

from __future__ import annotations

import keras


def configure_precision(mixed_precision: bool) -> str:
    """mixed_float16 on a GPU when asked; on a CPU the request is ignored and the returned note says so."""
    if not mixed_precision:
        keras.config.set_dtype_policy("float32")
        return "float32"
    if _gpu_available():
        keras.config.set_dtype_policy("mixed_float16")
        return "mixed_float16 (GPU)"
    keras.config.set_dtype_policy("float32")
    return "float32: mixed precision was asked for but no GPU is visible, so it is ignored (it would be slower on a CPU)"


def _gpu_available() -> bool:
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return bool(tf.config.list_physical_devices("GPU"))
    if backend == "jax":
        import jax

        return any(d.platform == "gpu" for d in jax.devices())
    return False
