"""Integrated gradients (Sundararajan et al. 2017), backend-free.

IG_i(x) = (x_i - x'_i) * integral_0^1 dF(x' + a (x - x')) / dx_i da.  The integral is a quadrature:

- ``riemann_left``: alphas k/m for k = 0..m-1, weights 1/m (what the authors' code did);
- ``trapezoid``: alphas k/m for k = 0..m (m + 1 points), weights 1/m, halved at both ends;
- ``midpoint``: alphas (k + 1/2)/m for k = 0..m-1, weights 1/m (second order like the trapezoid, and never
  evaluates the gradient at the baseline or the input, where it may be infinite: e.g. sqrt at a zero baseline);
- ``gauss_legendre``: the m Gauss-Legendre nodes mapped to [0, 1] (exact for polynomial paths of
  degree 2m - 1, so it needs far fewer model evaluations for the same completeness error).

One entry point, ``integrated_gradients``, takes a batch of examples (a single example is a batch of one) and
returns one batched ``Attribution``; ``gradients`` is the plain gradient (saliency) of a batch. Only this module
knows about rules, batching and the completeness check; the gradients themselves come from one small module per
Keras backend (``gradients_tensorflow``, ``gradients_jax``), imported lazily so that importing this module never
imports TensorFlow or JAX. Their traced functions live in this module's one cache, per model.

Text is attributed at the embedding output (token ids are discrete): ``split_at_embedding`` cuts a
functional model into ids -> embeddings and embeddings -> output, and ``attribute_text`` runs IG (or the
plain gradient the authors used) on the second part.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from replication.errors import ParameterError

RULES = ("gauss_legendre", "trapezoid", "midpoint", "riemann_left")
# The defaults meet the completeness target (relative delta < 1%) on the trained image model; the numbers
# are in results/default/localisation/localisation.md (completeness table, and the stage's maps at these
# defaults). ReLU kinks make the path integrand rough, so Gauss-Legendre's fast convergence on smooth models
# (docs/PERFORMANCE.md) is lost there; at 256 points every rule is below 1% in median. The midpoint rule is the
# one with every image of that table below 1% at 256, and it never evaluates the gradient at the ends of the path.
DEFAULT_RULE = "midpoint"
DEFAULT_STEPS = 256
# Path points per call: a memory bound (activations for the backward pass grow with it). 64 holds the 50 steps of
# the benchmarks (plus the path's end) in one call at every size measured, where fewer calls cost less per-call
# overhead; the times and peak memory by batch size are in docs/PERFORMANCE.md.
DEFAULT_BATCH_SIZE = 64
TINY = 1e-12  # floor of |F(x) - F(baseline)| in the relative completeness delta


# --------------------------------------------------------------------------------------------- rules
def interpolation(rule: str, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Alphas in [0, 1] and their weights (summing to 1) for one quadrature rule with `steps` intervals/nodes.

    ``trapezoid`` evaluates the model `steps + 1` times, the others `steps` times.
    """
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ParameterError("steps", steps, "an integer >= 1")
    steps = int(steps)
    if rule == "riemann_left":
        alphas = np.arange(steps, dtype=np.float64) / steps
        weights = np.full(steps, 1.0 / steps)
    elif rule == "midpoint":
        alphas = (np.arange(steps, dtype=np.float64) + 0.5) / steps
        weights = np.full(steps, 1.0 / steps)
    elif rule == "trapezoid":
        alphas = np.arange(steps + 1, dtype=np.float64) / steps
        weights = np.full(steps + 1, 1.0 / steps)
        weights[[0, -1]] = 0.5 / steps
    elif rule == "gauss_legendre":
        nodes, w = np.polynomial.legendre.leggauss(steps)
        alphas, weights = (nodes + 1.0) / 2.0, w / 2.0
    else:
        raise ParameterError("rule", rule, f"one of {list(RULES)}")
    return alphas, weights


# --------------------------------------------------------------------------------------------- result
@dataclass(eq=False)
class Attribution:
    """IG of a batch of E examples for one output unit: one (E, ...) attribution array per model input, and how
    well each example satisfies completeness.

    ``delta[e]`` = |sum of example e's attributions - (F(x) - F(baseline))|: zero for exact IG, so it measures the
    quadrature error; ``relative_delta`` divides it by max(|F(x) - F(baseline)|, 1e-12). ``model_evaluations``
    counts the path points per example.
    """

    attributions: list[np.ndarray]
    delta: np.ndarray
    relative_delta: np.ndarray
    prediction: np.ndarray
    baseline_prediction: np.ndarray
    steps: int
    rule: str
    model_evaluations: int
    output_index: int = 0

    @property
    def attribution(self) -> np.ndarray:
        """The attributions of a single-input model (the first input's otherwise), (E, ...)."""
        return self.attributions[0]

    @property
    def total(self) -> np.ndarray:
        """Sum of each example's attributions over every input (≈ F(x) - F(baseline)), (E,)."""
        return np.array([sum(float(np.sum(a[e])) for a in self.attributions) for e in range(len(self))])

    def __len__(self) -> int:
        return len(self.delta)


# --------------------------------------------------------------------------------------------- the cache
# One cache, per model and weakly keyed (it goes with the model): the backend's traced functions (one pair per
# input signature and mode, shared by every output unit, so attributing each of ChestX-ray14's 14 findings traces
# the network's gradient once) and the embedding splits of text models (the head must stay the same object for
# its traced functions to be reused).
_CACHE: "weakref.WeakKeyDictionary[Any, dict]" = weakref.WeakKeyDictionary()


def _cached(model: Any, key: tuple, build: Callable[[], Any]) -> Any:
    try:
        per_model = _CACHE.setdefault(model, {})
    except TypeError:  # not weak-referenceable: no cache
        per_model = {}
    if key not in per_model:
        per_model[key] = build()
    return per_model[key]


def _backend_module():
    import keras  # lazily: importing keras imports its backend

    backend = keras.backend.backend()
    if backend == "tensorflow":
        from replication.explain import gradients_tensorflow as module
    elif backend == "jax":
        from replication.explain import gradients_jax as module
    else:
        raise ParameterError("KERAS_BACKEND", backend, "'tensorflow' or 'jax' (no gradient module for this backend)")
    return module


def _functions(model: Any, specs: tuple, compiled: bool, jit_compile: bool) -> Callable:
    """The path-gradient function for this model, input specs and mode: traced once, then served from the cache."""
    module = _backend_module()
    return _cached(model, ("gradients", module.__name__, specs, bool(compiled), bool(compiled and jit_compile)),
                   lambda: module.make_functions(model, specs, compiled, jit_compile))


# --------------------------------------------------------------------------------------------- inputs
def _model_specs(model: Any) -> list[tuple[tuple, str]] | None:
    """Per-example shape (without batch) and dtype of each model input, or None if the model has no inputs yet."""
    try:
        tensors = model.inputs
    except (AttributeError, ValueError):
        return None
    if not tensors:
        return None
    return [(tuple(t.shape[1:]), str(t.dtype)) for t in tensors]


def _as_list(x: Any) -> list:
    return list(x) if isinstance(x, (list, tuple)) else [x]


def _check_finite(name: str, arrays: list[np.ndarray]) -> None:
    for i, a in enumerate(arrays):
        if not np.all(np.isfinite(a)):
            where = name if len(arrays) == 1 else f"{name}[{i}]"
            raise ParameterError(where, f"array with {int(np.sum(~np.isfinite(a)))} NaN/inf values", "finite values")


def _prepare(model: Any, inputs: Any) -> tuple[list[np.ndarray], tuple]:
    """A batch of examples as (E, ...) arrays per input (batch first, a single example is a batch of one), and
    the specs key of the cache."""
    specs = _model_specs(model)
    if specs is not None and len(specs) == 1 and isinstance(inputs, (list, tuple)) and len(inputs) != 1:
        inputs = [inputs]  # a plain list of examples for a single-input model is one array
    arrays = [np.asarray(a) for a in _as_list(inputs)]
    if specs is not None and len(specs) != len(arrays):
        raise ParameterError("inputs", f"{len(arrays)} array(s)", f"{len(specs)} array(s), one per model input")
    for i, a in enumerate(arrays):
        rank = None if specs is None else len(specs[i][0])
        if (rank is not None and a.ndim != rank + 1) or a.ndim == 0:
            raise ParameterError("inputs" if len(arrays) == 1 else f"inputs[{i}]", a.shape,
                                 f"a batch of examples{'' if rank is None else f' of rank {rank + 1}'} (batch first; "
                                 "one example is a batch of one: x[None])")
    if len({a.shape[0] for a in arrays}) != 1:
        raise ParameterError("inputs", [a.shape for a in arrays], "the same number of examples in every input")
    dtypes = [specs[i][1] if specs is not None else "float32" for i in range(len(arrays))]
    for i, d in enumerate(dtypes):
        if "int" in d or "bool" in d:
            raise ParameterError("inputs" if len(arrays) == 1 else f"inputs[{i}]", d, "a floating input; integer inputs "
                                 "(token ids) are attributed at the embedding output: use split_at_embedding / attribute_text")
    xs = [np.ascontiguousarray(a, dtype=d) for a, d in zip(arrays, dtypes)]
    _check_finite("inputs", xs)
    return xs, tuple((x.shape[1:], d) for x, d in zip(xs, dtypes))


def _prepare_baseline(baseline: Any, xs: list[np.ndarray]) -> list[np.ndarray]:
    """Zeros by default; else one example's baseline (shared by the batch) or one per example, per input."""
    if baseline is None:
        return [np.zeros_like(x) for x in xs]
    parts = _as_list(baseline) if len(xs) > 1 else [baseline]
    if len(parts) != len(xs):
        raise ParameterError("baseline", f"{len(parts)} array(s)", f"{len(xs)} array(s), one per model input")
    out = []
    for i, (b, x) in enumerate(zip(parts, xs)):
        b = np.asarray(b, dtype=x.dtype)
        try:
            b = np.broadcast_to(b, x.shape) if b.ndim == x.ndim else np.broadcast_to(b, x.shape[1:])[None].repeat(x.shape[0], 0)
        except ValueError:
            name = "baseline" if len(xs) == 1 else f"baseline[{i}]"
            raise ParameterError(name, b.shape, f"an array broadcastable to the input's shape {x.shape[1:]}") from None
        out.append(np.ascontiguousarray(b))
    _check_finite("baseline", out)
    return out


def _check_integer(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ParameterError(name, value, f"an integer >= {minimum}")


# --------------------------------------------------------------------------------------------- core
def _chunks(total: int, batch_size: int) -> list[tuple[int, int]]:
    """`total` rows in the fewest calls of at most `batch_size`, balanced (50 rows by 32: 25 + 25, not 32 + 18)."""
    n = -(-total // batch_size)
    bounds = [round(i * total / n) for i in range(n + 1)]
    return list(zip(bounds[:-1], bounds[1:]))


def _run(model: Any, xs: list[np.ndarray], bs: list[np.ndarray], key: tuple, output_index: int,
         alphas: np.ndarray, weights: np.ndarray, batch_size: int, compiled: bool, jit_compile: bool, ends: bool):
    """Weighted path-gradient sums per example, and (with `ends`) F(x) and F(baseline).

    Every example's rows are its path points, then (where the rule does not evaluate them already) alpha = 1 and
    alpha = 0 with zero weight: F(x) and F(baseline) come from the same calls instead of separate forward passes.
    The rows of consecutive examples share calls of at most `batch_size`, so small `steps` still fill them.
    """
    path = _functions(model, key, compiled, jit_compile)
    n_examples = xs[0].shape[0]
    row_alphas, row_weights = list(alphas), list(weights)
    at = {}  # alpha (0 or 1) -> its row within an example
    for a in ((1.0, 0.0) if ends else ()):
        hit = np.flatnonzero(alphas == a)
        if len(hit):
            at[a] = int(hit[0])
        else:
            at[a] = len(row_alphas)
            row_alphas.append(a)
            row_weights.append(0.0)
    row_alphas, row_weights = np.asarray(row_alphas, np.float64), np.asarray(row_weights, np.float64)
    m = len(row_alphas)
    sums = [np.zeros(x.shape, dtype=np.float64) for x in xs]
    values = np.empty(n_examples * m, dtype=np.float64)
    for start, stop in _chunks(n_examples * m, batch_size):
        point = np.arange(start, stop)
        example, k = point // m, point % m
        e0, e1 = int(example[0]), int(example[-1]) + 1
        local = (example - e0).astype(np.int32)
        w = np.zeros((e1 - e0, len(point)), dtype=np.float64)
        w[local, np.arange(len(point))] = row_weights[k]
        chunk_values, chunk, units = path([x[e0:e1] for x in xs], [b[e0:e1] for b in bs], row_alphas[k], local, w,
                                          int(output_index))
        if output_index >= units:
            raise ParameterError("output_index", output_index, f"an index below the model's {units} output unit(s)")
        values[start:stop] = chunk_values
        for s, c in zip(sums, chunk):
            s[e0:e1] += c
    values = values.reshape(n_examples, m)
    if not ends:
        return sums, None, None
    fx, fb = values[:, at[1.0]], values[:, at[0.0]]
    for name, f in (("input", fx), ("baseline", fb)):
        if not np.all(np.isfinite(f)):
            raise ValueError(f"the model's output at the {name} is NaN/inf: integrated gradients are undefined there")
    return sums, fx, fb


def integrated_gradients(model: Any, inputs: Any, *, output_index: int = 0, baseline: Any = None, steps: int = DEFAULT_STEPS,
                         rule: str = DEFAULT_RULE, batch_size: int = DEFAULT_BATCH_SIZE, compiled: bool = True,
                         jit_compile: bool = False) -> Attribution:
    """IG of a batch of examples for one output unit of any Keras model (functional or Sequential).

    `inputs`: a batch (leading dim; one example is a batch of one, ``x[None]``), or a list of batches for a
    multi-input model (every input is attributed). `baseline`: zeros by default; one example's baseline (shared)
    or one per example, per input. `output_index` counts the units of the model's output flattened per example
    (several outputs are concatenated). The E x `steps` interpolation points (plus the path's ends where the rule
    does not evaluate them: F(x) and F(baseline) for the completeness delta) run in balanced calls of at most
    `batch_size` points through one compiled function: `batch_size` bounds the memory, which grows with it
    (`compiled=False`: eagerly; `jit_compile=True`: compiled with XLA on TensorFlow; JAX always uses XLA).
    """
    alphas, weights = interpolation(rule, steps)
    _check_integer("batch_size", batch_size, 1)
    _check_integer("output_index", output_index, 0)
    xs, key = _prepare(model, inputs)
    bs = _prepare_baseline(baseline, xs)
    sums, fx, fb = _run(model, xs, bs, key, output_index, alphas, weights, batch_size, compiled, jit_compile, ends=True)
    attributions = [(x.astype(np.float64) - b.astype(np.float64)) * s for x, b, s in zip(xs, bs, sums)]
    if not all(np.all(np.isfinite(a)) for a in attributions):
        raise ValueError("integrated gradients produced NaN/inf attributions: the model's output or gradient "
                         "is not finite somewhere on the path from the baseline to the input")
    totals = np.array([sum(float(np.sum(a[e])) for a in attributions) for e in range(len(fx))])
    change = fx - fb
    delta = np.abs(totals - change)
    relative = delta / np.maximum(np.abs(change), TINY)
    return Attribution(attributions, delta, relative, fx, fb, int(steps), rule, len(alphas), int(output_index))


def gradients(model: Any, inputs: Any, *, output_index: int = 0, batch_size: int = DEFAULT_BATCH_SIZE, compiled: bool = True,
              jit_compile: bool = False) -> list[np.ndarray]:
    """Plain gradients dF/dx of a batch of examples (saliency; what the authors used for text), `batch_size` per
    call: one (E, ...) array per model input. The path function at alpha = 1 with weight 1 is exactly the gradient."""
    _check_integer("batch_size", batch_size, 1)
    _check_integer("output_index", output_index, 0)
    xs, key = _prepare(model, inputs)
    zeros = [np.zeros_like(x) for x in xs]
    sums, _, _ = _run(model, xs, zeros, key, output_index, np.ones(1), np.ones(1), batch_size, compiled, jit_compile, ends=False)
    if not all(np.all(np.isfinite(g)) for g in sums):
        raise ValueError("the gradient is NaN/inf at this input")
    return sums


def completeness_table(model: Any, inputs: Any, steps: Sequence[int], rules: Sequence[str] = RULES, *,
                       output_index: int = 0, baseline: Any = None, batch_size: int = DEFAULT_BATCH_SIZE, compiled: bool = True,
                       jit_compile: bool = False) -> list[dict[str, Any]]:
    """Relative completeness delta against steps for each rule, for a batch of examples: how many model
    evaluations a rule needs. One row per rule, steps and example (its `example` index)."""
    rows = []
    for rule in rules:
        for m in steps:
            r = integrated_gradients(model, inputs, output_index=output_index, baseline=baseline, steps=m, rule=rule,
                                     batch_size=batch_size, compiled=compiled, jit_compile=jit_compile)
            rows += [{"example": e, "rule": rule, "steps": int(m), "model_evaluations": r.model_evaluations,
                      "delta": float(r.delta[e]), "relative_delta": float(r.relative_delta[e])} for e in range(len(r))]
    return rows


def evaluations_to_reach(rows: list[dict[str, Any]], relative_delta: float) -> dict[str, int | None]:
    """Fewest model evaluations at which each rule's relative delta falls below `relative_delta` (None: never)."""
    best: dict[str, int | None] = {}
    for row in rows:
        best.setdefault(row["rule"], None)
        if row["relative_delta"] < relative_delta:
            current = best[row["rule"]]
            best[row["rule"]] = row["model_evaluations"] if current is None else min(current, row["model_evaluations"])
    return best


# --------------------------------------------------------------------------------------------- text
@dataclass(eq=False)
class EmbeddingSplit:
    """A model cut at its embedding: ``head(inputs with embed(ids) in place of ids) == model(inputs)``."""

    embed: Any
    head: Any
    text_input_index: int
    layer_name: str


def split_at_embedding(model: Any, embedding_layer_name: str | None = None) -> tuple[Any, Any]:
    """Cut a functional Keras model whose token-id input goes through an Embedding into (embed_fn, head_model).

    embed_fn: ids -> embeddings (a Keras model on that one input). head_model: the model's inputs in the same
    order with the ids replaced by the embedded text ([image, embedded text] for the multimodal), sharing the
    original layers and weights. The Embedding is found by type when it is the model's only one, else by name.
    """
    split = _split(model, embedding_layer_name)
    return split.embed, split.head


def _split(model: Any, embedding_layer_name: str | None) -> EmbeddingSplit:
    return _cached(model, ("embedding split", embedding_layer_name), lambda: _build_split(model, embedding_layer_name))


def _build_split(model: Any, embedding_layer_name: str | None) -> EmbeddingSplit:
    import keras

    if embedding_layer_name is None:
        found = [layer for layer in model.layers if isinstance(layer, keras.layers.Embedding)]
        nested = [layer.name for layer in model.layers if isinstance(layer, keras.Model)
                  and any(isinstance(s, keras.layers.Embedding) for s in layer._flatten_layers())]
        if len(found) != 1:
            hint = f"; embeddings inside nested submodels {nested} are not supported: build the model with the text layers at its top level" if nested else ""
            raise ParameterError("embedding_layer_name", None,
                                 f"the name of the embedding layer (the model has {len(found)} top-level Embedding layers{hint})")
        layer = found[0]
    else:
        try:
            layer = model.get_layer(embedding_layer_name)
        except ValueError:
            raise ParameterError("embedding_layer_name", embedding_layer_name,
                                 f"a layer of the model ({[l.name for l in model.layers]})") from None
    if getattr(layer, "mask_zero", False):
        raise ParameterError("embedding_layer_name", layer.name, "an Embedding without mask_zero (the head cannot "
                             "rebuild the padding mask from embeddings)")
    if len(getattr(layer, "_inbound_nodes", [])) != 1:
        raise ParameterError("embedding_layer_name", layer.name, "a layer called exactly once in the model")
    inputs, embedded = list(model.inputs), layer.output
    text_index = None
    for i, tensor in enumerate(inputs):
        try:
            embed = keras.Model(tensor, embedded, name=f"{model.name}_embed")
        except ValueError:
            continue
        text_index = i
        break
    if text_index is None:
        raise ParameterError("embedding_layer_name", layer.name, "a layer fed by exactly one model input")
    head_inputs = inputs[:text_index] + [embedded] + inputs[text_index + 1:]
    outputs = model.outputs if len(model.outputs) > 1 else model.outputs[0]
    try:
        head = keras.Model(head_inputs if len(head_inputs) > 1 else head_inputs[0], outputs, name=f"{model.name}_head")
    except ValueError as error:
        raise ParameterError("embedding_layer_name", layer.name,
                             f"an embedding whose ids input reaches the output only through it ({error})") from None
    return EmbeddingSplit(embed, head, text_index, layer.name)


@dataclass(eq=False)
class TextAttribution:
    """Per-token scores at the embedding output of a batch of reports, (E, seq_len, dim); ``word_scores`` takes one
    report's row.

    ``method`` is "integrated_gradients" (``attribution`` holds the head's full IG, every input) or
    "gradients" (the authors' choice: dF/d embedding; ``other`` holds the other inputs' gradients).
    """

    token_ids: np.ndarray
    embedding_scores: np.ndarray
    method: str
    text_input_index: int
    attribution: Attribution | None
    other: list[np.ndarray]


def attribute_text(model: Any, token_ids: Any, *, other_inputs: Any = None, output_index: int = 0,
                   method: str = "integrated_gradients", baseline: Any = None, steps: int = DEFAULT_STEPS,
                   rule: str = DEFAULT_RULE, batch_size: int = DEFAULT_BATCH_SIZE, compiled: bool = True,
                   jit_compile: bool = False, embedding_layer_name: str | None = None) -> TextAttribution:
    """Explain a batch of reports: IG (or the plain gradient) of the model cut at its embedding, w.r.t. the
    embedded text.

    `token_ids`: (E, seq_len) (one report is a batch of one). `other_inputs`: the model's other inputs for these
    examples, in model order, batch first (the images of the multimodal). `baseline`: for the head's inputs
    (embedded text included); zeros by default (a zero embedding, like the padding row).
    """
    if method not in ("integrated_gradients", "gradients"):
        raise ParameterError("method", method, "'integrated_gradients' or 'gradients'")
    split = _split(model, embedding_layer_name)
    ids = np.asarray(token_ids)
    if ids.ndim != 2:
        raise ParameterError("token_ids", ids.shape, "a batch of sequences (E, seq_len); one report is a batch of one")
    embedded = _to_numpy(split.embed(ids.astype(str(split.embed.inputs[0].dtype)), training=False))
    others = [] if other_inputs is None else [np.asarray(a) for a in _as_list(other_inputs)]
    if len(others) != len(split.head.inputs) - 1:
        raise ParameterError("other_inputs", f"{len(others)} array(s)", f"{len(split.head.inputs) - 1} array(s): the model's non-text inputs")
    head_inputs = others[:split.text_input_index] + [embedded] + others[split.text_input_index:]
    head_inputs = head_inputs if len(head_inputs) > 1 else head_inputs[0]
    i = split.text_input_index
    if method == "gradients":
        grads = gradients(split.head, head_inputs, output_index=output_index, batch_size=batch_size, compiled=compiled,
                          jit_compile=jit_compile)
        return TextAttribution(ids, grads[i], method, i, None, grads[:i] + grads[i + 1:])
    result = integrated_gradients(split.head, head_inputs, output_index=output_index, baseline=baseline,
                                  steps=steps, rule=rule, batch_size=batch_size, compiled=compiled, jit_compile=jit_compile)
    parts = result.attributions
    return TextAttribution(ids, parts[i], method, i, result, parts[:i] + parts[i + 1:])


def _to_numpy(tensor: Any) -> np.ndarray:
    import keras

    return np.asarray(keras.ops.convert_to_numpy(tensor))


__all__ = ["RULES", "DEFAULT_RULE", "DEFAULT_STEPS", "Attribution", "TextAttribution", "interpolation", "integrated_gradients",
           "gradients", "completeness_table", "evaluations_to_reach", "split_at_embedding", "attribute_text"]
