"""ChestX-ray14 pretraining (paper section 2.2): the CheXNet recipe whose encoder Fig. 4 and the multimodal start from.

DenseNet-121, one sigmoid per finding, class-weighted binary cross-entropy, Adam, learning rate /10 on a
validation-loss plateau, random horizontal flips, ImageNet initialisation when its weights are cached (otherwise
scratch, with a note), the weights of the epoch with the lowest validation loss kept; per-class and mean AUROC on
the test split, beside the published means (paper/reference.yaml's `published:`) on real 14-class data.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from replication.data.store import Cohort
from replication.errors import DataError, ParameterError
from replication.experiments.images import PARTS, Log, image_split, resolve_imagenet
from replication.io import atomic_path
from replication.params import PretrainParams, plain

PUBLISHED_KEY = "chestxray14_mean_auroc"


@dataclass
class PretrainResult:
    """The trained model (weights of the kept epoch), its per-epoch history, the test and validation evaluations
    (`evaluate_multilabel`) and what the run was made of (manifest: counts, class weights, notes, ...)."""

    model: Any
    history: dict[str, list[Any]]
    test: dict[str, Any]
    val: dict[str, Any]
    kept_epoch: int
    manifest: dict[str, Any]


def pretrain(
    cohort: Cohort,
    section: PretrainParams,
    image_size: int,
    seed: int,
    checkpoint_dir: str | Path | None = None,
    checkpoint_key: str = "",
    imagenet_search: Sequence[str] | None = None,
    log: Log | None = print,
) -> PretrainResult:
    """CheXNet-style multi-label pretraining on `cohort` (its label_names); a killed run resumes from `checkpoint_dir`."""
    from replication.models.densenet import architecture as arch_of, make_optimizer, pretraining_model
    from replication.training.batches import Batches
    from replication.training.loop import Plateau, fit_epochs
    from replication.training.losses import WeightedBinaryCrossentropy, class_balance_weights
    from replication.training.metrics import evaluate_multilabel
    from replication.training.precision import configure_precision
    from replication.training.seeding import seed_everything

    arch = arch_of(section.architecture, image_size, "pretrain.architecture")
    if not cohort.label_names:
        raise DataError(cohort.name, "a pretraining cohort needs multi-label targets (label_names is empty)")
    if not 0 <= section.split < len(cohort.split_columns):
        raise ParameterError("pretrain.split", section.split, f"an index into the cohort's {len(cohort.split_columns)} split columns")
    data = image_split(cohort, cohort.split_columns[section.split], cohort.label_names, image_size, arch.key)
    notes: list[str] = []
    precision = configure_precision(section.mixed_precision)
    if "ignored" in precision:
        notes.append(precision)
        if log:
            log(f"pretrain: {precision}")
    if section.initialisation not in ("imagenet", "scratch"):
        raise ParameterError("pretrain.initialisation", section.initialisation, "'imagenet' or 'scratch'")
    weights, used, note = (resolve_imagenet(arch.key, section.require_imagenet, imagenet_search, log)
                           if section.initialisation == "imagenet" else (None, "scratch", "scratch initialisation requested"))
    notes.append(note)
    labels = list(cohort.label_names)
    if section.class_weighting:
        wp, wn = class_balance_weights(data.y["train"])
    else:
        wp, wn = np.ones(len(labels), np.float32), np.ones(len(labels), np.float32)
    seed_everything(seed)
    model = pretraining_model(image_size, labels, arch.key, weights, imagenet_search)
    model.compile(optimizer=make_optimizer(section.optimizer, section.learning_rate, "pretrain"), loss=WeightedBinaryCrossentropy(wp, wn))
    batch = section.batch_size

    def train_data(epoch: int) -> dict[str, Any]:
        return {"x": Batches(data.x["train"], data.y["train"], batch, seed=seed, epoch=epoch, flip=section.flip, drop_remainder=True)}

    def evaluate(m: Any, part: str = "val") -> dict[str, Any]:
        return evaluate_multilabel(m, data.x[part], data.y[part], labels, wp, wn, batch_size=max(batch, 64))

    def validation(m: Any) -> dict[str, Any]:
        r = evaluate(m)
        return {"loss": r["loss"], "mean_auroc": r["mean_auroc"], "auroc": r["auroc"]}

    history = fit_epochs(model, train_data, validation, section.epochs, "pretrain", checkpoint_dir=checkpoint_dir,
                         checkpoint_key=checkpoint_key, seed=seed, plateau=Plateau.from_params(section.plateau),
                         keep_best="val_loss" if section.keep_best else None, log=log)
    test, val = evaluate(model, "test"), evaluate(model, "val")
    kept = (int(history["epoch"][int(np.nanargmin(history["val_loss"]))]) if section.keep_best and np.isfinite(history["val_loss"]).any()
            else int(history["epoch"][-1]))
    counts = {p: int(len(data.y[p])) for p in PARTS}
    manifest: dict[str, Any] = {
        "synthetic": cohort.synthetic, "source": cohort.source, "cohort": cohort.name,
        "architecture": arch.key, "image_size": image_size, "split": data.column, "seed": seed,
        "initialisation_requested": section.initialisation, "initialisation_used": used, "precision": precision,
        "labels": labels, "counts": counts, "cases_without_image": data.excluded,
        "positives": {p: dict(zip(labels, data.y[p].sum(axis=0).astype(int).tolist())) for p in PARTS},
        "class_weights": {"positive": dict(zip(labels, wp.tolist())), "negative": dict(zip(labels, wn.tolist()))},
        "classes_scored": {"test": test["classes_scored"], "val": val["classes_scored"]},
        "epochs_trained": len(history["epoch"]),
        "train_images_per_epoch": counts["train"] // batch * batch,
        "params": {"pretrain": plain(section)},
        "notes": notes,
    }
    return PretrainResult(model, history, test, val, kept, manifest)


def pretrain_metrics(result: PretrainResult) -> dict[str, Any]:
    """What a reader compares across commits: test mean and per-class AUROC, validation mean AUROC, the kept epoch."""
    return {"test": {"mean_auroc": result.test["mean_auroc"], "auroc": dict(result.test["auroc"])},
            "val": {"mean_auroc": result.val["mean_auroc"]}, "kept_epoch": result.kept_epoch}


def published_mean_auroc(reference: Mapping[str, Any], where: str = "paper/reference.yaml") -> dict[str, float]:
    """{who: 14-class mean test AUROC} from reference.yaml's `published:`, the numbers a real run is set beside."""
    entry = (reference.get("published") or {}).get(PUBLISHED_KEY)
    if not entry or not entry.get("values"):
        raise DataError(where, f"no published.{PUBLISHED_KEY}.values (the published ChestX-ray14 means)")
    return {name: float(v["value"]) for name, v in entry["values"].items()}


def comparable_with_published(result: PretrainResult) -> bool:
    """Only real 14-class ChestX-ray14 results are comparable with the published means."""
    return len(result.manifest["labels"]) == 14 and not result.manifest["synthetic"]


def _published_beside(result: PretrainResult, published: Mapping[str, float] | None) -> Mapping[str, float]:
    return published if published and comparable_with_published(result) else {}


def pretrain_markdown(result: PretrainResult, published: Mapping[str, float] | None = None) -> str:
    """Per-class test AUROC (with the test positives behind each) and the mean, beside the published means."""
    m = result.manifest
    lines = []
    if m["synthetic"]:
        lines.append("> SYNTHETIC DATA: these numbers are not comparable with any published ChestX-ray14 result.\n")
    c = m["counts"]
    lines.append(f"{m['architecture']} at {m['image_size']} px, initialisation {m['initialisation_used']} "
                 f"(asked: {m['initialisation_requested']}), {m['epochs_trained']} epochs "
                 f"(weights kept from epoch {result.kept_epoch}); "
                 f"{m['split']}: {c['train']} train / {c['val']} val / {c['test']} test images.\n")
    lines.append("| finding | test AUROC | test positives | val AUROC |")
    lines.append("|---|---|---|---|")
    fmt = lambda a: "undefined (one class)" if not math.isfinite(a) else f"{a:.3f}"  # noqa: E731
    for name in m["labels"]:
        lines.append(f"| {name} | {fmt(result.test['auroc'][name])} | {m['positives']['test'][name]} | {fmt(result.val['auroc'][name])} |")
    lines.append(f"| **mean** ({result.test['classes_scored']} classes scored) | **{result.test['mean_auroc']:.3f}** | | "
                 f"{result.val['mean_auroc']:.3f} |")
    beside = _published_beside(result, published)
    if beside:
        lines.append("\nPublished 14-class mean test AUROC (full ChestX-ray14, 224 px, GPU training):\n")
        for name, value in beside.items():
            lines.append(f"- {name}: {value:.3f}")
    for note in m["notes"]:
        lines.append(f"\nNote: {note}")
    return "\n".join(lines) + "\n"


def plot_pretrain_auroc(result: PretrainResult, out_png: str | os.PathLike, published: Mapping[str, float] | None = None) -> Path:
    """Per-class test AUROC of the pretraining run (bars; test positives in the labels), with its mean and,
    on real 14-class data, the published means as reference lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = result.manifest
    names = list(m["labels"])
    values = [result.test["auroc"][n] for n in names]
    positives = m["positives"]["test"]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.55 * len(names) + 2), 4.2))
    shown = [v if np.isfinite(v) else 0.0 for v in values]
    bars = ax.bar(range(len(names)), shown, color=["#4c72b0" if np.isfinite(v) else "#cccccc" for v in values])
    for bar, v in zip(bars, values):
        if not np.isfinite(v):
            bar.set_hatch("//")
    ax.set_xticks(range(len(names)), [f"{n}\n({positives[n]} pos)" for n in names], rotation=60, ha="right", fontsize=7)
    ax.axhline(0.5, color="gray", lw=0.8, ls=":")
    mean = result.test["mean_auroc"]
    ax.axhline(mean, color="#4c72b0", lw=1.2, ls="--", label=f"this run: mean {mean:.3f}")
    for (name, value), colour in zip(_published_beside(result, published).items(), ("#dd8452", "#55a868", "#c44e52")):
        ax.axhline(value, color=colour, lw=1, label=f"{name}: {value:.3f}")
    ax.set_ylim(0, 1)
    ax.set_ylabel("test AUROC")
    tag = "SYNTHETIC DATA - " if m["synthetic"] else ""
    ax.set_title(f"{tag}{m['architecture']} pretraining, {m['image_size']} px, {m['counts']['train']} training images "
                 f"(init: {m['initialisation_used']})", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    out_png = Path(out_png)
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return out_png


def save_pretrained(result: PretrainResult, directory: str | os.PathLike) -> None:
    """The encoder (what transfer and the multimodal start from) and the whole model's weights with model.json
    (what the localisation rebuilds and explains), into `directory` (the caller makes it atomic)."""
    from replication.io import write_json
    from replication.models.densenet import save_encoder
    from replication.training.checkpoint import save_model_weights

    m = result.manifest
    directory = Path(directory)
    info = {"labels": m["labels"], "initialisation": m["initialisation_used"], "cohort": m["cohort"],
            "synthetic": m["synthetic"], "split": m["split"]}
    save_encoder(result.model, directory / "encoder.weights.h5", **info)
    save_model_weights(result.model, directory / "model.weights.h5")  # without the optimizer's slots
    write_json(directory / "model.json", {"builder": "replication.models.densenet.pretraining_model",
                                          "architecture": m["architecture"], "image_size": m["image_size"], **info})
