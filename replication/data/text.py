"""Report cleaning and the vocabulary, as the paper describes them (section 2.1).

Cleaning: lower-case, punctuation removed, tokens holding digits removed, NLTK's English stop words
removed, tokens shorter than 2 characters removed. NLTK's list contains "no", "not" and "nor", so
"No pneumothorax." becomes "pneumothorax": the paper's behaviour, kept as the default;
`keep_negations=True` keeps those three words.

Vocabulary: fitted on the training split only (the authors' notebook fitted a second tokenizer on
the test set, so a test word's index meant another word; `tokenizer_defect=True` reproduces that
for measurement), index 0 = padding, 1 = out-of-vocabulary, sequences padded/truncated at the end.
"""

from __future__ import annotations

import json
import string
import unicodedata
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Iterable, Sequence

import numpy as np

from replication.errors import ParameterError

PAD, OOV = 0, 1
OOV_TOKEN = "<oov>"
NEGATIONS = frozenset({"no", "not", "nor"})
_PUNCTUATION = str.maketrans("", "", string.punctuation)


@lru_cache(maxsize=1)
def stop_words() -> frozenset[str]:
    """NLTK's English list (179 words), shipped with the package: nothing is downloaded."""
    text = resources.files("replication.resources").joinpath("stopwords_english_nltk.txt").read_text()
    return frozenset(w for w in text.split() if w)


def clean_report(text: str, keep_negations: bool = False) -> list[str]:
    """Tokens of one report after the paper's cleaning (see the module docstring)."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    stops = stop_words() - NEGATIONS if keep_negations else stop_words()
    tokens = (t.translate(_PUNCTUATION) for t in ascii_text.lower().split())
    return [t for t in tokens if len(t) >= 2 and t.isalpha() and t not in stops]


@dataclass
class Vocabulary:
    """Word ↔ index, most frequent first; index 0 pads, index 1 stands for any unknown word."""

    words: list[str]

    @classmethod
    def fit(cls, documents: Iterable[Sequence[str]], max_words: int = 15000) -> "Vocabulary":
        if max_words < 1:
            raise ParameterError("text.max_words", max_words, "an integer >= 1")
        counts: Counter[str] = Counter()
        first_seen: dict[str, int] = {}
        for doc in documents:
            for word in doc:
                counts[word] += 1
                first_seen.setdefault(word, len(first_seen))
        ranked = sorted(counts, key=lambda w: (-counts[w], first_seen[w]))  # ties: first occurrence, deterministic
        return cls(ranked[:max_words])

    def __len__(self) -> int:
        """Rows of the embedding matrix: padding + out-of-vocabulary + the words."""
        return len(self.words) + 2

    @property
    def index(self) -> dict[str, int]:
        return {w: i + 2 for i, w in enumerate(self.words)}

    def word(self, i: int) -> str:
        return "" if i == PAD else OOV_TOKEN if i == OOV else self.words[i - 2]

    def encode(self, documents: Sequence[Sequence[str]], length: int = 140) -> tuple[np.ndarray, int]:
        """Ids (n, length), padded and truncated at the end; also how many documents were truncated."""
        if length < 1:
            raise ParameterError("text.sequence_length", length, "an integer >= 1")
        index = self.index
        ids = np.full((len(documents), length), PAD, dtype=np.int32)
        truncated = 0
        for row, doc in enumerate(documents):
            truncated += len(doc) > length
            seq = [index.get(w, OOV) for w in doc[:length]]
            ids[row, : len(seq)] = seq
        return ids, truncated

    def to_json(self) -> str:
        return json.dumps({"pad": PAD, "oov": OOV, "words": self.words})

    @classmethod
    def from_json(cls, text: str) -> "Vocabulary":
        return cls(json.loads(text)["words"])


def corpus_statistics(documents: Sequence[Sequence[str]], length: int = 140) -> dict[str, float]:
    """Words per report and how many exceed the sequence length (paper: 27.4 words on average, 140 tokens)."""
    sizes = np.array([len(d) for d in documents])
    return {
        "documents": int(len(sizes)),
        "mean_words": float(sizes.mean()) if len(sizes) else 0.0,
        "max_words": int(sizes.max()) if len(sizes) else 0,
        "empty": int((sizes == 0).sum()),
        "longer_than_sequence": int((sizes > length).sum()),
    }
