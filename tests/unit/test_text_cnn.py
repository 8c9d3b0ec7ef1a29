import numpy as np
import pytest

from replication.errors import ParameterError
from replication.models.text_cnn import compile_text_cnn, text_cnn, text_features
from replication.training.loop import TrainingError, fit_binary
from replication.training.metrics import auroc, evaluate_binary
from replication.training.seeding import seed_everything


@pytest.mark.parametrize("pool_size, width", [(2, 10 * (69 + 68 + 68)), (None, 30)])
def test_output_and_feature_shapes(pool_size, width):
    matrix = np.random.default_rng(0).normal(size=(50, 8)).astype("float32")
    model = text_cnn(50, 8, sequence_length=140, feature_maps=10, pool_size=pool_size, embedding_matrix=matrix)
    ids = np.random.default_rng(1).integers(0, 50, (3, 140)).astype("int32")
    out = model.predict(ids, verbose=0)
    assert out.shape == (3, 1) and ((out > 0) & (out < 1)).all()
    assert text_features(model).predict(ids, verbose=0).shape == (3, width)
    emb = model.get_layer("embedding")
    assert emb.trainable and np.allclose(emb.get_weights()[0], matrix)
    assert [model.get_layer(f"conv_{k}").kernel_size for k in (3, 4, 5)] == [(3,), (4,), (5,)]


def test_bad_shapes_name_the_parameter():
    with pytest.raises(ParameterError, match="embedding_matrix"):
        text_cnn(50, 8, embedding_matrix=np.zeros((49, 8), "float32"))
    with pytest.raises(ParameterError, match="text_cnn.kernel_sizes"):
        text_cnn(50, 8, sequence_length=4, kernel_sizes=(3, 5))


def test_learns_a_keyword_and_records_each_epoch(tmp_path):
    seed_everything(0)
    rng = np.random.default_rng(0)
    ids = rng.integers(2, 30, (200, 20)).astype("int32")
    labels = (ids == 7).any(axis=1).astype("float32")
    model = compile_text_cnn(text_cnn(30, 8, sequence_length=20, feature_maps=8, pool_size=None), learning_rate=1.0)
    history = fit_binary(model, (ids[:150], labels[:150]), (ids[150:], labels[150:]), epochs=8, batch_size=16,
                         name="toy", history_path=tmp_path / "h.json")
    assert history["epoch"] == list(range(1, 9)) and (tmp_path / "h.json").is_file()
    assert history["val_accuracy"][-1] > 0.85 and history["loss"][-1] < history["loss"][0]
    assert evaluate_binary(model, ids[150:], labels[150:])["accuracy"] == pytest.approx(history["val_accuracy"][-1])


def test_nan_loss_stops_naming_model_and_epoch(tmp_path):
    import keras

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer=keras.optimizers.SGD(1e30), loss="binary_crossentropy", metrics=["accuracy"])
    x = np.array([[1e30, -1e30], [1.0, 2.0]] * 8, "float32")
    y = np.array([1, 0] * 8, "float32")
    with pytest.raises(TrainingError, match=r"toy: the training loss is nan at epoch \d"):
        fit_binary(model, (x, y), (x, y), epochs=5, batch_size=4, name="toy", history_path=tmp_path / "h.json")
    assert (tmp_path / "h.json").is_file()


def test_auroc_known_case_and_one_class():
    assert auroc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    assert np.isnan(auroc([1, 1], [0.2, 0.9]))
