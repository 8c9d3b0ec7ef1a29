"""build_training_state: the optimizer's and metrics' variables exist before the first trace, for array and
`Batches` inputs alike, and the fit that follows trains as before."""

import keras
import numpy as np

from replication.training.batches import Batches
from replication.training.loop import build_training_state


def small_model() -> keras.Model:
    keras.utils.set_random_seed(0)
    x = keras.Input((4,))
    model = keras.Model(x, keras.layers.Dense(1, activation="sigmoid")(keras.layers.Dense(3)(x)))
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
    return model


def test_arrays_and_batches_build_the_optimizer_before_fit():
    x = np.random.default_rng(0).normal(size=(20, 4)).astype("float32")
    y = (x[:, 0] > 0).astype("float32")
    for args in ({"x": x, "y": y, "batch_size": 8}, {"x": Batches(x, y, 8, seed=1)}):
        model = small_model()
        assert not model.optimizer.built
        build_training_state(model, args)
        assert model.optimizer.built
        n_vars = len(model.optimizer.variables)
        assert n_vars > 0
        before = [w.copy() for w in model.get_weights()]
        build_training_state(model, args)                 # a second call does nothing
        assert len(model.optimizer.variables) == n_vars
        assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))   # building does not train
        history = model.fit(**args, epochs=2, verbose=0).history
        assert np.isfinite(history["loss"]).all() and len(model.optimizer.variables) == n_vars
