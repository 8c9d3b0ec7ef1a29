"""Gradients of one output unit on the JAX backend: ``jax.vmap(jax.value_and_grad(...))`` over ``stateless_call``.

Same contract as ``gradients_tensorflow.make_functions`` (the output unit a runtime argument: one compilation serves
every unit; rows with zero weight contribute their values only). The model's variables are passed to the jitted
function as arguments (read afresh on each call), so later weight updates are seen without retracing. Batches are
padded to a power of two (repeats of the last point, zero weight) so ``jax.jit`` compiles a few shapes only.
``compiled=True`` is always XLA (``jax.jit``) here: ``jit_compile`` changes nothing on this backend.
"""

from __future__ import annotations

import weakref
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np


def _flatten_outputs(y: Any) -> Any:
    if isinstance(y, dict):
        y = [y[k] for k in sorted(y)]
    if isinstance(y, (list, tuple)):
        return jnp.concatenate([jnp.reshape(t, (t.shape[0], -1)) for t in y], axis=1)
    return jnp.reshape(y, (y.shape[0], -1))


def _pad_length(n: int) -> int:
    return 1 << max(0, int(n - 1).bit_length())


def make_functions(model: Any, specs: tuple, compiled: bool, jit_compile: bool = False) -> Callable:
    """The path-gradient function for `model` (see the TensorFlow module for the contract)."""
    del jit_compile  # jax.jit is XLA already
    ref = weakref.ref(model)
    single = len(specs) == 1

    def call(trainable, non_trainable, xs):
        y, _ = ref().stateless_call(trainable, non_trainable, xs[0] if single else list(xs), training=False)
        return _flatten_outputs(y)

    def output_unit(trainable, non_trainable, point, unit):  # one point, no batch dim -> (scalar, units)
        outputs = call(trainable, non_trainable, [p[None] for p in point])
        return outputs[0, jnp.minimum(unit, outputs.shape[1] - 1)], jnp.asarray(outputs.shape[1], jnp.int32)

    value_and_grad = jax.vmap(jax.value_and_grad(output_unit, argnums=2, has_aux=True), in_axes=(None, None, 0, None))

    def path(trainable, non_trainable, xs, bs, alphas, example, weights, unit):
        points = []
        for x, b in zip(xs, bs):
            a = jnp.reshape(alphas.astype(x.dtype), (-1,) + (1,) * (x.ndim - 1))
            points.append(jnp.where(a == 1, x[example], b[example] + a * (x[example] - b[example])))
        (values, units), grads = value_and_grad(trainable, non_trainable, points, unit)
        used = jnp.any(weights != 0, axis=0)
        sums = [jnp.tensordot(weights.astype(g.dtype), jnp.where(jnp.reshape(used, (-1,) + (1,) * (g.ndim - 1)), g, 0), axes=1)
                for g in grads]
        return values, sums, units

    path_fn = jax.jit(path) if compiled else path

    def variables():
        m = ref()
        return [v.value for v in m.trainable_variables], [v.value for v in m.non_trainable_variables]

    def path_np(xs, bs, alphas, example, weights, unit: int):
        n = len(alphas)
        size = _pad_length(n)
        # padding repeats the last real point with zero weight: masked like the ends of the path
        alphas = np.concatenate([alphas, np.full(size - n, alphas[-1])])
        example = np.concatenate([example, np.full(size - n, example[-1])]).astype(np.int32)
        weights = np.concatenate([weights, np.zeros((weights.shape[0], size - n))], axis=1)
        trainable, non_trainable = variables()
        values, sums, units = path_fn(trainable, non_trainable, [jnp.asarray(x) for x in xs], [jnp.asarray(b) for b in bs],
                                      jnp.asarray(alphas), jnp.asarray(example), jnp.asarray(weights), jnp.int32(unit))
        return np.asarray(values)[:n], [np.asarray(s) for s in sums], int(np.asarray(units).reshape(-1)[0])

    return path_np
