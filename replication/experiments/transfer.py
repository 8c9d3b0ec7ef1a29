"""Fig. 4 (paper section 2.2): fine-tuning on the IU target from a ChestX-ray14, an ImageNet or a scratch encoder.

Every (architecture, initialisation) over the first `transfer.splits` splits, one compiled model per architecture
reused across runs (re-initialised weights and optimizer state), so the train step is traced once per architecture
(a DenseNet-121 trace costs ~45 s on 2 CPU cores). Validation accuracy / loss / AUROC per epoch; the summary is the
mean ± sd over splits, with the pretrained-minus-scratch difference per split and the majority class beside it.
"""

from __future__ import annotations

import os
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from replication.data.store import Cohort
from replication.errors import DataError, ParameterError
from replication.experiments.images import PARTS, ImageSplit, Log, image_split
from replication.io import atomic_path, sha256_file
from replication import statistics as st
from replication.params import StatisticsParams, TransferParams
from replication.tracking import series_name

INITIALISATIONS = ("chestxray14", "imagenet", "scratch")
NOT_OFFLINE = "not run: weights not available offline"
TFIDF_SAME_CASES = "tf-idf (reports of the same cases)"
STAT_NAMES = ("mean_val_accuracy_over_epochs", "final_val_accuracy", "final_val_auroc", "test_accuracy", "test_auroc")


@dataclass
class TransferResult:
    """`runs`: one record per (architecture, initialisation, split), or a `not_run` reason per initialisation;
    `history`: the tidy per-epoch frame (init, split, epoch, val_accuracy, val_loss, val_auroc) the summary and
    the figure read; `histories`: each run's whole history by series name (the per-epoch logs)."""

    runs: list[dict[str, Any]]
    history: pd.DataFrame
    histories: dict[str, dict[str, list[Any]]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    precision: str = "float32"


def init_label(architecture: str, initialisation: str) -> str:
    return f"{architecture}/{initialisation}"


def finetune(
    model: Any,
    data: ImageSplit,
    section: TransferParams,
    seed: int,
    name: str,
    checkpoint_dir: str | Path | None = None,
    checkpoint_key: str = "",
    log: Log | None = print,
) -> tuple[dict[str, list[Any]], dict[str, Any]]:
    """Fine-tune a compiled `finetune_model` on one IU split: (per-epoch history, final metrics per part).

    A run finished earlier under the same checkpoint key is not repeated: its history and metrics are read back.
    """
    from replication.training.checkpoint import finish_checkpoint, finished_result
    from replication.training.loop import fit_binary
    from replication.training.batches import predict_scores
    from replication.training.metrics import evaluate_binary

    if checkpoint_dir is not None:
        done = finished_result(checkpoint_dir, checkpoint_key)
        if done is not None:
            if log:
                log(f"{name}: finished earlier (checkpoint {checkpoint_dir}); not repeated")
            return done
    batch = section.batch_size
    history = fit_binary(model, (data.x["train"], data.y["train"][:, 0]), (data.x["val"], data.y["val"][:, 0]),
                         epochs=section.epochs, batch_size=batch, name=name, seed=seed, flip=section.flip,
                         checkpoint_dir=checkpoint_dir, checkpoint_key=checkpoint_key, log=log)
    result: dict[str, Any] = {p: evaluate_binary(model, data.x[p], data.y[p][:, 0], batch_size=max(batch, 64)) for p in PARTS}
    result["counts"] = {p: int(len(data.y[p])) for p in PARTS}
    # per-case scores for the paired tests on the test split (and the threshold chosen on validation)
    result["scores"] = {p: predict_scores(model, data.x[p], max(batch, 64)).ravel().astype(float).tolist() for p in ("val", "test")}
    result["labels"] = {p: data.y[p][:, 0].astype(int).tolist() for p in PARTS}
    result["case_ids"] = {p: list(data.case_ids[p]) for p in PARTS}
    majority = float(data.y["train"][:, 0].mean() >= 0.5)
    result["majority_class"] = {f"{p}_accuracy": float(np.mean(data.y[p][:, 0] == majority)) for p in ("val", "test")}
    if checkpoint_dir is not None:
        finish_checkpoint(checkpoint_dir, result)
    return history, result


def transfer_comparison(
    cohort: Cohort,
    section: TransferParams,
    pretrained_architecture: str,
    image_size: int,
    seed: int,
    encoder_path: str | Path | None,
    checkpoint_root: str | Path | None = None,
    checkpoint_key: str = "",
    imagenet_search: Sequence[str] | None = None,
    log: Log | None = print,
) -> TransferResult:
    """Figure 4: validation accuracy per epoch on the IU target for each (architecture, initialisation) and split.

    DenseNet-121 from the ChestX-ray14 encoder (`encoder_path`, the pretrain stage's, which trains
    `pretrained_architecture`), from ImageNet (when the cached weights exist; otherwise the run is listed as not
    run) and from scratch; VGG16 / InceptionV3 on ImageNet (and scratch) when `section.architectures` asks. Each
    architecture's model is built and compiled once; before each run its weights are reset to the seed's fresh
    initialisation, the encoder is loaded from the chosen source and the optimizer state is zeroed.
    """
    from replication.models.densenet import (architecture as arch_of, compile_finetune, encoder_of, finetune_model,
                                             imagenet_weights_path, load_encoder_weights, load_imagenet_weights)
    from replication.training.loop import reset_optimizer
    from replication.training.precision import configure_precision
    from replication.training.seeding import seed_everything

    architectures, inits = list(section.architectures), list(section.initialisations)
    bad = [i for i in inits if i not in INITIALISATIONS]
    if bad or not inits:
        raise ParameterError("transfer.initialisations", inits, f"a non-empty list from {list(INITIALISATIONS)}")
    if not architectures:
        raise ParameterError("transfer.architectures", architectures, "a non-empty list")
    for a in architectures:
        arch_of(a, image_size, "transfer.architectures")
    if not 1 <= section.splits <= len(cohort.split_columns):
        raise ParameterError("transfer.splits", section.splits, f"1..{len(cohort.split_columns)} (the cohort's split columns)")
    if "label" not in cohort.cases.columns:
        raise DataError(cohort.name, "the target cohort needs a binary 'label' column")
    notes: list[str] = []
    precision = configure_precision(section.mixed_precision)
    if "ignored" in precision:
        notes.append(precision)
    splits = {c: image_split(cohort, c, ["label"], image_size, architectures[0]) for c in cohort.split_columns[:section.splits]}
    runs: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    histories: dict[str, dict[str, list[Any]]] = {}
    for arch in architectures:
        plan: list[tuple[str, Any]] = []
        for init in inits:
            label = init_label(arch, init)
            if init == "chestxray14":
                if arch != pretrained_architecture:
                    runs.append({"init": label, "not_run": f"not run: the pretrain stage trains {pretrained_architecture}, not {arch}"})
                elif encoder_path is None or not Path(encoder_path).is_file():
                    runs.append({"init": label, "not_run": f"not run: no ChestX-ray14 encoder at {encoder_path} (run the pretrain stage)"})
                else:
                    plan.append((init, Path(encoder_path)))
            elif init == "imagenet":
                path = imagenet_weights_path(arch, imagenet_search)
                if path is None:
                    runs.append({"init": label, "not_run": NOT_OFFLINE})
                    if log:
                        log(f"transfer: {label} {NOT_OFFLINE} (no {arch} ImageNet file in the Keras cache; nothing is downloaded)")
                else:
                    plan.append((init, path))
            else:
                plan.append((init, None))
        if not plan:
            continue
        seed_everything(seed)
        model = finetune_model(image_size, arch, None, section.hidden, section.dropout,
                               imagenet_search=imagenet_search, bn_momentum=section.bn_momentum)
        compile_finetune(model, section.learning_rate, section.optimizer)
        fresh = model.get_weights()
        digests = {source: sha256_file(source) for _, source in plan if source is not None}
        for init, source in plan:
            label = init_label(arch, init)
            for k, (column, data) in enumerate(splits.items()):
                model.set_weights(fresh)
                if init == "chestxray14":
                    load_encoder_weights(encoder_of(model), source)
                elif init == "imagenet":
                    load_imagenet_weights(encoder_of(model), source)
                reset_optimizer(model, section.learning_rate)
                ckpt = None if checkpoint_root is None else Path(checkpoint_root) / f"{arch}-{init}-{column}"
                key = f"{checkpoint_key}|{label}|{column}|{digests.get(source, '')}"
                history, result = finetune(model, data, section, seed + k, f"{label} {column}", ckpt, key, log)
                runs.append({"init": label, "architecture": arch, "initialisation": init, "split": column, "metrics": result,
                             "source_sha256": digests.get(source)})
                histories[series_name(arch, init, column)] = history
                for i, epoch in enumerate(history["epoch"]):
                    rows.append({"init": label, "split": column, "epoch": int(epoch), "val_accuracy": history["val_accuracy"][i],
                                 "val_loss": history["val_loss"][i], "val_auroc": history["val_auroc"][i]})
        del model
    frame = pd.DataFrame(rows, columns=["init", "split", "epoch", "val_accuracy", "val_loss", "val_auroc"])
    return TransferResult(runs, frame, histories, notes, precision)


def summarise_transfer(result: TransferResult) -> dict[str, Any]:
    """Per initialisation, mean ± std over splits of: final-epoch and mean-over-epochs validation accuracy,
    final validation AUROC, test accuracy/AUROC; and pretrained-minus-scratch differences per split."""
    out: dict[str, Any] = {}
    frame = result.history
    stat = lambda v: {"mean": float(np.mean(v)), "std": float(np.std(v, ddof=1)) if len(v) > 1 else 0.0, "n": int(len(v))}  # noqa: E731
    for init, group in frame.groupby("init", sort=False):
        last = group.sort_values("epoch").groupby("split").tail(1)
        per_split_mean = group.groupby("split")["val_accuracy"].mean()
        runs = [r for r in result.runs if r["init"] == init and r.get("metrics")]
        out[init] = {
            "splits": int(group["split"].nunique()),
            "epochs": int(group["epoch"].max()),
            "final_val_accuracy": stat(last["val_accuracy"].to_numpy()),
            "mean_val_accuracy_over_epochs": stat(per_split_mean.to_numpy()),
            "final_val_auroc": stat(last["val_auroc"].to_numpy()),
            "test_accuracy": stat([r["metrics"]["test"]["accuracy"] for r in runs]),
            "test_auroc": stat([r["metrics"]["test"]["auroc"] for r in runs]),
            "majority_class_val_accuracy": stat([r["metrics"]["majority_class"]["val_accuracy"] for r in runs]),
        }
    for r in result.runs:
        if r.get("not_run"):
            out.setdefault(r["init"], {"not_run": r["not_run"]})
    labels = list(out)
    for a in labels:
        arch, init = a.split("/")
        if init != "scratch" or "not_run" in out[a]:
            continue
        for b in labels:
            if b == a or not b.startswith(f"{arch}/") or "not_run" in out[b]:
                continue
            x = frame[frame["init"] == b].groupby("split")["val_accuracy"].mean()
            y = frame[frame["init"] == a].groupby("split")["val_accuracy"].mean()
            common = x.index.intersection(y.index)
            diff = (x[common] - y[common]).to_numpy()
            out[b]["minus_scratch_mean_val_accuracy_over_epochs"] = stat(diff)
            out[b]["splits_better_than_scratch"] = int((diff > 0).sum())
    return out


def transfer_tests(result: TransferResult, tokens: Mapping[str, Sequence[str]], statistics: StatisticsParams,
                   seed: int) -> dict[str, Any]:
    """Fig. 4 on the test split: per split each initialisation's test AUROC (DeLong interval) and accuracy at the
    threshold chosen on its validation scores, the majority class and TF-IDF on the reports of the same test cases,
    and each pretrained-minus-scratch difference with DeLong, McNemar and a paired bootstrap; across splits the
    corrected resampled t-test of those differences (when at least 2 splits ran).

    `tokens`: each case's cleaned report (`table2.clean_cases`), for the TF-IDF baseline; cases without text get
    an empty document."""
    from replication.models.baselines import tfidf_scores

    st.check_statistics(statistics.confidence, statistics.resamples)
    runs = [r for r in result.runs if r.get("metrics") and "scores" in r["metrics"]]
    splits: dict[str, dict[str, Any]] = {}
    for column in dict.fromkeys(r["split"] for r in runs):
        here = {r["init"]: r["metrics"] for r in runs if r["split"] == column}
        first = next(iter(here.values()))
        ids = first["case_ids"]
        for init, m in here.items():
            if m["case_ids"] != ids:
                raise DataError(column, f"{init} was scored on other cases than {next(iter(here))}; the paired tests need the same ones")
        y = {p: np.asarray(first["labels"][p]) for p in PARTS}
        scores = {init: (m["scores"]["val"], m["scores"]["test"]) for init, m in here.items()}
        docs = {p: [list(tokens.get(c, ())) for c in ids[p]] for p in PARTS}
        tfidf = tfidf_scores(docs["train"], y["train"], {p: docs[p] for p in ("val", "test")}, seed=seed)
        scores[TFIDF_SAME_CASES] = (tfidf["val"], tfidf["test"])
        pairs = [(init, init.split("/")[0] + "/scratch") for init in here if not init.endswith("/scratch")]
        splits[column] = {**st.compare_on_test(y["val"], y["test"], scores, pairs, float(y["train"].mean() >= 0.5),
                                               statistics.resamples, statistics.confidence, seed), "counts": first["counts"]}
    rows = list(splits.values())
    n_train = float(np.mean([s["counts"]["train"] for s in rows])) if rows else 0.0
    n_test = float(np.mean([s["counts"]["test"] for s in rows])) if rows else 0.0
    return {"splits": splits, **st.summarise_splits(rows, n_train, n_test, statistics.confidence)}


def transfer_tests_markdown(tests: Mapping[str, Any], confidence: float = 0.95) -> str:
    return st.tests_markdown(tests, list(tests["splits"].values()), "Fig. 4 on the test split", ("majority class", TFIDF_SAME_CASES), confidence)


def transfer_metrics(summary: Mapping[str, Any]) -> dict[str, Any]:
    """The numbers a reader compares across commits, per initialisation that ran: means over splits with their sd
    (`<name>`, `<name>_sd`), the majority class's validation accuracy and the difference from scratch."""
    out: dict[str, Any] = {}
    for init, s in summary.items():
        if "not_run" in s:
            continue
        row: dict[str, Any] = {}
        for name in STAT_NAMES:
            row[name], row[f"{name}_sd"] = s[name]["mean"], s[name]["std"]
        row["majority_class_val_accuracy"] = s["majority_class_val_accuracy"]["mean"]
        diff = s.get("minus_scratch_mean_val_accuracy_over_epochs")
        if diff:
            row["minus_scratch"], row["minus_scratch_sd"] = diff["mean"], diff["std"]
            row["splits_better_than_scratch"] = s["splits_better_than_scratch"]
        out[init] = row
    return out


def transfer_manifest(cohort: Cohort, result: TransferResult, summary: Mapping[str, Any]) -> dict[str, Any]:
    """What the comparison was made of: the cohort, precision, splits and epochs per initialisation, what did not run."""
    return {"synthetic": cohort.synthetic, "source": cohort.source, "cohort": cohort.name, "precision": result.precision,
            "initialisations": {init: ({"not_run": s["not_run"]} if "not_run" in s else {"splits": s["splits"], "epochs": s["epochs"]})
                                for init, s in summary.items()},
            "counts": {r["split"]: r["metrics"]["counts"] for r in result.runs if r.get("metrics")},
            "encoder_sha256": {r["init"]: r["source_sha256"] for r in result.runs if r.get("source_sha256")},
            "notes": result.notes}


def transfer_markdown(summary: Mapping[str, Any], synthetic: bool) -> str:
    """Figure 4 as a table: mean ± sd over splits, with the majority class's validation accuracy beside it."""
    lines = []
    if synthetic:
        lines.append("> SYNTHETIC DATA: these numbers are not comparable with the paper's.\n")
    lines.append("| initialisation | val accuracy, mean over epochs | final val accuracy | majority-class val accuracy | final val AUROC | "
                 "test accuracy | test AUROC | minus scratch (val accuracy, mean over epochs) | splits |")
    lines.append("|---|---|---|---|---|---|---|---|---|")
    cell = lambda s: f"{s['mean']:.3f} ± {s['std']:.3f}"  # noqa: E731
    for init, s in summary.items():
        if "not_run" in s:
            lines.append(f"| {init} | {s['not_run']} | | | | | | | |")
            continue
        diff = s.get("minus_scratch_mean_val_accuracy_over_epochs")
        diff_text = f"{diff['mean']:+.3f} ± {diff['std']:.3f} ({s['splits_better_than_scratch']}/{diff['n']} splits better)" if diff else "—"
        lines.append(f"| {init} | {cell(s['mean_val_accuracy_over_epochs'])} | {cell(s['final_val_accuracy'])} | "
                     f"{cell(s['majority_class_val_accuracy'])} | {cell(s['final_val_auroc'])} | "
                     f"{cell(s['test_accuracy'])} | {cell(s['test_auroc'])} | {diff_text} | {s['splits']} |")
    return "\n".join(lines) + "\n"


def figure_4(result: TransferResult, summary: Mapping[str, Any], section: TransferParams, image_size: int, synthetic: bool,
             out_png: str | os.PathLike | None, out_html: str | os.PathLike | None) -> list[Path]:
    """Fig. 4 with its title, the initialisations that did not run and the majority class's line."""
    title = (f"Fig. 4 replication: IU validation accuracy per epoch (mean ± sd over {section.splits} splits, "
             f"{image_size} px, lr {section.learning_rate})")
    if synthetic:
        title = "SYNTHETIC DATA - " + title
    majority = [r["metrics"]["majority_class"]["val_accuracy"] for r in result.runs if r.get("metrics")]
    baseline = sum(majority) / len(majority) if majority else None
    not_run = {k: v["not_run"] for k, v in summary.items() if "not_run" in v}
    return plot_transfer_curves(result.history, out_png, out_html, title, not_run=not_run, baseline=baseline)


def plot_transfer_curves(
    history: Any,
    out_png: str | os.PathLike | None,
    out_html: str | os.PathLike | None,
    title: str,
    not_run: dict[str, str] | None = None,
    baseline: float | None = None,
) -> list[Path]:
    """Figure 4: validation accuracy per epoch per initialisation, mean line and ± sd band over splits.

    `history` is the tidy frame (init, split, epoch, val_accuracy, …). The PNG is seaborn; the HTML is plotly with
    plotly.js inlined (`include_plotlyjs=True`), so it opens offline. Initialisations that were not run are named
    under the plot; `baseline` (the majority class's validation accuracy) is a dotted line.
    """
    frame = pd.DataFrame(history)
    footer = "; ".join(f"{k}: {v}" for k, v in (not_run or {}).items())
    written: list[Path] = []
    if out_png is not None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import seaborn as sns

        fig, ax = plt.subplots(figsize=(7.5, 4.6))
        if len(frame):
            sns.lineplot(data=frame, x="epoch", y="val_accuracy", hue="init", errorbar="sd", marker="o", ax=ax)
        if baseline is not None:
            ax.axhline(baseline, color="gray", ls=":", lw=1.2, label=f"majority class ({baseline:.3f})")
            ax.legend(fontsize=8)
        ax.set_xlabel("epoch")
        ax.set_ylabel("validation accuracy (IU target)")
        ax.set_title(textwrap.fill(title, 80), fontsize=9)
        if len(frame):
            ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        if footer:
            fig.text(0.01, 0.01, textwrap.fill(footer, 120), fontsize=7, color="dimgray")
        fig.tight_layout(rect=(0, 0.05 if footer else 0, 1, 1))
        out_png = Path(out_png)
        with atomic_path(out_png) as tmp:
            fig.savefig(tmp, format="png", dpi=110)
        plt.close(fig)
        written.append(out_png)
    if out_html is not None:
        import plotly.graph_objects as go

        fig = go.Figure()
        palette = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2"]
        for k, (init, group) in enumerate(frame.groupby("init", sort=False)):
            stats = group.groupby("epoch")["val_accuracy"].agg(["mean", "std", "count"]).reset_index().fillna({"std": 0.0})
            colour = palette[k % len(palette)]
            band_x = list(stats["epoch"]) + list(stats["epoch"][::-1])
            band_y = list(stats["mean"] + stats["std"]) + list((stats["mean"] - stats["std"])[::-1])
            fig.add_trace(go.Scatter(x=band_x, y=band_y, fill="toself", fillcolor=colour, opacity=0.15, line={"width": 0},
                                     hoverinfo="skip", showlegend=False, name=f"{init} ± sd"))
            fig.add_trace(go.Scatter(x=stats["epoch"], y=stats["mean"], mode="lines+markers", name=init, line={"color": colour},
                                     customdata=stats[["std", "count"]].to_numpy(),
                                     hovertemplate="epoch %{x}<br>mean val accuracy %{y:.3f}<br>sd %{customdata[0]:.3f} over %{customdata[1]} splits"))
        if baseline is not None:
            fig.add_hline(y=baseline, line_dash="dot", line_color="gray", annotation_text=f"majority class ({baseline:.3f})")
        fig.update_layout(title={"text": title, "font": {"size": 12}}, xaxis_title="epoch", yaxis_title="validation accuracy (IU target)",
                          template="plotly_white")
        if footer:
            fig.add_annotation(text=footer, xref="paper", yref="paper", x=0, y=-0.22, showarrow=False, font={"size": 10})
        out_html = Path(out_html)
        with atomic_path(out_html) as tmp:
            fig.write_html(str(tmp), include_plotlyjs=True, full_html=True)
        written.append(out_html)
    return written
