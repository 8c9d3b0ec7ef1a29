"""The experiment protocol of Fig. 5 / Table 3 on a tiny synthetic cohort: a learning check, not a result."""

import json

import numpy as np
import pytest

from conftest import REPO
from replication.curves import CURVE_COLUMNS, table3
from replication.data.prepare import compose_text
from replication.data.splits import make_splits
from replication.data.synthetic import SynthParams, generate
from replication.models.densenet import pretraining_model, save_encoder
from replication.models.embeddings import train_word2vec
from replication.multimodal_experiment import paired_cases, paired_split, run_setting
from replication.params import render_profile

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("curves")
    params = render_profile("tiny", REPO)
    params["curves"] = {"settings": {"high": {"learning_rate": 1e-2, "epochs": 2, "splits": 1}}, "batch_size": 16, "hidden": 32}
    params.setdefault("transfer", {})["hidden"] = 32
    cohort = compose_text(generate(SynthParams(cases=90, image_size=32), "iu", seed=1), ["findings", "impression"])
    cohort.cases = make_splits(cohort.cases, 1, {"train": 0.6, "val": 0.2, "test": 0.2}, seed=1)
    cases, _ = paired_cases(cohort, False)
    split = paired_split(cases, cohort.images, "split_0", params["text"])
    (tmp / "w2v").mkdir()
    train_word2vec(split.docs["train"], dim=params["word2vec"]["dim"], seed=1).save(str(tmp / "w2v" / "split_0.kv"))
    save_encoder(pretraining_model(32, 9), tmp / "encoder.weights.h5")
    curves, finals, excluded = run_setting("high", params["curves"]["settings"]["high"], cohort, params, tmp / "encoder.weights.h5",
                                           tmp / "w2v", save_models_to=tmp / "models", log=lambda *_: None)
    return curves, finals, tmp


def test_one_row_per_model_split_epoch(setup):
    curves, _, _ = setup
    assert set(CURVE_COLUMNS) <= set(curves.columns)
    assert len(curves) == 3 * 1 * 2 and not curves.duplicated(["setting", "model", "split", "epoch"]).any()
    assert set(curves["model"]) == {"text", "image", "multimodal"}
    assert curves["val_accuracy"].between(0, 1).all()
    summary = table3(curves)["high"]
    assert set(summary["differences"]) == {"multimodal - text", "multimodal - image"}


def test_models_and_baselines_share_the_cases_and_are_saved(setup):
    _, finals, tmp = setup
    models = {f["model"] for f in finals}
    assert models == {"text", "image", "multimodal", "tf-idf + logistic regression", "majority class"}
    assert all(np.isfinite(f["test_accuracy"]) for f in finals)
    saved = sorted(p.name for p in (tmp / "models").iterdir())
    assert saved == ["config.json", "image.keras", "multimodal.keras", "text.keras", "vocabulary.json"]
    assert json.loads((tmp / "models" / "config.json").read_text())["setting"] == "high"
