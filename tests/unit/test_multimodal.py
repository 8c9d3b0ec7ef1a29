import numpy as np
import pytest

from replication.explain import attribute_text, split_at_embedding
from replication.models.densenet import ARCHITECTURES, encoder_of, finetune_model
from replication.models.multimodal import feature_widths, multimodal_model
from replication.models.text_cnn import text_cnn, text_features
from replication.models.densenet import image_features


@pytest.fixture(scope="module")
def submodels():
    rng = np.random.default_rng(0)
    text = text_cnn(40, 8, sequence_length=20, feature_maps=4, embedding_matrix=rng.normal(size=(40, 8)).astype("float32"))
    image = finetune_model(32, "densenet21", hidden=16)  # DenseNet-121's layout, a fraction of its tracing time
    # make every weight distinctive, so that a copy is checkable
    for layer in image.layers + text.layers:
        layer.set_weights([w + rng.normal(0, 0.01, w.shape).astype(w.dtype) for w in layer.get_weights()])
    return text, image, multimodal_model(text, image, l2=0.03, architecture="densenet21")


def test_feature_widths_are_the_sum_of_the_submodels(submodels):
    text, image, model = submodels
    widths = feature_widths(model)
    assert widths["text"] == text_features(text).output.shape[-1] == 4 * (9 + 8 + 8)
    assert widths["image"] == image_features(image).output.shape[-1] == ARCHITECTURES["densenet21"].features
    assert widths["concatenated"] == widths["text"] + widths["image"]


def test_weights_are_copied_from_the_trained_submodels(submodels):
    text, image, model = submodels
    for name in ("embedding", "conv_3", "conv_4", "conv_5"):
        for a, b in zip(model.get_layer(name).get_weights(), text.get_layer(name).get_weights()):
            assert np.array_equal(a, b)
    for a, b in zip(encoder_of(model).get_weights(), encoder_of(image).get_weights()):
        assert np.array_equal(a, b)
    for a, b in zip(model.get_layer("image_features").get_weights(), image.get_layer("image_features").get_weights()):
        assert np.array_equal(a, b)
    # the same features as the submodels' extractors, for the same inputs
    rng = np.random.default_rng(1)
    ids = rng.integers(0, 40, (2, 20)).astype("int32")
    pixels = rng.uniform(0, 255, (2, 32, 32, 1)).astype("float32")
    import keras
    mm_text = keras.Model(model.inputs, model.get_layer("text_features").output).predict([ids, pixels], verbose=0)
    assert np.allclose(mm_text, text_features(text).predict(ids, verbose=0), atol=1e-6)
    mm_image = keras.Model(model.inputs, model.get_layer("image_features").output).predict([ids, pixels], verbose=0)
    assert np.allclose(mm_image, image_features(image).predict(pixels, verbose=0), atol=1e-5)


def test_the_multimodal_splits_at_its_embedding_for_text_attribution(submodels):
    text, image, model = submodels
    ids = np.random.default_rng(2).integers(1, 40, 20).astype("int32")
    pixels = np.random.default_rng(3).uniform(0, 255, (32, 32, 1)).astype("float32")
    result = attribute_text(model, ids[None], other_inputs=[pixels[None]], steps=8)  # one report: a batch of one
    assert result.embedding_scores.shape == (1, 20, 8)
    embed, head = split_at_embedding(model)
    assert np.allclose(head.predict([embed(ids[None]), pixels[None]], verbose=0), model.predict([ids[None], pixels[None]], verbose=0), atol=1e-5)


# ----------------------------------------------------------------------------- the protocol's bad input
from replication.data.prepare import compose_text  # noqa: E402
from replication.data.splits import make_splits  # noqa: E402
from replication.data.synthetic import SynthParams, generate  # noqa: E402
from replication.errors import DataError, ParameterError  # noqa: E402
from replication.experiments.curves import Protocol, check_setting, paired_cases, paired_split, run_setting  # noqa: E402
from replication.params import CurveSetting, TextParams  # noqa: E402


@pytest.fixture(scope="module")
def cohort():
    c = compose_text(generate(SynthParams(cases=60, image_size=32), "iu", seed=3), ["findings", "impression"])
    c.cases = make_splits(c.cases, 1, {"train": 0.6, "val": 0.2, "test": 0.2}, seed=3)
    return c


def test_a_case_without_an_image_is_excluded_and_counted(cohort):
    cases = cohort.cases.copy()
    cases.loc[[0, 5, 7], "image_index"] = -1
    c = type(cohort)(**{**cohort.__dict__, "cases": cases})
    paired, excluded = paired_cases(c, False)
    assert len(paired) == len(cases) - 3 and not set(cases.loc[[0, 5, 7], "case_id"]) & set(paired["case_id"])
    assert {"stage": "multimodal", "reason": "no image (the experiment needs both modalities)", "count": 3} in excluded.summary()


def test_a_reports_only_cohort_is_a_clear_error(cohort):
    c = type(cohort)(**{**cohort.__dict__, "images": None, "masks": None, "cases": cohort.cases.assign(image_index=-1)})
    with pytest.raises(DataError, match="needs images"):
        paired_cases(c, False)


def test_a_split_part_with_one_class_is_a_clear_error(cohort):
    paired, _ = paired_cases(cohort, False)
    val = paired["split_0"] == "val"
    paired.loc[val, "label"] = 1
    with pytest.raises(DataError, match="split_0.*val part.*one class only"):
        paired_split(paired, cohort.images, "split_0", TextParams(keep_negations=False, max_words=100, sequence_length=20, tokenizer_defect=False))


@pytest.mark.parametrize("setting, key", [(CurveSetting(0.0, 1, 1), "learning_rate"), (CurveSetting(1e-3, 0, 1), "epochs"),
                                          (CurveSetting(1e-3, 2, 0), "splits")])
def test_bad_settings_are_named(setting, key):
    with pytest.raises(ParameterError, match=f"curves.settings.low.{key}"):
        check_setting("low", setting)


def test_a_setting_of_the_wrong_type_is_refused_when_the_parameters_load():
    from conftest import REPO
    from replication.params import profile_params

    with pytest.raises(ParameterError, match=r"curves.settings.low.splits=True: expected an integer \(profile 'tiny'"):
        profile_params("tiny", REPO, curves={"settings": {"low": {"splits": True}}})


def test_a_nan_loss_stops_naming_model_split_epoch_and_keeps_the_partial_curves(cohort, tmp_path, monkeypatch):
    import json

    import replication.training.loop as train
    from replication.models.densenet import pretraining_model, save_encoder
    from replication.models.embeddings import train_word2vec
    from replication.params import profile_params
    from conftest import REPO

    params = profile_params("tiny", REPO, curves={"hidden": 8, "settings": {"high": {"learning_rate": 1e-2, "epochs": 2, "splits": 1}}},
                            transfer={"hidden": 8})
    paired, _ = paired_cases(cohort, False)
    docs = paired_split(paired, cohort.images, "split_0", params.text).docs["train"]
    (tmp_path / "w2v").mkdir()
    train_word2vec(docs, dim=params.word2vec.dim, seed=1).save(str(tmp_path / "w2v" / "split_0.kv"))
    save_encoder(pretraining_model(32, 9, params.pretrain.architecture), tmp_path / "encoder.weights.h5")

    def fake_fit(model, train_data, val, epochs, batch_size, name, history_path=None, **_):
        # the text model 'trains' for its epochs; the image model's loss is NaN at epoch 2
        history = {"epoch": [1, 2], "loss": [0.7, 0.6], "accuracy": [0.5, 0.6], "val_loss": [0.7, 0.6], "val_accuracy": [0.5, 0.6], "val_auroc": [0.5, 0.6]}
        if "image" in name:
            history = {k: [v[0], float("nan")] for k, v in history.items() if k != "epoch"} | {"epoch": [1, 2]}
            history["val_loss"] = [0.7, float("nan")]
            Path(history_path).write_text(json.dumps(history))
            raise train.TrainingError(f"{name}: the training loss is nan at epoch 2; the history up to that epoch is kept in {history_path}")
        Path(history_path).write_text(json.dumps(history))
        return history

    from pathlib import Path

    monkeypatch.setattr(train, "fit_binary", fake_fit)
    with pytest.raises(train.TrainingError, match=r"image on split_0: the training loss is nan at epoch 2.*4 rows.*curves.csv"):
        run_setting("high", Protocol.from_params(params), cohort, tmp_path / "encoder.weights.h5",
                    tmp_path / "w2v", partial_dir=tmp_path / "partial", log=lambda *_: None)
    import pandas as pd

    kept = pd.read_csv(tmp_path / "partial" / "curves.csv")
    assert list(zip(kept["model"], kept["epoch"])) == [("text", 1), ("text", 2), ("image", 1), ("image", 2)]
    assert np.isnan(kept["val_loss"].iloc[-1]) and kept["val_loss"].iloc[2] == 0.7
