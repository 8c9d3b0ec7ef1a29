"""Gradients of one output unit on the TensorFlow backend: a GradientTape inside a `tf.function`.

``make_functions`` returns ``(forward, path)``:

- ``forward(xs) -> (E, units)``: the model's outputs flattened per example;
- ``path(xs, baselines, alphas, example, weights, unit) -> (values (B,), sums)``: builds the B interpolation points
  ``b[example] + alpha * (x[example] - b[example])`` inside the graph, takes d output_unit / d point for all of
  them with one tape, and returns ``weights @ gradients`` (E, ...) per input, so only E arrays come back.

``compiled=True`` traces one graph per input signature with a free batch dim (no retracing for the last,
smaller batch); ``compiled=False`` runs the same code eagerly (the benchmark's comparison). The output unit is a
runtime argument, so one trace serves every unit; ``attribution`` caches the pair per model.
"""

from __future__ import annotations

import weakref
from typing import Any, Callable

import numpy as np
import tensorflow as tf


def _flatten_outputs(y: Any) -> tf.Tensor:
    """Per-example outputs as (B, units); several outputs (list/dict) are concatenated in order."""
    if isinstance(y, dict):
        y = [y[k] for k in sorted(y)]
    if isinstance(y, (list, tuple)):
        parts = [tf.reshape(t, [tf.shape(t)[0], -1]) for t in y]
        return tf.concat(parts, axis=1)
    return tf.reshape(y, [tf.shape(y)[0], -1])


def make_functions(model: Any, specs: tuple, compiled: bool) -> tuple[Callable, Callable]:
    """Forward and path-gradient functions for `model`; `specs` = ((per-example shape, dtype), ...) per input."""
    ref = weakref.ref(model)  # the cache keyed on the model must not keep it alive
    single = len(specs) == 1

    def call(xs):
        y = ref()(xs[0] if single else list(xs), training=False)
        return _flatten_outputs(y)

    def forward(xs):
        return call(xs)

    def path(xs, bs, alphas, example, weights, unit):
        points = []
        for x, b in zip(xs, bs):
            xg, bg = tf.gather(x, example), tf.gather(b, example)
            a = tf.reshape(tf.cast(alphas, x.dtype), [-1] + [1] * (len(x.shape) - 1))
            points.append(bg + a * (xg - bg))
        with tf.GradientTape() as tape:
            tape.watch(points)
            values = tf.gather(call(points), unit, axis=1)
            total = tf.reduce_sum(values)
        grads = tape.gradient(total, points, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        sums = [tf.tensordot(tf.cast(weights, g.dtype), g, axes=1) for g in grads]
        return values, sums

    if compiled:
        xs_spec = [tf.TensorSpec((None,) + tuple(shape), tf.as_dtype(dtype)) for shape, dtype in specs]
        forward = tf.function(forward, input_signature=[xs_spec])
        path = tf.function(path, input_signature=[xs_spec, xs_spec, tf.TensorSpec([None], tf.float64), tf.TensorSpec([None], tf.int32),
                                                  tf.TensorSpec([None, None], tf.float64), tf.TensorSpec([], tf.int32)])

    def forward_np(xs: list[np.ndarray]) -> np.ndarray:
        return forward([tf.convert_to_tensor(x) for x in xs]).numpy()

    def path_np(xs, bs, alphas, example, weights, unit: int):
        values, sums = path([tf.convert_to_tensor(x) for x in xs], [tf.convert_to_tensor(b) for b in bs],
                            tf.convert_to_tensor(alphas, tf.float64), tf.convert_to_tensor(example, tf.int32),
                            tf.convert_to_tensor(weights, tf.float64), tf.constant(int(unit), tf.int32))
        return values.numpy(), [s.numpy() for s in sums]

    return forward_np, path_np
