"""Gradients of one output unit on the TensorFlow backend: a GradientTape inside a `tf.function`.

``make_functions`` returns ``path(xs, baselines, alphas, example, weights, unit) -> (values (B,), sums, units)``:
it builds the B interpolation points ``b[example] + alpha * (x[example] - b[example])`` inside the graph (alpha = 1
gives x itself), takes d output_unit / d point for all of them with one tape, and returns ``weights @ gradients``
(E, ...) per input, so only E arrays come back; ``units`` is the model's number of output units (the unit index is
clamped inside the graph and checked by the caller). Rows whose weights are all zero (the ends of the path that
``attribution`` adds to read F(x) and F(baseline) from the same call) only contribute their values: their gradient
is masked out, so an infinite gradient there cannot turn the sums into NaN.

``compiled=True`` traces one graph per input signature with a free batch dim: chunks of any size and any number of
examples reuse it (a static batch dim was no faster within the noise, and every new chunk size would retrace the
network's gradient, seconds each). ``jit_compile=True`` compiles that graph with XLA (measured, not the default:
docs/PERFORMANCE.md). ``compiled=False`` runs the same code eagerly. The output unit is a runtime argument, so one
trace serves every unit; ``attribution`` caches the function per model.
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


def make_functions(model: Any, specs: tuple, compiled: bool, jit_compile: bool = False) -> Callable:
    """The path-gradient function for `model`; `specs` = ((per-example shape, dtype), ...) per input."""
    ref = weakref.ref(model)  # the cache keyed on the model must not keep it alive
    single = len(specs) == 1

    def path(xs, bs, alphas, example, weights, unit):
        points = []
        for x, b in zip(xs, bs):
            xg, bg = tf.gather(x, example), tf.gather(b, example)
            a = tf.reshape(tf.cast(alphas, x.dtype), [-1] + [1] * (len(x.shape) - 1))
            points.append(tf.where(a == 1, xg, bg + a * (xg - bg)))
        with tf.GradientTape() as tape:
            tape.watch(points)
            outputs = _flatten_outputs(ref()(points[0] if single else points, training=False))
            units = tf.shape(outputs)[1]
            values = tf.gather(outputs, tf.minimum(unit, units - 1), axis=1)
            total = tf.reduce_sum(values)
        grads = tape.gradient(total, points, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        used = tf.reduce_any(weights != 0, axis=0)
        sums = []
        for g in grads:
            mask = tf.reshape(used, [-1] + [1] * (len(g.shape) - 1))
            sums.append(tf.tensordot(tf.cast(weights, g.dtype), tf.where(mask, g, tf.zeros_like(g)), axes=1))
        return values, sums, units

    if compiled:
        xs_spec = [tf.TensorSpec((None,) + tuple(shape), tf.as_dtype(dtype)) for shape, dtype in specs]
        path = tf.function(path, jit_compile=bool(jit_compile),
                           input_signature=[xs_spec, xs_spec, tf.TensorSpec([None], tf.float64), tf.TensorSpec([None], tf.int32),
                                            tf.TensorSpec([None, None], tf.float64), tf.TensorSpec([], tf.int32)])

    def path_np(xs, bs, alphas, example, weights, unit: int):
        values, sums, units = path([tf.convert_to_tensor(x) for x in xs], [tf.convert_to_tensor(b) for b in bs],
                                   tf.convert_to_tensor(alphas, tf.float64), tf.convert_to_tensor(example, tf.int32),
                                   tf.convert_to_tensor(weights, tf.float64), tf.constant(int(unit), tf.int32))
        return values.numpy(), [s.numpy() for s in sums], int(units)

    return path_np
