"""The multimodal (paper section 2.3): text and image features concatenated, then a small dense decoder.

Both halves are initialised from trained submodels: the text CNN's layers are rebuilt at the top level
(so the detection code can split the model at its embedding) and get the text CNN's weights; the image
encoder and its batch-normalised pooled features get the image model's weights.
"""

from __future__ import annotations

import keras

from replication.models.densenet import (FEATURES_INPUT, FEATURES_LAYER as IMAGE_FEATURES, INPUT_NAME, POOL_LAYER, encoder_of, image_encoder,
                                         set_bn_momentum)
from replication.models.text_cnn import EMBEDDING_LAYER, FEATURES_LAYER as TEXT_FEATURES, text_branch, text_input

FUSION_LAYERS = ("fusion_bn", "fusion_hidden", "fusion_dropout", "fusion_hidden_bn", "abnormal")


def text_layer_names(text_model: keras.Model) -> list[str]:
    """The text CNN's layers that carry weights into the multimodal (embedding and convolutions)."""
    return [layer.name for layer in text_model.layers if layer.name == EMBEDDING_LAYER or layer.name.startswith("conv_")]


def multimodal_model(
    text_model: keras.Model,
    image_model: keras.Model,
    l2: float,
    architecture: str = "densenet121",
    hidden: int = 512,
    dropout: float = 0.3,
    name: str = "multimodal",
    bn_momentum: float | None = None,
) -> keras.Model:
    """[report tokens, image] → P(abnormal), initialised from the trained text and image submodels.

    An image model on pooled encoder features (`densenet.feature_head_model`) gives a multimodal on
    [report tokens, features]: the frozen-encoder form of the `fair` protocol.

    `l2` as the text CNN's (`text_cnn.l2`), for the text branch's convolutions; `bn_momentum` as the image submodel's
    (`transfer.bn_momentum`), for every batch norm of the multimodal."""
    embedding = text_model.get_layer(EMBEDDING_LAYER)
    convs = sorted((layer for layer in text_model.layers if layer.name.startswith("conv_")), key=lambda layer: layer.kernel_size[0])
    pool = text_model.get_layer(f"pool_{convs[0].kernel_size[0]}")
    ids = text_input(text_model.inputs[0].shape[1])
    text_features = text_branch(
        ids, embedding.input_dim, embedding.output_dim, kernel_sizes=[c.kernel_size[0] for c in convs],
        feature_maps=convs[0].filters, l2=float(l2),
        pool_size=None if isinstance(pool, keras.layers.GlobalMaxPooling1D) else pool.pool_size[0],
    )
    if on_features(image_model):  # a head on a frozen encoder's pooled features: the multimodal takes them too
        image = pooled = keras.Input((image_model.inputs[0].shape[1],), name=FEATURES_INPUT)
    else:
        image_size = image_model.inputs[0].shape[1]
        image = keras.Input((image_size, image_size, 1), name=INPUT_NAME)
        encoder = image_encoder(image_size, architecture)
        pooled = keras.layers.GlobalAveragePooling2D(name=POOL_LAYER)(encoder(image))
    image_features = keras.layers.BatchNormalization(name=IMAGE_FEATURES)(pooled)
    x = keras.layers.Concatenate(name="concatenated")([text_features, image_features])
    x = keras.layers.BatchNormalization(name="fusion_bn")(x)
    x = keras.layers.Dense(hidden, activation="relu", name="fusion_hidden")(x)
    x = keras.layers.Dropout(dropout, name="fusion_dropout")(x)
    x = keras.layers.BatchNormalization(name="fusion_hidden_bn")(x)
    out = keras.layers.Dense(1, activation="sigmoid", dtype="float32", name="abnormal")(x)
    model = keras.Model([ids, image], out, name=name)
    if bn_momentum is not None:
        set_bn_momentum(model, bn_momentum)
    copy_submodel_weights(model, text_model, image_model)
    return model


def copy_submodel_weights(model: keras.Model, text_model: keras.Model, image_model: keras.Model) -> None:
    """The multimodal's text layers, encoder and image features from the trained submodels (the decoder is left as is)."""
    for layer_name in text_layer_names(text_model):
        model.get_layer(layer_name).set_weights(text_model.get_layer(layer_name).get_weights())
    if not on_features(image_model):
        encoder_of(model).set_weights(encoder_of(image_model).get_weights())
    model.get_layer(IMAGE_FEATURES).set_weights(image_model.get_layer(IMAGE_FEATURES).get_weights())


def on_features(image_model: keras.Model) -> bool:
    """True for an image model that takes pooled encoder features (n, width) rather than images."""
    return len(image_model.inputs[0].shape) == 2


def feature_widths(model: keras.Model) -> dict[str, int]:
    """Widths of the text, image and concatenated features (the concatenation is their sum)."""
    return {key: int(model.get_layer(layer).output.shape[-1]) for key, layer in
            (("text", TEXT_FEATURES), ("image", IMAGE_FEATURES), ("concatenated", "concatenated"))}
