"""CheXNet's class-weighted multi-label binary cross-entropy (Keras loss and its NumPy twin)."""

from __future__ import annotations

from typing import Any, Sequence

import keras
import numpy as np
from keras import ops

from replication.errors import DataError, ParameterError


def class_balance_weights(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """CheXNet's per-class weights from the training labels: w+ = |N|/(|P|+|N|), w- = |P|/(|P|+|N|).

    A class with no positive (or no negative) example gets w+ = 1, w- = 0 (or the reverse): its loss
    term then vanishes on the side that never occurs.
    """
    y = np.asarray(labels, dtype=np.float64)
    if y.ndim != 2 or len(y) == 0:
        raise DataError("labels", f"expected a non-empty (n, classes) 0/1 array, got shape {y.shape}")
    if not np.isin(y, (0, 1)).all():
        raise DataError("labels", "multi-label targets must be 0/1")
    pos = y.mean(axis=0)
    return (1.0 - pos).astype(np.float32), pos.astype(np.float32)


# Registered as 'replication>WeightedBinaryCrossentropy': saved models name it so, keep it to load them.
@keras.saving.register_keras_serializable(package="replication", name="WeightedBinaryCrossentropy")
class WeightedBinaryCrossentropy(keras.losses.Loss):
    """Mean over classes of -(w+_c y log p + w-_c (1 - y) log(1 - p)) on sigmoid outputs (CheXNet, Rajpurkar 2017)."""

    def __init__(self, positive_weights: Sequence[float], negative_weights: Sequence[float], epsilon: float = 1e-7,
                 name: str = "weighted_binary_crossentropy", **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)
        self.positive_weights = [float(w) for w in positive_weights]
        self.negative_weights = [float(w) for w in negative_weights]
        if len(self.positive_weights) != len(self.negative_weights):
            raise ParameterError("negative_weights", len(self.negative_weights), f"{len(self.positive_weights)} weights, one per class")
        self.epsilon = float(epsilon)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        y_pred = ops.clip(ops.cast(y_pred, "float32"), self.epsilon, 1.0 - self.epsilon)
        y_true = ops.cast(y_true, "float32")
        wp = ops.convert_to_tensor(np.asarray(self.positive_weights, np.float32))
        wn = ops.convert_to_tensor(np.asarray(self.negative_weights, np.float32))
        terms = -(wp * y_true * ops.log(y_pred) + wn * (1.0 - y_true) * ops.log(1.0 - y_pred))
        return ops.mean(terms, axis=-1)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "positive_weights": self.positive_weights,
                "negative_weights": self.negative_weights, "epsilon": self.epsilon}


def weighted_bce_numpy(y: np.ndarray, p: np.ndarray, positive_weights: np.ndarray, negative_weights: np.ndarray,
                       epsilon: float = 1e-7) -> float:
    """The same loss in NumPy (validation loss, tests)."""
    p = np.clip(np.asarray(p, np.float64), epsilon, 1 - epsilon)
    y = np.asarray(y, np.float64)
    terms = -(np.asarray(positive_weights) * y * np.log(p) + np.asarray(negative_weights) * (1 - y) * np.log(1 - p))
    return float(terms.mean())
