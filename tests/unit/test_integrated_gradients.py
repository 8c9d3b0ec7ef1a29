"""Integrated gradients against models whose exact IG is known, the quadrature rules, text splitting, backends.

Every call is batched: one example is a batch of one (``x[None]``), and results are per example (``r.delta[0]``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from replication.errors import ParameterError  # noqa: E402
from replication.explain import attribute_text, completeness_table, gradients, integrated_gradients, split_at_embedding  # noqa: E402
from replication.explain import attribution  # noqa: E402
from replication.explain.attribution import DEFAULT_RULE, DEFAULT_STEPS, evaluations_to_reach, interpolation  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
RULES = ("riemann_left", "trapezoid", "midpoint", "gauss_legendre")

if keras.backend.backend() != "tensorflow":  # the in-process tests build TensorFlow-backed models
    pytest.skip(f"these tests run on the TensorFlow backend (KERAS_BACKEND={keras.backend.backend()})", allow_module_level=True)


# --------------------------------------------------------------------------------------------- analytic models
class WeightedSquares(keras.layers.Layer):
    """F(x) = sum_i w_i x_i^2: exact IG from a zero baseline is w_i x_i^2."""

    def __init__(self, w, **kwargs):
        super().__init__(dtype="float64", **kwargs)
        self.w = np.asarray(w, dtype="float64")

    def call(self, x):
        return keras.ops.sum(self.w * x * x, axis=-1, keepdims=True)


class Product(keras.layers.Layer):
    """F(x, y) = sum_i x_i y_i."""

    def __init__(self, **kwargs):
        super().__init__(dtype="float64", **kwargs)

    def call(self, inputs):
        x, y = inputs
        return keras.ops.sum(x * y, axis=-1, keepdims=True)


W = np.array([1.0, 2.0, 3.0, 0.5, -1.5])
X = np.array([0.5, -1.0, 2.0, 0.1, 3.0])


@pytest.fixture(scope="module")
def squares():
    x = keras.Input((5,), dtype="float64")
    return keras.Model(x, WeightedSquares(W)(x))


@pytest.fixture(scope="module")
def product():
    x, y = keras.Input((3,), dtype="float64"), keras.Input((3,), dtype="float64")
    return keras.Model([x, y], Product()([x, y]))


@pytest.fixture(scope="module")
def sigmoid_linear():
    x = keras.Input((4,), dtype="float64")
    dense = keras.layers.Dense(1, activation="sigmoid", dtype="float64")
    model = keras.Model(x, dense(x))
    dense.set_weights([np.array([[1.5], [-2.0], [0.7], [2.5]]), np.array([-0.3])])
    return model


@pytest.fixture(scope="module")
def conv_model():
    """A small nonlinear conv net (tanh, ReLU, sigmoid), fixed seed: the quadrature comparison's model."""
    keras.utils.set_random_seed(0)
    init = keras.initializers.RandomNormal(stddev=0.5, seed=0)
    inp = keras.Input((8, 8, 1))
    h = keras.layers.Conv2D(6, 3, activation="tanh", kernel_initializer=init)(inp)
    h = keras.layers.Conv2D(4, 3, activation="relu", kernel_initializer=keras.initializers.RandomNormal(stddev=0.5, seed=1))(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    out = keras.layers.Dense(1, activation="sigmoid", kernel_initializer=keras.initializers.RandomNormal(stddev=0.5, seed=2))(h)
    return keras.Model(inp, out)


@pytest.fixture(scope="module")
def conv_input():
    return (np.random.default_rng(1).random((8, 8, 1)) * 2).astype("float32")


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


# --------------------------------------------------------------------------------------------- rules
def test_rules_points_and_weights():
    a, w = interpolation("riemann_left", 4)
    assert np.array_equal(a, [0, 0.25, 0.5, 0.75]) and np.allclose(w, 0.25)
    a, w = interpolation("trapezoid", 4)
    assert np.array_equal(a, [0, 0.25, 0.5, 0.75, 1.0]) and np.allclose(w, [0.125, 0.25, 0.25, 0.25, 0.125])
    a, w = interpolation("midpoint", 4)
    assert np.array_equal(a, [0.125, 0.375, 0.625, 0.875]) and np.allclose(w, 0.25)
    for m in (1, 3, 7):
        a, w = interpolation("gauss_legendre", m)
        assert len(a) == m and np.all((a > 0) & (a < 1)) and abs(w.sum() - 1) < 1e-14
        for degree in range(2 * m):  # exact for polynomials of degree <= 2m - 1
            assert abs(np.dot(w, a ** degree) - 1 / (degree + 1)) < 1e-13


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_bad_steps_named(squares, bad):
    with pytest.raises(ParameterError) as err:
        integrated_gradients(squares, X[None], steps=bad)
    assert err.value.name == "steps"


def test_bad_rule_batch_size_output_index_named(squares):
    for kwargs, name in [({"rule": "simpson"}, "rule"), ({"batch_size": 0}, "batch_size"),
                         ({"output_index": 1}, "output_index"), ({"output_index": -1}, "output_index")]:
        with pytest.raises(ParameterError) as err:
            integrated_gradients(squares, X[None], **kwargs)
        assert err.value.name == name, kwargs


# --------------------------------------------------------------------------------------------- exact values
def test_weighted_squares_exact_and_left_riemann_closed_form(squares):
    exact = W * X ** 2
    for rule, steps in [("gauss_legendre", 1), ("gauss_legendre", 3), ("trapezoid", 1), ("trapezoid", 5)]:
        r = integrated_gradients(squares, X[None], steps=steps, rule=rule)
        assert np.max(np.abs(r.attribution[0] - exact) / np.abs(exact)) < 1e-12, (rule, steps)
        assert r.delta[0] < 1e-12 and r.relative_delta[0] < 1e-12
    # left Riemann: sum_k (1/m) 2 w (k/m) x * x = w x^2 (m - 1) / m, so delta = |sum w x^2| / m exactly
    errors = []
    for m in (1, 2, 4, 8, 16, 32):
        r = integrated_gradients(squares, X[None], steps=m, rule="riemann_left")
        assert np.allclose(r.attribution[0], exact * (m - 1) / m, rtol=1e-12, atol=1e-12)
        assert abs(r.delta[0] - abs(exact.sum()) / m) < 1e-12
        assert r.model_evaluations == m
        errors.append(np.max(np.abs(r.attribution[0] - exact)))
    assert all(b < a for a, b in zip(errors, errors[1:]))


def test_left_riemann_is_the_authors_formula(conv_model, conv_input):
    """Authors' code: grads at baseline + (k/m)(x - baseline), k = 0..m-1, averaged, times (x - baseline)."""
    m = 7
    baseline = np.full_like(conv_input, 0.2)
    grads = [gradients(conv_model, (baseline + (k / m) * (conv_input - baseline))[None])[0][0] for k in range(m)]
    theirs = (conv_input - baseline) * np.mean(grads, axis=0)
    ours = integrated_gradients(conv_model, conv_input[None], baseline=baseline, steps=m, rule="riemann_left")
    assert np.allclose(ours.attribution[0], theirs, rtol=1e-5, atol=1e-7)


def test_sigmoid_of_linear_every_rule_converges(sigmoid_linear):
    w, b = np.array([1.5, -2.0, 0.7, 2.5]), -0.3
    x = np.array([0.8, -0.6, 1.2, 0.9])
    s = w @ x
    exact = x * w * (sigmoid(b + s) - sigmoid(b)) / s
    for rule in RULES:
        errors = []
        for m in (2, 4, 8, 16, 32, 64):
            r = integrated_gradients(sigmoid_linear, x[None], steps=m, rule=rule)
            errors.append(np.max(np.abs(r.attribution[0] - exact) / np.abs(exact)))
            assert abs(r.prediction[0] - sigmoid(b + s)) < 1e-12 and abs(r.baseline_prediction[0] - sigmoid(b)) < 1e-12
        assert all(e2 < e1 for e1, e2 in zip(errors, errors[1:]) if e1 > 1e-13), (rule, errors)  # to round-off
        order = {"riemann_left": 2.0, "trapezoid": 4.0, "midpoint": 4.0}.get(rule)  # error ~ 1/m and 1/m^2: halves / quarters
        if order:
            assert abs(errors[-2] / errors[-1] - order) < 0.1 * order, (rule, errors)
        assert errors[-1] < {"riemann_left": 2.5e-2, "trapezoid": 1e-4, "midpoint": 1e-4, "gauss_legendre": 1e-12}[rule], (rule, errors)
    assert np.max(np.abs(integrated_gradients(sigmoid_linear, x[None], steps=8, rule="gauss_legendre").attribution[0] - exact) / np.abs(exact)) < 1e-6


def test_product_of_two_inputs_exact_with_any_baseline(product):
    x, y = np.array([1.0, -2.0, 0.5]), np.array([3.0, 0.5, -4.0])
    r = integrated_gradients(product, [x[None], y[None]], steps=1, rule="gauss_legendre")
    assert np.allclose(r.attributions[0][0], x * y / 2, atol=1e-14) and np.allclose(r.attributions[1][0], x * y / 2, atol=1e-14)
    # baseline (x', y'): IG_x = (x - x')(y + y')/2, IG_y = (y - y')(x + x')/2; they sum to xy - x'y'
    bx, by = np.array([0.2, 0.1, -0.3]), np.array([-1.0, 0.4, 0.6])
    for rule in ("gauss_legendre", "trapezoid"):
        r = integrated_gradients(product, [x[None], y[None]], baseline=[bx, by], steps=2, rule=rule)
        assert np.allclose(r.attributions[0][0], (x - bx) * (y + by) / 2, atol=1e-13)
        assert np.allclose(r.attributions[1][0], (y - by) * (x + bx) / 2, atol=1e-13)
        assert abs(r.total[0] - (x @ y - bx @ by)) < 1e-12 and r.delta[0] < 1e-12
    r = integrated_gradients(product, [x[None], y[None]], baseline=[bx, by], steps=10, rule="riemann_left")
    # the path derivative is linear with slope 2 (x - x')(y - y'): left Riemann misses slope / (2m)
    assert abs(r.delta[0] - abs((x - bx) @ (y - by)) / 10) < 1e-12


def test_completeness_delta_is_what_it_says(conv_model, conv_input):
    r = integrated_gradients(conv_model, conv_input[None], steps=6, rule="riemann_left")
    f_x, f_0 = (float(keras.ops.convert_to_numpy(conv_model(v[None]))[0, 0]) for v in (conv_input, np.zeros_like(conv_input)))
    assert abs(r.prediction[0] - f_x) < 1e-6 and abs(r.baseline_prediction[0] - f_0) < 1e-6
    change = r.prediction[0] - r.baseline_prediction[0]
    assert abs(r.delta[0] - abs(r.attribution[0].sum() - change)) < 1e-9
    assert abs(r.relative_delta[0] - r.delta[0] / abs(change)) < 1e-9
    assert r.attribution.shape == (1,) + conv_input.shape and r.steps == 6 and r.rule == "riemann_left"


def test_gauss_legendre_needs_fewer_evaluations(conv_model, conv_input):
    rows = completeness_table(conv_model, conv_input[None], [2, 4, 8, 16, 32, 64, 128, 256], batch_size=64)
    print("\nrule            steps  evals  relative delta")
    for row in rows:
        print(f"{row['rule']:<15} {row['steps']:>5} {row['model_evaluations']:>6}  {row['relative_delta']:.3e}")
    need = evaluations_to_reach(rows, 0.01)
    print("evaluations to reach 1%:", need)
    assert need["gauss_legendre"] is not None and need["gauss_legendre"] <= 16
    riemann = need["riemann_left"] if need["riemann_left"] is not None else 2 * 256
    assert 2 * need["gauss_legendre"] <= riemann


def test_completeness_table_of_a_batch_is_the_per_example_table(conv_model, conv_input):
    batch = np.stack([conv_input, 0.5 * conv_input])
    rows = completeness_table(conv_model, batch, [4, 16], ["midpoint", "trapezoid"], batch_size=7)
    assert [(r["example"], r["rule"], r["steps"]) for r in rows][:4] == [(0, "midpoint", 4), (1, "midpoint", 4), (0, "midpoint", 16), (1, "midpoint", 16)]
    for r in rows:
        one = completeness_table(conv_model, batch[r["example"]][None], [r["steps"]], [r["rule"]])[0]
        assert one["model_evaluations"] == r["model_evaluations"] and abs(one["relative_delta"] - r["relative_delta"]) < 1e-6


# --------------------------------------------------------------------------------------------- mechanics
def test_compiled_eager_and_batch_size_agree(conv_model, conv_input):
    x = conv_input[None]
    ref = integrated_gradients(conv_model, x, steps=20, batch_size=32)
    eager = integrated_gradients(conv_model, x, steps=20, batch_size=32, compiled=False)
    assert np.allclose(ref.attribution, eager.attribution, rtol=1e-5, atol=1e-7)
    for b in (1, 3, 20, 64):
        other = integrated_gradients(conv_model, x, steps=20, batch_size=b)
        assert np.allclose(ref.attribution, other.attribution, rtol=1e-5, atol=1e-7), b
        assert other.model_evaluations == 20
    g1, g2 = gradients(conv_model, x), gradients(conv_model, x, compiled=False)
    assert np.allclose(g1[0], g2[0], rtol=1e-5, atol=1e-7)


def test_jit_compile_gives_the_same_attributions(conv_model, conv_input):
    """XLA (jit_compile=True) is an option of the same computation: equal attributions, predictions and gradients."""
    batch = np.stack([conv_input, 0.5 * conv_input])
    plain = integrated_gradients(conv_model, batch, steps=12, batch_size=10)
    xla = integrated_gradients(conv_model, batch, steps=12, batch_size=10, jit_compile=True)
    assert np.allclose(plain.attribution, xla.attribution, rtol=1e-5, atol=1e-7)
    assert np.allclose(plain.prediction, xla.prediction, atol=1e-6) and np.allclose(plain.delta, xla.delta, atol=1e-6)
    assert np.allclose(gradients(conv_model, batch)[0], gradients(conv_model, batch, jit_compile=True)[0], rtol=1e-5, atol=1e-7)


def test_ends_of_the_path_are_the_model_at_input_and_baseline(conv_model, conv_input):
    """F(x) and F(baseline) come from the path calls (a zero-weight point where the rule has none): they are the
    model's outputs there, for every rule and a non-zero baseline, and the same call gives the same bits twice."""
    baseline = np.full_like(conv_input, 0.3)
    batch = np.stack([conv_input, conv_input[::-1]])
    fx = np.asarray(conv_model(batch))[:, 0]
    fb = np.asarray(conv_model(baseline[None]))[0, 0]
    for rule in RULES:
        r = integrated_gradients(conv_model, batch, baseline=baseline, steps=5, rule=rule, batch_size=4)
        assert np.allclose(r.prediction, fx, atol=1e-6) and np.allclose(r.baseline_prediction, fb, atol=1e-6), rule
        again = integrated_gradients(conv_model, batch, baseline=baseline, steps=5, rule=rule, batch_size=4)
        assert np.array_equal(r.attribution, again.attribution) and np.array_equal(r.delta, again.delta), rule


def test_calls_are_balanced_and_bounded():
    """The rows go in the fewest calls of at most batch_size, of sizes differing by at most one."""
    assert attribution._chunks(50, 32) == [(0, 25), (25, 50)]
    assert attribution._chunks(51, 64) == [(0, 51)]
    for total, bound in [(258, 64), (816, 64), (7, 1), (100, 33)]:
        sizes = [b - a for a, b in attribution._chunks(total, bound)]
        assert sum(sizes) == total and max(sizes) <= bound and max(sizes) - min(sizes) <= 1
        assert len(sizes) == -(-total // bound)


def test_a_single_example_is_a_batch_of_one(conv_model, conv_input):
    """Each row of a batch's IG (and plain gradient) is that example's IG as a batch of one; an example without its
    batch dim is refused, saying how to make it one."""
    batch = np.stack([conv_input, conv_input[::-1], 0.5 * conv_input])
    many = integrated_gradients(conv_model, batch, steps=10, batch_size=7)  # points of consecutive examples share calls
    assert len(many) == 3 and many.attribution.shape == batch.shape and many.delta.shape == (3,)
    plain = gradients(conv_model, batch, batch_size=2)  # 3 examples over 2 calls
    assert len(plain) == 1 and plain[0].shape == batch.shape
    for e in range(3):
        one = integrated_gradients(conv_model, batch[e:e + 1], steps=10)
        assert len(one) == 1 and one.attribution.shape == (1,) + conv_input.shape
        assert np.allclose(many.attribution[e], one.attribution[0], rtol=1e-5, atol=1e-7)
        for name in ("delta", "relative_delta", "prediction", "baseline_prediction"):
            assert abs(getattr(many, name)[e] - getattr(one, name)[0]) < 1e-6, name
        assert np.allclose(plain[0][e], gradients(conv_model, batch[e:e + 1])[0][0], rtol=1e-5, atol=1e-7)
    for call in (integrated_gradients, gradients):
        with pytest.raises(ParameterError, match=r"x\[None\]") as err:
            call(conv_model, conv_input)
        assert err.value.name == "inputs"
    text = attribute_text(conv_text_model(), TOKENS, method="gradients")
    for e in range(len(TOKENS)):
        alone = attribute_text(conv_text_model(), TOKENS[e:e + 1], method="gradients")
        assert np.allclose(text.embedding_scores[e], alone.embedding_scores[0], rtol=1e-5, atol=1e-7)
    with pytest.raises(ParameterError) as err:
        attribute_text(conv_text_model(), TOKENS[0])
    assert err.value.name == "token_ids"


def test_one_cache_traces_once_for_every_output_unit():
    """Attributing each output unit reuses one traced (forward, path) pair of the model: the unit is an argument."""
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, activation="tanh")])
    x = np.random.default_rng(0).normal(size=(2, 3)).astype("float32")
    for unit in range(4):
        integrated_gradients(model, x, output_index=unit, steps=4)
        gradients(model, x, output_index=unit)
    keys = [k for k in attribution._CACHE[model] if k[0] == "gradients"]
    assert len(keys) == 1, keys
    split_at_embedding(conv_text_model())
    assert [k for k in attribution._CACHE[conv_text_model()] if k[0] == "embedding split"] == [("embedding split", None)]


def test_defaults_are_the_measured_choice(conv_model, conv_input):
    """The defaults are what the completeness measurement on the trained DenseNet chose (attribution.py)."""
    r = integrated_gradients(conv_model, conv_input[None])
    assert (r.rule, r.steps, r.model_evaluations) == (DEFAULT_RULE, DEFAULT_STEPS, DEFAULT_STEPS) == ("midpoint", 256, 256)
    assert r.relative_delta[0] < 0.01


def test_sequential_model_and_output_index():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, activation="tanh")])
    model.layers[0].set_weights([np.array([[1.0, 0.5], [-1.0, 2.0], [0.3, 0.1]], "float32"), np.zeros(2, "float32")])
    x = np.array([0.4, 0.2, -0.5], "float32")
    for unit in (0, 1):
        r = integrated_gradients(model, x[None], output_index=unit, steps=32)
        s = float(model.layers[0].get_weights()[0][:, unit] @ x)
        assert abs(r.prediction[0] - np.tanh(s)) < 1e-6 and r.relative_delta[0] < 1e-4


def test_nan_inputs_and_outputs_are_errors(conv_model, conv_input, squares):
    bad = conv_input.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ParameterError) as err:
        integrated_gradients(conv_model, bad[None])
    assert err.value.name == "inputs"
    with pytest.raises(ParameterError) as err:
        integrated_gradients(conv_model, conv_input[None], baseline=bad)
    assert err.value.name == "baseline"
    x = keras.Input((2,))
    log_model = keras.Model(x, keras.layers.Lambda(lambda t: keras.ops.sum(keras.ops.log(t), axis=-1, keepdims=True))(x))
    with pytest.raises(ValueError, match="output at the input is NaN"):
        integrated_gradients(log_model, np.array([[-1.0, 2.0]], "float32"), steps=4)
    sqrt_model = keras.Model(x, keras.layers.Lambda(lambda t: keras.ops.sum(keras.ops.sqrt(t), axis=-1, keepdims=True))(x))
    with pytest.raises(ValueError, match="NaN/inf attributions"):  # left Riemann evaluates d sqrt at 0: inf
        integrated_gradients(sqrt_model, np.array([[1.0, 2.0]], "float32"), steps=4, rule="riemann_left")
    # the default (midpoint) never evaluates the ends: finite, but slow at an integrable singularity, and the
    # delta says so; Gauss-Legendre's nodes cluster at the ends and converge much faster there
    slow = integrated_gradients(sqrt_model, np.array([[1.0, 2.0]], "float32"))
    assert np.all(np.isfinite(slow.attribution)) and 0.01 < slow.relative_delta[0] < 0.05
    assert integrated_gradients(sqrt_model, np.array([[1.0, 2.0]], "float32"), steps=64, rule="gauss_legendre").relative_delta[0] < 1e-2
    with pytest.raises(ParameterError) as err:
        integrated_gradients(squares, np.zeros((2, 2, 5)))
    assert err.value.name == "inputs"


def test_integer_inputs_point_to_the_embedding(text_model):
    with pytest.raises(ParameterError, match="embedding"):
        integrated_gradients(text_model, np.array([[2, 3, 4, 0, 0, 0, 0, 0]]))


# --------------------------------------------------------------------------------------------- text
SEQ, VOCAB, DIM = 8, 20, 4


@pytest.fixture(scope="module")
def text_model():
    return conv_text_model()


_TEXT_MODEL: list = []


def conv_text_model():
    """The text fixture's model, built once (the single-example test uses it too)."""
    if _TEXT_MODEL:
        return _TEXT_MODEL[0]
    keras.utils.set_random_seed(3)
    ids = keras.Input((SEQ,), dtype="int32")
    e = keras.layers.Embedding(VOCAB, DIM, embeddings_initializer=keras.initializers.RandomUniform(-1, 1, seed=3), name="embedding")(ids)
    h = keras.layers.Conv1D(5, 3, activation="relu")(e)
    h = keras.layers.GlobalMaxPooling1D()(h)
    _TEXT_MODEL.append(keras.Model(ids, keras.layers.Dense(1, activation="sigmoid")(h)))
    return _TEXT_MODEL[0]


@pytest.fixture(scope="module")
def multimodal_model():
    keras.utils.set_random_seed(4)
    image, ids = keras.Input((6, 6, 1), name="image"), keras.Input((SEQ,), dtype="int32", name="ids")
    e = keras.layers.Embedding(VOCAB, DIM, name="words")(ids)
    t = keras.layers.GlobalMaxPooling1D()(keras.layers.Conv1D(3, 2, activation="relu")(e))
    i = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(3, 3, activation="relu")(image))
    out = keras.layers.Dense(1, activation="sigmoid")(keras.layers.Concatenate()([i, t]))
    return keras.Model([image, ids], out)


TOKENS = np.array([[5, 3, 17, 1, 9, 0, 0, 0], [2, 2, 11, 0, 0, 0, 0, 0]], dtype="int32")


def test_split_at_embedding_text_model(text_model):
    embed, head = split_at_embedding(text_model)
    assert np.allclose(head(embed(TOKENS)), text_model(TOKENS), rtol=1e-6, atol=1e-7)
    assert tuple(head.inputs[0].shape[1:]) == (SEQ, DIM)
    seq = keras.Sequential([keras.Input((SEQ,), dtype="int32"), keras.layers.Embedding(VOCAB, DIM),
                            keras.layers.Flatten(), keras.layers.Dense(1)])
    embed2, head2 = split_at_embedding(seq)
    assert np.allclose(head2(embed2(TOKENS)), seq(TOKENS), rtol=1e-6, atol=1e-7)


def test_split_at_embedding_multimodal(multimodal_model):
    embed, head = split_at_embedding(multimodal_model)
    images = np.random.default_rng(0).random((2, 6, 6, 1)).astype("float32")
    assert [tuple(t.shape[1:]) for t in head.inputs] == [(6, 6, 1), (SEQ, DIM)]
    embedded = keras.ops.convert_to_numpy(embed(TOKENS))
    assert np.allclose(head([images, embedded]), multimodal_model([images, TOKENS]), rtol=1e-6, atol=1e-7)
    with pytest.raises(ParameterError) as err:
        split_at_embedding(multimodal_model, "no_such_layer")
    assert err.value.name == "embedding_layer_name"


def test_split_refuses_what_it_cannot_cut():
    ids = keras.Input((SEQ,), dtype="int32")
    masked = keras.Model(ids, keras.layers.GlobalAveragePooling1D()(keras.layers.Embedding(VOCAB, DIM, mask_zero=True)(ids)))
    with pytest.raises(ParameterError, match="mask_zero"):
        split_at_embedding(masked)
    e1, e2 = keras.layers.Embedding(VOCAB, DIM, name="a")(ids), keras.layers.Embedding(VOCAB, DIM, name="b")(ids)
    two = keras.Model(ids, keras.layers.Dense(1)(keras.layers.Flatten()(keras.layers.Add()([e1, e2]))))
    with pytest.raises(ParameterError) as err:
        split_at_embedding(two)
    assert err.value.name == "embedding_layer_name"
    with pytest.raises(ParameterError, match="only through it"):  # the ids also reach the output through "b"
        split_at_embedding(two, "a")


def test_text_ig_completeness(text_model, multimodal_model):
    r = attribute_text(text_model, TOKENS[:1], steps=64)
    assert r.embedding_scores.shape == (1, SEQ, DIM)
    f_x = float(text_model(TOKENS[:1])[0, 0])
    ig = r.attribution
    assert abs(ig.prediction[0] - f_x) < 1e-6
    assert abs(r.embedding_scores.sum() - (ig.prediction[0] - ig.baseline_prediction[0])) == pytest.approx(ig.delta[0], abs=1e-9)
    assert ig.relative_delta[0] < 1e-2
    image = np.random.default_rng(2).random((1, 6, 6, 1)).astype("float32")
    mm = attribute_text(multimodal_model, TOKENS[1:2], other_inputs=[image], steps=64)
    total = mm.embedding_scores.sum() + mm.other[0].sum()
    ig = mm.attribution
    assert abs(total - (ig.prediction[0] - ig.baseline_prediction[0])) == pytest.approx(ig.delta[0], abs=1e-9)
    assert ig.relative_delta[0] < 1e-2 and mm.other[0].shape == (1, 6, 6, 1)
    grad = attribute_text(multimodal_model, TOKENS[1:2], other_inputs=[image], method="gradients")
    embed, head = split_at_embedding(multimodal_model)
    direct = gradients(head, [image, np.asarray(embed(TOKENS[1:2]))])
    assert np.allclose(grad.embedding_scores, direct[1]) and np.allclose(grad.other[0], direct[0])


# --------------------------------------------------------------------------------------------- packaging
def test_importing_explain_does_not_import_tensorflow():
    code = "import sys, replication.explain; bad = [m for m in ('tensorflow', 'keras', 'jax') if m in sys.modules]; assert not bad, bad"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, timeout=60)


def test_jax_backend_matches_exact_values(tmp_path):
    pytest.importorskip("jax", reason="jax is not installed: the JAX gradient path is not exercised here")
    script = tmp_path / "jax_ig.py"
    script.write_text(textwrap.dedent("""
        import numpy as np, keras
        from replication.explain import integrated_gradients
        assert keras.backend.backend() == "jax"
        x = keras.Input((4,))
        dense = keras.layers.Dense(1, activation="sigmoid")
        model = keras.Model(x, dense(x))
        w, b = np.array([1.5, -2.0, 0.7, 2.5], "float32"), -0.3
        dense.set_weights([w[:, None], np.array([b], "float32")])
        v = np.array([0.8, -0.6, 1.2, 0.9], "float32")
        s = float(w @ v)
        sig = lambda z: 1 / (1 + np.exp(-z))
        exact = v * w * (sig(b + s) - sig(b)) / s
        for compiled in (True, False):
            r = integrated_gradients(model, v[None], steps=16, rule="gauss_legendre", batch_size=5, compiled=compiled)
            assert np.allclose(r.attribution[0], exact, rtol=1e-4, atol=1e-6), (r.attribution, exact)
        print("ok")
    """))
    env = dict(os.environ, KERAS_BACKEND="jax")
    out = subprocess.run([sys.executable, str(script)], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr[-2000:]
