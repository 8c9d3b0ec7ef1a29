"""Training utilities of the image models (class-weighted BCE, AUROC, plateau, checkpoint/resume, batches)
and the experiment's summaries and figures. Small stand-in networks keep this fast: the loop is the same
for DenseNet-121, whose train step alone takes ~40 s to trace on 2 CPU cores."""

import json

import keras
import numpy as np
import pandas as pd
import pytest

from replication.errors import DataError, ParameterError
from replication.experiments.transfer import (NOT_OFFLINE, TransferResult, plot_transfer_curves, summarise_transfer, transfer_markdown,
                                              transfer_metrics)
from replication.models.densenet import GreyToRGB
from replication.params import PlateauParams
from replication.training.batches import Batches, IndexedImages
from replication.training.checkpoint import checkpoint_key, finish_checkpoint, finished_result
from replication.training.loop import Plateau, fit_binary, fit_epochs
from replication.training.losses import WeightedBinaryCrossentropy, class_balance_weights, weighted_bce_numpy
from replication.training.metrics import auroc, evaluate_multilabel
from replication.training.precision import configure_precision
from replication.training.seeding import seed_everything


# --------------------------------------------------------------------------------- loss and metrics
def test_class_weighted_bce_matches_a_hand_computation():
    train = np.array([[1, 0], [0, 0], [0, 1], [0, 1]], "float32")  # class 0: 1 of 4 positive; class 1: 2 of 4
    wp, wn = class_balance_weights(train)
    np.testing.assert_allclose(wp, [0.75, 0.5])   # w+ = |N| / (|P| + |N|)
    np.testing.assert_allclose(wn, [0.25, 0.5])   # w- = |P| / (|P| + |N|)
    y = np.array([[1, 0], [0, 1]], "float32")
    p = np.array([[0.8, 0.3], [0.4, 0.9]], "float32")
    by_hand = np.mean([
        -0.75 * np.log(0.8), -0.5 * np.log(1 - 0.3),    # case 1: class 0 positive, class 1 negative
        -0.25 * np.log(1 - 0.4), -0.5 * np.log(0.9),    # case 2: class 0 negative, class 1 positive
    ])
    loss = WeightedBinaryCrossentropy(wp, wn)
    assert float(keras.ops.convert_to_numpy(loss(y, p))) == pytest.approx(by_hand, rel=1e-5)
    assert weighted_bce_numpy(y, p, wp, wn) == pytest.approx(by_hand, rel=1e-6)
    # unit weights: plain binary cross-entropy
    plain = WeightedBinaryCrossentropy([1, 1], [1, 1])
    expected = float(keras.ops.convert_to_numpy(keras.losses.BinaryCrossentropy()(y, p)))
    assert float(keras.ops.convert_to_numpy(plain(y, p))) == pytest.approx(expected, rel=1e-4)
    assert WeightedBinaryCrossentropy.from_config(loss.get_config()).positive_weights == pytest.approx([0.75, 0.5])


def test_class_weights_refuse_bad_labels_and_handle_absent_classes():
    wp, wn = class_balance_weights(np.array([[0, 1], [0, 1]]))
    assert wp.tolist() == [1.0, 0.0] and wn.tolist() == [0.0, 1.0]
    with pytest.raises(DataError, match="0/1"):
        class_balance_weights(np.array([[0.5, 1]]))
    with pytest.raises(DataError, match="non-empty"):
        class_balance_weights(np.zeros((0, 3)))


def test_auroc_known_case_and_per_class_evaluation():
    assert auroc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    assert auroc([1, 0, 1, 0], [0.9, 0.1, 0.8, 0.2]) == 1.0
    inp = keras.Input((2,))
    model = keras.Model(inp, keras.layers.Identity()(inp))  # scores = the inputs
    x = np.array([[0.1, 0.9], [0.4, 0.2], [0.35, 0.3], [0.8, 0.4]], "float32")
    y = np.array([[0, 1], [0, 1], [1, 1], [1, 1]], "float32")  # class b: one value only -> undefined, not 0.5
    r = evaluate_multilabel(model, x, y, ["a", "b"])
    assert r["auroc"]["a"] == pytest.approx(0.75) and np.isnan(r["auroc"]["b"])
    assert r["mean_auroc"] == pytest.approx(0.75) and r["classes_scored"] == 1


def test_plateau_divides_the_rate_when_the_loss_stalls():
    plateau = Plateau(factor=0.1, patience=1, min_learning_rate=1e-5)
    assert plateau.step(1.0, 1e-3) == 1e-3           # improvement
    assert plateau.step(1.2, 1e-3) == pytest.approx(1e-4)   # one epoch without improvement
    assert plateau.step(0.5, 1e-4) == 1e-4
    assert plateau.step(0.5, 1e-4) == pytest.approx(1e-5)
    assert plateau.step(0.7, 1e-5) == pytest.approx(1e-5)  # floor
    patient = Plateau.from_params(PlateauParams(factor=0.5, patience=2, min_learning_rate=0.0))
    assert (patient.factor, patient.patience, patient.monitor) == (0.5, 2, "val_loss")
    assert [patient.step(v, 1.0) for v in (1.0, 1.0)] == [1.0, 1.0]
    assert patient.step(1.0, 1.0) == 0.5
    with pytest.raises(ParameterError, match="plateau.factor"):
        Plateau(factor=1.5, patience=1, min_learning_rate=0.0)


def test_a_plateau_key_the_parameters_do_not_know_is_refused_by_name():
    from pathlib import Path

    from replication.params import profile_params

    root = Path(__file__).resolve().parents[2]
    assert profile_params("default", root).pretrain.plateau == PlateauParams(factor=0.1, patience=1, min_learning_rate=1e-6)
    with pytest.raises(ParameterError, match=r"pretrain\.plateau\.factr"):
        profile_params("default", root, pretrain={"plateau": {"factr": 0.1}})


# ------------------------------------------------------------------------------------------- batches
def test_batches_are_a_function_of_seed_and_epoch_and_flip_half():
    images = np.arange(10 * 4 * 4, dtype=np.uint8).reshape(10, 4, 4)
    x = IndexedImages(images, np.arange(10)[::-1])
    assert x[np.array([0, 2])].shape == (2, 4, 4, 1) and x[np.array([0])][0, 0, 0, 0] == images[9, 0, 0]
    y = np.arange(10, dtype="float32")
    a = [Batches(x, y, 4, seed=3, epoch=1, flip=True, drop_remainder=True)[i] for i in range(2)]
    b = [Batches(x, y, 4, seed=3, epoch=1, flip=True, drop_remainder=True)[i] for i in range(2)]
    c = Batches(x, y, 4, seed=3, epoch=2, flip=True, drop_remainder=True)[0]
    assert len(Batches(x, y, 4, drop_remainder=True)) == 2 and len(Batches(x, y, 4)) == 3
    for (xa, ya), (xb, yb) in zip(a, b):
        np.testing.assert_array_equal(xa, xb) and np.testing.assert_array_equal(ya, yb)
    assert not np.array_equal(a[0][1], c[1])
    flipped = 0
    for xb, yb in a:
        for img, label in zip(xb[..., 0], yb):
            original = images[9 - int(label)].astype("float32")  # x is reversed: row k holds image 9 - k
            assert np.array_equal(img, original) or np.array_equal(img, original[:, ::-1])
            flipped += not np.array_equal(img, original)
    assert 0 < flipped < 8
    padded = Batches(x, None, 4, shuffle=False, pad=True)
    assert len(padded) == 3 and padded[2][0].shape == (4, 4, 4, 1)


# ----------------------------------------------------------------------------------- resume
SIZE = 16


def _toy_data(n=48, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, SIZE, SIZE)).astype(np.uint8)
    bright = rng.random(n) < 0.5
    images[bright] = np.clip(images[bright].astype(int) + 60, 0, 255).astype(np.uint8)
    return images, bright.astype("float32")


def _toy_model(outputs=1):
    image = keras.Input((SIZE, SIZE, 1))
    h = GreyToRGB("torch", name="preprocess")(image)
    h = keras.layers.Conv2D(4, 3, strides=2, activation="relu", name="conv")(h)
    h = keras.layers.BatchNormalization(name="bn")(h)
    h = keras.layers.GlobalAveragePooling2D(name="gap")(h)
    h = keras.layers.Dropout(0.5, name="dropout")(h)
    return keras.Model(image, keras.layers.Dense(outputs, activation="sigmoid", name="out")(h))


def _compiled_binary():
    seed_everything(7)
    model = _toy_model()
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="binary_crossentropy", metrics=["accuracy"])
    return model


def test_binary_fit_resumed_after_a_kill_matches_an_uninterrupted_one(tmp_path, monkeypatch):
    import replication.training.loop as loop

    images, labels = _toy_data()
    x_train, x_val = IndexedImages(images, np.arange(36)), IndexedImages(images, np.arange(36, 48))
    args = ((x_train, labels[:36]), (x_val, labels[36:]))
    kwargs = dict(epochs=4, batch_size=8, seed=5, flip=True, log=None)

    whole_model = _compiled_binary()
    whole = fit_binary(whole_model, *args, name="whole", checkpoint_dir=tmp_path / "a", checkpoint_key="k", **kwargs)

    real_evaluate, calls = loop.evaluate_binary, {"n": 0}

    def killed_in_epoch_3(*a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("killed")
        return real_evaluate(*a, **k)

    monkeypatch.setattr(loop, "evaluate_binary", killed_in_epoch_3)
    with pytest.raises(KeyboardInterrupt):
        fit_binary(_compiled_binary(), *args, name="killed", checkpoint_dir=tmp_path / "b", checkpoint_key="k", **kwargs)
    monkeypatch.setattr(loop, "evaluate_binary", real_evaluate)
    state = json.loads((tmp_path / "b" / "state.json").read_text())
    assert state["epochs_done"] == 2 and (tmp_path / "b" / "model.weights.h5").is_file()

    messages = []
    resumed_model = _compiled_binary()  # a fresh process would build a fresh model
    resumed = fit_binary(resumed_model, *args, name="resumed", checkpoint_dir=tmp_path / "b", checkpoint_key="k",
                         **{**kwargs, "log": messages.append})
    assert any("resuming after epoch 2" in m for m in messages)
    assert resumed["epoch"] == [1, 2, 3, 4]
    for key in whole:
        np.testing.assert_allclose(resumed[key], whole[key], rtol=1e-6, atol=1e-7, err_msg=key)
    for a, b in zip(whole_model.get_weights(), resumed_model.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)

    # another key (other inputs or parameters): the stale checkpoint is discarded, training starts afresh
    messages.clear()
    fresh = fit_binary(_compiled_binary(), *args, name="other", checkpoint_dir=tmp_path / "b", checkpoint_key="other",
                       **{**kwargs, "epochs": 1, "log": messages.append})
    assert fresh["epoch"] == [1] and any("starting afresh" in m for m in messages)


def test_multilabel_fit_with_plateau_and_best_epoch_resumes_exactly(tmp_path):
    images, labels = _toy_data(40, seed=1)
    y = np.stack([labels, 1 - labels, (images.mean(axis=(1, 2)) > images.mean()).astype("float32")], axis=1)
    wp, wn = class_balance_weights(y[:32])

    def build():
        seed_everything(3)
        model = _toy_model(outputs=3)
        model.compile(optimizer=keras.optimizers.Adam(5e-2), loss=WeightedBinaryCrossentropy(wp, wn))
        return model

    def data(epoch):
        return {"x": Batches(IndexedImages(images, np.arange(32)), y[:32], 8, seed=2, epoch=epoch, flip=True, drop_remainder=True)}

    def evaluate(model):
        r = evaluate_multilabel(model, IndexedImages(images, np.arange(32, 40)), y[32:], ["a", "b", "c"], wp, wn)
        return {"loss": r["loss"], "mean_auroc": r["mean_auroc"], "auroc": r["auroc"]}

    def run(model, epochs, directory):
        return fit_epochs(model, data, evaluate, epochs, "toy", checkpoint_dir=directory, checkpoint_key="k", seed=2,
                          plateau=Plateau(factor=0.5, patience=1, min_learning_rate=0.0), keep_best="val_loss", log=None)

    whole_model = build()
    whole = run(whole_model, 5, tmp_path / "a")
    assert {"learning_rate", "val_loss", "val_mean_auroc", "val_auroc_a", "val_auroc_c"} <= set(whole)
    run(build(), 3, tmp_path / "b")                 # a run stopped after epoch 3 (its checkpoint says 3 done) ...
    resumed_model = build()
    resumed = run(resumed_model, 5, tmp_path / "b")  # ... continued to 5 in a new model
    assert resumed["epoch"] == [1, 2, 3, 4, 5]
    for key in whole:
        np.testing.assert_allclose(resumed[key], whole[key], rtol=1e-6, atol=1e-7, err_msg=key)
    best = int(np.argmin(whole["val_loss"]))
    for a, b in zip(whole_model.get_weights(), resumed_model.get_weights()):  # both end on the best epoch's weights
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert 0 <= best < 5


def test_mixed_precision_is_ignored_on_cpu_with_a_note():
    try:
        note = configure_precision(True)
        assert "ignored" in note or note.startswith("mixed_float16")
        if "ignored" in note:
            assert keras.config.dtype_policy().name == "float32"
    finally:
        configure_precision(False)
    assert keras.config.dtype_policy().name == "float32"


# ------------------------------------------------------------------------------ summaries, figures
def _fake_transfer():
    rows, runs = [], []
    for init, base in (("densenet121/chestxray14", 0.7), ("densenet121/scratch", 0.6)):
        for k, split in enumerate(("split_0", "split_1")):
            for epoch in (1, 2, 3):
                rows.append({"init": init, "split": split, "epoch": epoch, "val_accuracy": base + 0.01 * epoch + 0.02 * k,
                             "val_loss": 0.6, "val_auroc": base})
            runs.append({"init": init, "split": split, "metrics": {"test": {"accuracy": base, "auroc": base},
                                                                    "majority_class": {"val_accuracy": 0.6, "test_accuracy": 0.6}}})
    runs.append({"init": "densenet121/imagenet", "not_run": NOT_OFFLINE})
    return TransferResult(runs, pd.DataFrame(rows))


def test_transfer_summary_compares_with_scratch_and_lists_what_did_not_run():
    summary = summarise_transfer(_fake_transfer())
    pre, scratch = summary["densenet121/chestxray14"], summary["densenet121/scratch"]
    assert pre["final_val_accuracy"]["mean"] == pytest.approx(0.74) and pre["splits"] == 2
    assert pre["minus_scratch_mean_val_accuracy_over_epochs"]["mean"] == pytest.approx(0.1)
    assert pre["splits_better_than_scratch"] == 2 and "minus_scratch_mean_val_accuracy_over_epochs" not in scratch
    assert summary["densenet121/imagenet"] == {"not_run": NOT_OFFLINE}
    table = transfer_markdown(summary, synthetic=True)
    assert "SYNTHETIC" in table and "not run: weights not available offline" in table and "+0.100" in table
    # metrics.json: numbers only, per initialisation that ran (what did not run is the manifest's)
    metrics = transfer_metrics(summary)
    assert list(metrics) == ["densenet121/chestxray14", "densenet121/scratch"]
    pre = metrics["densenet121/chestxray14"]
    assert pre["final_val_accuracy"] == pytest.approx(0.74) and pre["final_val_accuracy_sd"] == pytest.approx(0.02 / 2**0.5)
    assert pre["minus_scratch"] == pytest.approx(0.1) and pre["splits_better_than_scratch"] == 2
    assert pre["test_auroc"] == pytest.approx(0.7) and pre["majority_class_val_accuracy"] == pytest.approx(0.6)
    assert "minus_scratch" not in metrics["densenet121/scratch"]
    assert all(isinstance(v, (int, float)) for row in metrics.values() for v in row.values())


def _fake_pretrain(labels, synthetic):
    from replication.experiments.pretrain import PretrainResult

    test = {"auroc": {n: 0.6 + 0.01 * i for i, n in enumerate(labels)}, "mean_auroc": 0.65, "classes_scored": len(labels), "loss": 0.3}
    val = {"auroc": {n: 0.55 for n in labels}, "mean_auroc": 0.55, "classes_scored": len(labels), "loss": 0.4}
    test["auroc"][labels[-1]] = float("nan")
    manifest = {"synthetic": synthetic, "architecture": "densenet121", "image_size": 32, "initialisation_used": "scratch",
                "initialisation_requested": "imagenet", "epochs_trained": 4, "split": "split_0", "labels": list(labels),
                "counts": {"train": 100, "val": 20, "test": 30}, "positives": {"test": {n: 3 for n in labels}},
                "notes": ["a note"]}
    return PretrainResult(None, {"epoch": [1, 2, 3, 4]}, test, val, 3, manifest)


def test_pretrain_metrics_table_and_the_published_means_from_the_reference(tmp_path):
    from pathlib import Path

    import yaml

    from replication.experiments.pretrain import plot_pretrain_auroc, pretrain_markdown, pretrain_metrics, published_mean_auroc

    reference = yaml.safe_load((Path(__file__).resolve().parents[2] / "paper" / "reference.yaml").read_text())
    published = published_mean_auroc(reference)
    assert published["CheXNet (Rajpurkar et al. 2017)"] == 0.841 and published["Wang et al. 2017 (ChestX-ray8 paper)"] == 0.738
    assert all(v["source"] for v in reference["published"]["chestxray14_mean_auroc"]["values"].values())
    with pytest.raises(DataError, match="published.chestxray14_mean_auroc"):
        published_mean_auroc({"published": {}})

    real = _fake_pretrain([f"finding_{i}" for i in range(14)], synthetic=False)
    metrics = pretrain_metrics(real)
    assert metrics["test"]["mean_auroc"] == 0.65 and metrics["val"] == {"mean_auroc": 0.55} and metrics["kept_epoch"] == 3
    assert metrics["test"]["auroc"]["finding_1"] == pytest.approx(0.61) and np.isnan(metrics["test"]["auroc"]["finding_13"])
    table = pretrain_markdown(real, published)
    assert "CheXNet (Rajpurkar et al. 2017): 0.841" in table and "**0.650**" in table and "weights kept from epoch 3" in table
    assert "| finding_13 | undefined (one class) | 3 | 0.550 |" in table and "Note: a note" in table
    # synthetic (or not 14 findings): nothing to compare with, the published means stay out
    synthetic = pretrain_markdown(_fake_pretrain(["a", "b", "c"], synthetic=True), published)
    assert "SYNTHETIC" in synthetic and "CheXNet" not in synthetic
    assert plot_pretrain_auroc(real, tmp_path / "auroc.png", published).read_bytes()[:4] == b"\x89PNG"


def test_transfer_figure_png_and_offline_html(tmp_path):
    result = _fake_transfer()
    written = plot_transfer_curves(result.history, tmp_path / "fig4.png", tmp_path / "fig4.html", "test",
                                   not_run={"densenet121/imagenet": NOT_OFFLINE}, baseline=0.6)
    assert [p.name for p in written] == ["fig4.png", "fig4.html"]
    assert (tmp_path / "fig4.png").read_bytes()[:4] == b"\x89PNG"
    html = (tmp_path / "fig4.html").read_text()
    assert "<script src=\"http" not in html and len(html) > 1_000_000  # plotly.js inlined: no network needed
    assert "chestxray14" in html and "weights not available offline" in html and "majority class (0.600)" in html


def test_a_finished_run_is_read_back_only_under_its_own_checkpoint_key(tmp_path):
    key = checkpoint_key("transfer", {"epochs": 4}, "encoder-sha")
    assert len(key) == 64 and key == checkpoint_key("transfer", {"epochs": 4}, "encoder-sha")
    assert key != checkpoint_key("transfer", {"epochs": 5}, "encoder-sha") != checkpoint_key("transfer", {"epochs": 4}, "other")
    assert finished_result(tmp_path / "run", key) is None  # nothing there yet
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "state.json").write_text(json.dumps({"key": key, "history": {"epoch": [1, 2]}}))
    (tmp_path / "run" / "model.weights.h5").write_bytes(b"weights")
    assert finished_result(tmp_path / "run", key) is None  # not finished yet
    finish_checkpoint(tmp_path / "run", {"test": {"accuracy": 0.75}})
    assert finished_result(tmp_path / "run", key) == ({"epoch": [1, 2]}, {"test": {"accuracy": 0.75}})
    assert finished_result(tmp_path / "run", checkpoint_key("transfer", {"epochs": 5}, "encoder-sha")) is None
    assert not (tmp_path / "run" / "model.weights.h5").exists()  # a finished run keeps its result, not its weights
