"""Evaluation: AUROC (NaN where undefined, never 0.5), binary and multi-label metrics of a model."""

from __future__ import annotations

import math
from typing import Any, Sequence

import keras
import numpy as np
from sklearn.metrics import roc_auc_score

from replication.training.batches import predict_scores
from replication.training.losses import weighted_bce_numpy


def auroc(y_true: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve; NaN when only one class is present or a score is not finite (undefined, not 0.5)."""
    y_true, score = np.asarray(y_true).ravel(), np.asarray(score, dtype=np.float64).ravel()
    if len(np.unique(y_true)) < 2 or not np.isfinite(score).all():
        return float("nan")
    return float(roc_auc_score(y_true, score))


def evaluate_binary(model: keras.Model, x: Any, y: np.ndarray, batch_size: int = 64) -> dict[str, float]:
    """Accuracy at 0.5, AUROC and binary cross-entropy of a one-sigmoid model (x: an array, a list of arrays for a
    multi-input model, or `IndexedImages`)."""
    p = predict_scores(model, x, batch_size).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    eps = 1e-7
    loss = -np.mean(y * np.log(np.clip(p, eps, 1)) + (1 - y) * np.log(np.clip(1 - p, eps, 1)))
    return {"accuracy": float(np.mean((p >= 0.5) == (y == 1))), "auroc": auroc(y, p), "loss": float(loss)}


def evaluate_multilabel(
    model: keras.Model, x: Any, y: np.ndarray, label_names: Sequence[str],
    positive_weights: np.ndarray | None = None, negative_weights: np.ndarray | None = None, batch_size: int = 64,
) -> dict[str, Any]:
    """Per-class AUROC (NaN where a class has one value only), their mean over defined classes, weighted loss."""
    p = predict_scores(model, x, batch_size)
    y = np.asarray(y, np.float64)
    k = y.shape[1]
    wp = np.ones(k) if positive_weights is None else positive_weights
    wn = np.ones(k) if negative_weights is None else negative_weights
    per_class = {name: auroc(y[:, c], p[:, c]) for c, name in enumerate(label_names)}
    defined = [v for v in per_class.values() if math.isfinite(v)]
    return {"loss": weighted_bce_numpy(y, p, wp, wn) if np.isfinite(p).all() else float("nan"),
            "mean_auroc": float(np.mean(defined)) if defined else float("nan"),
            "classes_scored": len(defined), "auroc": per_class}
