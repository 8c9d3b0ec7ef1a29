"""DenseNet-121 training and inference throughput (images/s) on this machine's CPU, at 32, 64, 128 and 224 px.

Run: .venv/bin/python -m pytest benchmarks/test_densenet_speed.py --benchmark-only -q
The model is the pretraining one (grey input, in-model normalisation, 14 sigmoid outputs); the train step
(Adam, class-weighted BCE) is traced once outside the timing, as the stages' epochs after the first are.
The trace itself is reported too (extra_info.first_step_s): on 2 cores it costs about as much as an
epoch of the default profile, which is why the stages build each network once.
Rounds are few; the 224 px training case uses batch 8 and one round.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from replication.models.densenet import pretraining_model
from replication.training.losses import WeightedBinaryCrossentropy

# size: (training images per round, training batch, rounds, inference images)
CASES = {32: (256, 16, 2, 512), 64: (128, 16, 2, 256), 128: (64, 16, 1, 128), 224: (32, 8, 1, 64)}


def _model(size: int):
    import keras

    keras.utils.set_random_seed(0)
    model = pretraining_model(size, 14)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=WeightedBinaryCrossentropy(np.full(14, 0.9), np.full(14, 0.1)))
    return model


def _data(n: int, size: int):
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (n, size, size, 1)).astype("float32"), (rng.random((n, 14)) < 0.1).astype("float32")


@pytest.mark.parametrize("size", sorted(CASES))
def test_densenet121_training_throughput(benchmark, size):
    n, batch, rounds, _ = CASES[size]
    model = _model(size)
    x, y = _data(n, size)
    start = time.perf_counter()
    model.fit(x[:batch], y[:batch], batch_size=batch, epochs=1, verbose=0)  # trace the train step outside the timing
    benchmark.extra_info["first_step_s"] = round(time.perf_counter() - start, 1)
    benchmark.pedantic(model.fit, args=(x, y), kwargs={"batch_size": batch, "epochs": 1, "verbose": 0}, rounds=rounds, iterations=1)
    benchmark.extra_info.update(images=n, batch=batch, images_per_s=round(n / benchmark.stats.stats.mean, 1))


@pytest.mark.parametrize("size", sorted(CASES))
def test_densenet121_inference_throughput(benchmark, size):
    _, _, _, n = CASES[size]
    model = _model(size)
    x, _ = _data(n, size)
    model.predict(x[:64], batch_size=64, verbose=0)
    benchmark.pedantic(model.predict, args=(x,), kwargs={"batch_size": 64, "verbose": 0}, rounds=2, iterations=1)
    benchmark.extra_info.update(images=n, batch=64, images_per_s=round(n / benchmark.stats.stats.mean, 1))
