"""The paper comparison: paper/reference.yaml's index, looked up in a profile's metrics, judged only on real data."""

import json

import pytest

from conftest import REPO
from replication.experiments.comparison import compare, comparison_html, comparison_markdown, key_metrics
from replication.experiments.reference import load_reference, lookup, paper_numbers, paper_value
from replication.errors import DataError

REFERENCE = load_reference(REPO / "paper" / "reference.yaml")


def write_metrics(root, synthetic, text_acc=0.75, mean_acc=0.80):
    """Metrics and manifests shaped as the table2 and table3 stages write them."""
    variants = {"custom": {**{f"{p}_accuracy": text_acc for p in ("train", "val", "test")},
                           **{f"{p}_accuracy_sd": 0.01 for p in ("train", "val", "test")}}}
    table3 = {s: {**{m: {"mean_accuracy": mean_acc, "mean_accuracy_sd": 0.02, "final_auroc": 0.8} for m in ("multimodal", "text", "image")},
                  "multimodal_minus_text": {"mean": 0.04, "low": 0.01, "high": 0.07}} for s in ("low", "high")}
    table3["fair"] = {"text": {"test_auroc": 0.84}, "image": {"test_auroc": 0.60}, "multimodal": {"test_auroc": 0.87}}
    for stage, metrics in (("table2", {"variants": variants, "dataset": {"reports": 3950, "abnormal_fraction": 0.64}}), ("table3", table3)):
        (root / stage).mkdir(parents=True)
        (root / stage / "metrics.json").write_text(json.dumps(metrics))
        (root / stage / "manifest.json").write_text(json.dumps({"synthetic": synthetic}))


def test_every_index_entry_names_its_experiment_module_and_a_metric_that_a_stage_writes():
    import importlib

    numbers = paper_numbers(REFERENCE)
    assert len(numbers) >= 24 and len({n.id for n in numbers}) == len(numbers)
    for n in numbers:
        importlib.import_module(n.experiment)  # the module exists
        assert n.file.endswith("metrics.json") and (n.metric is not None or n.kind in ("parameter", "unassigned")), n.id
    assert paper_value(REFERENCE, "table3.high.multimodal") == 0.81 and paper_value(REFERENCE, "no.such") is None


def test_a_malformed_index_entry_is_named():
    with pytest.raises(DataError, match="entry 'x'"):
        paper_numbers({"numbers": {"x": {"paper": 1.0}}})
    entry = {k: v for k, v in vars(paper_numbers(REFERENCE)[0]).items() if k != "id"}
    with pytest.raises(DataError, match="kind 'guess'"):
        paper_numbers({"numbers": {"x": {**entry, "kind": "guess"}}})
    with pytest.raises(DataError, match="source 'blog'"):
        paper_numbers({"numbers": {"x": {**entry, "source": "blog"}}})


def test_lookup_follows_dotted_keys_and_keys_with_dots():
    data = {"a": {"b": 1, "c.d": {"e": 2}}}
    assert lookup(data, "a.b") == 1 and lookup(data, "a.c.d.e") == 2 and lookup(data, "a.x") is None and lookup(None, "a") is None


def test_a_synthetic_run_is_never_judged(tmp_path):
    write_metrics(tmp_path / "default", synthetic=True)
    rows, header = compare(REFERENCE, tmp_path / "default")
    assert {r.verdict for r in rows if r.section in ("Table 2", "Table 3", "Data")} <= {"not comparable", "not run", "parameter"}
    text = comparison_markdown(rows, header, "default")
    assert "SYNTHETIC DATA" in text and "within tolerance" not in text.split("| section")[1]
    html = comparison_html(text, {"Fig. 5": "fig5.png"})
    assert "<table>" in html and "fig5.png" in html


def test_a_real_run_is_judged_against_the_tolerance(tmp_path):
    write_metrics(tmp_path / "shared-real", synthetic=False, text_acc=0.75, mean_acc=0.80)
    rows, header = compare(REFERENCE, tmp_path / "shared-real")
    verdict = {(r.section, r.quantity): r for r in rows}
    custom_test = verdict[("Table 2", "custom embedding, test accuracy")]
    assert custom_test.verdict == "within tolerance" and custom_test.difference == pytest.approx(0.0) and custom_test.spread == 0.01
    assert verdict[("Table 2", "custom embedding, train accuracy")].verdict == "outside tolerance"  # 0.75 vs 0.88
    high_mm = verdict[("Table 3", "multimodal, high learning rate (0.01, 10 epochs), accuracy averaged over epochs")]
    assert high_mm.verdict == "within tolerance" and high_mm.reproduced == 0.80
    assert verdict[("Table 3", "multimodal − text, high learning rate (paired over splits)")].reproduced == 0.04
    assert verdict[("Table 2", "generic embedding, test accuracy")].verdict == "not run"
    assert verdict[("Data", "reports")].verdict == "within tolerance"  # 3950 vs 3955: within 2%
    assert verdict[("Data", "abnormal fraction")].verdict == "within tolerance"  # 0.64 vs 0.60
    # the AUROCs are the notebooks' (PAPER_FACTS.md §1), assigned text / image / multimodal, judged on the fair test AUROC
    aurocs = {r.quantity: r for r in rows if r.section == "AUROC"}
    assert [r.paper for r in aurocs.values()] == [0.85, 0.74, 0.86]
    assert aurocs["text CNN, test AUROC"].verdict == "within tolerance" and aurocs["image model, test AUROC"].verdict == "outside tolerance"
    assert all("notebooks, not the paper" in r.note for r in aurocs.values())
    assert "transfer" not in header["real"] or header["real"]["transfer"] is False


def test_key_metrics_flatten_every_metrics_file(tmp_path):
    write_metrics(tmp_path / "r", synthetic=True)
    flat = key_metrics(tmp_path / "r")
    assert flat["table3/high.multimodal.mean_accuracy"] == 0.80 and flat["table2/variants.custom.test_accuracy_sd"] == 0.01
    assert all(isinstance(v, float) for v in flat.values())
