"""The DenseNet-121 image submodel: preprocessing, heads, weight transfer, the authors' one-unit softmax,
ImageNet weights offline, bad input, the test profile's DenseNet-21, and the same outputs under the JAX backend. 32 px (DenseNet-121's
minimum in Keras) and no training: building the network takes ~1.5 s, tracing a train step ~40 s."""

import importlib.util
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from replication.errors import DataError, ParameterError
from replication.experiments.images import resolve_imagenet
from replication.models.densenet import (ARCHITECTURES, FEATURES_LAYER, GreyToRGB, WeightsUnavailable, architecture, check_images,
                                         encoder_base, encoder_of, finetune_model, image_encoder, image_features,
                                         imagenet_weights_path, load_encoder_weights, load_imagenet_weights, model_input, normalise,
                                         pretraining_model, save_encoder, set_bn_momentum)
from replication.training.seeding import seed_everything

SIZE = 32


def _run(model, x):
    """An eager forward pass: much cheaper than tracing model.predict for a handful of images."""
    return keras.ops.convert_to_numpy(model(x, training=False))


def _images(n=3, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, SIZE, SIZE)).astype(np.uint8)


def _perturb_batch_norms(model, seed):
    """Non-trivial moving statistics, so that inference-mode batch norm is really compared."""
    rng = np.random.default_rng(seed)
    for layer in model._flatten_layers(recursive=True):
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([gamma, beta, rng.normal(0, 0.1, mean.shape).astype("float32"), rng.uniform(0.5, 1.5, var.shape).astype("float32")])


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A pretraining model with non-trivial weights (BN statistics perturbed), saved as the stage saves it."""
    seed_everything(1)
    model = pretraining_model(SIZE, ["a", "b", "c"])
    _perturb_batch_norms(encoder_base(encoder_of(model)), 1)
    path = tmp_path_factory.mktemp("pretrain") / "encoder.weights.h5"
    save_encoder(model, path, labels=["a", "b", "c"])
    return model, path


def test_preprocess_layer_replicates_grey_and_uses_imagenet_statistics():
    x = model_input(_images(2))
    out = keras.ops.convert_to_numpy(GreyToRGB("torch")(x))
    assert out.shape == (2, SIZE, SIZE, 3)
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    np.testing.assert_allclose(out, (np.repeat(x, 3, -1) / 255.0 - mean) / std, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out, normalise(_images(2)), rtol=1e-6, atol=1e-6)
    caffe = keras.ops.convert_to_numpy(GreyToRGB("caffe")(x))
    np.testing.assert_allclose(caffe[..., 0], x[..., 0] - 103.939, rtol=1e-6)
    assert keras.ops.convert_to_numpy(GreyToRGB("tf")(np.full((1, 2, 2, 1), 255.0, "float32"))).max() == pytest.approx(1.0)


def test_heads_shapes_and_named_feature_layer(pretrained):
    model, _ = pretrained
    x = model_input(_images())
    assert _run(model, x).shape == (3, 3) and model.get_layer("findings").activation.__name__ == "sigmoid"
    fine = finetune_model(SIZE, bn_momentum=0.9)
    out = _run(fine, x)
    assert out.shape == (3, 1) and ((out > 0) & (out < 1)).all()
    names = [layer.name for layer in fine.layers]
    assert names == ["image", "encoder", "pooled", FEATURES_LAYER, "hidden", "dropout", "hidden_bn", "abnormal"]
    assert fine.get_layer("hidden").units == 512 and fine.get_layer("dropout").rate == 0.5
    assert isinstance(fine.get_layer(FEATURES_LAYER), keras.layers.BatchNormalization)
    assert _run(image_features(fine), x).shape == (3, ARCHITECTURES["densenet121"].features)
    norms = [l for l in fine._flatten_layers(recursive=True) if isinstance(l, keras.layers.BatchNormalization)]
    assert len(norms) > 100 and {l.momentum for l in norms} == {0.9}  # the encoder's batch norms too
    with pytest.raises(ParameterError, match="transfer.bn_momentum"):
        set_bn_momentum(fine, 1.0)


def test_fine_tuning_model_starts_from_the_pretrained_encoder(pretrained):
    model, path = pretrained
    fine = finetune_model(SIZE, weights=path)
    source, target = encoder_of(model).get_weights(), encoder_of(fine).get_weights()
    assert len(source) == len(target) > 300
    for a, b in zip(source, target):
        np.testing.assert_array_equal(a, b)
    x = model_input(_images())
    pooled = keras.Model(model.input, model.get_layer("pooled").output)
    np.testing.assert_allclose(_run(keras.Model(fine.input, fine.get_layer("pooled").output), x), _run(pooled, x), rtol=1e-5, atol=1e-6)
    assert json.loads(path.with_name("encoder.json").read_text())["labels"] == ["a", "b", "c"]


def test_one_unit_softmax_of_the_authors_notebook_is_constant():
    model = finetune_model(SIZE, output_activation="softmax")
    rng = np.random.default_rng(0)
    x = np.concatenate([model_input(_images(4)), np.full((1, SIZE, SIZE, 1), 255.0, "float32")])
    with pytest.warns(UserWarning, match="always return the value 1"):  # Keras itself warns about it
        np.testing.assert_array_equal(_run(model, x), np.ones((5, 1), "float32"))
    logits = rng.normal(0, 10, (6, 1)).astype("float32")  # whatever the logit: exp(z) / exp(z) = 1
    with pytest.warns(UserWarning):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(keras.activations.softmax(logits)), np.ones((6, 1)))
    with pytest.raises(ParameterError, match="output_activation"):
        finetune_model(SIZE, output_activation="relu")


def test_sizes_and_architecture_names_are_checked():
    with pytest.raises(ParameterError, match=r"image_size=64.*at least 75 px for InceptionV3"):
        architecture("inception_v3", 64)
    with pytest.raises(ParameterError, match="at least 32 px"):
        image_encoder(16)
    with pytest.raises(ParameterError, match=r"transfer.architectures='resnet'"):
        architecture("resnet", 64, "transfer.architectures")
    assert architecture("inception_v3", 75).min_size == 75 and architecture("vgg16", 32).mode == "caffe"


def test_bad_images_are_refused_naming_the_case():
    ids = ["c1", "c2", "c3"]
    good = _images()
    check_images(good, SIZE, ids)
    with pytest.raises(DataError, match=r"64x64 px but the model expects 32x32"):
        check_images(np.zeros((2, 64, 64), np.uint8) + 1, SIZE)
    with pytest.raises(DataError, match="3 channels \\(RGB\\).*grey"):
        check_images(np.repeat(good[..., None], 3, -1), SIZE)
    with pytest.raises(DataError, match="dtype int64"):
        check_images(good.astype(np.int64), SIZE)
    constant = good.copy()
    constant[1] = 7
    with pytest.raises(DataError, match=r"\[record c2\].*constant \(every pixel = 7\)"):
        check_images(constant, SIZE, ids, where="cohort images.npy")
    nan = good.astype(np.float32)
    nan[2, 5, 5] = np.nan
    with pytest.raises(DataError, match=r"\[record c3\].*NaN"):
        check_images(nan, SIZE, ids)
    with pytest.raises(DataError, match="outside 0..255"):
        check_images(good.astype(np.float32) * 2, SIZE)
    check_images(good.astype(np.float32), SIZE)  # float pixel values are fine (integrated gradients' paths)


def test_missing_or_mismatched_weight_files_name_the_file(tmp_path, pretrained):
    _, path = pretrained
    encoder = image_encoder(SIZE)
    with pytest.raises(DataError, match=r"nope.weights.h5: encoder weights file not found"):
        load_encoder_weights(encoder, tmp_path / "nope.weights.h5")
    bogus = tmp_path / "bogus.weights.h5"
    bogus.write_bytes(b"not an h5 file")
    with pytest.raises(DataError, match="bogus.weights.h5: does not match"):
        load_encoder_weights(encoder, bogus)
    with pytest.raises(DataError, match=r"weights of a 32 px encoder, the model takes 48 px"):
        load_encoder_weights(image_encoder(48), path)
    wrong = tmp_path / ARCHITECTURES["densenet121"].imagenet_file
    wrong.write_bytes(b"\x89HDF\r\n\x1a\n truncated")
    assert imagenet_weights_path("densenet121", [tmp_path]) == wrong
    with pytest.raises(DataError, match=f"{wrong.name}: not usable as ImageNet weights"):
        load_imagenet_weights(encoder, wrong)


def test_imagenet_weights_are_found_in_the_keras_cache_never_downloaded(tmp_path, monkeypatch):
    import h5py
    from keras.src.legacy.saving import legacy_h5_format

    empty = tmp_path / "empty"
    empty.mkdir()
    weights, used, note = resolve_imagenet("densenet121", False, [str(empty)], log=None)
    assert (weights, used) == (None, "scratch") and "not available offline" in note and "scratch" in note
    assert str(empty) not in note and str(tmp_path) not in note  # the note is committed: no machine paths in it
    with pytest.raises(WeightsUnavailable, match="densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5"):
        resolve_imagenet("densenet121", True, [str(empty)], log=None)
    # a stand-in for Keras' cached file (same format: legacy h5 of the no-top network) under $KERAS_HOME/models
    seed_everything(5)
    stand_in = encoder_base(image_encoder(SIZE))
    (tmp_path / "home" / "models").mkdir(parents=True)
    with h5py.File(tmp_path / "home" / "models" / ARCHITECTURES["densenet121"].imagenet_file, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, stand_in)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "home"))
    assert imagenet_weights_path("densenet121") is not None
    assert resolve_imagenet("densenet121", True, None, log=None)[1] == "imagenet"
    loaded = encoder_base(image_encoder(SIZE, weights="imagenet"))
    for a, b in zip(stand_in.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)


JAX_SCRIPT = """
import sys, numpy as np, keras
assert keras.backend.backend() == "jax", keras.backend.backend()
from replication.models.densenet import finetune_model, image_features
model = finetune_model(32, "densenet21")
model.load_weights(sys.argv[1])
both = keras.Model(model.input, [image_features(model).output, model.output])
features, out = both(np.load(sys.argv[2]), training=False)
np.save(sys.argv[3], np.asarray(features))
np.save(sys.argv[4], np.asarray(out))
"""


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed")
def test_jax_backend_gives_the_tensorflow_outputs(tmp_path):
    # DenseNet-21: the same layer types as DenseNet-121 (convolutions, batch norms, concatenations, pooling, the
    # preprocessing layer and the heads) at a fraction of the JAX dispatch time
    seed_everything(2)
    fine = finetune_model(SIZE, "densenet21")
    _perturb_batch_norms(fine, 2)
    fine.save_weights(str(tmp_path / "fine.weights.h5"))
    x = model_input(_images(4, seed=3))
    np.save(tmp_path / "x.npy", x)
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu", "PYTHONPATH": os.getcwd()}
    done = subprocess.run([sys.executable, "-c", JAX_SCRIPT, str(tmp_path / "fine.weights.h5"), str(tmp_path / "x.npy"),
                           str(tmp_path / "features.npy"), str(tmp_path / "out.npy")], capture_output=True, text=True, env=env, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    both = keras.Model(fine.input, [image_features(fine).output, fine.output])
    features, out = (keras.ops.convert_to_numpy(t) for t in both(x, training=False))
    assert np.abs(features).max() > 0.1  # a real comparison, not of zeros
    np.testing.assert_allclose(np.load(tmp_path / "features.npy"), features, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), out, rtol=1e-4, atol=1e-5)


def test_densenet21_is_densenet121s_layout_with_two_layers_per_block_and_no_imagenet_weights(tmp_path):
    from replication.explain.baselines import densenet_blocks

    small, full = (encoder_base(image_encoder(SIZE, name)) for name in ("densenet21", "densenet121"))
    assert small.name == "densenet21" and small.output.shape[-1] == ARCHITECTURES["densenet21"].features == 128
    assert small.output.shape[1:3] == full.output.shape[1:3]  # the same strides: 1x1 at 32 px
    convs = [l.name for l in small.layers if isinstance(l, keras.layers.Conv2D)]
    assert len(convs) == 1 + 2 * 8 + 3  # stem, two convolutions per dense layer, three transitions
    named = ("conv", "pool", "bn", "relu")  # Keras' own names (padding and input layers are numbered globally)
    assert {n for n in (l.name for l in small.layers) if n.startswith(named)} < {l.name for l in full.layers}
    for block, member in densenet_blocks()[1:4]:
        assert any(member(n) for n in convs), block
    assert small.count_params() < 0.1 * full.count_params()
    assert imagenet_weights_path("densenet21", [tmp_path]) is None
    weights, used, note = resolve_imagenet("densenet21", False, [str(tmp_path)], log=None)
    assert (weights, used) == (None, "scratch") and "none exist" in note
    with pytest.raises(WeightsUnavailable, match="no ImageNet weights exist for DenseNet-21"):
        image_encoder(SIZE, "densenet21", weights="imagenet")
    # an encoder saved from one architecture does not load into the other
    path = save_encoder(pretraining_model(SIZE, ["a"], "densenet21"), tmp_path / "small.weights.h5")
    with pytest.raises(DataError, match="weights of a densenet21 encoder, the model is densenet121"):
        load_encoder_weights(image_encoder(SIZE), path)
