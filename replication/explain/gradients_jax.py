"""Gradients of one output unit on the JAX backend: ``jax.vmap(jax.value_and_grad(...))`` over ``stateless_call``.

Same contract as ``gradients_tensorflow.make_functions`` (the output unit a runtime argument: one compilation serves
every unit). The model's variables are passed to the jitted function as arguments (read afresh on each call), so
later weight updates are seen without retracing. Batches are padded to a power of two (repeats of the last point,
zero weight) so ``jax.jit`` compiles a few shapes only.
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


def make_functions(model: Any, specs: tuple, compiled: bool) -> tuple[Callable, Callable]:
    """Forward and path-gradient functions for `model` (see the TensorFlow module for the contract)."""
    ref = weakref.ref(model)
    single = len(specs) == 1

    def call(trainable, non_trainable, xs):
        y, _ = ref().stateless_call(trainable, non_trainable, xs[0] if single else list(xs), training=False)
        return _flatten_outputs(y)

    def output_unit(trainable, non_trainable, point, unit):  # one point, no batch dim -> scalar
        return call(trainable, non_trainable, [p[None] for p in point])[0, unit]

    value_and_grad = jax.vmap(jax.value_and_grad(output_unit, argnums=2), in_axes=(None, None, 0, None))

    def path(trainable, non_trainable, xs, bs, alphas, example, weights, unit):
        points = []
        for x, b in zip(xs, bs):
            a = jnp.reshape(alphas.astype(x.dtype), (-1,) + (1,) * (x.ndim - 1))
            points.append(b[example] + a * (x[example] - b[example]))
        values, grads = value_and_grad(trainable, non_trainable, points, unit)
        sums = [jnp.tensordot(weights.astype(g.dtype), g, axes=1) for g in grads]
        return values, sums

    if compiled:
        call_fn, path_fn = jax.jit(call), jax.jit(path)
    else:
        call_fn, path_fn = call, path

    def variables():
        m = ref()
        return [v.value for v in m.trainable_variables], [v.value for v in m.non_trainable_variables]

    def forward_np(xs: list[np.ndarray]) -> np.ndarray:
        trainable, non_trainable = variables()
        return np.asarray(call_fn(trainable, non_trainable, [jnp.asarray(x) for x in xs]))

    def path_np(xs, bs, alphas, example, weights, unit: int):
        n = len(alphas)
        size = _pad_length(n)
        # padding repeats the last real point (zero weight): no new place where the gradient could be inf
        alphas = np.concatenate([alphas, np.full(size - n, alphas[-1])])
        example = np.concatenate([example, np.full(size - n, example[-1])]).astype(np.int32)
        weights = np.concatenate([weights, np.zeros((weights.shape[0], size - n))], axis=1)
        trainable, non_trainable = variables()
        values, sums = path_fn(trainable, non_trainable, [jnp.asarray(x) for x in xs], [jnp.asarray(b) for b in bs],
                               jnp.asarray(alphas), jnp.asarray(example), jnp.asarray(weights), jnp.int32(unit))
        return np.asarray(values)[:n], [np.asarray(s) for s in sums]

    return forward_np, path_np
