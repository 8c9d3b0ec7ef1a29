"""Word embeddings for the text CNN: custom (word2vec on the report corpus), generic (GloVe), random.

word2vec is deterministic here: one worker thread, a fixed seed, and a hash of words that does not
depend on PYTHONHASHSEED (gensim's default, Python's `hash`, changes between interpreter runs and
with it every initial vector). One worker is slower on a multi-core machine; on the IU corpus
(~100k tokens) it takes seconds, which is worth identical vectors.
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path
from typing import Sequence

import numpy as np

from replication.data.text import PAD, Vocabulary
from replication.errors import DataError, ParameterError

VARIANTS = ("custom", "generic", "random")


def stable_hash(word: str) -> int:
    """A word hash that is the same in every Python process (unlike `hash`)."""
    return zlib.crc32(word.encode("utf-8"))


def train_word2vec(
    documents: Sequence[Sequence[str]],
    dim: int = 300,
    window: int = 5,
    min_count: int = 1,
    epochs: int = 5,
    sg: int = 0,
    seed: int = 0,
):
    """gensim Word2Vec on tokenised reports → KeyedVectors."""
    from gensim.models import Word2Vec

    if dim < 1 or window < 1 or min_count < 1 or epochs < 1:
        raise ParameterError("word2vec", {"dim": dim, "window": window, "min_count": min_count, "epochs": epochs}, "positive integers")
    docs = [list(d) for d in documents if len(d)]
    if not docs:
        raise DataError("word2vec corpus", "no non-empty documents to train on")
    model = Word2Vec(sentences=docs, vector_size=dim, window=window, min_count=min_count, epochs=epochs, sg=sg,
                     seed=seed, workers=1, hashfxn=stable_hash)
    return model.wv


def load_vectors(path: str | os.PathLike, expected_dim: int | None = None):
    """KeyedVectors from gensim's .kv, word2vec text/binary, or GloVe text (no header line)."""
    from gensim.models import KeyedVectors

    path = Path(path)
    if not path.is_file():
        raise DataError(path, "embedding file not found (GloVe: see README, 'generic embedding')")
    try:
        if path.suffix == ".kv":
            vectors = KeyedVectors.load(str(path))
        elif path.suffix == ".bin":
            vectors = KeyedVectors.load_word2vec_format(str(path), binary=True)
        else:
            with open(path, encoding="utf-8", errors="replace") as f:
                first = f.readline().split()
            has_header = len(first) == 2 and all(x.isdigit() for x in first)
            vectors = KeyedVectors.load_word2vec_format(str(path), binary=False, no_header=not has_header)
    except (ValueError, UnicodeDecodeError, EOFError, OSError) as e:
        raise DataError(path, f"not a readable word-vector file ({type(e).__name__}: {e})") from None
    if expected_dim is not None and vectors.vector_size != expected_dim:
        raise DataError(path, f"vectors have {vectors.vector_size} dimensions, expected {expected_dim} (text_cnn.embedding_dim)")
    return vectors


def embedding_matrix(vocab: Vocabulary, vectors, dim: int, seed: int = 0) -> tuple[np.ndarray, float]:
    """Rows = vocabulary indices; words with a vector get it, the others U(-0.25, 0.25) as Kim (2014).

    Returns the matrix and the coverage (fraction of vocabulary words that have a vector).
    `vectors=None` gives the all-random initialisation (the trainable 'random' variant).
    """
    if vectors is not None and vectors.vector_size != dim:
        raise DataError("embedding vectors", f"{vectors.vector_size} dimensions, expected {dim}")
    rng = np.random.default_rng(seed)
    matrix = rng.uniform(-0.25, 0.25, size=(len(vocab), dim)).astype(np.float32)
    matrix[PAD] = 0.0  # row OOV stays random: unknown words share one trainable vector
    found = 0
    if vectors is not None:
        for i, word in enumerate(vocab.words, start=2):
            if word in vectors.key_to_index:
                matrix[i] = vectors[word]
                found += 1
    return matrix, found / max(len(vocab.words), 1)
