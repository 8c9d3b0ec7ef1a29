"""The fair protocol on a hand-made split: selection reads train and validation only, a planted image signal is
found, and the across-split summary is the corrected resampled t-test of the per-split differences."""

import dataclasses
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from conftest import REPO  # noqa: E402
from replication.data.text import Vocabulary  # noqa: E402
from replication.experiments.curves import PairedSplit  # noqa: E402
from replication.experiments.fair import COMPARISONS, FairSetup, check_fair, fair_markdown, fair_metrics, run_split, summarise  # noqa: E402
from replication.errors import ParameterError  # noqa: E402
from replication.params import profile_params  # noqa: E402
from replication import statistics as st  # noqa: E402

WORDS = [f"w{i}" for i in range(20)]


def planted_split(seed: int = 0, n: dict | None = None) -> PairedSplit:
    """Reports of random words that carry no label; image features whose first column is the label plus noise."""
    rng = np.random.default_rng(seed)
    n = n or {"train": 400, "val": 100, "test": 100}
    labels = {p: rng.permutation(np.arange(k) % 2).astype(np.float32) for p, k in n.items()}
    docs = {p: [list(rng.choice(WORDS, 12)) for _ in range(k)] for p, k in n.items()}
    vocab = Vocabulary.fit(docs["train"], 100)
    images = {}
    for p, y in labels.items():
        x = rng.normal(size=(len(y), 16)).astype(np.float32)
        x[:, 0] += 2.5 * y
        images[p] = x
    return PairedSplit(column="split_0", ids={p: vocab.encode(d, 20)[0] for p, d in docs.items()}, images=images,
                       labels=labels, docs=docs, case_ids={p: [f"{p}{i}" for i in range(k)] for p, k in n.items()}, vocab=vocab)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from gensim.models import KeyedVectors

    params = profile_params("tiny", REPO)
    setup = FairSetup.from_params(params)
    setup = dataclasses.replace(setup, fair=dataclasses.replace(setup.fair, learning_rates=(1e-3, 1e-2), submodel_epochs=3,
                                                               joint_epochs=3),
                                statistics=dataclasses.replace(setup.statistics, resamples=200),
                                text=dataclasses.replace(setup.text, sequence_length=20))
    directory = tmp_path_factory.mktemp("w2v")
    vectors = KeyedVectors(setup.embedding_dim)
    vectors.add_vectors(WORDS, np.random.default_rng(1).normal(size=(len(WORDS), setup.embedding_dim)).astype(np.float32))
    vectors.save(str(directory / "split_0.kv"))
    return setup, directory


@pytest.fixture(scope="module")
def results(setup):
    setup, directory = setup
    data = planted_split()
    first = run_split(setup, data, 0, directory, log=None)
    # the same split with the test labels reversed and the test cases reordered: nothing chosen may change
    order = np.arange(len(data.labels["test"]))[::-1]
    other = dataclasses.replace(
        data, labels={**data.labels, "test": 1 - data.labels["test"][order]},
        images={**data.images, "test": data.images["test"][order]}, ids={**data.ids, "test": data.ids["test"][order]},
        docs={**data.docs, "test": [data.docs["test"][i] for i in order]})
    second = run_split(setup, other, 0, directory, log=None)
    return first, second


def test_selection_never_reads_the_test_split(results):
    first, second = results
    assert first["learning_rates"] == second["learning_rates"]
    assert first["val_loss"] == pytest.approx(second["val_loss"], rel=1e-6)
    # and the test numbers do see the reversed labels: every AUROC flips around 0.5
    for model in ("image", "multimodal"):
        assert first["test"][model]["auroc"] == pytest.approx(1 - second["test"][model]["auroc"], abs=1e-6)


def test_the_planted_image_signal_is_found_and_the_empty_text_is_not(results):
    run = results[0]["test"]
    # the multimodal's decoder starts fresh and has only the joint epochs, against the text branch's noise
    assert run["image"]["auroc"] > 0.9 and run["multimodal"]["auroc"] > 0.75
    assert abs(run["text"]["auroc"] - 0.5) < 0.2 and abs(run["tf-idf"]["auroc"] - 0.5) < 0.2
    assert run["majority class"]["auroc"] == 0.5
    mm_text = results[0]["comparisons"]["multimodal - text"]
    assert mm_text["auroc"]["estimate"] > 0.2 and mm_text["auroc"]["p_value"] < 0.01
    assert mm_text["auroc_bootstrap"]["low"] > 0
    # the multimodal leans on the image: permuting it costs far more than permuting the text
    ablation = results[0]["ablation"]
    assert ablation["image permuted"]["drop"]["estimate"] > 0.2
    assert ablation["image permuted"]["drop"]["estimate"] > ablation["text permuted"]["drop"]["estimate"] + 0.1


def test_summary_is_the_corrected_t_of_the_per_split_differences(setup):
    setup, _ = setup

    def fake(k: int, d: float) -> dict:
        report = {"auroc": 0.7 + d, "accuracy": 0.6, "accuracy_at_0.5": 0.6, "balanced_accuracy": 0.6}
        comparison = {"auroc": {"estimate": d, "p_value": 0.01 if d > 0.05 else 0.5}, "accuracy": {"estimate": d / 2}}
        return {"split": k, "counts": {"train": 140, "val": 20, "test": 40}, "learning_rates": {m: 1e-3 for m in ("text", "image", "multimodal")},
                "test": {m: report for m in ("text", "image", "multimodal", "tf-idf", "majority class")},
                "comparisons": {f"{a} - {b}": comparison for a, b in COMPARISONS},
                "ablation": {"image permuted": {"drop": {"estimate": d}}, "text permuted": {"drop": {"estimate": 0.0}}}}

    differences = [0.02, 0.06, 0.10, 0.04, 0.08]
    summary = summarise([fake(k, d) for k, d in enumerate(differences)], setup.statistics.confidence)
    got = summary["differences"]["multimodal - text"]
    assert got["auroc"] == st.corrected_resampled_t(differences, 140, 40, setup.statistics.confidence)
    assert got["significant_splits"] == 3 and got["significant_splits_a_higher"] == 3
    assert got["accuracy"]["mean"] == pytest.approx(np.mean(differences) / 2)
    assert summary["models"]["text"]["auroc"] == pytest.approx(0.7 + np.mean(differences))
    result = {"synthetic": True, "encoder": "frozen", "summary": summary, "splits": [fake(k, d) for k, d in enumerate(differences)]}
    assert fair_metrics(result)["multimodal_minus_text"]["auroc"]["mean"] == pytest.approx(0.06)
    text = fair_markdown(result)
    assert "SYNTHETIC" in text and "| multimodal - text | +0.060 [" in text and "3 of 5" in text


def test_parameters_are_checked(setup):
    setup, _ = setup
    with pytest.raises(ParameterError, match="fair.encoder"):
        check_fair(dataclasses.replace(setup.fair, encoder="finetune"), 5)
    with pytest.raises(ParameterError, match="fair.splits"):
        check_fair(dataclasses.replace(setup.fair, splits=6), 5)
    with pytest.raises(ParameterError, match="fair.learning_rates"):
        check_fair(dataclasses.replace(setup.fair, learning_rates=()), 5)
