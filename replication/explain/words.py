"""Per-word text explanations (paper §3, Fig. 3): squared gradient (or IG) at the embedding output, summed per word.

The score of position i is sum_d g[i, d]^2 over the embedding dimension; padding positions are dropped and the
rest normalised to sum to 1, so reports of different lengths share one scale. Squaring follows the authors
(sign-free importance); it works equally on IG attributions at the embedding output.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from replication.errors import ParameterError

OOV_TOKEN = "<oov>"


@dataclass(eq=False)
class WordScores:
    """The report's real (non-padding) words, in order, with scores summing to 1; `note` says why it is empty."""

    words: list[str]
    scores: np.ndarray
    positions: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    note: str = ""

    def pairs(self) -> list[tuple[str, float]]:
        return [(w, float(s)) for w, s in zip(self.words, self.scores)]

    def top(self, k: int = 5) -> list[tuple[str, float]]:
        """The k highest-scoring words, highest first (ties: earlier position first)."""
        order = np.argsort(-self.scores, kind="stable")[:k]
        return [(self.words[i], float(self.scores[i])) for i in order]


def _lookup(index_to_word: Any, oov_token: str) -> Callable[[int], str]:
    """A function id -> word from a mapping, a sequence, a callable or an object with `.word(i)` (Vocabulary)."""
    if hasattr(index_to_word, "word") and callable(index_to_word.word):
        index_to_word = index_to_word.word
    if callable(index_to_word):
        def from_callable(i: int) -> str:
            try:
                return str(index_to_word(i))
            except (KeyError, IndexError):
                return oov_token
        return from_callable
    if isinstance(index_to_word, Mapping):
        return lambda i: str(index_to_word.get(i, oov_token))
    if isinstance(index_to_word, Sequence) and not isinstance(index_to_word, str):
        return lambda i: str(index_to_word[i]) if 0 <= i < len(index_to_word) else oov_token
    raise ParameterError("index_to_word", type(index_to_word).__name__, "a mapping, a sequence, a callable or a Vocabulary")


def word_scores(embedding_scores: np.ndarray, token_ids: Sequence[int] | np.ndarray, index_to_word: Any,
                padding_id: int = 0, *, oov_token: str = OOV_TOKEN) -> WordScores:
    """Score each real word of one report from its (seq_len, dim) gradients or attributions at the embedding output.

    An id the vocabulary does not know maps to `oov_token`. All padding -> no words and a note saying so.
    """
    g = np.asarray(embedding_scores, dtype=np.float64)
    ids = np.asarray(token_ids)
    if ids.ndim == 2 and ids.shape[0] == 1:
        ids = ids[0]
    if g.ndim == 3 and g.shape[0] == 1:
        g = g[0]
    if ids.ndim != 1:
        raise ParameterError("token_ids", ids.shape, "one sequence (seq_len,)")
    if g.ndim != 2 or g.shape[0] != ids.shape[0]:
        raise ParameterError("embedding_scores", g.shape, f"(seq_len={ids.shape[0]}, embedding_dim)")
    if not np.all(np.isfinite(g)):
        raise ParameterError("embedding_scores", "array with NaN/inf values", "finite values")
    lookup = _lookup(index_to_word, oov_token)
    positions = np.flatnonzero(ids != padding_id)
    if len(positions) == 0:
        return WordScores([], np.zeros(0), positions, "no real words: the report is all padding")
    raw = (g[positions] ** 2).sum(axis=1)
    total = raw.sum()
    if total > 0:
        scores = raw / total
        note = ""
    else:
        scores = np.full(len(positions), 1.0 / len(positions))
        note = "all gradients are zero: uniform scores"
    words = [lookup(int(i)) for i in ids[positions]]
    return WordScores(words, scores, positions, note)


def top_word_hits(scores: WordScores, is_target: Callable[[str], bool], k: int = 5) -> dict[str, float]:
    """How far the k best-scored words of one report are its target words (e.g. the findings it states), beside chance.

    `chance_share` is the targets' share of the report's words: the expected share of k words drawn at random from
    the report (without replacement), so `top_k_share - chance_share` is what the explanation adds.
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ParameterError("k", k, "an integer >= 1")
    targets = np.array([bool(is_target(w)) for w in scores.words], dtype=bool)
    n = len(targets)
    if n == 0:
        return {"words": 0, "targets": 0, "top_k_share": float("nan"), "chance_share": float("nan"), "top_1": float("nan")}
    order = np.argsort(-np.asarray(scores.scores), kind="stable")[:min(k, n)]
    return {"words": n, "targets": int(targets.sum()), "top_k_share": float(targets[order].mean()),
            "chance_share": float(targets.mean()), "top_1": float(targets[order[0]])}


__all__ = ["OOV_TOKEN", "WordScores", "top_word_hits", "word_scores"]
