"""The whole pipeline in miniature: `dvc repro` on the tiny profile, offline, in a scratch copy of the repository.

One run (module fixture) serves every test: each stage's outputs exist and are well-formed, the recorded
accuracies stay within tolerance of the committed baseline tests/baselines/tiny.json (so a refactor that breaks
learning is caught), the protocol's bookkeeping holds (one curve row per model, split and epoch; the three models
see the same cases), `replication explain` works on the saved models, a second `dvc repro` does nothing, and the
same parameters give the same bytes. Re-record the baseline after an intended change with
`python tests/integration/test_pipeline.py` (and say why in the commit).
"""

import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from conftest import REPO  # noqa: E402
from replication.explain.attribution import RULES  # noqa: E402
from replication.params import dump_params, render_profile  # noqa: E402

pytestmark = pytest.mark.slow
BASELINE = REPO / "tests" / "baselines" / "tiny.json"
TOLERANCE = 0.08  # absolute; a model that stops learning falls to the majority class, > 0.1 below the baseline


def same_within(now: float, recorded: float, tolerance: float) -> bool:
    """Within the tolerance, or undefined (NaN: e.g. an AUROC of a class absent from a split) in both."""
    return (math.isnan(now) and math.isnan(recorded)) or abs(now - recorded) <= tolerance


def dvc_executable() -> str | None:
    return shutil.which("dvc", path=os.path.dirname(sys.executable)) or shutil.which("dvc")


def run(cmd, cwd):
    # the stages' `python` must be this interpreter, whatever PATH the test runner was given
    env = {**os.environ, "PATH": os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])}
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
    assert done.returncode == 0, f"{cmd} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


def tiny_repro(workdir: Path) -> str:
    """Copy what `dvc repro` needs into `workdir`, with the tiny profile, and run it; returns its output."""
    dvc = dvc_executable()
    if dvc is None:
        pytest.skip("dvc is not installed in this environment")
    for name in ("dvc.yaml", "replication", "paper", "profiles"):
        src = REPO / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, workdir / name)
    (workdir / "params.yaml").write_text(dump_params(render_profile("tiny", REPO)))
    run(["git", "init", "-q"], workdir)
    run([dvc, "init", "-q"], workdir)
    # dvclive (the per-epoch series) asks git for the current commit: a repository without one makes it fail
    run(["git", "-c", "user.name=test", "-c", "user.email=test@localhost", "commit", "-q", "--allow-empty", "-m", "scratch"], workdir)
    return run([dvc, "repro"], workdir)


@pytest.fixture(scope="module")
def repro(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("pipeline")
    return workdir, tiny_repro(workdir)


def test_every_stage_ran_and_wrote_well_formed_outputs(repro):
    workdir, output = repro
    for stage in ("synth@iu", "prepare@iu", "prepare@cxr14", "word2vec", "table2", "pretrain", "transfer", "curves",
                  "fair", "table3", "localise", "compare"):
        assert f"Running stage '{stage}'" in output, stage
    from replication.data.store import read_cohort

    iu = read_cohort(workdir / "outputs/prepared/iu", verify=True)
    assert iu.synthetic and iu.images.shape[1:] == (32, 32) and set(iu.cases["label"]) == {0, 1}
    assert "not comparable" in json.loads((workdir / "outputs/prepared/iu/manifest.json").read_text())["synthetic_notice"]
    cxr = read_cohort(workdir / "outputs/prepared/cxr14", verify=True)
    assert cxr.label_names and cxr.masks is not None
    for col in cxr.split_columns:  # patient-wise
        assert (cxr.cases.groupby("patient_id")[col].nunique() == 1).all()
    results = workdir / "results" / "tiny"
    table3 = json.loads((results / "table3" / "manifest.json").read_text())
    assert table3["synthetic"] and set(table3["summary"]) == {"low", "high"}
    for setting in ("low", "high"):
        for model in ("text", "image", "multimodal"):
            assert 0 <= table3["summary"][setting]["models"][model]["mean_accuracy"]["mean"] <= 1
        assert {"multimodal - text", "multimodal - image"} == set(table3["summary"][setting]["differences"])
        series = sorted(p.name for p in (results / "curves" / setting / "epochs").iterdir())  # dvclive: one folder per series
        assert series == sorted(f"{m}-split_{k}" for m in ("text", "image", "multimodal") for k in range(2 if setting == "high" else 1))
        assert sorted(p.name for p in (workdir / "outputs" / "models" / setting).iterdir()) == [
            "config.json", "image.keras", "multimodal.keras", "text.keras", "vocabulary.json"]
    # the fair protocol: every split on its own seed, the paired tests on the test split, the modality ablation
    fair = json.loads((results / "fair" / "runs.json").read_text())
    assert [s["split"] for s in fair["splits"]] == [0, 1] and len({s["seed"] for s in fair["splits"]}) == 2
    for split in fair["splits"]:
        assert set(split["test"]) == {"text", "image", "multimodal", "tf-idf", "majority class"}
        c = split["comparisons"]["multimodal - text"]
        assert c["auroc"]["test"] == "DeLong" and c["accuracy"]["test"].startswith("McNemar") and c["auroc"]["n"] == split["counts"]["test"]
        assert set(split["ablation"]) == {"image permuted", "text permuted"}
    assert fair["summary"]["differences"]["multimodal - text"]["auroc"]["test"].startswith("corrected resampled t")
    assert "Fair protocol" in (results / "table3" / "table3.md").read_text()
    arch = render_profile("tiny", REPO)["pretrain"]["architecture"]
    for stage, comparison in (("table2", "custom - random"), ("transfer", f"{arch}/chestxray14 - {arch}/scratch")):
        tests = json.loads((results / stage / "tests.json").read_text())
        splits = tests["splits"] if isinstance(tests["splits"], list) else list(tests["splits"].values())
        assert comparison in splits[0]["comparisons"] and "majority class" in splits[0]["test"], stage
    localisation = json.loads((results / "localisation" / "metrics.json").read_text())
    manifest = json.loads((results / "localisation" / "manifest.json").read_text())
    assert 0 <= localisation["masks"]["paper_method_at_sight_sensitivity"]["region_hit"] <= 1 and manifest["boxes"]["boxes"] > 0
    assert localisation["masks"]["sight_sensitivity_tradeoff"]["measured"] and "sanity" in localisation["masks"]
    masks = pd.read_csv(results / "localisation" / "masks.csv")
    baselines = {"SmoothGrad", "random map (chance)", "centre prior", "image intensity", "none (the whole image)"}
    assert {"integrated gradients", "gradients"} | baselines == set(masks["attribution"]) and masks["iou_mean"].dropna().between(0, 1).all()
    assert len(pd.read_csv(results / "localisation" / "sanity.csv")) == 6  # trained + the 5 cascade stages
    assert set(RULES) == set(pd.read_csv(results / "localisation" / "completeness.csv")["rule"])
    words = pd.read_csv(results / "localisation" / "words.csv")  # Fig. 3 measured, per report and model
    assert set(words["model"]) == {"text CNN", "multimodal"} and words["top_k_share"].between(0, 1).all()
    # a positive control: the text CNN learns the reports, so its best words state the findings more often than chance
    assert localisation["words"]["text CNN"]["difference"] > 0
    box_methods = pd.read_csv(results / "localisation" / "box_methods.csv")
    assert {"integrated gradients", "gradients"} | baselines == set(box_methods["attribution"])
    assert "threshold only, tuned (2-fold)" in set(box_methods["method"])
    for figure in ("table3/fig5.png", "transfer/fig4.png", "localisation/fig2.png", "localisation/overlay.png", "localisation/fig3.png"):
        assert (results / figure).stat().st_size > 1000, figure
    assert (workdir / "outputs" / "table3" / "fig5.html").stat().st_size > 100_000  # plotly.js inlined: opens offline
    report = (workdir / "reports" / "paper_comparison.md").read_text()
    assert "SYNTHETIC DATA" in report and "| Table 3 |" in report and "not comparable" in report
    assert "<table>" in (workdir / "reports" / "paper_comparison.html").read_text()
    metrics = run([dvc_executable(), "metrics", "show", "--json"], workdir)
    assert "table3/metrics.json" in metrics and "localisation/metrics.json" in metrics
    assert "class_weights" not in metrics and "recipe" not in metrics and "notes" not in metrics  # manifests hold those
    for stage in ("synth-iu", "table2", "pretrain", "curves", "localise"):
        assert json.loads((workdir / "outputs" / "timings" / f"{stage}.json").read_text())["seconds"] > 0  # timings apart
    assert "stage_seconds" not in "".join(p.read_text() for p in results.rglob("*.json"))


def test_one_curve_row_per_model_split_epoch_and_the_same_cases_for_the_three_models(repro):
    workdir, _ = repro
    params = render_profile("tiny", REPO)["curves"]["settings"]
    for setting, cfg in params.items():
        curves = pd.read_csv(workdir / "results" / "tiny" / "curves" / setting / "curves.csv")
        assert len(curves) == 3 * cfg["splits"] * cfg["epochs"]
        assert not curves.duplicated(["setting", "model", "split", "epoch"]).any()
        runs = json.loads((workdir / "results" / "tiny" / "curves" / setting / "final.json").read_text())["runs"]
        for k in range(cfg["splits"]):
            digests = {r["model"]: r["cases_sha256"] for r in runs if r["split"] == k and "cases_sha256" in r}
            assert set(digests) == {"text", "image", "multimodal"} and len(set(digests.values())) == 1


def test_recorded_accuracies_stay_within_tolerance_of_the_committed_baseline(repro):
    from replication.experiments.comparison import key_metrics

    workdir, _ = repro
    now, base = key_metrics(workdir / "results" / "tiny"), json.loads(BASELINE.read_text())["metrics"]
    drifted = {k: (now.get(k), v) for k, v in base.items() if not same_within(now.get(k, float("nan")), v, TOLERANCE)}
    assert not drifted, "moved beyond the tolerance (now, baseline): " + json.dumps(drifted)
    # the baseline is a learning model, not a constant: at the 'high' setting text and multimodal end above the majority
    # class and rank the cases well (the mean over epochs counts the first, untrained epochs too)
    majority = json.loads((workdir / "results" / "tiny" / "table3" / "metrics.json").read_text())["high"]["baselines"]["majority class"]["accuracy"]
    for model in ("text", "multimodal"):
        assert base[f"table3/high.{model}.final_accuracy"] > majority + 0.05, model
        assert base[f"table3/high.{model}.final_auroc"] > 0.75, model
        assert base[f"fair/{model}.test_auroc"] > 0.75, model   # the fair protocol's models learn too (test split)


def test_explain_on_the_saved_models(repro, tmp_path, capsys):
    from PIL import Image

    from replication.cli import main
    from replication.data.store import read_cohort
    from replication.explain import explain_case, load_models

    workdir, _ = repro
    models_dir = workdir / "outputs" / "models" / "high"
    cohort = read_cohort(workdir / "outputs" / "prepared" / "iu")
    png = tmp_path / "case.png"
    Image.fromarray(cohort.images[0]).save(png)
    out = tmp_path / "explained"
    assert main(["explain", "--models", str(models_dir), "--image", str(png), "--report", cohort.cases["text"].iloc[0],
                 "--steps", "8", "--out", str(out)]) == 0
    data = json.loads((out / "explanation.json").read_text())
    assert set(data["predictions"]) == {"text", "image", "multimodal"} and all(0 <= v <= 1 for v in data["predictions"].values())
    assert isinstance(data["regions"], list) and abs(sum(w["score"] for w in data["words"]) - 1) < 1e-6
    assert all((out / name).is_file() for name in ("panel.png", "overlay.png", "words.html", "words.png"))
    assert "P(abnormal)" in capsys.readouterr().out
    # bad input, each caught before any model is loaded (but the first): no models, a missing --report, an unknown case
    assert main(["explain", "--models", str(tmp_path / "nothing"), "--image", str(png), "--report", "x"]) == 2
    assert main(["explain", "--models", str(models_dir), "--image", str(png)]) == 2
    assert main(["explain", "--models", str(models_dir), "--case", "NO-SUCH-CASE", "--cohort", str(workdir / "outputs" / "prepared" / "iu")]) == 2
    assert "error" in capsys.readouterr().err
    models = load_models(str(models_dir))
    with pytest.raises(Exception, match=r"expected \(32, 32\)"):
        explain_case(models, np.zeros((16, 16)), "heart", steps=8)
    empty = explain_case(models, cohort.images[0], "zzzz qqqq", steps=8)
    assert empty.words.words == [] and "vocabulary" in empty.words.note


def test_boxes_command_scores_the_pretraining_model(repro, tmp_path):
    from replication.cli import main

    workdir, _ = repro
    out = tmp_path / "boxes"
    assert main(["boxes", "--pretrain", str(workdir / "outputs" / "pretrain"), "--cohort", str(workdir / "outputs" / "prepared" / "cxr14"),
                 "--images", "5", "--steps", "4", "--out", str(out)]) == 0
    table = pd.read_csv(out / "boxes.csv")
    assert table.loc[table["finding"] == "all findings", "boxes"].item() == 5
    assert "bounding boxes of the synthetic lesion masks" in set(table["ground_truth"]) and "### Boxes" in (out / "boxes.md").read_text()


def test_a_second_repro_does_nothing_and_the_same_params_give_the_same_bytes(repro):
    workdir, _ = repro
    dvc = dvc_executable()
    second = run([dvc, "repro"], workdir)
    assert "Running stage" not in second
    status = run([dvc, "status"], workdir)
    assert "changed" not in status and "modified" not in status
    images = np.load(workdir / "outputs/prepared/iu/images.npy")
    shutil.rmtree(workdir / "outputs/synthetic")
    shutil.rmtree(workdir / "outputs/prepared")
    run([dvc, "repro", "--force", "prepare@iu"], workdir)
    assert np.array_equal(np.load(workdir / "outputs/prepared/iu/images.npy"), images)


if __name__ == "__main__":  # re-record the baseline from a fresh tiny run
    from replication.experiments.comparison import key_metrics

    with tempfile.TemporaryDirectory() as d:
        print(tiny_repro(Path(d))[-2000:])
        metrics = key_metrics(Path(d) / "results" / "tiny")
    BASELINE.write_text(json.dumps({"profile": "tiny", "recorded_with": "python tests/integration/test_pipeline.py",
                                    "metrics": metrics}, indent=2, sort_keys=True) + "\n")
    print(BASELINE.read_text())
