from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from replication.data.text import OOV, PAD, Vocabulary, clean_report, corpus_statistics, stop_words
from replication.errors import DataError, ParameterError
from replication.models.embeddings import embedding_matrix, load_vectors, train_word2vec
from replication.experiments.table2 import text_split
from replication.params import TextParams

TEXT = TextParams(keep_negations=False, max_words=15000, sequence_length=140, tokenizer_defect=False)

REPORT = "FINDINGS: No pneumothorax. Borderline enlarged heart, XXXX 5th rib. The lungs are not hyperinflated; x-XXXX."


def test_cleaning_as_the_paper():
    assert clean_report(REPORT) == ["findings", "pneumothorax", "borderline", "enlarged", "heart", "xxxx", "rib",
                                    "lungs", "hyperinflated", "xxxxx"]
    # the paper's stop words drop the negations; keep_negations keeps them
    assert clean_report("No pneumothorax. Not enlarged.", keep_negations=True) == ["no", "pneumothorax", "not", "enlarged"]
    assert clean_report("No pneumothorax. Not enlarged.") == ["pneumothorax", "enlarged"]
    assert len(stop_words()) == 179 and {"no", "not", "nor", "the"} <= stop_words()


def test_non_ascii_and_empty_reports():
    assert clean_report("Pneumothorax résolu — cœur normal") == ["pneumothorax", "resolu", "cur", "normal"]
    assert clean_report("1. 2. The. No.") == []
    cases = pd.DataFrame({"case_id": ["a", "b", "c", "d", "e", "f"], "text": ["heart big", "", "1 2 3", "lungs clear", "heart ok", "effusion"],
                          "label": [1, 0, 0, 0, 0, 1], "split_0": ["train", "train", "train", "val", "test", "train"]})
    split = text_split(cases, "split_0", TEXT)
    assert split.exclusions.summary() == [{"stage": "text", "reason": "no token left after cleaning", "count": 2}]
    assert [len(split.docs[p]) for p in ("train", "val", "test")] == [2, 1, 1]


def test_vocabulary_is_fitted_on_training_text_only_and_encodes_at_the_end():
    cases = pd.DataFrame({"case_id": list("abcd"), "label": [1, 0, 1, 0],
                          "text": ["heart heart enlarged", "lungs clear", "nodule seen", "granuloma calcified"],
                          "split_0": ["train", "train", "val", "test"]})
    split = text_split(cases, "split_0", replace(TEXT, sequence_length=4))
    assert split.vocab.words == ["heart", "enlarged", "lungs", "clear"]  # by frequency, ties by first occurrence
    assert "nodule" not in split.vocab.words and "granuloma" not in split.vocab.words
    assert split.ids["train"].tolist() == [[2, 2, 3, PAD], [4, 5, PAD, PAD]]
    assert split.ids["val"].tolist() == [[OOV, OOV, PAD, PAD]]
    # the authors' defect: a second vocabulary fitted on the evaluation text gives its words training indices
    defect = text_split(cases, "split_0", replace(TEXT, sequence_length=4, tokenizer_defect=True))
    assert defect.ids["val"].tolist() == [[2, 3, PAD, PAD]]  # 'nodule seen' read as 'heart enlarged'
    assert defect.ids["train"].tolist() == split.ids["train"].tolist()


def test_long_reports_are_truncated_at_the_end_and_counted():
    vocab = Vocabulary.fit([["a" + str(i) for i in range(10)]])
    ids, truncated = vocab.encode([[f"a{i}" for i in range(10)], ["a0"]], length=6)
    assert truncated == 1 and ids[0].tolist() == [2, 3, 4, 5, 6, 7]
    assert corpus_statistics([["x"] * 150, ["y"] * 10], length=140)["longer_than_sequence"] == 1
    with pytest.raises(ParameterError, match="text.sequence_length"):
        vocab.encode([["a0"]], length=0)
    assert Vocabulary.from_json(vocab.to_json()) == vocab and vocab.word(PAD) == "" and vocab.word(OOV) == "<oov>"


def test_embedding_rows_equal_the_word2vec_vectors():
    docs = [["heart", "enlarged", "lungs", "clear"], ["lungs", "clear", "no", "effusion"]] * 20
    vectors = train_word2vec(docs, dim=16, seed=3)
    vocab = Vocabulary(["lungs", "clear", "heart", "zebra"])
    matrix, coverage = embedding_matrix(vocab, vectors, 16, seed=0)
    assert matrix.shape == (6, 16) and coverage == 0.75
    for word, row in vocab.index.items():
        if word in vectors.key_to_index:
            assert np.array_equal(matrix[row], vectors[word])
    assert not matrix[PAD].any() and np.abs(matrix[vocab.index["zebra"]]).max() <= 0.25


def test_word2vec_is_deterministic_whatever_the_hash_seed(tmp_path):
    import subprocess, sys
    code = ("from replication.models.embeddings import train_word2vec;"
            "v=train_word2vec([['heart','enlarged','lungs','clear']]*30, dim=8, seed=5); print(v['heart'].tobytes().hex())")
    outs = {subprocess.run([sys.executable, "-c", code], env={"PYTHONHASHSEED": s, "PATH": ""}, capture_output=True, text=True, check=True).stdout
            for s in ("1", "2")}
    assert len(outs) == 1


def test_vector_files_with_the_wrong_dimension_or_missing_are_clear_errors(tmp_path):
    glove = tmp_path / "glove.txt"
    glove.write_text("heart 0.1 0.2 0.3\nlungs 0.4 0.5 0.6\n")
    assert load_vectors(glove, expected_dim=3)["lungs"].tolist() == pytest.approx([0.4, 0.5, 0.6])
    with pytest.raises(DataError, match="glove.txt: vectors have 3 dimensions, expected 300"):
        load_vectors(glove, expected_dim=300)
    with pytest.raises(DataError, match="embedding file not found"):
        load_vectors(tmp_path / "absent.txt")
