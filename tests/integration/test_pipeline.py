"""The pipeline's data stages on tiny synthetic cohorts: through the library, and through `dvc repro`."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import yaml

from conftest import REPO
from replication.data.store import read_cohort
from replication.params import render_profile

def tiny_params() -> dict:
    return render_profile("tiny", REPO)


@pytest.fixture
def workdir(tmp_path):
    """A scratch copy of what `dvc repro` needs, with tiny parameters."""
    for name in ("dvc.yaml", "replication", "paper"):
        src = REPO / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / name)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(tiny_params(), sort_keys=False))
    return tmp_path


def run(cmd, cwd):
    # the stages' `python` must be this interpreter, whatever PATH the test runner was given
    env = {**os.environ, "PATH": os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])}
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
    assert done.returncode == 0, f"{cmd} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


def test_stages_write_prepared_cohorts(workdir, monkeypatch):
    monkeypatch.chdir(workdir)
    from replication.stages import prepare, synth

    for role in ("iu", "cxr14"):
        assert synth.main([role]) == 0
        assert prepare.main([role]) == 0
    iu = read_cohort(workdir / "outputs/prepared/iu", verify=True)
    assert iu.synthetic and len(iu.cases) > 0 and iu.images.shape[1:] == (32, 32)
    assert iu.cases["text"].str.len().min() > 0 and set(iu.cases["label"]) == {0, 1}
    assert iu.split_columns == ["split_0", "split_1"]
    manifest = json.loads((workdir / "outputs/prepared/iu/manifest.json").read_text())
    assert "not comparable" in manifest["synthetic_notice"]
    cxr = read_cohort(workdir / "outputs/prepared/cxr14", verify=True)
    assert cxr.label_names and cxr.masks is not None
    for col in cxr.split_columns:  # patient-wise
        assert (cxr.cases.groupby("patient_id")[col].nunique() == 1).all()


@pytest.mark.slow
def test_dvc_repro_runs_offline_and_then_has_nothing_to_do(workdir):
    dvc = shutil.which("dvc", path=os.path.dirname(sys.executable)) or shutil.which("dvc")
    if dvc is None:
        pytest.skip("dvc is not installed in this environment")
    run(["git", "init", "-q"], workdir)
    run([dvc, "init", "-q"], workdir)
    first = run([dvc, "repro"], workdir)
    assert "Running stage 'prepare@iu'" in first
    # every stage wrote well-formed outputs (the tiny profile: the pipeline runs, the numbers mean nothing)
    results = workdir / "results" / "tiny"
    table3 = json.loads((results / "table3" / "metrics.json").read_text())
    assert table3["synthetic"] and set(table3["summary"]) == {"low", "high"}
    for setting in ("low", "high"):
        for model in ("text", "image", "multimodal"):
            assert 0 <= table3["summary"][setting]["models"][model]["mean_accuracy"]["mean"] <= 1
        assert (workdir / "outputs" / "models" / setting / "multimodal.keras").is_file()
    localisation = json.loads((results / "localisation" / "metrics.json").read_text())
    assert 0 <= localisation["masks"]["paper_method_at_sight_sensitivity"]["hit_rate"] <= 1 and localisation["boxes"]["boxes"] > 0
    for figure in ("table3/fig5.png", "transfer/fig4.png", "localisation/fig2.png", "localisation/fig3.png"):
        assert (results / figure).stat().st_size > 1000, figure
    report = (workdir / "reports" / "paper_comparison.md").read_text()
    assert "SYNTHETIC DATA" in report and "| Table 3 |" in report and "not comparable" in report
    metrics = run([dvc, "metrics", "show", "--json"], workdir)
    assert "table3/metrics.json" in metrics and "localisation/metrics.json" in metrics
    images = np.load(workdir / "outputs/prepared/iu/images.npy")
    second = run([dvc, "repro"], workdir)
    assert "Running stage" not in second
    status = run([dvc, "status"], workdir)
    assert "changed" not in status and "modified" not in status
    # same params, same bytes: rerunning from scratch reproduces the prepared images exactly
    shutil.rmtree(workdir / "outputs/synthetic")
    shutil.rmtree(workdir / "outputs/prepared")
    run([dvc, "repro", "--force", "prepare@iu"], workdir)
    assert np.array_equal(np.load(workdir / "outputs/prepared/iu/images.npy"), images)
