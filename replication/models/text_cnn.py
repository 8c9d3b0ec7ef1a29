"""Kim-style 1-D CNN over report tokens (paper section 2.1), and its feature extractor.

Parallel Conv1D channels (kernel sizes 3, 4, 5), ReLU, L2 0.03, max-pool, flatten, concatenate,
dropout 0.5, one sigmoid unit. `pool_size=2` pools pairs as the authors' notebooks did;
`pool_size=None` is Kim's max-over-time pooling.
"""

from __future__ import annotations

from typing import Sequence

import keras
import numpy as np

from replication.errors import ParameterError

FEATURES_LAYER = "text_features"
EMBEDDING_LAYER = "embedding"


def text_branch(
    ids: keras.KerasTensor,
    vocab_size: int,
    embedding_dim: int = 300,
    kernel_sizes: Sequence[int] = (3, 4, 5),
    feature_maps: int = 10,
    l2: float = 0.03,
    pool_size: int | None = 2,
    embedding_matrix: np.ndarray | None = None,
    trainable_embedding: bool = True,
) -> keras.KerasTensor:
    """Token ids → the concatenated CNN channels (layer `text_features`).

    The layers are created at the top level of whatever model uses them, so the multimodal can copy a
    trained text CNN's weights layer by layer and the detection code can split the model at its embedding.
    """
    sequence_length = ids.shape[1]
    if min(kernel_sizes) < 1 or max(kernel_sizes) > sequence_length:
        raise ParameterError("text_cnn.kernel_sizes", list(kernel_sizes), f"sizes in 1..{sequence_length}")
    if feature_maps < 1:
        raise ParameterError("text_cnn.feature_maps", feature_maps, "an integer >= 1")
    if embedding_matrix is not None and embedding_matrix.shape != (vocab_size, embedding_dim):
        raise ParameterError("embedding_matrix", embedding_matrix.shape, f"shape ({vocab_size}, {embedding_dim})")
    initializer = keras.initializers.Constant(embedding_matrix) if embedding_matrix is not None else "uniform"
    embedded = keras.layers.Embedding(vocab_size, embedding_dim, embeddings_initializer=initializer,
                                      trainable=trainable_embedding, name=EMBEDDING_LAYER)(ids)
    channels = []
    for k in kernel_sizes:
        x = keras.layers.Conv1D(feature_maps, k, activation="relu", kernel_regularizer=keras.regularizers.L2(l2), name=f"conv_{k}")(embedded)
        x = keras.layers.GlobalMaxPooling1D(name=f"pool_{k}")(x) if pool_size is None else keras.layers.MaxPooling1D(pool_size, name=f"pool_{k}")(x)
        channels.append(keras.layers.Flatten(name=f"flatten_{k}")(x))
    if len(channels) == 1:
        return keras.layers.Identity(name=FEATURES_LAYER)(channels[0])
    return keras.layers.Concatenate(name=FEATURES_LAYER)(channels)


def text_input(sequence_length: int = 140) -> keras.KerasTensor:
    return keras.Input(shape=(sequence_length,), dtype="int32", name="report_tokens")


def text_cnn(
    vocab_size: int,
    embedding_dim: int = 300,
    sequence_length: int = 140,
    kernel_sizes: Sequence[int] = (3, 4, 5),
    feature_maps: int = 10,
    l2: float = 0.03,
    dropout: float = 0.5,
    pool_size: int | None = 2,
    embedding_matrix: np.ndarray | None = None,
    trainable_embedding: bool = True,
    name: str = "text_cnn",
) -> keras.Model:
    """The text submodel: token ids (sequence_length,) → P(abnormal)."""
    ids = text_input(sequence_length)
    features = text_branch(ids, vocab_size, embedding_dim, kernel_sizes, feature_maps, l2, pool_size, embedding_matrix, trainable_embedding)
    x = keras.layers.Dropout(dropout, name="dropout")(features)
    out = keras.layers.Dense(1, activation="sigmoid", name="abnormal")(x)
    return keras.Model(ids, out, name=name)


def text_features(model: keras.Model) -> keras.Model:
    """Token ids → the concatenated CNN channels: the text half of the multimodal."""
    return keras.Model(model.inputs, model.get_layer(FEATURES_LAYER).output, name=f"{model.name}_features")


def compile_text_cnn(model: keras.Model, learning_rate: float, clipvalue: float = 3.0, optimizer: str = "adadelta") -> keras.Model:
    """Adadelta with clip value 3, as the authors' notebooks; the learning rate is the experiment's."""
    if learning_rate <= 0:
        raise ParameterError("learning_rate", learning_rate, "a positive number")
    optimizers = {"adadelta": keras.optimizers.Adadelta, "adam": keras.optimizers.Adam}
    if optimizer not in optimizers:
        raise ParameterError("text_cnn.optimizer", optimizer, f"one of {sorted(optimizers)}")
    model.compile(optimizer=optimizers[optimizer](learning_rate=learning_rate, clipvalue=clipvalue),
                  loss="binary_crossentropy", metrics=["accuracy"])
    return model
