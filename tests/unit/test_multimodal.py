import numpy as np
import pytest

from replication.explain import attribute_text, split_at_embedding
from replication.models.densenet import encoder_of, finetune_model
from replication.models.multimodal import feature_widths, multimodal_model
from replication.models.text_cnn import text_cnn, text_features
from replication.models.densenet import image_features


@pytest.fixture(scope="module")
def submodels():
    rng = np.random.default_rng(0)
    text = text_cnn(40, 8, sequence_length=20, feature_maps=4, embedding_matrix=rng.normal(size=(40, 8)).astype("float32"))
    image = finetune_model(32, hidden=16)
    # make every weight distinctive, so that a copy is checkable
    for layer in image.layers + text.layers:
        layer.set_weights([w + rng.normal(0, 0.01, w.shape).astype(w.dtype) for w in layer.get_weights()])
    return text, image, multimodal_model(text, image, {"l2": 0.03})


def test_feature_widths_are_the_sum_of_the_submodels(submodels):
    text, image, model = submodels
    widths = feature_widths(model)
    assert widths["text"] == text_features(text).output.shape[-1] == 4 * (9 + 8 + 8)
    assert widths["image"] == image_features(image).output.shape[-1] == 1024
    assert widths["concatenated"] == widths["text"] + widths["image"]


def test_weights_are_copied_from_the_trained_submodels(submodels):
    text, image, model = submodels
    for name in ("embedding", "conv_3", "conv_4", "conv_5"):
        for a, b in zip(model.get_layer(name).get_weights(), text.get_layer(name).get_weights()):
            assert np.array_equal(a, b)
    for a, b in zip(encoder_of(model).get_weights(), encoder_of(image).get_weights()):
        assert np.array_equal(a, b)
    for a, b in zip(model.get_layer("image_features").get_weights(), image.get_layer("image_features").get_weights()):
        assert np.array_equal(a, b)
    # the same features as the submodels' extractors, for the same inputs
    rng = np.random.default_rng(1)
    ids = rng.integers(0, 40, (2, 20)).astype("int32")
    pixels = rng.uniform(0, 255, (2, 32, 32, 1)).astype("float32")
    import keras
    mm_text = keras.Model(model.inputs, model.get_layer("text_features").output).predict([ids, pixels], verbose=0)
    assert np.allclose(mm_text, text_features(text).predict(ids, verbose=0), atol=1e-6)
    mm_image = keras.Model(model.inputs, model.get_layer("image_features").output).predict([ids, pixels], verbose=0)
    assert np.allclose(mm_image, image_features(image).predict(pixels, verbose=0), atol=1e-5)


def test_the_multimodal_splits_at_its_embedding_for_text_attribution(submodels):
    text, image, model = submodels
    ids = np.random.default_rng(2).integers(1, 40, 20).astype("int32")
    pixels = np.random.default_rng(3).uniform(0, 255, (32, 32, 1)).astype("float32")
    result = attribute_text(model, ids, other_inputs=[pixels], steps=8)
    assert result.embedding_scores.shape == (20, 8)
    embed, head = split_at_embedding(model)
    assert np.allclose(head.predict([embed(ids[None]), pixels[None]], verbose=0), model.predict([ids[None], pixels[None]], verbose=0), atol=1e-5)
