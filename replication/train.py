"""Fit-loop helpers shared by every model: seeding, per-epoch history with AUROC, NaN guard.

The loop runs one Keras epoch at a time so that each epoch's validation accuracy, loss and AUROC
are recorded (the paper's curves are over epochs) and a NaN loss stops with the epoch named.
"""

from __future__ import annotations

import math
import os
from typing import Any

import keras
import numpy as np
from sklearn.metrics import roc_auc_score
from tqdm.auto import tqdm

from replication.io import write_json


class TrainingError(RuntimeError):
    """Training diverged; the message names the model and the epoch, the partial history is kept."""


def seed_everything(seed: int) -> None:
    """Python, NumPy and backend seeds; deterministic TensorFlow kernels on the TensorFlow backend."""
    keras.utils.set_random_seed(seed)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()


def auroc(y_true: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve; NaN when only one class is present or a score is not finite (undefined, not 0.5)."""
    y_true, score = np.asarray(y_true).ravel(), np.asarray(score, dtype=np.float64).ravel()
    if len(np.unique(y_true)) < 2 or not np.isfinite(score).all():
        return float("nan")
    return float(roc_auc_score(y_true, score))


def evaluate_binary(model: keras.Model, x: Any, y: np.ndarray, batch_size: int = 64) -> dict[str, float]:
    """Accuracy at 0.5, AUROC and binary cross-entropy of a one-sigmoid model."""
    p = np.asarray(model.predict(x, batch_size=batch_size, verbose=0), dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    eps = 1e-7
    loss = -np.mean(y * np.log(np.clip(p, eps, 1)) + (1 - y) * np.log(np.clip(1 - p, eps, 1)))
    return {"accuracy": float(np.mean((p >= 0.5) == (y == 1))), "auroc": auroc(y, p), "loss": float(loss)}


def fit_binary(
    model: keras.Model,
    train: tuple[Any, np.ndarray],
    val: tuple[Any, np.ndarray],
    epochs: int,
    batch_size: int,
    name: str,
    history_path: str | os.PathLike | None = None,
) -> dict[str, list[float]]:
    """Train for `epochs`, recording per epoch: loss, accuracy, val_loss, val_accuracy, val_auroc."""
    history: dict[str, list[float]] = {k: [] for k in ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "val_auroc")}
    for epoch in tqdm(range(epochs), desc=name, unit="epoch", disable=None, leave=False):
        logs = model.fit(train[0], train[1], batch_size=batch_size, epochs=epoch + 1, initial_epoch=epoch, shuffle=True, verbose=0).history
        loss = float(logs["loss"][-1])
        diverged = not math.isfinite(loss)
        val_metrics = {"loss": float("nan"), "accuracy": float("nan"), "auroc": float("nan")} if diverged else \
            evaluate_binary(model, val[0], val[1], batch_size=max(batch_size, 64))
        for key, value in (("epoch", epoch + 1), ("loss", loss), ("accuracy", float(logs["accuracy"][-1])),
                           ("val_loss", val_metrics["loss"]), ("val_accuracy", val_metrics["accuracy"]), ("val_auroc", val_metrics["auroc"])):
            history[key].append(value)
        if history_path is not None:
            write_json(history_path, history)
        if diverged:
            raise TrainingError(f"{name}: the training loss is {loss} at epoch {epoch + 1}; "
                                f"the history up to that epoch is kept{f' in {history_path}' if history_path else ''}")
    return history
