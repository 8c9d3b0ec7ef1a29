"""The image submodel (paper section 2.2): DenseNet-121 encoder, its two heads, and input checks.

    grey image (size, size, 1), pixels 0..255
      -> `preprocess`: replicate to 3 channels, the normalisation of the architecture's ImageNet recipe
      -> `encoder`: keras.applications DenseNet-121 (or VGG16 / InceptionV3, or DenseNet-21), no top, last feature map
      -> pretraining head: global average pool -> N sigmoid units (CheXNet; N = cohort.label_names)
      -> fine-tuning head: global average pool -> batch norm (`image_features`) -> Dense 512 ReLU
                           -> dropout 0.5 -> batch norm -> one sigmoid unit (`abnormal`)

The normalisation lives inside the model (a `keras.ops` layer), so a model takes raw pixel values:
integrated gradients attribute to pixels, and the multimodal reuses the encoder as is. Every
initialisation of one architecture uses the same normalisation (DenseNet-121: ImageNet mean/std after
/255, as CheXNet), so an initialisation comparison differs only in the weights.

The authors' notebook ended the image model with `Dense(1, activation="softmax")`: a softmax over one
unit is exp(z)/exp(z) = 1.0 whatever the input (tests/unit/test_densenet.py shows it), so that model
could not learn. Here the unit is a sigmoid; `output_activation="softmax"` rebuilds the defect.

ImageNet weights are never downloaded: `imagenet_weights_path` looks for the file Keras would have
cached (`~/.keras/models/densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5`, or under
$KERAS_HOME); absent, `image_encoder(weights="imagenet")` raises `WeightsUnavailable`, which the
experiments turn into a clear note and their documented fallback (docs/IMAGE.md).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import keras
import numpy as np
from keras import ops

from replication.errors import DataError, ParameterError

ENCODER_LAYER = "encoder"
PREPROCESS_LAYER = "preprocess"
POOL_LAYER = "pooled"
FEATURES_LAYER = "image_features"
INPUT_NAME = "image"
FEATURES_INPUT = "encoder_features"   # the input of a head on a frozen encoder's pooled features
IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)  # 'torch' mode of keras.applications (DenseNet), after /255
IMAGENET_STD_RGB = (0.229, 0.224, 0.225)
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)  # 'caffe' mode (VGG16), on 0..255


@dataclass(frozen=True)
class Architecture:
    key: str
    display: str
    application: str          # keras.applications constructor
    min_size: int             # smallest input Keras accepts with include_top=False
    mode: str                 # normalisation of the ImageNet recipe: torch | caffe | tf
    imagenet_file: str | None  # the file keras.applications caches under ~/.keras/models; None: no ImageNet weights exist
    features: int             # channels of the last feature map
    blocks: tuple[int, ...] = ()  # a DenseNet of these dense-block depths, built by Keras' generic constructor


ARCHITECTURES = {
    "densenet121": Architecture("densenet121", "DenseNet-121", "DenseNet121", 32, "torch",
                                "densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5", 1024),
    "vgg16": Architecture("vgg16", "VGG16", "VGG16", 32, "caffe", "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5", 512),
    "inception_v3": Architecture("inception_v3", "InceptionV3", "InceptionV3", 75, "tf",
                                 "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5", 2048),
    # DenseNet-121's layout with 2 layers per dense block (1 + 2*8 + 3 + 1 = 21 weighted layers, 6% of its weights):
    # the test profile's encoder. Tracing DenseNet-121's train step dominates a tiny run's time; this one traces
    # several times faster with the same layer types and names. Not the paper's model; it has no ImageNet weights.
    "densenet21": Architecture("densenet21", "DenseNet-21", "DenseNet", 32, "torch", None, 128, (2, 2, 2, 2)),
}


class WeightsUnavailable(FileNotFoundError):
    """ImageNet weights are not in the Keras cache and this code never downloads them."""


def architecture(name: str, image_size: int | None = None, param: str = "architecture") -> Architecture:
    """The architecture's facts; ParameterError for an unknown name or an image below its minimum size."""
    if name not in ARCHITECTURES:
        raise ParameterError(param, name, f"one of {sorted(ARCHITECTURES)}")
    arch = ARCHITECTURES[name]
    if image_size is not None:
        if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)):
            raise ParameterError("image_size", image_size, "an integer")
        if image_size < arch.min_size:
            raise ParameterError("image_size", image_size,
                                 f"at least {arch.min_size} px for {arch.display} (Keras' minimum input with include_top=False)")
    return arch


# ------------------------------------------------------------------------------------------ weights
def keras_cache_dirs() -> list[Path]:
    """Where keras.applications caches downloaded weights: $KERAS_HOME/models, ~/.keras/models, /tmp/.keras/models."""
    homes = [os.environ.get("KERAS_HOME")]
    try:
        from keras.src.backend.config import keras_home

        homes.append(keras_home())
    except ImportError:  # pragma: no cover - private accessor moved
        pass
    homes += [os.path.join(os.path.expanduser("~"), ".keras"), "/tmp/.keras"]
    out: list[Path] = []
    for home in homes:
        if home and Path(home, "models") not in out:
            out.append(Path(home, "models"))
    return out


def imagenet_weights_path(name: str, search: Sequence[str | os.PathLike] | None = None) -> Path | None:
    """The cached ImageNet (no-top) weights file of an architecture, or None: nothing is downloaded."""
    arch = architecture(name)
    if arch.imagenet_file is None:
        return None
    for folder in (keras_cache_dirs() if search is None else [Path(s) for s in search]):
        candidate = Path(folder) / arch.imagenet_file
        if candidate.is_file():
            return candidate
    return None


def require_imagenet_weights(name: str, search: Sequence[str | os.PathLike] | None = None) -> Path:
    path = imagenet_weights_path(name, search)
    if path is None and ARCHITECTURES[name].imagenet_file is None:
        raise WeightsUnavailable(f"no ImageNet weights exist for {ARCHITECTURES[name].display} (not a keras.applications network)")
    if path is None:
        folders = [str(f) for f in (keras_cache_dirs() if search is None else search)]
        raise WeightsUnavailable(
            f"ImageNet weights for {ARCHITECTURES[name].display} are not available offline: "
            f"{ARCHITECTURES[name].imagenet_file} is in none of {folders}. Nothing is downloaded; copy the file from a "
            "machine where keras.applications fetched it (into ~/.keras/models/) to use ImageNet initialisation.")
    return path


# ------------------------------------------------------------------------------------- preprocessing
@keras.saving.register_keras_serializable(package="replication")
class GreyToRGB(keras.layers.Layer):
    """Grey pixels 0..255 (…, 1) -> 3 identical channels with the architecture's ImageNet normalisation."""

    def __init__(self, mode: str = "torch", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if mode not in ("torch", "caffe", "tf"):
            raise ParameterError("mode", mode, "one of ['caffe', 'tf', 'torch']")
        self.mode = mode
        offset, scale = _affine(mode)
        self._offset, self._scale = offset.tolist(), scale.tolist()

    def call(self, x: Any) -> Any:
        x = ops.cast(x, self.compute_dtype)
        x = ops.concatenate([x, x, x], axis=-1)
        offset = ops.convert_to_tensor(np.asarray(self._offset, "float32").reshape(1, 1, 1, 3), dtype=self.compute_dtype)
        scale = ops.convert_to_tensor(np.asarray(self._scale, "float32").reshape(1, 1, 1, 3), dtype=self.compute_dtype)
        return (x - offset) * scale

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return tuple(input_shape[:-1]) + (3,)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "mode": self.mode}


def _affine(mode: str) -> tuple[np.ndarray, np.ndarray]:
    """normalised = (pixel - offset) * scale per RGB channel, pixel in 0..255."""
    if mode == "torch":
        return np.array(IMAGENET_MEAN_RGB) * 255.0, 1.0 / (np.array(IMAGENET_STD_RGB) * 255.0)
    if mode == "caffe":  # BGR order; the channels are identical grey copies, so only the means matter
        return np.array(CAFFE_MEAN_BGR), np.ones(3)
    return np.full(3, 127.5), np.full(3, 1.0 / 127.5)


def normalise(images: np.ndarray, name: str = "densenet121") -> np.ndarray:
    """NumPy mirror of the model's `preprocess` layer: (n, s, s) or (n, s, s, 1) pixels -> (n, s, s, 3) float32."""
    x = np.asarray(images, dtype=np.float32)
    if x.ndim == 3:
        x = x[..., None]
    offset, scale = _affine(architecture(name).mode)
    return ((np.repeat(x, 3, axis=-1) - offset.astype(np.float32)) * scale.astype(np.float32)).astype(np.float32)


def check_images(
    images: Any,
    image_size: int,
    case_ids: Sequence[object] | None = None,
    where: object = "images",
    name: str = "densenet121",
    chunk: int = 512,
) -> None:
    """Refuse what the model cannot honestly take, naming the case: grey (n, size, size[, 1]) uint8, or
    float in 0..255 without NaN; no constant image (a blank or failed radiograph); finite after normalisation."""
    if not hasattr(images, "shape") or not hasattr(images, "dtype"):
        raise DataError(where, f"expected a NumPy array of images, got {type(images).__name__}")
    shape, dtype = tuple(images.shape), np.dtype(images.dtype)
    if len(shape) == 4 and shape[-1] in (3, 4):
        raise DataError(where, f"images have {shape[-1]} channels ({'RGB' if shape[-1] == 3 else 'RGBA'}); the model takes grey "
                               "(mode L) images (n, size, size): convert them when preparing the cohort")
    if not (len(shape) == 3 or (len(shape) == 4 and shape[-1] == 1)):
        raise DataError(where, f"expected grey images shaped (n, size, size) or (n, size, size, 1), got {shape}")
    if shape[1:3] != (image_size, image_size):
        raise DataError(where, f"images are {shape[1]}x{shape[2]} px but the model expects {image_size}x{image_size} "
                               "(image_size in params.yaml); re-run the prepare stage")
    if dtype != np.uint8 and dtype.kind != "f":
        raise DataError(where, f"images must be uint8 (or float pixel values 0..255), got dtype {dtype}")
    ids = list(case_ids) if case_ids is not None else None
    if ids is not None and len(ids) != shape[0]:
        raise DataError(where, f"{len(ids)} case ids for {shape[0]} images")
    label = lambda i: ids[i] if ids is not None else f"image {i}"  # noqa: E731
    architecture(name)
    for start in range(0, shape[0], chunk):
        block = np.asarray(images[start:start + chunk]).reshape(min(chunk, shape[0] - start), -1)
        if dtype.kind == "f":
            bad = ~np.isfinite(block).all(axis=1)
            if bad.any():
                i = start + int(np.flatnonzero(bad)[0])
                raise DataError(where, "NaN or infinite pixels (the normalised input would be NaN)", record=label(i))
            out = ((block < 0) | (block > 255)).any(axis=1)
            if out.any():
                i = start + int(np.flatnonzero(out)[0])
                raise DataError(where, "float pixel values outside 0..255", record=label(i))
        constant = block.max(axis=1) == block.min(axis=1)
        if constant.any():
            i = start + int(np.flatnonzero(constant)[0])
            raise DataError(where, f"the image is constant (every pixel = {block[i - start, 0]}): a blank or failed radiograph",
                            record=label(i))


def model_input(images: np.ndarray) -> np.ndarray:
    """(n, s, s) uint8 -> (n, s, s, 1) float32 pixel values, what every model here takes."""
    x = np.asarray(images, dtype=np.float32)
    return x[..., None] if x.ndim == 3 else x


# ------------------------------------------------------------------------------------------ models
def image_encoder(
    image_size: int,
    name: str = "densenet121",
    weights: str | os.PathLike | None = None,
    imagenet_search: Sequence[str | os.PathLike] | None = None,
    layer_name: str = ENCODER_LAYER,
) -> keras.Model:
    """Grey image (image_size, image_size, 1), pixels 0..255 -> the architecture's last feature map.

    `weights`: None = scratch (Keras' initialisers under the current seed); "imagenet" = the cached
    Keras ImageNet file (WeightsUnavailable when absent: nothing is downloaded); a path = an encoder
    weights file written by `save_encoder` (e.g. the pretrain stage's ChestX-ray14 encoder).
    """
    arch = architecture(name, image_size)
    image = keras.Input((image_size, image_size, 1), name=INPUT_NAME)
    x = GreyToRGB(arch.mode, name=PREPROCESS_LAYER)(image)
    base = _base_network(arch, image_size)
    encoder = keras.Model(image, base(x), name=layer_name)
    if weights is None:
        return encoder
    if isinstance(weights, str) and weights == "imagenet":
        load_imagenet_weights(encoder, require_imagenet_weights(name, imagenet_search))
    else:
        load_encoder_weights(encoder, weights)
    return encoder


def _base_network(arch: Architecture, image_size: int) -> keras.Model:
    shape = (image_size, image_size, 3)
    if arch.blocks:
        # keras.applications exports only the fixed depths; its generic DenseNet(blocks) is the same code with the
        # same layer names (the cascading randomisation's blocks apply), so it is used rather than rewritten.
        from keras.src.applications.densenet import DenseNet
        return DenseNet(list(arch.blocks), include_top=False, weights=None, input_shape=shape, name=arch.key)
    return getattr(keras.applications, arch.application)(include_top=False, weights=None, input_shape=shape)


def encoder_base(encoder: keras.Model) -> keras.Model:
    """The keras.applications network inside an encoder."""
    return next(layer for layer in encoder.layers if isinstance(layer, keras.Model))


def load_imagenet_weights(encoder: keras.Model, path: str | os.PathLike) -> None:
    """Keras' no-top ImageNet .h5 into the encoder's network; DataError naming the file when it does not fit."""
    try:
        encoder_base(encoder).load_weights(str(path))
    except (ValueError, OSError, KeyError, TypeError) as e:
        raise DataError(path, f"not usable as ImageNet weights of {encoder_base(encoder).name} without top "
                              f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None


def save_encoder(model: keras.Model, path: str | os.PathLike, **metadata: Any) -> Path:
    """Write the encoder's weights (`*.weights.h5`) and a JSON sidecar saying what they fit."""
    path = Path(path)
    if not path.name.endswith(".weights.h5"):
        raise ParameterError("path", str(path), "a file name ending in .weights.h5")
    encoder = encoder_of(model)
    base = encoder_base(encoder)
    info = {"architecture": base.name, "image_size": int(encoder.inputs[0].shape[1]), **metadata}
    path.parent.mkdir(parents=True, exist_ok=True)
    encoder.save_weights(str(path))
    sidecar(path).write_text(json.dumps(info, indent=2, default=str) + "\n")
    return path


def sidecar(path: str | os.PathLike) -> Path:
    path = Path(path)
    return path.with_name(path.name[: -len(".weights.h5")] + ".json") if path.name.endswith(".weights.h5") else path.with_suffix(".json")


def load_encoder_weights(encoder: keras.Model, path: str | os.PathLike) -> dict[str, Any]:
    """Load `save_encoder`'s file into an encoder; DataError naming the file if absent or made for another network/size."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "encoder weights file not found; run the pretrain stage (`dvc repro pretrain`)")
    base = encoder_base(encoder)
    size = int(encoder.inputs[0].shape[1])
    info: dict[str, Any] = {}
    if sidecar(path).is_file():
        info = json.loads(sidecar(path).read_text())
        if info.get("architecture") not in (None, base.name):
            raise DataError(path, f"weights of a {info['architecture']} encoder, the model is {base.name}")
        if info.get("image_size") not in (None, size):
            raise DataError(path, f"weights of a {info['image_size']} px encoder, the model takes {size} px (image_size); "
                                  "re-run the pretrain stage with this image_size")
    try:
        encoder.load_weights(str(path))
    except (ValueError, OSError, KeyError, TypeError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataError(path, f"does not match a {base.name} encoder at {size} px ({type(e).__name__}: {first})") from None
    return info


def encoder_of(model: keras.Model) -> keras.Model:
    """The encoder inside a pretraining or fine-tuning model (or the encoder itself)."""
    if model.name == ENCODER_LAYER or not any(layer.name == ENCODER_LAYER for layer in model.layers):
        return model
    return model.get_layer(ENCODER_LAYER)


def pretraining_model(
    image_size: int,
    labels: int | Sequence[str],
    name: str = "densenet121",
    weights: str | os.PathLike | None = None,
    imagenet_search: Sequence[str | os.PathLike] | None = None,
) -> keras.Model:
    """CheXNet: encoder -> global average pool -> one sigmoid per finding (len(labels) of them)."""
    n = labels if isinstance(labels, (int, np.integer)) else len(labels)
    if isinstance(n, bool) or n < 1:
        raise ParameterError("labels", labels, "at least one finding (the cohort's label_names)")
    encoder = image_encoder(image_size, name, weights, imagenet_search)
    image = keras.Input((image_size, image_size, 1), name=INPUT_NAME)
    pooled = keras.layers.GlobalAveragePooling2D(name=POOL_LAYER)(encoder(image))
    out = keras.layers.Dense(int(n), activation="sigmoid", dtype="float32", name="findings")(pooled)
    return keras.Model(image, out, name="pretraining")


def finetune_model(
    image_size: int,
    name: str = "densenet121",
    weights: str | os.PathLike | None = None,
    hidden: int = 512,
    dropout: float = 0.5,
    output_activation: str = "sigmoid",
    imagenet_search: Sequence[str | os.PathLike] | None = None,
    bn_momentum: float | None = None,
) -> keras.Model:
    """The image submodel on IU: encoder -> GAP -> BN (`image_features`) -> Dense(hidden) ReLU -> dropout -> BN -> P(abnormal).

    `output_activation="softmax"` reproduces the authors' one-unit softmax (always 1.0); do not train it.
    `bn_momentum` (None = Keras' 0.99) sets the moving-average momentum of every batch norm, the encoder's
    included: with 0.99 the statistics used at evaluation need a few hundred steps to settle (docs/IMAGE.md).
    """
    if output_activation not in ("sigmoid", "softmax"):
        raise ParameterError("output_activation", output_activation, "'sigmoid' (or 'softmax' to reproduce the authors' defect)")
    encoder = image_encoder(image_size, name, weights, imagenet_search)
    image = keras.Input((image_size, image_size, 1), name=INPUT_NAME)
    pooled = keras.layers.GlobalAveragePooling2D(name=POOL_LAYER)(encoder(image))
    return _with_head(image, pooled, hidden, dropout, output_activation, bn_momentum, "image_model")


def feature_head_model(width: int, hidden: int = 512, dropout: float = 0.5, bn_momentum: float | None = None) -> keras.Model:
    """The fine-tuning head alone, on a frozen encoder's pooled features (width,) -> P(abnormal): the image model of
    the `fair` protocol with `encoder: frozen` (the notebook multi_model.ipynb froze the whole DenseNet-121). Same
    layers and names as `finetune_model`'s head, so the multimodal copies `image_features` from it the same way."""
    features = keras.Input((int(width),), name=FEATURES_INPUT)
    return _with_head(features, features, hidden, dropout, "sigmoid", bn_momentum, "image_head")


def _with_head(inputs: Any, pooled: Any, hidden: int, dropout: float, output_activation: str, bn_momentum: float | None, name: str) -> keras.Model:
    if isinstance(hidden, bool) or not isinstance(hidden, (int, np.integer)) or hidden < 1:
        raise ParameterError("transfer.hidden", hidden, "an integer >= 1")
    if not 0 <= dropout < 1:
        raise ParameterError("transfer.dropout", dropout, "a rate in [0, 1)")
    features = keras.layers.BatchNormalization(name=FEATURES_LAYER)(pooled)
    x = keras.layers.Dense(int(hidden), activation="relu", name="hidden")(features)
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    x = keras.layers.BatchNormalization(name="hidden_bn")(x)
    out = keras.layers.Dense(1, activation=output_activation, dtype="float32", name="abnormal")(x)
    model = keras.Model(inputs, out, name=name)
    if bn_momentum is not None:
        set_bn_momentum(model, bn_momentum)
    return model


def pooled_features(image_size: int, name: str, weights: str | os.PathLike, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """A trained encoder's globally pooled features of `images` (n, size, size) in inference mode: what a frozen
    encoder feeds its head, computed once instead of at every epoch."""
    encoder = image_encoder(image_size, name, weights)
    image = keras.Input((image_size, image_size, 1), name=INPUT_NAME)
    model = keras.Model(image, keras.layers.GlobalAveragePooling2D(name=POOL_LAYER)(encoder(image)))
    return np.asarray(model.predict(model_input(np.asarray(images)), batch_size=batch_size, verbose=0), dtype=np.float32)


def set_bn_momentum(model: keras.Model, momentum: float) -> int:
    """Set the moving-average momentum of every BatchNormalization layer (nested models included) before the
    model is compiled and traced; returns how many layers were changed."""
    if isinstance(momentum, bool) or not isinstance(momentum, (int, float)) or not 0 <= momentum < 1:
        raise ParameterError("transfer.bn_momentum", momentum, "a number in [0, 1) (Keras' default: 0.99)")
    changed = 0
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = float(momentum)
            changed += 1
    return changed


def image_features(model: keras.Model) -> keras.Model:
    """Image -> the batch-normalised pooled encoder features (layer `image_features`): the image half of the multimodal."""
    inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
    return keras.Model(inputs, model.get_layer(FEATURES_LAYER).output, name=f"{model.name}_features")


def compile_finetune(model: keras.Model, learning_rate: float, optimizer: str = "adam") -> keras.Model:
    """Binary cross-entropy on the one sigmoid unit, at the experiment's learning rate."""
    model.compile(optimizer=make_optimizer(optimizer, learning_rate, "transfer"), loss="binary_crossentropy", metrics=["accuracy"])
    return model


def make_optimizer(name: str, learning_rate: float, section: str) -> keras.optimizers.Optimizer:
    if isinstance(learning_rate, bool) or not isinstance(learning_rate, (int, float)) or not learning_rate > 0:
        raise ParameterError(f"{section}.learning_rate", learning_rate, "a positive number")
    optimizers = {"adam": keras.optimizers.Adam, "sgd": keras.optimizers.SGD}
    if name not in optimizers:
        raise ParameterError(f"{section}.optimizer", name, f"one of {sorted(optimizers)}")
    return optimizers[name](learning_rate=float(learning_rate))
