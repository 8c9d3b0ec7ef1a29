"""The pretraining recipe on the real NIH ChestX-ray14 radiographs in ../shared/data (skipped where absent).

One short epoch at 32 px on a patient-wise split of the shared images: the point is that real files go
through the whole path (reader, checks, 14 sigmoid outputs, class weights from real prevalences, per-class
AUROC with the published means beside them, encoder saved and reloaded for fine-tuning), not the AUROC
itself; the CPU run of the shared-real profile (docs/IMAGE.md) is the measurement.
"""

import math
from pathlib import Path

import numpy as np
import pytest

from replication.data.chestxray14 import LABELS, read_chestxray14
from replication.data.splits import make_splits
from replication.experiments.images import image_split
from replication.experiments.pretrain import comparable_with_published, pretrain, pretrain_markdown, published_mean_auroc
from replication.experiments.reference import load_reference
from replication.models.densenet import check_images, encoder_of, finetune_model, save_encoder

pytestmark = [pytest.mark.realdata, pytest.mark.slow]
SIZE = 32


@pytest.fixture(scope="module")
def cohort(shared_chestxray14):
    cohort = read_chestxray14(shared_chestxray14, image_size=SIZE)
    cohort.cases["any_finding"] = (cohort.cases[list(LABELS)].sum(axis=1) > 0).astype(int)
    cohort.cases = make_splits(cohort.cases, 1, {"train": 0.7, "val": 0.1, "test": 0.2}, seed=2019, stratify="any_finding")
    return cohort


def test_real_images_pass_the_model_input_checks_and_split_patient_wise(cohort):
    assert len(cohort.cases) > 1000 and cohort.label_names == list(LABELS)
    check_images(cohort.images, SIZE, list(cohort.cases["case_id"]), where="chestxray14")
    assert (cohort.cases.groupby("patient_id")["split_0"].nunique() == 1).all()
    data = image_split(cohort, "split_0", cohort.label_names, SIZE)
    assert data.x["train"][np.arange(2)].shape == (2, SIZE, SIZE, 1)
    sizes = [len(data.y[p]) for p in ("train", "val", "test")]
    assert min(sizes) > 50 and sum(sizes) == len(cohort.cases) and data.y["train"].shape[1] == 14


def test_one_epoch_of_the_recipe_on_real_radiographs(cohort, tmp_path):
    from dataclasses import replace

    from replication.params import profile_params

    repo = Path(__file__).resolve().parents[2]
    section = replace(profile_params("default", repo).pretrain, epochs=1)
    result = pretrain(cohort, section, SIZE, 2019, checkpoint_dir=tmp_path / "ckpt", checkpoint_key="real", log=None)
    m = result.manifest
    assert m["synthetic"] is False and m["labels"] == list(LABELS) and comparable_with_published(result)
    assert set(result.test["auroc"]) == set(LABELS)
    scored = [v for v in result.test["auroc"].values() if math.isfinite(v)]
    assert len(scored) == result.test["classes_scored"] >= 10 and 0 <= result.test["mean_auroc"] <= 1
    # real prevalences: every weight in [0, 1], rare findings weigh their positives most
    assert 0.5 < m["class_weights"]["positive"]["Hernia"] <= 1.0 and m["class_weights"]["positive"]["Infiltration"] < 0.95
    table = pretrain_markdown(result, published_mean_auroc(load_reference(repo / "paper" / "reference.yaml")))
    assert "CheXNet" in table and "| Hernia |" in table
    path = save_encoder(result.model, tmp_path / "encoder.weights.h5", labels=list(LABELS))
    fine = finetune_model(SIZE, weights=path)
    for a, b in zip(encoder_of(result.model).get_weights(), encoder_of(fine).get_weights()):
        np.testing.assert_array_equal(a, b)
    # the localisation scoring on the real BBox_List_2017 boxes (the numbers mean nothing after one epoch at 32 px;
    # the path from real boxes to per-finding accuracy at T(IoBB) does)
    from replication.experiments.localisation import box_study, published_iobb
    from replication.io import write_json
    from replication.training.checkpoint import save_model_weights

    save_model_weights(result.model, tmp_path / "model.weights.h5")
    write_json(tmp_path / "model.json", {"architecture": "densenet121", "image_size": SIZE, "labels": list(LABELS)})
    params = replace(profile_params("default", repo).localisation, images=12, steps=8, rule="gauss_legendre", sight_sensitivity=0.7)
    study = box_study(cohort, str(tmp_path), params, 0, published_iobb(load_reference(repo / "paper" / "reference.yaml")))
    boxes, methods = study.table, study.methods
    assert set(boxes["ground_truth"]) == {"BBox_List_2017"} == set(methods["ground_truth"]) == set(study.cases["ground_truth"])
    assert (methods["boxes"] == 12).all() and {"Otsu threshold", "threshold only, tuned (2-fold)"} <= set(methods["method"])
    assert {"random map (chance)", "centre prior", "image intensity", "SmoothGrad"} <= set(methods["attribution"])
    overall = boxes[boxes["finding"] == "all findings"].iloc[0]
    assert overall["boxes"] == 12 and 0 <= overall["accuracy_iobb_0.1"] <= 1 and 0 <= overall["iou_mean"] <= 1
    assert overall["images"] <= 12 and overall["afp_iobb_0.1"] >= 0
    per_finding = boxes[boxes["finding"] != "all findings"]
    assert set(per_finding["finding"]) <= set(LABELS)
    assert per_finding["wang_2017_accuracy_iobb_0.1"].notna().all()  # the 8 boxed findings all have Wang et al.'s number
