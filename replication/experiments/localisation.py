"""Figs. 2-3 and the measured localisation: the paper's detection (§3) scored against ground truth, over a sight-sensitivity sweep.

The paper shows circles on a few X-rays and describes the threshold's trade-off in words. Here every image
with ground truth (or the first `localisation.images`) is attributed (integrated gradients of the model's output
for the finding) and scored with every method of ``replication.explain.scoring``:

- synthetic lesion masks (the IU-like target, its fine-tuned image model): pointing game, region hit, IoU of the
  detection with the lesion, and the fraction of signal pixels on burned-in markers and borders (structured noise
  the model may have learnt);
- boxes (real ChestX-ray14 `BBox_List_2017`, or the bounding boxes of the synthetic ChestX-ray14-like masks),
  attributing the box's finding unit of the pretraining model: hit rate, IoU and Wang et al.'s accuracy at
  T(IoBB) per finding, beside Wang et al. 2017's published accuracies (paper/reference.yaml, `published:`);
- IG's completeness delta against steps for each quadrature rule, on the first scored images;
- one worked case (Fig. 2: the sight-sensitivity panel and the circles; Fig. 3: the report's word scores).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from replication.errors import DataError
from replication.explain.attribution import RULES, completeness_table
from replication.explain.case import CaseExplanation, explain_case, load_models, render_case
from replication.explain.scoring import Maps, attribution_maps, check_sweep, score_box_methods, score_boxes, score_masks
from replication.params import LocalisationParams, plain

PUBLISHED_KEY = "wang_2017_iobb_accuracy"  # paper/reference.yaml: published.<this>.values, per finding
PUBLISHED_COLUMN = "wang_2017_accuracy_iobb_0.1"


def published_iobb(reference: Mapping[str, Any], where: str = "paper/reference.yaml") -> dict[str, float]:
    """{finding: Wang et al. 2017's accuracy at T(IoBB) = 0.1} from reference.yaml's `published:`."""
    entry = (reference.get("published") or {}).get(PUBLISHED_KEY)
    if not entry or not entry.get("values"):
        raise DataError(where, f"no published.{PUBLISHED_KEY}.values (Wang et al. 2017's accuracies at T(IoBB) = 0.1)")
    return {str(finding): float(value) for finding, value in entry["values"].items()}


# ----------------------------------------------------------------------------------------- the studies
def _images(cohort: Any, index: np.ndarray) -> np.ndarray:
    return np.asarray(cohort.images[index], dtype=np.float32)[..., None]


def mask_study(cohort: Any, image_model: Any, params: LocalisationParams, seed: int) -> tuple[pd.DataFrame, Maps | None, pd.DataFrame]:
    """The fine-tuned image model's IG on the target's abnormal test images that have lesion masks (split_0)."""
    from replication.data.synthetic import FINDINGS, NOISE

    if cohort.masks is None:
        return pd.DataFrame(), None, pd.DataFrame()
    cases = cohort.cases
    chosen = cases[(cases["split_0"] == "test") & (cases["label"] == 1) & (cases["image_index"] >= 0)]
    index = chosen["image_index"].to_numpy()
    lesions = np.zeros((len(index),) + cohort.images.shape[1:], bool)
    for name in FINDINGS:
        lesions |= cohort.mask(name, index)
    keep = lesions.reshape(len(index), -1).any(axis=1)
    n = params.images
    chosen, index, lesions = chosen[keep].iloc[:n], index[keep][:n], lesions[keep][:n]
    if len(index) == 0:
        raise DataError(cohort.name, "no abnormal test image of split_0 has a lesion mask: nothing to score")
    artefacts = np.zeros_like(lesions)
    for name in NOISE:
        artefacts |= cohort.mask(name, index)
    maps = attribution_maps(image_model, _images(cohort, index), 0, steps=params.steps, rule=params.rule)
    table = score_masks(maps, lesions, artefacts, params.sight_sensitivities, top_k=params.top_k, seed=seed)
    return table, maps, chosen


def mask_boxes(masks: np.ndarray, mask_names: Sequence[str], image_indices: Sequence[int], findings: Sequence[str]) -> pd.DataFrame:
    """Bounding boxes (x, y, w, h) of the synthetic lesion masks: the box ground truth a synthetic cohort has."""
    rows = []
    for index, finding in zip(image_indices, findings):
        m = (masks[index] >> mask_names.index(finding)) & 1 == 1
        if not m.any():
            continue
        r, c = np.flatnonzero(m.any(axis=1)), np.flatnonzero(m.any(axis=0))
        rows.append({"image_index": int(index), "finding": finding, "x": float(c[0]), "y": float(r[0]),
                     "w": float(c[-1] - c[0] + 1), "h": float(r[-1] - r[0] + 1)})
    return pd.DataFrame(rows, columns=["image_index", "finding", "x", "y", "w", "h"])


def box_study(cohort: Any, pretrain_dir: str | Path, params: LocalisationParams, seed: int,
              published: Mapping[str, float]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The pretraining model's finding unit for each ground-truth box of the test images (split_0): real
    BBox_List_2017 boxes, or the bounding boxes of a synthetic cohort's lesion masks. Returns the paper's
    method per finding (`score_boxes`, beside `published`) and every method on all boxes (`score_box_methods`);
    empty without boxes."""
    import json

    from replication.models.densenet import pretraining_model
    from replication.training.checkpoint import load_model_weights

    info = json.loads((Path(pretrain_dir) / "model.json").read_text())
    model = pretraining_model(int(info["image_size"]), info["labels"], info["architecture"])
    load_model_weights(model, Path(pretrain_dir) / "model.weights.h5")
    labels = list(info["labels"])
    test = cohort.cases[cohort.cases["split_0"] == "test"]
    if cohort.boxes is not None and len(cohort.boxes):
        boxes = cohort.boxes.merge(test[["case_id", "image_index"]], on="case_id")
        source = "BBox_List_2017"
    elif cohort.masks is not None:
        pairs = [(int(row.image_index), f) for row in test.itertuples() for f in labels if getattr(row, f"finding_{f}", 0) == 1]
        boxes = mask_boxes(cohort.masks, cohort.mask_names, [p[0] for p in pairs], [p[1] for p in pairs])
        source = "bounding boxes of the synthetic lesion masks"
    else:
        return pd.DataFrame(), pd.DataFrame()
    boxes = boxes[boxes["finding"].isin(labels)].iloc[:params.images].reset_index(drop=True)
    if len(boxes) == 0:
        return pd.DataFrame(), pd.DataFrame()
    maps = attribution_maps(model, _images(cohort, boxes["image_index"].to_numpy()), [labels.index(f) for f in boxes["finding"]],
                            steps=params.steps, rule=params.rule)
    table = score_boxes(maps, boxes, params.sight_sensitivity, seed=seed)
    table[PUBLISHED_COLUMN] = table["finding"].map(dict(published))
    table["ground_truth"] = source
    methods = score_box_methods(maps, boxes, params.sight_sensitivities, top_k=params.top_k, seed=seed)
    methods["ground_truth"] = source
    return table, methods


@dataclass
class Study:
    """What the localise stage writes: score tables, the completeness table, metrics, manifest, one worked case."""

    masks: pd.DataFrame
    boxes: pd.DataFrame
    box_methods: pd.DataFrame
    completeness: pd.DataFrame
    metrics: dict[str, Any]
    manifest: dict[str, Any]
    example: CaseExplanation

    def draw(self, fig2_png: Any = None, overlay_png: Any = None, fig3_png: Any = None, fig3_html: Any = None) -> None:
        """Fig. 2 (sight-sensitivity panel), the circles overlay and Fig. 3 (word heatmap, PNG and/or HTML)."""
        m = self.manifest
        render_case(self.example, m["example"]["case_id"], notice="SYNTHETIC DATA - " if m["synthetic"] else "",
                    sweep=m["params"]["localisation"]["sight_sensitivities"], panel_png=fig2_png, overlay_png=overlay_png,
                    words_png=fig3_png, words_html=fig3_html)


def localisation_study(iu: Any, cxr14: Any, models_dir: str, pretrain_dir: str, params: LocalisationParams, seed: int,
                       published: Mapping[str, float]) -> Study:
    """Everything the localise stage reports (see the module docstring)."""
    params = dataclasses.replace(params, sight_sensitivities=tuple(check_sweep(params.sight_sensitivities)))
    models = load_models(models_dir)
    masks, maps, chosen = mask_study(iu, models.image, params, seed)
    boxes, box_methods = box_study(cxr14, pretrain_dir, params, seed, published)
    first = chosen.iloc[0] if len(chosen) else iu.cases[iu.cases["image_index"] >= 0].iloc[0]
    some = chosen.head(params.completeness_images)
    rows = completeness_table(models.image, _images(iu, some["image_index"].to_numpy()), params.completeness_steps, RULES,
                              batch_size=128) if len(some) else []
    completeness = pd.DataFrame([{"case_id": some["case_id"].iloc[r.pop("example")], **r} for r in rows])
    example = explain_case(models, np.asarray(iu.images[int(first["image_index"])], np.float32), str(first["text"]),
                           sight_sensitivity=params.sight_sensitivity, steps=params.steps, rule=params.rule)
    metrics: dict[str, Any] = {}
    manifest: dict[str, Any] = {"synthetic": bool(iu.synthetic), "source": {"iu": iu.source, "cxr14": cxr14.source},
                                "models": str(models_dir), "seed": int(seed), "params": {"localisation": plain(params)}}
    if maps is not None:
        ig = masks[masks["attribution"] == "integrated gradients"]
        paper = ig[(ig["method"] == "clusters + circles (paper)")]
        at = paper[np.isclose(paper["sight_sensitivity"].astype(float), params.sight_sensitivity)].iloc[0]
        best = paper.loc[paper["iou_mean"].idxmax()]
        pointing = masks[masks["method"] == "pointing game (hottest pixel)"].set_index("attribution")["hit_mean"]
        metrics["masks"] = {
            "paper_method_at_sight_sensitivity": {"hit_rate": float(at["hit_mean"]), "iou": float(at["iou_mean"]),
                                                  "signal_on_artefacts": float(at["signal_on_artefacts_mean"])},
            "best_sight_sensitivity_by_iou": {"sight_sensitivity": float(best["sight_sensitivity"]), "iou": float(best["iou_mean"])},
            "pointing_game": {k: float(v) for k, v in pointing.items()},
            "ig_relative_delta_median": float(np.median(maps.relative_delta)),
            "ig_relative_delta_p90": float(np.quantile(maps.relative_delta, 0.9)),
            "ig_relative_delta_below_1pct": float(np.mean(maps.relative_delta < 0.01)),
        }
        manifest["masks"] = {"images": int(len(maps.relative_delta))}
    if len(boxes):
        overall = boxes[boxes["finding"] == "all findings"].iloc[0]
        metrics["boxes"] = {"hit_rate": float(overall["hit_mean"]), "iou": float(overall["iou_mean"]),
                            **{c: float(overall[c]) for c in boxes.columns if c.startswith("accuracy_iobb_")}}
        manifest["boxes"] = {"ground_truth": str(overall["ground_truth"]), "boxes": int(overall["boxes"])}
    manifest["example"] = {"case_id": str(first["case_id"]), "predictions": example.predictions, "regions": example.region_records(),
                           "top_words": example.words.top(5), "words_note": example.words.note}
    manifest["notes"] = (["synthetic data: not comparable with the paper's or Wang et al.'s numbers"] if iu.synthetic else []) + [
        "localisation.images: " + ("every image with ground truth" if params.images is None else f"at most {params.images} images (and boxes)")]
    return Study(masks, boxes, box_methods, completeness, metrics, manifest, example)


# ----------------------------------------------------------------------------------------- Markdown
def _fmt(row: Mapping[str, Any], key: str) -> str:
    mean = row.get(f"{key}_mean")
    if mean is None or not np.isfinite(mean):
        return "—"
    return f"{mean:.3f} [{row[f'{key}_ci_low']:.3f}, {row[f'{key}_ci_high']:.3f}]"


def _header(synthetic: bool, rule: str, steps: int, models: str) -> list[str]:
    out = ["> SYNTHETIC DATA: these numbers are not comparable with the paper's or Wang et al.'s.\n"] if synthetic else []
    out.append(f"Integrated gradients: {rule}, {steps} steps, zeros baseline; models from `{models}` (split 0). "
               "Intervals: 95% bootstrap over images.\n")
    return out


def _boxes_section(boxes: pd.DataFrame, sight_sensitivity: float) -> list[str]:
    ts = [c for c in boxes.columns if c.startswith("accuracy_iobb_")]
    out = [f"\n### Boxes ({boxes['ground_truth'].iloc[0]}), pretraining model, sight sensitivity {sight_sensitivity}\n\n"
           f"| finding | boxes | hit rate | IoU | pointing game | {' | '.join('acc. T(IoBB)=' + c.rsplit('_', 1)[1] for c in ts)} "
           f"| Wang et al. T(IoBB)=0.1 |\n|---|---|---|---|---|{'---|' * len(ts)}---|"]
    for row in boxes.to_dict("records"):
        wang = row.get(PUBLISHED_COLUMN)
        out.append(f"| {row['finding']} | {row['boxes']} | {_fmt(row, 'hit')} | {_fmt(row, 'iou')} | {row['pointing_game']:.3f} | "
                   + " | ".join(f"{row[c]:.3f}" for c in ts) + f" | {'—' if wang is None or not np.isfinite(wang) else f'{wang:.3f}'} |")
    return out


def _box_methods_section(methods: pd.DataFrame) -> list[str]:
    ts = [c for c in methods.columns if c.startswith("accuracy_iobb_")]
    out = [f"\n### Every method on the same {int(methods['boxes'].iloc[0])} boxes ({methods['ground_truth'].iloc[0]})\n\n"
           f"| attribution | method | sight sensitivity | hit rate | IoU | {' | '.join('acc. T(IoBB)=' + c.rsplit('_', 1)[1] for c in ts)} |"
           f"\n|---|---|---|---|---|{'---|' * len(ts)}"]
    for row in methods.to_dict("records"):
        s = row["sight_sensitivity"]
        s = row["note"] if row.get("note") else ("—" if s is None or not np.isfinite(s) else f"{s:.2f}")
        out.append(f"| {row['attribution']} | {row['method']} | {s} | {_fmt(row, 'hit')} | {_fmt(row, 'iou')} | "
                   + " | ".join(f"{row[c]:.3f}" for c in ts) + " |")
    return out


def boxes_markdown(boxes: pd.DataFrame, methods: pd.DataFrame | None, *, synthetic: bool, rule: str, steps: int, models: str,
                   sight_sensitivity: float) -> str:
    """`box_study`'s tables on their own (what `replication boxes` writes)."""
    out = _header(synthetic, rule, steps, models) + _boxes_section(boxes, sight_sensitivity)
    return "\n".join(out + (_box_methods_section(methods) if methods is not None and len(methods) else [])) + "\n"


def localisation_markdown(study: Study) -> str:
    """The stage's tables: the sweep on masks, the box scores per finding, the completeness delta."""
    m, p = study.manifest, study.manifest["params"]["localisation"]
    out = _header(m["synthetic"], p["rule"], p["steps"], m["models"])
    if len(study.masks):
        out.append(f"\n### Lesion masks ({m['masks']['images']} abnormal test images)\n\n"
                   "| attribution | method | sight sensitivity | hit rate | IoU | signal on artefacts | regions/image |\n|---|---|---|---|---|---|---|")
        for row in study.masks.to_dict("records"):
            s = "—" if row["sight_sensitivity"] is None or not np.isfinite(row["sight_sensitivity"]) else f"{row['sight_sensitivity']:.2f}"
            regions = "—" if not np.isfinite(row["regions_per_image"]) else f"{row['regions_per_image']:.1f}"
            out.append(f"| {row['attribution']} | {row['method']} | {s} | {_fmt(row, 'hit')} | {_fmt(row, 'iou')} | "
                       f"{_fmt(row, 'signal_on_artefacts')} | {regions} |")
    if len(study.boxes):
        out += _boxes_section(study.boxes, p["sight_sensitivity"])
    if len(study.box_methods):
        out += _box_methods_section(study.box_methods)
    if len(study.completeness):
        frame = study.completeness
        grouped = frame.groupby(["rule", "steps"])["relative_delta"]
        median, below = grouped.median().unstack("rule"), grouped.apply(lambda d: float(np.mean(d < 0.01))).unstack("rule")
        out.append(f"\n### Completeness: relative delta |Σ IG − (F(x) − F(0))| / |F(x) − F(0)|, median over "
                   f"{frame['case_id'].nunique()} images (share of images below 1%)\n\n"
                   "| steps | " + " | ".join(median.columns) + " |\n|---|" + "---|" * len(median.columns))
        for steps, row in median.iterrows():
            out.append(f"| {steps} | " + " | ".join(f"{v:.2e} ({below.loc[steps, rule]:.0%})" for rule, v in row.items()) + " |")
        if "masks" in study.metrics:
            mm = study.metrics["masks"]
            out.append(f"\nAt the stage's {p['rule']} rule and {p['steps']} steps, over the {m['masks']['images']} scored images: "
                       f"median {mm['ig_relative_delta_median']:.2e}, 90th percentile {mm['ig_relative_delta_p90']:.2e}, "
                       f"{mm['ig_relative_delta_below_1pct']:.0%} below 1%.")
    return "\n".join(out) + "\n"
