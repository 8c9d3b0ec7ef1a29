"""Paper Fig. 5 and Table 3 (§4): text, image and multimodal trained on the same splits at each learning rate.

For one learning-rate setting and each split: the text CNN starts from the split's word2vec embedding,
the image model from the ChestX-ray14 encoder, each is trained for the setting's epochs at its learning
rate, then the multimodal is built from those two trained submodels and trained the same way. Every
model sees exactly the same cases (those with a report and an image), so the comparison is paired.

`run_setting` is the protocol (the `curves` stage); `table3`, `table3_markdown` and `plot_fig5` turn its
per-epoch curves into the paper's table and figure (the `table3` stage). The paper reports accuracy "on
average of 50 epochs": the mean over epochs of the validation accuracy; each split gives one such mean (and a
final-epoch and a best-epoch accuracy, and the final AUROC); the table shows mean ± std over splits and the
paired differences multimodal − text and multimodal − image with a 95% t-interval across splits.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from replication.data.store import Cohort, Exclusions
from replication.data.text import Vocabulary
from replication.errors import DataError, ParameterError
from replication.experiments.reference import paper_value
from replication.experiments.table2 import PARTS, clean_cases
from replication.figures import MODEL_COLOURS
from replication.io import atomic_path, write_json
from replication.params import CurveSetting, CurvesParams, Params, TextCnnParams, TextParams, TransferParams, plain

MODELS = ("text", "image", "multimodal")   # the training order: the multimodal starts from the other two
BASELINES = ("tf-idf + logistic regression", "majority class")
CURVE_COLUMNS = ("setting", "model", "split", "epoch", "val_accuracy", "val_loss", "val_auroc")


@dataclass(frozen=True)
class Protocol:
    """The parameter sections the curves use: the protocol itself, the text side (cleaning, CNN, embedding size) and
    the image side (the fine-tuning head of `transfer`, the encoder architecture that `pretrain` trained)."""

    curves: CurvesParams
    text: TextParams
    text_cnn: TextCnnParams
    image: TransferParams
    architecture: str
    embedding_dim: int
    image_size: int
    seed: int

    @classmethod
    def from_params(cls, params: Params) -> "Protocol":
        return cls(params.curves, params.text, params.text_cnn, params.transfer, params.pretrain.architecture,
                   params.word2vec.dim, params.image_size, params.seed)


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


def paired_split(cases: pd.DataFrame, images: np.ndarray, column: str, text: TextParams, channel: bool = True) -> PairedSplit:
    """Encode one split of the paired cases; the vocabulary is fitted on its training reports only. `images` is
    indexed by the cases' `image_index`: pixel arrays (given a channel axis) or, with `channel=False`, encoder features."""
    parts = {p: cases[cases[column] == p] for p in PARTS}
    for p, rows in parts.items():
        if len(rows) == 0 or rows["label"].nunique() < 2:
            raise DataError(column, f"the {p} part of the paired cases has {'no case' if len(rows) == 0 else 'one class only'}")
    vocab = Vocabulary.fit(parts["train"]["tokens"], text.max_words)
    length = text.sequence_length
    return PairedSplit(
        column=column,
        ids={p: vocab.encode(list(rows["tokens"]), length)[0] for p, rows in parts.items()},
        images={p: np.asarray(images[rows["image_index"].to_numpy()], dtype=np.float32)[(..., None) if channel else ...]
                for p, rows in parts.items()},
        labels={p: rows["label"].to_numpy(np.float32) for p, rows in parts.items()},
        docs={p: list(rows["tokens"]) for p, rows in parts.items()},
        case_ids={p: list(rows["case_id"]) for p, rows in parts.items()},
        vocab=vocab,
    )


def check_setting(name: str, setting: CurveSetting) -> CurveSetting:
    if setting.learning_rate <= 0:
        raise ParameterError(f"curves.settings.{name}.learning_rate", setting.learning_rate, "a positive number")
    for key in ("epochs", "splits"):
        if getattr(setting, key) < 1:
            raise ParameterError(f"curves.settings.{name}.{key}", getattr(setting, key), "an integer >= 1")
    return setting


def run_setting(
    name: str,
    protocol: Protocol,
    cohort: Cohort,
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
    from replication.training.loop import TrainingError, fit_binary, reset_optimizer
    from replication.training.metrics import evaluate_binary

    if name not in protocol.curves.settings:
        raise ParameterError("curves.settings", sorted(protocol.curves.settings), f"a setting named {name!r}")
    cfg = check_setting(name, protocol.curves.settings[name])
    curves, text, cnn, image_cfg = protocol.curves, protocol.text, protocol.text_cnn, protocol.image
    optimizers = {"text": curves.optimizers.text, "image": curves.optimizers.image, "multimodal": curves.optimizers.multimodal}
    seed, lr, dim = protocol.seed, cfg.learning_rate, protocol.embedding_dim
    cases, excluded = paired_cases(cohort, text.keep_negations)
    if cfg.splits > len(cohort.split_columns):
        raise ParameterError(f"curves.settings.{name}.splits", cfg.splits, f"at most splits.count = {len(cohort.split_columns)}")
    splits = [paired_split(cases, cohort.images, f"split_{k}", text) for k in range(cfg.splits)]
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
                model = text_cnn(vocab_rows, dim, data.ids["train"].shape[1], tuple(cnn.kernel_sizes), cnn.feature_maps,
                                 cnn.l2, cnn.dropout, cnn.pool_size, matrix)
                compile_text_cnn(model, lr, cnn.clipvalue, optimizers["text"])
            elif model_name == "image":
                model = finetune_model(protocol.image_size, protocol.architecture, weights=str(encoder_path),
                                       hidden=image_cfg.hidden, dropout=image_cfg.dropout, bn_momentum=image_cfg.bn_momentum)
                compile_finetune(model, lr, optimizers["image"])
            else:
                model = multimodal_model(trained["text"], trained["image"], cnn.l2, protocol.architecture,
                                         hidden=curves.hidden, dropout=curves.dropout, bn_momentum=image_cfg.bn_momentum)
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
            history_path = None if partial_dir is None else Path(partial_dir) / f"{model_name}-{column}.json"
            if history_path is not None:
                history_path.parent.mkdir(parents=True, exist_ok=True)
            try:
                history = fit_binary(model, (inputs(model_name, data, "train"), data.labels["train"]),
                                     (inputs(model_name, data, "val"), data.labels["val"]),
                                     epochs=cfg.epochs, batch_size=getattr(curves.batch_sizes, model_name), name=f"curves {name}: {model_name} on {column}",
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
            trained[model_name] = model
            rows += curve_rows(name, model_name, k, history)
            finals.append({"setting": name, "model": model_name, "split": k,
                           "cases": {p: data.case_ids[p] for p in PARTS} if model_name == "text" else None,
                           "cases_sha256": cases_digest(data),
                           **{f"test_{m}": v for m, v in evaluate_binary(model, inputs(model_name, data, "test"), data.labels["test"]).items()}})
            log(f"curves {name} {column} {model_name}: val accuracy {history['val_accuracy'][-1]:.3f} after {cfg.epochs} epochs")
        parts = {p: (data.docs[p], data.labels[p]) for p in PARTS}
        for baseline, metrics in ((BASELINES[0], tfidf_logistic_regression(data.docs["train"], data.labels["train"], parts, seed=seed)),
                                  (BASELINES[1], majority_class(data.labels["train"], {p: data.labels[p] for p in PARTS}))):
            finals.append({"setting": name, "model": baseline, "split": k, "val_accuracy": metrics["val"]["accuracy"],
                           "val_auroc": metrics["val"]["auroc"], "test_accuracy": metrics["test"]["accuracy"], "test_auroc": metrics["test"]["auroc"]})
        if save_models_to is not None and k == 0:
            save_models(Path(save_models_to), trained, data.vocab, {"setting": name, **plain(cfg), "text": plain(text), "image_size": protocol.image_size})
    return pd.DataFrame(rows), finals, excluded


SETTINGS = ("low", "high")   # the paper's two learning-rate settings; dvc.yaml declares their outputs


def run_curves(cohort: Cohort, params: Params, encoder_path: str | Path, word2vec_dir: str | Path, results: str | Path,
               models: str | Path, partial: str | Path, log: Any = print) -> None:
    """Every setting in one process, sharing the built models: per setting `results`/<setting>/ gets curves.csv (the
    tidy per-epoch table Table 3 is computed from), final.json (the runs' test metrics, baselines, case digests) and
    epochs/<model>-split_<k>/ (dvclive series: one line per model and split in `dvc plots show`); the split-0 models
    go to `models`/<setting>. Seeds once, before the first model is built (see `run_setting`)."""
    import shutil

    from replication.tracking import log_history, series_name
    from replication.training.seeding import seed_everything

    if sorted(params.curves.settings) != sorted(SETTINGS):
        raise ParameterError("curves.settings", sorted(params.curves.settings), f"exactly the settings {list(SETTINGS)} (dvc.yaml declares their outputs)")
    protocol = Protocol.from_params(params)
    seed_everything(protocol.seed)
    shared: dict = {}
    for setting in SETTINGS:
        scratch = Path(partial) / setting
        shutil.rmtree(scratch, ignore_errors=True)
        curves, finals, excluded = run_setting(setting, protocol, cohort, encoder_path, word2vec_dir, save_models_to=Path(models) / setting,
                                               partial_dir=scratch, log=log, models_cache=shared)
        shutil.rmtree(scratch, ignore_errors=True)
        with atomic_path(Path(results) / setting) as tmp:
            tmp.mkdir(parents=True)
            curves.to_csv(tmp / "curves.csv", index=False)
            write_json(tmp / "final.json", {"setting": setting, "synthetic": cohort.synthetic, "source": cohort.source,
                                            "excluded": excluded.summary(), "runs": finals})
            for (model, split), group in curves.groupby(["model", "split"], sort=False):
                log_history(tmp / "epochs" / series_name(model, f"split_{split}"),
                            {"epoch": list(group["epoch"]), **{c: list(group[c]) for c in ("val_accuracy", "val_loss", "val_auroc", "train_loss")}})
        if log:
            log(f"curves {setting}: {len(curves)} rows")


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

    with atomic_path(directory) as tmp:
        tmp.mkdir()
        for name, model in models.items():
            model.save(tmp / f"{name}.keras")
        (tmp / "vocabulary.json").write_text(vocab.to_json())
        (tmp / "config.json").write_text(json.dumps(config, indent=2, default=str))


# ------------------------------------------------------------------------------------------ Table 3 and Fig. 5
def check_curves(curves: pd.DataFrame) -> pd.DataFrame:
    """One row per (setting, model, split, epoch), every column present."""
    missing = [c for c in CURVE_COLUMNS if c not in curves.columns]
    if missing:
        raise DataError("curves table", f"missing columns {missing}")
    dup = curves.duplicated(["setting", "model", "split", "epoch"])
    if dup.any():
        row = curves.loc[dup].iloc[0]
        raise DataError("curves table", "more than one row for one (setting, model, split, epoch)", record=tuple(row[["setting", "model", "split", "epoch"]]))
    return curves


def per_split(curves: pd.DataFrame) -> pd.DataFrame:
    """For each (setting, model, split): mean accuracy over epochs, final, best, final AUROC, epochs."""
    check_curves(curves)
    ordered = curves.sort_values("epoch")
    grouped = ordered.groupby(["setting", "model", "split"], sort=False)
    return grouped.agg(
        mean_accuracy=("val_accuracy", "mean"),
        final_accuracy=("val_accuracy", "last"),
        best_accuracy=("val_accuracy", "max"),
        final_auroc=("val_auroc", "last"),
        epochs=("epoch", "max"),
    ).reset_index()


def paired_difference(values_a: np.ndarray, values_b: np.ndarray, confidence: float = 0.95) -> dict[str, float]:
    """Mean of a − b over paired splits with a t-interval; with one split the interval is undefined (NaN)."""
    d = np.asarray(values_a, float) - np.asarray(values_b, float)
    mean = float(d.mean())
    if len(d) < 2:
        return {"mean": mean, "low": float("nan"), "high": float("nan"), "splits": int(len(d))}
    half = float(stats.t.ppf(0.5 + confidence / 2, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d)))
    return {"mean": mean, "low": mean - half, "high": mean + half, "splits": int(len(d))}


def table3(curves: pd.DataFrame, reference: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Per setting and model: mean ± std over splits of each per-split statistic, the paper's number, and paired gaps."""
    splits = per_split(curves)
    out: dict[str, Any] = {}
    for setting, rows in splits.groupby("setting", sort=False):
        entry: dict[str, Any] = {"models": {}, "differences": {}}
        for model, group in rows.groupby("model", sort=False):
            entry["models"][model] = {
                col: {"mean": float(group[col].mean()), "std": float(group[col].std(ddof=1)) if len(group) > 1 else 0.0}
                for col in ("mean_accuracy", "final_accuracy", "best_accuracy", "final_auroc")
            }
            entry["models"][model]["splits"] = int(len(group))
            entry["models"][model]["epochs"] = int(group["epochs"].max())
            paper = paper_value(reference, f"table3.{setting}.{model}")
            entry["models"][model]["paper_mean_accuracy"] = paper
        wide = rows.pivot(index="split", columns="model", values="mean_accuracy")
        for other in ("text", "image"):
            if "multimodal" in wide and other in wide:
                paired = wide[["multimodal", other]].dropna()
                entry["differences"][f"multimodal - {other}"] = paired_difference(paired["multimodal"], paired[other])
        out[str(setting)] = entry
    return out


def table3_summary(curves: pd.DataFrame, finals: Sequence[Mapping[str, Any]], reference: Mapping[str, Any] | None = None
                   ) -> tuple[dict[str, Any], dict[str, Any]]:
    """(summary, baselines): `table3` of the curves with each model's test accuracy over splits added, and the
    baselines' validation accuracy and AUROC per setting (`finals`: the `run_setting` runs of every setting)."""
    summary = table3(curves, reference)
    runs = pd.DataFrame(list(finals))
    baselines: dict[str, Any] = {}
    for setting, group in runs.groupby("setting", sort=False):
        base = group[group["model"].isin(BASELINES)]
        baselines[str(setting)] = {m: {"accuracy": float(g["val_accuracy"].mean()), "auroc": float(g["val_auroc"].mean())}
                                   for m, g in base.groupby("model")}
        for model, g in group[group["model"].isin(MODELS)].groupby("model"):
            summary[str(setting)]["models"][model]["test_accuracy"] = {
                "mean": float(g["test_accuracy"].mean()), "std": float(g["test_accuracy"].std(ddof=1)) if len(g) > 1 else 0.0}
    return summary, baselines


def table3_metrics(summary: Mapping[str, Any], baselines: Mapping[str, Any]) -> dict[str, Any]:
    """What `dvc metrics` compares across commits, per setting: each model's accuracy averaged over epochs (mean, sd),
    final and best accuracy, final AUROC, test accuracy; the paired differences; the baselines."""
    out: dict[str, Any] = {}
    for setting, entry in summary.items():
        block: dict[str, Any] = {}
        for model, s in entry["models"].items():
            block[model] = {"mean_accuracy": s["mean_accuracy"]["mean"], "mean_accuracy_sd": s["mean_accuracy"]["std"],
                            "final_accuracy": s["final_accuracy"]["mean"], "best_accuracy": s["best_accuracy"]["mean"],
                            "final_auroc": s["final_auroc"]["mean"], "test_accuracy": s.get("test_accuracy", {}).get("mean")}
        for name, d in entry["differences"].items():
            block[name.replace(" - ", "_minus_")] = {"mean": d["mean"], "low": d["low"], "high": d["high"]}
        block["baselines"] = {name: dict(b) for name, b in baselines.get(setting, {}).items()}
        out[setting] = block
    return out


def table3_markdown(summary: Mapping[str, Any], synthetic: bool, baselines: Mapping[str, Mapping[str, float]] | None = None) -> str:
    """Table 3 as Markdown, one block per learning-rate setting."""
    cell = lambda s: f"{s['mean']:.3f} ± {s['std']:.3f}"
    lines = ["> SYNTHETIC DATA: these numbers are not comparable with the paper's.\n"] if synthetic else []
    for setting, entry in summary.items():
        lines += [f"**{setting}**\n", "| model | accuracy, mean over epochs | final epoch | best epoch | final AUROC | splits × epochs | paper |",
                  "|---|---|---|---|---|---|---|"]
        for model, s in entry["models"].items():
            paper = s.get("paper_mean_accuracy")
            lines.append(f"| {model} | {cell(s['mean_accuracy'])} | {cell(s['final_accuracy'])} | {cell(s['best_accuracy'])} | "
                         f"{cell(s['final_auroc'])} | {s['splits']} × {s['epochs']} | {paper if paper is not None else '—'} |")
        for name, b in (baselines or {}).items():
            lines.append(f"| {name} (baseline) | {b['accuracy']:.3f} | | | {b.get('auroc', float('nan')):.3f} | | — |")
        for name, d in entry["differences"].items():
            if d["splits"] < 2:
                lines.append(f"\n{name}: {d['mean']:+.3f} (one split: no interval)")
            else:   # a plain t-interval over overlapping resampled splits: shown as the paper's protocol gives it, not as evidence
                lines.append(f"\n{name}: {d['mean']:+.3f} (plain t-interval {d['low']:+.3f} to {d['high']:+.3f} over {d['splits']} "
                             "overlapping splits: anti-conservative; the fair protocol's tests are the evidence)")
        lines.append("")
    return "\n".join(lines) + "\n"


def plot_fig5(curves: Any, out_png: str | os.PathLike | None, out_html: str | os.PathLike | None, synthetic: bool) -> list[Path]:
    """Figure 5: one panel per learning-rate setting, validation accuracy per epoch, mean line ± sd band per model.
    Either output may be None (the HTML inlines plotly.js, ~4 MB: the stage keeps it out of git)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd
    import plotly.graph_objects as go
    import seaborn as sns
    from plotly.subplots import make_subplots

    frame = pd.DataFrame(curves)
    settings = list(dict.fromkeys(frame["setting"]))
    note = "SYNTHETIC DATA: not comparable with the paper" if synthetic else ""
    fig, axes = plt.subplots(1, len(settings), figsize=(5.2 * len(settings), 4.2), squeeze=False)
    for ax, setting in zip(axes[0], settings):
        sns.lineplot(data=frame[frame["setting"] == setting], x="epoch", y="val_accuracy", hue="model", palette=MODEL_COLOURS,
                     errorbar="sd", marker="o", ax=ax)
        ax.set_title(f"{setting} learning rate", fontsize=10)
        ax.set_ylabel("validation accuracy")
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    if note:
        fig.suptitle(note, fontsize=9, color="darkred")
    fig.tight_layout()
    written = [Path(p) for p in (out_png, out_html) if p is not None]
    if out_png is not None:
        with atomic_path(out_png) as tmp:
            fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    if out_html is None:
        return written
    html = make_subplots(rows=1, cols=len(settings), subplot_titles=[f"{s} learning rate" for s in settings])
    for col, setting in enumerate(settings, start=1):
        for model, group in frame[frame["setting"] == setting].groupby("model", sort=False):
            stats = group.groupby("epoch")["val_accuracy"].agg(["mean", "std", "count"]).reset_index().fillna({"std": 0.0})
            colour = MODEL_COLOURS.get(model, "#7f7f7f")
            html.add_trace(go.Scatter(x=list(stats["epoch"]) + list(stats["epoch"][::-1]),
                                      y=list(stats["mean"] + stats["std"]) + list((stats["mean"] - stats["std"])[::-1]),
                                      fill="toself", fillcolor=colour, opacity=0.15, line={"width": 0}, hoverinfo="skip", showlegend=False),
                           row=1, col=col)
            html.add_trace(go.Scatter(x=stats["epoch"], y=stats["mean"], mode="lines+markers", name=f"{model} ({setting})",
                                      line={"color": colour}, customdata=stats[["std", "count"]].to_numpy(),
                                      hovertemplate=f"{model}<br>epoch %{{x}}<br>mean %{{y:.3f}}<br>sd %{{customdata[0]:.3f}} over %{{customdata[1]}} splits"),
                           row=1, col=col)
    html.update_layout(title={"text": f"Fig. 5: validation accuracy over epochs{' (' + note + ')' if note else ''}", "font": {"size": 12}},
                       template="plotly_white")
    with atomic_path(out_html) as tmp:
        html.write_html(str(tmp), include_plotlyjs=True, full_html=True)
    return written
