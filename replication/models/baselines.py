"""Baselines a reviewer asks for, evaluated on the same splits as the networks."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from replication.training.metrics import auroc


def _scores(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    return {"accuracy": float(np.mean((p >= 0.5) == (np.asarray(y) == 1))), "auroc": auroc(y, p)}


def majority_class(y_train: np.ndarray, parts: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Always predict the training split's majority label (AUROC undefined → reported as 0.5)."""
    majority = float(np.mean(y_train) >= 0.5)
    return {name: {"accuracy": float(np.mean(np.asarray(y) == majority)), "auroc": 0.5} for name, y in parts.items()}


def tfidf_logistic_regression(
    train_docs: Sequence[Sequence[str]], y_train: np.ndarray, parts: dict[str, tuple[Sequence[Sequence[str]], np.ndarray]], seed: int = 0
) -> dict[str, dict[str, float]]:
    """TF-IDF of uni- and bi-grams of the cleaned tokens + L2 logistic regression, fitted on train only."""
    scores = tfidf_scores(train_docs, y_train, {name: docs for name, (docs, _) in parts.items()}, seed)
    return {name: _scores(y, scores[name]) for name, (_, y) in parts.items()}


def tfidf_scores(train_docs: Sequence[Sequence[str]], y_train: np.ndarray, parts: dict[str, Sequence[Sequence[str]]],
                 seed: int = 0) -> dict[str, np.ndarray]:
    """P(abnormal) per part from the TF-IDF baseline fitted on train only: what the paired tests compare with."""
    vectorizer = TfidfVectorizer(analyzer=lambda doc: list(doc) + [f"{a} {b}" for a, b in zip(doc, doc[1:])], sublinear_tf=True)
    classifier = LogisticRegression(C=10.0, max_iter=2000, random_state=seed)
    classifier.fit(vectorizer.fit_transform(train_docs), y_train)
    return {name: classifier.predict_proba(vectorizer.transform(docs))[:, 1] for name, docs in parts.items()}
