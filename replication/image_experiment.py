"""The image side of the paper (section 2.2, Figure 4): ChestX-ray14 pretraining, fine-tuning on IU, and the
transfer comparison (ChestX-ray14 vs ImageNet vs scratch initialisation).

- `pretrain`: the CheXNet recipe on a multi-label cohort (DenseNet-121, one sigmoid per finding,
  class-weighted binary cross-entropy, Adam 1e-3, batch 16, learning rate /10 on a validation-loss
  plateau, random horizontal flips, ImageNet initialisation when its weights are cached: otherwise scratch,
  with a note); per-class and mean AUROC on the test split.
- `finetune`: one IU split, one initialisation; validation accuracy/loss/AUROC per epoch.
- `transfer_comparison`: every (architecture, initialisation) over the first `transfer.splits` splits, one
  compiled model per architecture reused across runs (re-initialised weights and optimizer state), so the
  train step is traced once per architecture (a DenseNet-121 trace costs ~45 s on 2 CPU cores).
- `summarise_transfer`, `transfer_markdown`, `pretrain_markdown`: what the stages write.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from replication.data.store import Cohort
from replication.errors import DataError, ParameterError
from replication.io import sha256_file

PARTS = ("train", "val", "test")
INITIALISATIONS = ("chestxray14", "imagenet", "scratch")
NOT_OFFLINE = "not run: weights not available offline"
# Published 14-class mean test AUROCs on ChestX-ray14 (what the paper profile's result is compared with).
PUBLISHED_CXR14_MEAN_AUROC = {
    "Wang et al. 2017 (ChestX-ray8 paper)": 0.738,
    "CheXNet (Rajpurkar et al. 2017)": 0.841,
    "public Keras re-implementation of CheXNet (about)": 0.83,
}
Log = Callable[[str], None]


# --------------------------------------------------------------------------------------------- data
@dataclass
class ImageSplit:
    """One split of a cohort's imaged cases: per part the images (lazy, `IndexedImages`), targets and case ids."""

    column: str
    x: dict[str, Any]
    y: dict[str, np.ndarray]
    case_ids: dict[str, list[str]]
    excluded: int = 0


def image_split(cohort: Cohort, column: str, targets: Sequence[str], image_size: int, architecture: str = "densenet121") -> ImageSplit:
    """Cases of `column` with an image; targets = the cohort's columns (['label'] or its label_names). Images are checked."""
    from replication.models.densenet import check_images
    from replication.training.batches import IndexedImages

    if cohort.images is None:
        raise DataError(cohort.name, "the cohort has no images (images.npy); the image models need them")
    if column not in cohort.cases.columns:
        raise DataError(cohort.name, f"no split column {column!r} (it has {cohort.split_columns})")
    missing = [t for t in targets if t not in cohort.cases.columns]
    if missing:
        raise DataError(cohort.name, f"target columns {missing} are missing")
    cases = cohort.cases[cohort.cases["image_index"] >= 0]
    used = np.unique(cases["image_index"].to_numpy())
    first_case = cases.drop_duplicates("image_index").set_index("image_index")["case_id"]
    check_images(cohort.images[used] if len(used) < len(cohort.images) else cohort.images, image_size,
                 case_ids=list(first_case.loc[used]) if len(used) < len(cohort.images) else
                 [first_case.get(i, f"image {i}") for i in range(len(cohort.images))],
                 where=f"{cohort.name} images.npy", name=architecture)
    x, y, ids = {}, {}, {}
    for part in PARTS:
        rows = cases[cases[column] == part]
        if len(rows) == 0:
            raise DataError(cohort.name, f"{column}: the {part} part has no case with an image")
        x[part] = IndexedImages(cohort.images, rows["image_index"].to_numpy())
        y[part] = rows[list(targets)].to_numpy(np.float32)
        ids[part] = list(rows["case_id"])
    return ImageSplit(column, x, y, ids, excluded=int((cohort.cases["image_index"] < 0).sum()))


# ------------------------------------------------------------------------------------- initialisation
def resolve_imagenet(architecture: str, require: bool, imagenet_search: Sequence[str] | None, log: Log | None) -> tuple[str | None, str, str]:
    """("imagenet", "imagenet", note) when the cached file exists; otherwise scratch with a note (or an error if `require`)."""
    from replication.models.densenet import WeightsUnavailable, imagenet_weights_path, require_imagenet_weights

    path = imagenet_weights_path(architecture, imagenet_search)
    if path is not None:
        return "imagenet", "imagenet", f"ImageNet weights from {path}"
    try:
        require_imagenet_weights(architecture, imagenet_search)
    except WeightsUnavailable as e:
        if require:
            raise
        note = f"{e} Documented fallback: the encoder starts from scratch (docs/IMAGE.md)."
        if log:
            log(note)
        return None, "scratch", note
    raise AssertionError("unreachable")  # pragma: no cover


# ------------------------------------------------------------------------------------------ pretrain
@dataclass
class PretrainResult:
    model: Any
    history: dict[str, list[Any]]
    metrics: dict[str, Any]
    notes: list[str] = field(default_factory=list)


PRETRAIN_KEYS = {"architecture", "initialisation", "require_imagenet", "split", "optimizer", "learning_rate", "batch_size",
                 "epochs", "flip", "class_weighting", "plateau", "keep_best", "mixed_precision"}


def check_section(section: Mapping[str, Any], known: set[str], name: str) -> None:
    unknown = set(section) - known
    if unknown:
        raise ParameterError(name, sorted(unknown), f"keys from {sorted(known)}")


def pretrain(
    cohort: Cohort,
    params: Mapping[str, Any],
    checkpoint_dir: str | Path | None = None,
    checkpoint_key: str = "",
    imagenet_search: Sequence[str] | None = None,
    log: Log | None = print,
) -> PretrainResult:
    """CheXNet-style multi-label pretraining on `cohort` (its label_names), params = the whole params.yaml."""
    from replication.models.densenet import architecture as arch_of, make_optimizer, pretraining_model
    from replication.training.batches import Batches
    from replication.training.losses import WeightedBinaryCrossentropy, class_balance_weights
    from replication.training.loop import Plateau, fit_epochs
    from replication.training.metrics import evaluate_multilabel
    from replication.training.precision import configure_precision
    from replication.training.seeding import seed_everything

    pre = params["pretrain"]
    check_section(pre, PRETRAIN_KEYS, "pretrain")
    image_size, seed = int(params["image_size"]), int(params["seed"])
    arch = arch_of(pre.get("architecture", "densenet121"), image_size, "pretrain.architecture")
    if not cohort.label_names:
        raise DataError(cohort.name, "a pretraining cohort needs multi-label targets (label_names is empty)")
    split_index = int(pre.get("split", 0))
    if not 0 <= split_index < len(cohort.split_columns):
        raise ParameterError("pretrain.split", split_index, f"an index into the cohort's {len(cohort.split_columns)} split columns")
    data = image_split(cohort, cohort.split_columns[split_index], cohort.label_names, image_size, arch.key)
    notes: list[str] = []
    precision = configure_precision(bool(pre.get("mixed_precision", False)))
    if "ignored" in precision:
        notes.append(precision)
        if log:
            log(f"pretrain: {precision}")
    init = pre.get("initialisation", "imagenet")
    if init not in ("imagenet", "scratch"):
        raise ParameterError("pretrain.initialisation", init, "'imagenet' or 'scratch'")
    weights, used, note = (resolve_imagenet(arch.key, bool(pre.get("require_imagenet", False)), imagenet_search, log)
                           if init == "imagenet" else (None, "scratch", "scratch initialisation requested"))
    notes.append(note)
    if bool(pre.get("class_weighting", True)):
        wp, wn = class_balance_weights(data.y["train"])
    else:
        wp, wn = np.ones(len(cohort.label_names), np.float32), np.ones(len(cohort.label_names), np.float32)
    seed_everything(seed)
    model = pretraining_model(image_size, cohort.label_names, arch.key, weights, imagenet_search)
    lr = float(pre.get("learning_rate", 1e-3))
    model.compile(optimizer=make_optimizer(pre.get("optimizer", "adam"), lr, "pretrain"), loss=WeightedBinaryCrossentropy(wp, wn))
    batch, epochs, flip = int(pre.get("batch_size", 16)), int(pre.get("epochs", 5)), bool(pre.get("flip", True))
    plateau = Plateau.from_params(pre.get("plateau"))

    def train_data(epoch: int) -> dict[str, Any]:
        return {"x": Batches(data.x["train"], data.y["train"], batch, seed=seed, epoch=epoch, flip=flip, drop_remainder=True)}

    def evaluate(m: Any) -> dict[str, Any]:
        r = evaluate_multilabel(m, data.x["val"], data.y["val"], cohort.label_names, wp, wn, batch_size=max(batch, 64))
        return {"loss": r["loss"], "mean_auroc": r["mean_auroc"], "auroc": r["auroc"]}

    start = time.perf_counter()
    history = fit_epochs(model, train_data, evaluate, epochs, "pretrain", checkpoint_dir=checkpoint_dir, checkpoint_key=checkpoint_key,
                         seed=seed, plateau=plateau, keep_best="val_loss" if pre.get("keep_best", True) else None, log=log)
    seconds = time.perf_counter() - start
    test = evaluate_multilabel(model, data.x["test"], data.y["test"], cohort.label_names, wp, wn, batch_size=max(batch, 64))
    val = evaluate_multilabel(model, data.x["val"], data.y["val"], cohort.label_names, wp, wn, batch_size=max(batch, 64))
    counts = {p: int(len(data.y[p])) for p in PARTS}
    metrics: dict[str, Any] = {
        "synthetic": cohort.synthetic, "source": cohort.source, "cohort": cohort.name,
        "architecture": arch.key, "image_size": image_size, "split": data.column, "seed": seed,
        "initialisation_requested": init, "initialisation_used": used, "precision": precision,
        "labels": list(cohort.label_names), "counts": counts, "cases_without_image": data.excluded,
        "positives": {p: dict(zip(cohort.label_names, data.y[p].sum(axis=0).astype(int).tolist())) for p in PARTS},
        "class_weights": {"positive": dict(zip(cohort.label_names, wp.tolist())), "negative": dict(zip(cohort.label_names, wn.tolist()))},
        "recipe": {k: pre.get(k) for k in ("optimizer", "learning_rate", "batch_size", "epochs", "flip", "plateau", "class_weighting", "keep_best")},
        "kept_epoch": (int(history["epoch"][int(np.nanargmin(history["val_loss"]))]) if pre.get("keep_best", True)
                       and np.isfinite(history["val_loss"]).any() else int(history["epoch"][-1])),
        "test": test, "val": val,
        "epochs_trained": len(history["epoch"]),
        "train_images_per_epoch": counts["train"] // batch * batch,
        "train_seconds_this_run": seconds,
        "notes": notes,
    }
    if len(cohort.label_names) == 14 and not cohort.synthetic:
        metrics["published_mean_auroc"] = PUBLISHED_CXR14_MEAN_AUROC
    return PretrainResult(model, history, metrics, notes)


def pretrain_markdown(metrics: Mapping[str, Any]) -> str:
    """Per-class test AUROC (with the test positives behind each) and the mean, beside the published means."""
    lines = []
    if metrics.get("synthetic"):
        lines.append("> SYNTHETIC DATA: these numbers are not comparable with any published ChestX-ray14 result.\n")
    c = metrics["counts"]
    lines.append(f"{metrics['architecture']} at {metrics['image_size']} px, initialisation {metrics['initialisation_used']} "
                 f"(asked: {metrics['initialisation_requested']}), {metrics['epochs_trained']} epochs "
                 f"(weights kept from epoch {metrics.get('kept_epoch', metrics['epochs_trained'])}); "
                 f"{metrics['split']}: {c['train']} train / {c['val']} val / {c['test']} test images.\n")
    lines.append("| finding | test AUROC | test positives | val AUROC |")
    lines.append("|---|---|---|---|")
    for name in metrics["labels"]:
        t, v = metrics["test"]["auroc"][name], metrics["val"]["auroc"][name]
        fmt = lambda a: "undefined (one class)" if not math.isfinite(a) else f"{a:.3f}"  # noqa: E731
        lines.append(f"| {name} | {fmt(t)} | {metrics['positives']['test'][name]} | {fmt(v)} |")
    lines.append(f"| **mean** ({metrics['test']['classes_scored']} classes scored) | **{metrics['test']['mean_auroc']:.3f}** | | "
                 f"{metrics['val']['mean_auroc']:.3f} |")
    if metrics.get("published_mean_auroc"):
        lines.append("\nPublished 14-class mean test AUROC (full ChestX-ray14, 224 px, GPU training):\n")
        for name, value in metrics["published_mean_auroc"].items():
            lines.append(f"- {name}: {value:.3f}")
    for note in metrics.get("notes", []):
        lines.append(f"\nNote: {note}")
    return "\n".join(lines) + "\n"


# -------------------------------------------------------------------------------------------- transfer
TRANSFER_KEYS = {"architectures", "initialisations", "splits", "optimizer", "learning_rate", "batch_size", "epochs",
                 "flip", "hidden", "dropout", "bn_momentum", "mixed_precision"}


@dataclass
class TransferResult:
    runs: list[dict[str, Any]]
    history: pd.DataFrame
    notes: list[str] = field(default_factory=list)


def init_label(architecture: str, initialisation: str) -> str:
    return f"{architecture}/{initialisation}"


def finetune(
    model: Any,
    data: ImageSplit,
    transfer: Mapping[str, Any],
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
    from replication.training.metrics import evaluate_binary

    if checkpoint_dir is not None:
        done = finished_result(checkpoint_dir, checkpoint_key)
        if done is not None:
            if log:
                log(f"{name}: finished earlier (checkpoint {checkpoint_dir}); not repeated")
            return done
    batch = int(transfer.get("batch_size", 16))
    start = time.perf_counter()
    history = fit_binary(model, (data.x["train"], data.y["train"][:, 0]), (data.x["val"], data.y["val"][:, 0]),
                         epochs=int(transfer.get("epochs", 5)), batch_size=batch, name=name, seed=seed,
                         flip=bool(transfer.get("flip", False)), checkpoint_dir=checkpoint_dir, checkpoint_key=checkpoint_key, log=log)
    seconds = time.perf_counter() - start
    result: dict[str, Any] = {p: evaluate_binary(model, data.x[p], data.y[p][:, 0], batch_size=max(batch, 64)) for p in PARTS}
    result["counts"] = {p: int(len(data.y[p])) for p in PARTS}
    majority = float(data.y["train"][:, 0].mean() >= 0.5)
    result["majority_class"] = {f"{p}_accuracy": float(np.mean(data.y[p][:, 0] == majority)) for p in ("val", "test")}
    result["train_seconds"] = seconds
    if checkpoint_dir is not None:
        finish_checkpoint(checkpoint_dir, result)
    return history, result


def transfer_comparison(
    cohort: Cohort,
    params: Mapping[str, Any],
    encoder_path: str | Path | None,
    checkpoint_root: str | Path | None = None,
    checkpoint_key: str = "",
    imagenet_search: Sequence[str] | None = None,
    log: Log | None = print,
) -> TransferResult:
    """Figure 4: validation accuracy per epoch on the IU target for each (architecture, initialisation) and split.

    DenseNet-121 from the ChestX-ray14 encoder (`encoder_path`, the pretrain stage's), from ImageNet (when the
    cached weights exist; otherwise the run is listed as not run) and from scratch; VGG16 / InceptionV3 on
    ImageNet (and scratch) when `transfer.architectures` asks. Each architecture's model is built and
    compiled once; before each run its weights are reset to the seed's fresh initialisation, the encoder
    is loaded from the chosen source and the optimizer state is zeroed.
    """
    from replication.models.densenet import (architecture as arch_of, compile_finetune, encoder_of, finetune_model,
                                             imagenet_weights_path, load_encoder_weights, load_imagenet_weights)
    from replication.training.loop import reset_optimizer
    from replication.training.precision import configure_precision
    from replication.training.seeding import seed_everything

    tr = params["transfer"]
    check_section(tr, TRANSFER_KEYS, "transfer")
    image_size, seed = int(params["image_size"]), int(params["seed"])
    architectures = list(tr.get("architectures", ["densenet121"]))
    inits = list(tr.get("initialisations", list(INITIALISATIONS)))
    bad = [i for i in inits if i not in INITIALISATIONS]
    if bad or not inits:
        raise ParameterError("transfer.initialisations", inits, f"a non-empty list from {list(INITIALISATIONS)}")
    for a in architectures:
        arch_of(a, image_size, "transfer.architectures")
    n_splits = int(tr.get("splits", len(cohort.split_columns)))
    if not 1 <= n_splits <= len(cohort.split_columns):
        raise ParameterError("transfer.splits", n_splits, f"1..{len(cohort.split_columns)} (the cohort's split columns)")
    if "label" not in cohort.cases.columns:
        raise DataError(cohort.name, "the target cohort needs a binary 'label' column")
    pretrained_arch = params.get("pretrain", {}).get("architecture", "densenet121")
    notes: list[str] = []
    precision = configure_precision(bool(tr.get("mixed_precision", False)))
    if "ignored" in precision:
        notes.append(precision)
    splits = {c: image_split(cohort, c, ["label"], image_size, architectures[0]) for c in cohort.split_columns[:n_splits]}
    runs: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    lr = float(tr.get("learning_rate", 1e-4))
    for arch in architectures:
        plan: list[tuple[str, Any]] = []
        for init in inits:
            label = init_label(arch, init)
            if init == "chestxray14":
                if arch != pretrained_arch:
                    runs.append({"init": label, "not_run": f"not run: the pretrain stage trains {pretrained_arch}, not {arch}"})
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
        model = finetune_model(image_size, arch, None, int(tr.get("hidden", 512)), float(tr.get("dropout", 0.5)),
                               imagenet_search=imagenet_search, bn_momentum=tr.get("bn_momentum"))
        compile_finetune(model, lr, tr.get("optimizer", "adam"))
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
                reset_optimizer(model, lr)
                ckpt = None if checkpoint_root is None else Path(checkpoint_root) / f"{arch}-{init}-{column}"
                key = f"{checkpoint_key}|{label}|{column}|{digests.get(source, '')}"
                history, result = finetune(model, data, tr, seed + k, f"{label} {column}", ckpt, key, log)
                runs.append({"init": label, "architecture": arch, "initialisation": init, "split": column, "metrics": result,
                             "source": str(source) if source else None, "history": history})
                for i, epoch in enumerate(history["epoch"]):
                    rows.append({"init": label, "split": column, "epoch": int(epoch), "val_accuracy": history["val_accuracy"][i],
                                 "val_loss": history["val_loss"][i], "val_auroc": history["val_auroc"][i]})
        del model
    frame = pd.DataFrame(rows, columns=["init", "split", "epoch", "val_accuracy", "val_loss", "val_auroc"])
    return TransferResult(runs, frame, notes)


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
