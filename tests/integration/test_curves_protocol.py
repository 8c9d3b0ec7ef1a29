"""The experiment protocol of Fig. 5 / Table 3 on a small synthetic cohort: a learning check, not a result.

`BASELINE` holds what this run recorded when the protocol was last changed on purpose (2 splits, 3 epochs,
Adam at 1e-3, 160 cases at 32 px). A refactor that breaks learning (a head that outputs a constant, a
tokenizer fitted on the evaluation text, weights not copied into the multimodal) moves these numbers far
beyond the tolerance; kernel-level numerical noise on another CPU does not. Regenerate with
`python tests/integration/test_curves_protocol.py` after an intended change, and say why in the commit.
"""

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from conftest import REPO  # noqa: E402
from replication.curves import CURVE_COLUMNS, table3  # noqa: E402

pytestmark = pytest.mark.slow

BASELINE = Path(__file__).with_name("curves_baseline.json")
TOLERANCE = 0.08  # absolute, on accuracies averaged over the 2 splits
SETTING = {"learning_rate": 3e-3, "epochs": 4, "splits": 2}


def run_protocol(tmp: Path):
    from replication.data.prepare import compose_text
    from replication.data.splits import make_splits
    from replication.data.synthetic import SynthParams, generate
    from replication.models.densenet import pretraining_model, save_encoder
    from replication.models.embeddings import train_word2vec
    from replication.multimodal_experiment import paired_cases, paired_split, run_setting
    from replication.params import render_profile

    from replication.train import seed_everything

    seed_everything(0)  # the random 'pretrained' encoder below must be the same in every process
    params = render_profile("tiny", REPO)
    params["curves"] = {"settings": {"check": SETTING}, "optimizers": {"text": "adam", "image": "adam", "multimodal": "adam"},
                        "batch_size": 16, "hidden": 32}
    params["transfer"]["hidden"] = 32
    cohort = compose_text(generate(SynthParams(cases=300, image_size=32), "iu", seed=1), ["findings", "impression"])
    cohort.cases = make_splits(cohort.cases, 2, {"train": 0.6, "val": 0.2, "test": 0.2}, seed=1)
    cases, _ = paired_cases(cohort, False)
    (tmp / "w2v").mkdir()
    for k in range(2):
        split = paired_split(cases, cohort.images, f"split_{k}", params["text"])
        train_word2vec(split.docs["train"], dim=params["word2vec"]["dim"], seed=1).save(str(tmp / "w2v" / f"split_{k}.kv"))
    save_encoder(pretraining_model(32, 9), tmp / "encoder.weights.h5")
    curves, finals, _ = run_setting("check", SETTING, cohort, params, tmp / "encoder.weights.h5", tmp / "w2v",
                                    save_models_to=tmp / "models", log=lambda *_: None)
    return cohort, curves, finals


def recorded(curves: pd.DataFrame, finals: list[dict]) -> dict[str, dict[str, float]]:
    """Per model: mean over splits of the final-epoch validation accuracy and of the test accuracy."""
    last = curves[curves["epoch"] == curves["epoch"].max()].groupby("model")["val_accuracy"].mean()
    tests = pd.DataFrame(finals).groupby("model")["test_accuracy"].mean()
    return {m: {"final_val_accuracy": round(float(last[m]), 4), "test_accuracy": round(float(tests[m]), 4)} for m in last.index} | {
        m: {"test_accuracy": round(float(tests[m]), 4)} for m in tests.index if m not in last.index}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("curves")
    cohort, curves, finals = run_protocol(tmp)
    return cohort, curves, finals, tmp


def test_one_row_per_model_split_epoch(setup):
    _, curves, _, _ = setup
    assert set(CURVE_COLUMNS) <= set(curves.columns)
    assert len(curves) == 3 * 2 * SETTING["epochs"] and not curves.duplicated(["setting", "model", "split", "epoch"]).any()
    assert set(curves["model"]) == {"text", "image", "multimodal"} and set(curves["split"]) == {0, 1}
    assert curves["val_accuracy"].between(0, 1).all() and np.isfinite(curves["val_loss"]).all()
    summary = table3(curves)["check"]
    assert set(summary["differences"]) == {"multimodal - text", "multimodal - image"}


def test_the_three_models_and_the_baselines_see_the_same_cases(setup):
    cohort, _, finals, _ = setup
    for k in (0, 1):
        runs = [f for f in finals if f["split"] == k and "cases_sha256" in f]
        assert [f["model"] for f in runs] == ["text", "image", "multimodal"]
        assert len({f["cases_sha256"] for f in runs}) == 1
        text = runs[0]["cases"]
        for part, ids in text.items():  # the split column of the cohort, nothing else
            assert set(ids) == set(cohort.cases.loc[cohort.cases[f"split_{k}"] == part, "case_id"])
    assert {f["model"] for f in finals} == {"text", "image", "multimodal", "tf-idf + logistic regression", "majority class"}


def test_split_zero_models_are_saved_for_explain(setup):
    _, _, _, tmp = setup
    saved = sorted(p.name for p in (tmp / "models").iterdir())
    assert saved == ["config.json", "image.keras", "multimodal.keras", "text.keras", "vocabulary.json"]
    assert json.loads((tmp / "models" / "config.json").read_text())["setting"] == "check"


def test_accuracies_stay_within_tolerance_of_the_committed_baseline(setup):
    _, curves, finals, _ = setup
    now, base = recorded(curves, finals), json.loads(BASELINE.read_text())
    for model, metrics in base["recorded"].items():
        for key, value in metrics.items():
            assert abs(now[model][key] - value) <= TOLERANCE, f"{model} {key}: {now[model][key]:.3f}, baseline {value:.3f}"
    # and the baseline itself is a learning model, not a constant: text and multimodal beat the majority class
    majority = base["recorded"]["majority class"]["test_accuracy"]
    assert base["recorded"]["text"]["test_accuracy"] > majority + 0.05
    assert base["recorded"]["multimodal"]["test_accuracy"] > majority + 0.05


# ----------------------------------------------------------------- detection on the models the protocol saved
@pytest.fixture(scope="module")
def study(setup):
    from replication.data.splits import make_splits
    from replication.data.synthetic import SynthParams, generate
    from replication.detection import localisation_study
    from replication.io import write_json
    from replication.models.densenet import pretraining_model
    from replication.train import save_model_weights

    cohort, _, _, tmp = setup
    cxr = generate(SynthParams(cases=60, image_size=32), "cxr14", seed=2)
    cxr.cases = make_splits(cxr.cases, 1, {"train": 0.6, "val": 0.2, "test": 0.2}, seed=2, stratify=None)
    pre = tmp / "pretrain"
    pre.mkdir()
    save_model_weights(pretraining_model(32, cxr.label_names), pre / "model.weights.h5")
    write_json(pre / "model.json", {"architecture": "densenet121", "image_size": 32, "labels": cxr.label_names})
    cfg = {"models": "check", "sight_sensitivities": [0.5, 0.7, 0.9], "sight_sensitivity": 0.7, "steps": 8, "rule": "gauss_legendre",
           "images": 5, "top_k": 0.05, "completeness_steps": [4, 16], "completeness_images": 1}
    return localisation_study(cohort, cxr, str(tmp / "models"), str(pre), cfg, seed=0), tmp


def test_localisation_scores_every_method_over_the_sweep(study):
    result, tmp = study
    masks = result.masks
    assert set(masks["attribution"]) == {"integrated gradients", "gradients"}
    paper = masks[(masks["attribution"] == "integrated gradients") & (masks["method"] == "clusters + circles (paper)")]
    assert sorted(paper["sight_sensitivity"]) == [0.5, 0.7, 0.9]
    assert {"pointing game (hottest pixel)", "threshold only", "connected components + circles", "top 5% pixels", "Otsu threshold"} <= set(masks["method"])
    for col in ("hit_mean", "iou_mean"):
        values = masks[col].dropna()
        assert len(values) and values.between(0, 1).all()
    assert (masks["hit_ci_low"].dropna() <= masks.loc[masks["hit_ci_low"].notna(), "hit_mean"] + 1e-12).all()
    # a higher threshold keeps fewer pixels: the thresholded-signal IoU cannot grow with sight sensitivity's pixel count
    boxes = result.boxes
    assert "all findings" in set(boxes["finding"]) and boxes["accuracy_iobb_0.1"].between(0, 1).all()
    assert boxes.loc[boxes["finding"] == "all findings", "boxes"].item() == boxes.loc[boxes["finding"] != "all findings", "boxes"].sum()
    assert {r["rule"] for r in result.completeness} == {"riemann_left", "trapezoid", "gauss_legendre"}
    metrics = result.metrics
    assert metrics["synthetic"] and 0 <= metrics["masks"]["paper_method_at_sight_sensitivity"]["hit_rate"] <= 1
    written = [tmp / "fig2.png", tmp / "overlay.png", tmp / "fig3.png", tmp / "fig3.html"]
    result.draw(*written)
    assert all(p.stat().st_size > 1000 for p in written)
    from replication.detection import localisation_markdown

    text = localisation_markdown(result)
    assert "SYNTHETIC" in text and "### Lesion masks" in text and "### Boxes" in text and "### Completeness" in text


def test_explain_one_case_and_a_report_without_known_words(setup):
    from replication.detection import explain_case, load_models

    cohort, _, _, tmp = setup
    models = load_models(str(tmp / "models"))
    row = cohort.cases.iloc[0]
    result = explain_case(models, cohort.images[row["image_index"]], row["text"], steps=8)
    assert all(0 <= v <= 1 for v in result["predictions"].values())
    words = result["words"]
    assert words.words and abs(words.scores.sum() - 1) < 1e-9 and set(words.words) <= set(result["tokens"]) | {"<oov>"}
    empty = explain_case(models, cohort.images[row["image_index"]], "zzzz qqqq", steps=8)
    assert empty["words"].words == [] and "vocabulary" in empty["words"].note
    with pytest.raises(Exception, match="expected \\(32, 32\\)"):
        explain_case(models, np.zeros((16, 16)), "heart", steps=8)


def test_explain_cli_writes_prediction_regions_and_heatmaps(setup, tmp_path, capsys):
    from PIL import Image

    from replication.cli import main

    cohort, _, _, tmp = setup
    png = tmp_path / "case.png"
    Image.fromarray(cohort.images[0]).save(png)
    out = tmp_path / "explained"
    code = main(["explain", "--models", str(tmp / "models"), "--image", str(png), "--report", cohort.cases["text"].iloc[0],
                 "--steps", "8", "--out", str(out)])
    assert code == 0
    data = json.loads((out / "explanation.json").read_text())
    assert set(data["predictions"]) == {"text", "image", "multimodal"} and isinstance(data["regions"], list)
    assert abs(sum(w["score"] for w in data["words"]) - 1) < 1e-6
    assert (out / "overlay.png").is_file() and (out / "words.html").is_file() and (out / "words.png").is_file()
    assert "P(abnormal)" in capsys.readouterr().out
    assert main(["explain", "--models", str(tmp_path / "nothing"), "--image", str(png), "--report", "x"]) == 2
    assert main(["explain", "--models", str(tmp / "models"), "--image", str(png)]) == 2  # --report missing
    assert "error" in capsys.readouterr().err


if __name__ == "__main__":  # regenerate the baseline
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        _, c, f = run_protocol(Path(d))
    BASELINE.write_text(json.dumps({"setting": SETTING, "recorded": recorded(c, f)}, indent=2) + "\n")
    print(BASELINE.read_text())
