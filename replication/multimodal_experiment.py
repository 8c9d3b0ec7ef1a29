"""The paper's experiment protocol (section 4, Fig. 5, Table 3): text, image and multimodal on the same splits.

For one learning-rate setting and each split: the text CNN starts from the split's word2vec embedding,
the image model from the ChestX-ray14 encoder, each is trained for the setting's epochs at its learning
rate, then the multimodal is built from those two trained submodels and trained the same way. Every
model sees exactly the same cases (those with a report and an image), so the comparison is paired.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from replication.data.store import Cohort, Exclusions
from replication.data.text import Vocabulary
from replication.errors import DataError, ParameterError
from replication.text_experiment import PARTS, clean_cases

MODELS = ("text", "image", "multimodal")
DEFAULT_OPTIMIZERS = {"text": "adadelta", "image": "adam", "multimodal": "adam"}


@dataclass
class PairedSplit:
    """One split of the cases that have both modalities: per part token ids, pixel arrays, labels, case ids."""

    column: str
    ids: dict[str, np.ndarray]
    images: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]
    docs: dict[str, list[list[str]]]
    case_ids: dict[str, list[str]]
    vocab: Vocabulary


def paired_cases(cohort: Cohort, keep_negations: bool) -> tuple[pd.DataFrame, Exclusions]:
    """Cases with an image and at least one token of text; the others are excluded and counted."""
    if cohort.images is None:
        raise DataError(cohort.source, "the multimodal needs images; this cohort has none (a reports-only source)")
    cleaned, excluded = clean_cases(cohort.cases, keep_negations)
    no_image = cleaned["image_index"] < 0
    excluded.add("multimodal", "no image (the experiment needs both modalities)", cleaned.loc[no_image, "case_id"])
    paired = cleaned[~no_image].reset_index(drop=True)
    if len(paired) == 0:
        raise DataError(cohort.source, "no case has both a report and an image")
    return paired, excluded


def paired_split(cases: pd.DataFrame, images: np.ndarray, column: str, text: Mapping[str, Any]) -> PairedSplit:
    """Encode one split of the paired cases; the vocabulary is fitted on its training reports only."""
    parts = {p: cases[cases[column] == p] for p in PARTS}
    for p, rows in parts.items():
        if len(rows) == 0 or rows["label"].nunique() < 2:
            raise DataError(column, f"the {p} part of the paired cases has {'no case' if len(rows) == 0 else 'one class only'}")
    vocab = Vocabulary.fit(parts["train"]["tokens"], int(text.get("max_words", 15000)))
    length = int(text.get("sequence_length", 140))
    return PairedSplit(
        column=column,
        ids={p: vocab.encode(list(rows["tokens"]), length)[0] for p, rows in parts.items()},
        images={p: np.asarray(images[rows["image_index"].to_numpy()], dtype=np.float32)[..., None] for p, rows in parts.items()},
        labels={p: rows["label"].to_numpy(np.float32) for p, rows in parts.items()},
        docs={p: list(rows["tokens"]) for p, rows in parts.items()},
        case_ids={p: list(rows["case_id"]) for p, rows in parts.items()},
        vocab=vocab,
    )


def check_setting(name: str, setting: Mapping[str, Any]) -> dict[str, Any]:
    lr, epochs, splits = setting.get("learning_rate"), setting.get("epochs"), setting.get("splits")
    if not isinstance(lr, (int, float)) or isinstance(lr, bool) or lr <= 0:
        raise ParameterError(f"curves.settings.{name}.learning_rate", lr, "a positive number")
    for key, value in (("epochs", epochs), ("splits", splits)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ParameterError(f"curves.settings.{name}.{key}", value, "an integer >= 1")
    return {"learning_rate": float(lr), "epochs": int(epochs), "splits": int(splits)}


def run_setting(
    name: str,
    setting: Mapping[str, Any],
    cohort: Cohort,
    params: Mapping[str, Any],
    encoder_path: str | Path,
    word2vec_dir: str | Path,
    save_models_to: str | Path | None = None,
    partial_dir: str | Path | None = None,
    log=print,
    models_cache: dict | None = None,
) -> tuple[pd.DataFrame, list[dict[str, Any]], Exclusions]:
    """Train the three models on each split at this setting; returns the curve rows, final metrics per run, exclusions.

    Each model is built, compiled and traced once (DenseNet-121's first training step costs tens of seconds on a
    CPU) and reset before every split: fresh weights, its initialisation (the split's word2vec
    matrix; the ChestX-ray14 encoder; the split's trained submodels), zeroed optimizer state. The text model's
    embedding has as many rows as the largest split vocabulary so that one shape serves every split; rows past
    a split's vocabulary are never looked up. Pass the same `models_cache` (a dict) to the calls for several
    settings to share the built models across them too. Seeding is the caller's, once per process
    (`seed_everything`) before the first call: re-seeding TensorFlow's global RNG makes it retrace every compiled
    step (~20 s per DenseNet-121 model on a CPU). A NaN loss raises `TrainingError` naming the model, the split and
    the epoch; the curve rows up to it (the failing run's epochs included) are kept in `partial_dir`/curves.csv.
    """
    from replication.models.baselines import majority_class, tfidf_logistic_regression
    from replication.models.densenet import compile_finetune, encoder_of, finetune_model, load_encoder_weights, make_optimizer
    from replication.models.embeddings import embedding_matrix, load_vectors
    from replication.models.multimodal import copy_submodel_weights, multimodal_model
    from replication.models.text_cnn import EMBEDDING_LAYER, compile_text_cnn, text_cnn
    from replication.train import TrainingError, evaluate_binary, fit_binary, reset_optimizer

    cfg = check_setting(name, setting)
    curves = params["curves"]
    optimizers = {**DEFAULT_OPTIMIZERS, **curves.get("optimizers", {})}
    text, cnn, image_cfg = params["text"], params["text_cnn"], params["transfer"]
    seed, batch, lr = int(params["seed"]), int(curves.get("batch_size", 16)), cfg["learning_rate"]
    dim = int(params["word2vec"]["dim"])
    cases, excluded = paired_cases(cohort, bool(text.get("keep_negations", False)))
    if cfg["splits"] > len(cohort.split_columns):
        raise ParameterError(f"curves.settings.{name}.splits", cfg["splits"], f"at most splits.count = {len(cohort.split_columns)}")
    splits = [paired_split(cases, cohort.images, f"split_{k}", text) for k in range(cfg["splits"])]
    vocab_rows = max(len(data.vocab) for data in splits)
    built: dict[Any, tuple[Any, list[np.ndarray]]] = {} if models_cache is None else models_cache

    def model_for(model_name: str, data: PairedSplit, k: int, trained: Mapping[str, Any]):
        if model_name == "text":
            vectors = load_vectors(Path(word2vec_dir) / f"split_{k}.kv", expected_dim=dim)
            matrix, _ = embedding_matrix(data.vocab, vectors, dim, seed=seed + k)
            matrix = np.concatenate([matrix, np.zeros((vocab_rows - len(matrix), dim), np.float32)])
        key = model_name if model_name == "image" else (model_name, vocab_rows)  # the text branch's shape varies
        if key not in built:
            if model_name == "text":
                model = text_cnn(vocab_rows, dim, data.ids["train"].shape[1], tuple(cnn["kernel_sizes"]), int(cnn["feature_maps"]),
                                 float(cnn["l2"]), float(cnn["dropout"]), cnn["pool_size"], matrix)
                compile_text_cnn(model, lr, float(cnn.get("clipvalue", 3.0)), optimizers["text"])
            elif model_name == "image":
                model = finetune_model(int(params["image_size"]), image_cfg.get("architecture", "densenet121"), weights=str(encoder_path),
                                       hidden=int(image_cfg.get("hidden", 512)), dropout=float(image_cfg.get("dropout", 0.5)),
                                       bn_momentum=image_cfg.get("bn_momentum"))
                compile_finetune(model, lr, optimizers["image"])
            else:
                model = multimodal_model(trained["text"], trained["image"], cnn, image_cfg.get("architecture", "densenet121"),
                                         hidden=int(curves.get("hidden", 512)), dropout=float(curves.get("dropout", 0.3)),
                                         bn_momentum=image_cfg.get("bn_momentum"))
                model.compile(optimizer=make_optimizer(optimizers["multimodal"], lr, "curves.optimizers.multimodal"),
                              loss="binary_crossentropy", metrics=["accuracy"])
            built[key] = (model, model.get_weights())
            return model
        model, fresh = built[key]
        model.set_weights(fresh)
        if model_name == "text":
            model.get_layer(EMBEDDING_LAYER).set_weights([matrix])
        elif model_name == "image":
            load_encoder_weights(encoder_of(model), encoder_path)
        else:
            copy_submodel_weights(model, trained["text"], trained["image"])
        reset_optimizer(model, lr)
        return model

    def inputs(model_name: str, data: PairedSplit, part: str):
        return data.ids[part] if model_name == "text" else data.images[part] if model_name == "image" else [data.ids[part], data.images[part]]

    rows, finals = [], []
    # The models are built once (the caller's seed fixes their initial weights) and every fit draws its batch order
    # and dropout masks from (seed + 100 k, epoch).
    for k, data in enumerate(splits):
        column, trained = data.column, {}
        for model_name in MODELS:
            model = model_for(model_name, data, k, trained)
            start = time.perf_counter()
            history_path = None if partial_dir is None else Path(partial_dir) / f"{model_name}-{column}.json"
            if history_path is not None:
                history_path.parent.mkdir(parents=True, exist_ok=True)
            try:
                history = fit_binary(model, (inputs(model_name, data, "train"), data.labels["train"]),
                                     (inputs(model_name, data, "val"), data.labels["val"]),
                                     epochs=cfg["epochs"], batch_size=batch, name=f"curves {name}: {model_name} on {column}",
                                     history_path=history_path, seed=seed + 100 * k, log=None)
            except TrainingError as error:
                if partial_dir is None:
                    raise
                import json

                history = json.loads(history_path.read_text())
                rows += curve_rows(name, model_name, k, history)
                kept = Path(partial_dir) / "curves.csv"
                pd.DataFrame(rows).to_csv(kept, index=False)
                raise TrainingError(f"{error}; the curves up to it ({len(rows)} rows) are in {kept}") from error
            seconds = time.perf_counter() - start
            trained[model_name] = model
            rows += curve_rows(name, model_name, k, history)
            finals.append({"setting": name, "model": model_name, "split": k, "seconds": seconds,
                           "cases": {p: data.case_ids[p] for p in PARTS} if model_name == "text" else None,
                           "cases_sha256": cases_digest(data),
                           **{f"test_{m}": v for m, v in evaluate_binary(model, inputs(model_name, data, "test"), data.labels["test"]).items()}})
            log(f"curves {name} {column} {model_name}: val accuracy {history['val_accuracy'][-1]:.3f} after {cfg['epochs']} epochs, {seconds:.0f} s")
        parts = {p: (data.docs[p], data.labels[p]) for p in PARTS}
        for baseline, metrics in (("tf-idf + logistic regression", tfidf_logistic_regression(data.docs["train"], data.labels["train"], parts, seed=seed)),
                                  ("majority class", majority_class(data.labels["train"], {p: data.labels[p] for p in PARTS}))):
            finals.append({"setting": name, "model": baseline, "split": k, "val_accuracy": metrics["val"]["accuracy"],
                           "val_auroc": metrics["val"]["auroc"], "test_accuracy": metrics["test"]["accuracy"], "test_auroc": metrics["test"]["auroc"]})
        if save_models_to is not None and k == 0:
            save_models(Path(save_models_to), trained, data.vocab, {"setting": name, **cfg, "text": dict(text), "image_size": params["image_size"]})
    return pd.DataFrame(rows), finals, excluded


def cases_digest(data: PairedSplit) -> str:
    """SHA-256 of the split's case ids per part: equal digests = the models saw the same cases (a paired comparison)."""
    import hashlib
    import json

    return hashlib.sha256(json.dumps({p: data.case_ids[p] for p in PARTS}, sort_keys=True).encode()).hexdigest()


def curve_rows(setting: str, model: str, split: int, history: Mapping[str, list[float]]) -> list[dict[str, Any]]:
    """One tidy row per epoch of a fit's history (the CSV `dvc plots` draws)."""
    keys = {"val_accuracy": "val_accuracy", "val_loss": "val_loss", "val_auroc": "val_auroc", "train_loss": "loss", "train_accuracy": "accuracy"}
    return [{"setting": setting, "model": model, "split": split, "epoch": int(epoch),
             **{column: float(history.get(key, [float("nan")] * (i + 1))[i]) for column, key in keys.items()}}
            for i, epoch in enumerate(history["epoch"])]


def save_models(directory: Path, models: Mapping[str, Any], vocab: Vocabulary, config: Mapping[str, Any]) -> None:
    """The split-0 models of a setting, with the vocabulary: what `replication explain` and the detection stage load."""
    import json

    from replication.io import atomic_path

    with atomic_path(directory) as tmp:
        tmp.mkdir()
        for name, model in models.items():
            model.save(tmp / f"{name}.keras")
        (tmp / "vocabulary.json").write_text(vocab.to_json())
        (tmp / "config.json").write_text(json.dumps(config, indent=2, default=str))
