"""Text CNN training/inference throughput (reports/s) and word2vec training time.

Run: .venv/bin/python -m pytest benchmarks/test_text_speed.py --benchmark-only
Inputs have the real IU corpus's shape: ~2,750 training reports of 140 token ids, a ~1,800-word
vocabulary, 300-d embeddings, 10 feature maps (the default profile's text_cnn).
"""

from __future__ import annotations

import numpy as np
import pytest

from replication.data.synthetic import SynthParams, generate
from replication.data.text import clean_report
from replication.models.embeddings import train_word2vec
from replication.models.text_cnn import compile_text_cnn, text_cnn

REPORTS, VOCAB, LENGTH = 2750, 1800, 140


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    ids = np.zeros((REPORTS, LENGTH), np.int32)
    lengths = rng.integers(10, 60, REPORTS)
    for i, n in enumerate(lengths):
        ids[i, :n] = rng.integers(2, VOCAB, n)
    return ids, rng.integers(0, 2, REPORTS).astype("float32")


def test_text_cnn_training_throughput(benchmark, data):
    ids, labels = data
    model = compile_text_cnn(text_cnn(VOCAB, 300, LENGTH, feature_maps=10), learning_rate=1.0)
    model.fit(ids[:64], labels[:64], batch_size=32, epochs=1, verbose=0)  # compile outside the timing
    benchmark.pedantic(model.fit, args=(ids, labels), kwargs={"batch_size": 32, "epochs": 1, "verbose": 0}, rounds=3, iterations=1)
    benchmark.extra_info["reports_per_s"] = round(REPORTS / benchmark.stats.stats.mean, 1)


def test_text_cnn_inference_throughput(benchmark, data):
    ids, _ = data
    model = text_cnn(VOCAB, 300, LENGTH, feature_maps=10)
    model.predict(ids[:64], verbose=0)
    benchmark.pedantic(model.predict, args=(ids,), kwargs={"batch_size": 256, "verbose": 0}, rounds=3, iterations=1)
    benchmark.extra_info["reports_per_s"] = round(REPORTS / benchmark.stats.stats.mean, 1)


def test_word2vec_training_time(benchmark):
    cohort = generate(SynthParams(cases=REPORTS, image_size=32), "iu", seed=0)
    docs = [clean_report(f"{a} {b}") for a, b in zip(cohort.cases["findings"], cohort.cases["impression"])]
    benchmark.pedantic(train_word2vec, args=(docs,), kwargs={"dim": 300, "seed": 0}, rounds=3, iterations=1)
    benchmark.extra_info.update(reports=len(docs), tokens=int(sum(map(len, docs))))
