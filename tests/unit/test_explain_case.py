"""One case explained with saved models (tiny ones here): the model cache, the explanation and its one renderer."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from replication.data.text import Vocabulary  # noqa: E402
from replication.errors import DataError  # noqa: E402
from replication.explain.case import CaseExplanation, explain_case, load_models, render_case  # noqa: E402

SIZE, LENGTH, WORDS = 8, 6, ["heart", "size", "normal", "effusion"]


def tiny_models(seed: int):
    keras.utils.set_random_seed(seed)
    ids, image = keras.Input((LENGTH,), dtype="int32"), keras.Input((SIZE, SIZE, 1))
    words = keras.layers.GlobalAveragePooling1D()(keras.layers.Embedding(len(WORDS) + 2, 4)(ids))
    pixels = keras.layers.Flatten()(keras.layers.Rescaling(1 / 255)(image))
    head = lambda h: keras.layers.Dense(1, activation="sigmoid")(h)  # noqa: E731
    return {"text": keras.Model(ids, head(words)), "image": keras.Model(image, head(pixels)),
            "multimodal": keras.Model([ids, image], head(keras.layers.Concatenate()([words, pixels])))}


def save(directory, models):
    directory.mkdir(exist_ok=True)
    for name, model in models.items():
        model.save(directory / f"{name}.keras")
    (directory / "vocabulary.json").write_text(Vocabulary(WORDS).to_json())
    (directory / "config.json").write_text(json.dumps({"image_size": SIZE, "text": {"keep_negations": False, "sequence_length": LENGTH}}))


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    directory = tmp_path_factory.mktemp("models")
    save(directory, tiny_models(0))
    return directory


def test_the_model_cache_serves_a_replaced_keras_file_afresh(tmp_path):
    save(tmp_path, tiny_models(0))
    first = load_models(tmp_path)
    assert load_models(tmp_path) is first  # unchanged files: the same models (and their traced attribution functions)
    x = np.full((1, SIZE, SIZE, 1), 128.0, "float32")
    before = first.image.predict(x, verbose=0)
    other = tmp_path / "other"
    save(other, tiny_models(1))
    os.replace(other / "image.keras", tmp_path / "image.keras")  # config.json untouched: its mtime alone would miss this
    again = load_models(tmp_path)
    assert again is not first and again.text is not first.text
    assert not np.allclose(again.image.predict(x, verbose=0), before)
    assert load_models(tmp_path) is again


def test_a_models_directory_without_its_files_or_encoding_is_named(tmp_path):
    with pytest.raises(DataError, match="missing text.keras"):
        load_models(tmp_path)
    save(tmp_path, tiny_models(0))
    (tmp_path / "config.json").write_text(json.dumps({"image_size": SIZE}))
    with pytest.raises(DataError, match="text"):
        load_models(tmp_path)


def test_explain_case_and_its_one_renderer(saved, tmp_path):
    models = load_models(saved)
    image = np.random.default_rng(0).uniform(0, 255, (SIZE, SIZE))
    case = explain_case(models, image, "Heart size normal, no effusion.", steps=8)
    assert isinstance(case, CaseExplanation) and set(case.predictions) == {"text", "image", "multimodal"}
    assert case.image_attribution.shape == (SIZE, SIZE) and case.completeness()["steps"] == 8
    assert case.words.words == ["heart", "size", "normal", "effusion"] and abs(case.words.scores.sum() - 1) < 1e-9
    assert all(set(r) >= {"center_row", "center_col", "radius"} for r in case.region_records())
    paths = {name: tmp_path / name for name in ("panel.png", "overlay.png", "words.png", "words.html")}
    written = render_case(case, "case 1", notice="SYNTHETIC DATA - ", sweep=[0.5, 0.9], panel_png=paths["panel.png"],
                          overlay_png=paths["overlay.png"], words_png=paths["words.png"], words_html=paths["words.html"])
    assert written == list(paths.values()) and all(p.stat().st_size > 0 for p in written)
    assert "case 1" in paths["words.html"].read_text()
    unknown = explain_case(models, image, "zzzz qqqq", steps=8)
    assert unknown.words.words == [] and "vocabulary" in unknown.words.note
    assert render_case(unknown, "case 2", words_png=tmp_path / "none.png") == []  # no words, no heatmap
    with pytest.raises(DataError, match=r"expected \(8, 8\)"):
        explain_case(models, np.zeros((4, 4)), "heart")
