"""Figs. 2-3 and the measured localisation: the paper's detection (§3) scored against ground truth, over a sight-sensitivity sweep.

The paper shows circles on a few X-rays and describes the threshold's trade-off in words. Here every image
with ground truth (or the first `localisation.images`) is attributed (integrated gradients of the model's output
for the finding, beside plain gradients and SmoothGrad) and scored with every method of
``replication.explain.scoring``, next to the baselines of ``replication.explain.baselines`` (a random map, a centre
prior, the image intensity, the whole image) scored the same way:

- synthetic lesion masks (the IU-like target, its fine-tuned image model): pointing game, strongest-region hit, IoU,
  per-detection true and false positives, and the fraction of signal pixels on burned-in markers and borders
  (structured noise the model may have learnt); the sight-sensitivity trade-off over the sweep; Adebayo et al.'s
  cascading randomisation of the model;
- boxes (real ChestX-ray14 `BBox_List_2017`, or the bounding boxes of the synthetic ChestX-ray14-like masks),
  attributing the box's finding unit of the pretraining model, each circle a detection: accuracy and false positives
  per box at T(IoU) and T(IoBB) per finding, beside Wang et al. 2017's published accuracies (paper/reference.yaml,
  `published:`);
- IG's completeness delta against steps for each quadrature rule, on the first scored images;
- Fig. 3 measured (synthetic reports): how often each abnormal test report's best-scored words state its findings,
  beside chance (`word_study`);
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
from replication.explain.baselines import baseline_maps, cascade, densenet_blocks, randomise, rank_similarity
from replication.explain.localisation import bootstrap_ci, pointing_game
from replication.explain.regions import reduce_channels
from replication.explain.scoring import (
    MATCH_IOBB,
    Maps,
    attribution_maps,
    check_sweep,
    score_box_methods,
    score_boxes,
    score_masks,
    sight_sensitivity_tradeoff,
)
from replication.params import LocalisationParams, plain

# SmoothGrad (Smilkov et al. 2017: 10-20% noise) and the cascading-randomisation check (Adebayo et al. 2018). Fixed
# here for now: they belong in params.yaml's localisation section (KNOWN_DEVIATIONS D9), which adding means re-running
# every stage (each depends on replication/params.py).
SMOOTHGRAD_SAMPLES, SMOOTHGRAD_NOISE = 16, 0.15
SANITY_IMAGES, SANITY_STEPS = 10, 64

GRAD_CAM_NOTE = ("Grad-CAM is not among the maps: at the encoder's last convolutional block DenseNet-121's feature map is "
                 "input/32 px wide (1 x 1 at 32 px, 7 x 7 at 224 px), so at the default's size it is one value per image")

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


def _with_baselines(maps: Maps, images: np.ndarray, seed: int) -> Maps:
    """`maps` with the trivial maps of ``replication.explain.baselines`` added to `extra` (after SmoothGrad)."""
    return dataclasses.replace(maps, extra={**maps.extra, **baseline_maps(images, seed)})


def _attribute(model: Any, images: np.ndarray, units: Any, params: LocalisationParams, seed: int) -> Maps:
    maps = attribution_maps(model, images, units, steps=params.steps, rule=params.rule,
                            smoothgrad_samples=SMOOTHGRAD_SAMPLES, smoothgrad_noise=SMOOTHGRAD_NOISE, seed=seed)
    return _with_baselines(maps, images, seed)


def at_sight_sensitivity(cases: pd.DataFrame, sight_sensitivity: float) -> pd.DataFrame:
    """The rows at `sight_sensitivity` and those of the methods that ignore it: the per-image CSVs a reader re-scores
    from (the whole sweep is summarised in the tables), and the tables' one-setting view."""
    s = cases["sight_sensitivity"].astype(float)
    return cases[s.isna() | np.isclose(s, sight_sensitivity)].reset_index(drop=True)


@dataclass
class MaskStudy:
    table: pd.DataFrame      # summary per (attribution, method, sight sensitivity)
    cases: pd.DataFrame      # per image
    maps: Maps
    chosen: pd.DataFrame     # the scored cases of the cohort
    lesions: np.ndarray      # (n, H, W) bool


def mask_study(cohort: Any, image_model: Any, params: LocalisationParams, seed: int) -> MaskStudy | None:
    """Every map (IG, gradients, SmoothGrad, the baselines) of the fine-tuned image model on the target's abnormal test
    images that have lesion masks (split_0), scored by every method; None without masks."""
    from replication.data.synthetic import FINDINGS, NOISE

    if cohort.masks is None:
        return None
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
    maps = _attribute(image_model, _images(cohort, index), 0, params, seed)
    table, per_image = score_masks(maps, lesions, artefacts, params.sight_sensitivities, top_k=params.top_k, seed=seed)
    per_image["case_id"] = chosen["case_id"].to_numpy()[per_image["case"].to_numpy()]
    return MaskStudy(table, per_image, maps, chosen, lesions)


def sanity_study(model: Any, images: np.ndarray, lesions: np.ndarray, params: LocalisationParams, seed: int) -> pd.DataFrame:
    """Adebayo et al.'s cascading randomisation of `model` (restored afterwards): per stage, the Spearman correlation of
    |IG| with the trained model's and the pointing game on the lesions, with bootstrap intervals over images."""
    from replication.explain.attribution import integrated_gradients

    def ig() -> np.ndarray:
        result = integrated_gradients(model, images, steps=SANITY_STEPS, rule=params.rule, batch_size=64)
        return np.stack([reduce_channels(a) for a in result.attribution])

    def row(stage: str, layers: int, maps: np.ndarray, trained: np.ndarray) -> dict[str, Any]:
        rho = rank_similarity(maps, trained)
        hits = np.array([pointing_game(m, t) for m, t in zip(maps, lesions)], dtype=float)
        out = {"model": stage, "layers_randomised": layers, "images": len(images)}
        for name, values in (("spearman", rho), ("pointing_game", hits)):
            v = values[np.isfinite(values)]
            low, high = bootstrap_ci(v, seed=seed) if v.size > 1 else (float("nan"), float("nan"))
            out.update({f"{name}_mean": float(v.mean()) if v.size else float("nan"), f"{name}_ci_low": low, f"{name}_ci_high": high})
        return out

    trained = ig()
    rows = [row("trained", 0, trained, trained)]
    saved = model.get_weights()
    try:
        done: set[str] = set()
        for k, stage in enumerate(cascade(model, densenet_blocks())):
            randomise(model, [n for n in stage.layers if n not in done], seed + k)
            done.update(stage.layers)
            rows.append(row(f"randomised down to: {stage.name}", len(stage.layers), ig(), trained))
    finally:
        model.set_weights(saved)
    return pd.DataFrame(rows)


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


@dataclass
class BoxStudy:
    table: pd.DataFrame      # the paper's method per finding, beside Wang et al.'s
    methods: pd.DataFrame    # every map and method on all boxes
    cases: pd.DataFrame      # per box


def box_study(cohort: Any, pretrain_dir: str | Path, params: LocalisationParams, seed: int,
              published: Mapping[str, float]) -> BoxStudy | None:
    """The pretraining model's finding unit for each ground-truth box of the test images (split_0): real
    BBox_List_2017 boxes, or the bounding boxes of a synthetic cohort's lesion masks. The paper's method per finding
    (`score_boxes`, beside `published`), every map and method on all boxes (`score_box_methods`); None without boxes."""
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
        return None
    boxes = boxes[boxes["finding"].isin(labels)].iloc[:params.images].reset_index(drop=True)
    if len(boxes) == 0:
        return None
    maps = _attribute(model, _images(cohort, boxes["image_index"].to_numpy()), [labels.index(f) for f in boxes["finding"]], params, seed)
    table = score_boxes(maps, boxes, params.sight_sensitivity, seed=seed)
    table[PUBLISHED_COLUMN] = table["finding"].map(dict(published))
    methods, cases = score_box_methods(maps, boxes, params.sight_sensitivities, top_k=params.top_k, seed=seed)
    cases["finding"] = boxes["finding"].to_numpy()[cases["case"].to_numpy()]
    for frame in (table, methods, cases):
        frame["ground_truth"] = source
    return BoxStudy(table, methods, cases)


TOP_WORDS = 5  # Fig. 3 measured: the share of each report's 5 best-scored words that state its findings
REPORT_MENTIONS = ("stated", "hedged", "false_mention")  # report_<finding> states in which the report names the finding


def word_study(cohort: Any, models: Any, k: int = TOP_WORDS) -> pd.DataFrame:
    """Fig. 3 measured on the synthetic reports: per abnormal test report (split_0) that names a finding, and per model
    (the text CNN; the multimodal, the paper's Fig. 3), the share of its k best-scored words (squared gradients at
    the embedding) that are the words stating its findings (FINDING_KEYWORDS of the findings the generator wrote
    into it), beside chance (those words' share of the report). Empty without the generator's report_* columns."""
    import re

    from replication.data.synthetic import FINDINGS
    from replication.data.synthetic_reports import FINDING_KEYWORDS
    from replication.data.text import clean_report
    from replication.explain.attribution import attribute_text
    from replication.explain.words import top_word_hits, word_scores

    cases = cohort.cases
    columns = [f"report_{name}" for name in FINDINGS]
    if not set(columns) <= set(cases.columns):
        return pd.DataFrame()
    named = cases[columns].isin(REPORT_MENTIONS)
    chosen = cases[(cases["split_0"] == "test") & (cases["label"] == 1) & (cases["image_index"] >= 0) & named.any(axis=1)]
    if len(chosen) == 0:
        return pd.DataFrame()
    ids, _ = models.vocabulary.encode([clean_report(t, models.keep_negations) for t in chosen["text"]], models.sequence_length)
    images = _images(cohort, chosen["image_index"].to_numpy())
    scores = {"text CNN": attribute_text(models.text, ids, method="gradients").embedding_scores,
              "multimodal": attribute_text(models.multimodal, ids, other_inputs=[images], method="gradients").embedding_scores}
    rows = []
    for j, (_, case) in enumerate(chosen.iterrows()):
        findings = [name for name in FINDINGS if named.loc[case.name, f"report_{name}"]]
        pattern = re.compile("|".join(f"(?:{FINDING_KEYWORDS[name]})" for name in findings))
        for model, g in scores.items():
            words = word_scores(g[j], ids[j], models.vocabulary)
            rows.append({"case_id": case["case_id"], "model": model, "findings": " ".join(findings),
                         "top_words": " ".join(w for w, _ in words.top(k)),
                         **top_word_hits(words, pattern.search, k)})
    return pd.DataFrame(rows)


def word_summary(cases: pd.DataFrame, seed: int) -> dict[str, Any]:
    """Per model: the mean top-k share with its bootstrap interval over reports, chance, and the paired Wilcoxon
    signed-rank test of share - chance per report (scipy; NaN when every difference is 0)."""
    from scipy.stats import wilcoxon

    out: dict[str, Any] = {}
    for model, rows in cases.dropna(subset=["top_k_share"]).groupby("model", sort=False):
        diff = (rows["top_k_share"] - rows["chance_share"]).to_numpy()
        low, high = bootstrap_ci(rows["top_k_share"].to_numpy(), seed=seed)
        p = float(wilcoxon(diff).pvalue) if np.any(diff != 0) else float("nan")
        out[str(model)] = {"reports": len(rows), "top_k_share": float(rows["top_k_share"].mean()), "ci_low": float(low),
                           "ci_high": float(high), "chance_share": float(rows["chance_share"].mean()),
                           "top_1": float(rows["top_1"].mean()), "difference": float(diff.mean()), "wilcoxon_p": p}
    return out


@dataclass
class Study:
    """What the localise stage writes: score tables, per-image rows, the sanity check, the completeness table,
    metrics, manifest, one worked case."""

    masks: pd.DataFrame
    mask_cases: pd.DataFrame
    sanity: pd.DataFrame
    boxes: pd.DataFrame
    box_methods: pd.DataFrame
    box_cases: pd.DataFrame
    completeness: pd.DataFrame
    words: pd.DataFrame      # Fig. 3 measured: per report and model (word_study)
    metrics: dict[str, Any]
    manifest: dict[str, Any]
    example: CaseExplanation

    def draw(self, fig2_png: Any = None, overlay_png: Any = None, fig3_png: Any = None, fig3_html: Any = None) -> None:
        """Fig. 2 (sight-sensitivity panel), the circles overlay and Fig. 3 (word heatmap, PNG and/or HTML)."""
        m = self.manifest
        render_case(self.example, m["example"]["case_id"], notice="SYNTHETIC DATA - " if m["synthetic"] else "",
                    sweep=m["params"]["localisation"]["sight_sensitivities"], panel_png=fig2_png, overlay_png=overlay_png,
                    words_png=fig3_png, words_html=fig3_html)


def _row(table: pd.DataFrame, attribution: str, method_key: str, sight_sensitivity: float | None = None) -> pd.Series:
    rows = table[(table["attribution"] == attribution) & (table["method_key"] == method_key)]
    if sight_sensitivity is not None:
        rows = rows[np.isclose(rows["sight_sensitivity"].astype(float), sight_sensitivity)]
    return rows.iloc[0]


def _mask_metrics(study: MaskStudy, sanity: pd.DataFrame, s: float) -> dict[str, Any]:
    t = study.table
    at = _row(t, "integrated gradients", "clusters_circles", s)
    fp, acc = f"afp_iobb_{MATCH_IOBB}", f"accuracy_iobb_{MATCH_IOBB}"
    out = {
        "paper_method_at_sight_sensitivity": {"region_hit": float(at["region_hit_mean"]), "iou": float(at["iou_mean"]),
                                              "recall": float(at[acc]), "false_positives_per_image": float(at[fp]),
                                              "signal_on_artefacts": float(at["signal_on_artefacts_mean"])},
        "pointing_game": {str(r["attribution"]): float(r["pointing_game_mean"]) for _, r in t[t["method_key"] == "pointing_game"].iterrows()},
        "sight_sensitivity_tradeoff": sight_sensitivity_tradeoff(t),
        "ig_relative_delta_median": float(np.median(study.maps.relative_delta)),
        "ig_relative_delta_p90": float(np.quantile(study.maps.relative_delta, 0.9)),
        "ig_relative_delta_below_1pct": float(np.mean(study.maps.relative_delta < 0.01)),
    }
    if len(sanity):
        last = sanity.iloc[-1]
        out["sanity"] = {"spearman_fully_randomised": float(last["spearman_mean"]), "pointing_game_fully_randomised": float(last["pointing_game_mean"])}
    return out


def localisation_study(iu: Any, cxr14: Any, models_dir: str, pretrain_dir: str, params: LocalisationParams, seed: int,
                       published: Mapping[str, float]) -> Study:
    """Everything the localise stage reports (see the module docstring)."""
    params = dataclasses.replace(params, sight_sensitivities=tuple(check_sweep(params.sight_sensitivities)))
    models = load_models(models_dir)
    masks = mask_study(iu, models.image, params, seed)
    boxes = box_study(cxr14, pretrain_dir, params, seed, published)
    chosen = masks.chosen if masks is not None else iu.cases.iloc[:0]
    first = chosen.iloc[0] if len(chosen) else iu.cases[iu.cases["image_index"] >= 0].iloc[0]
    sanity = pd.DataFrame()
    if masks is not None and SANITY_IMAGES:
        k = min(SANITY_IMAGES, len(chosen))
        sanity = sanity_study(models.image, _images(iu, chosen["image_index"].to_numpy()[:k]), masks.lesions[:k], params, seed)
    some = chosen.head(params.completeness_images)
    rows = completeness_table(models.image, _images(iu, some["image_index"].to_numpy()), params.completeness_steps, RULES,
                              batch_size=128) if len(some) else []
    completeness = pd.DataFrame([{"case_id": some["case_id"].iloc[r.pop("example")], **r} for r in rows])
    example = explain_case(models, np.asarray(iu.images[int(first["image_index"])], np.float32), str(first["text"]),
                           sight_sensitivity=params.sight_sensitivity, steps=params.steps, rule=params.rule)
    words = word_study(iu, models)
    metrics: dict[str, Any] = {}
    manifest: dict[str, Any] = {"synthetic": bool(iu.synthetic), "source": {"iu": iu.source, "cxr14": cxr14.source},
                                "models": str(models_dir), "seed": int(seed), "params": {"localisation": plain(params)}}
    if masks is not None:
        metrics["masks"] = _mask_metrics(masks, sanity, params.sight_sensitivity)
        manifest["masks"] = {"images": int(len(masks.chosen))}
    if boxes is not None:
        overall = boxes.table[boxes.table["finding"] == "all findings"].iloc[0]
        metrics["boxes"] = {"region_hit": float(overall["region_hit_mean"]), "pointing_game": float(overall["pointing_game_mean"]),
                            "iou": float(overall["iou_mean"]),
                            **{c: float(overall[c]) for c in (f"accuracy_iobb_{MATCH_IOBB}", f"afp_iobb_{MATCH_IOBB}", "accuracy_iou_0.1")},
                            "sight_sensitivity_tradeoff": sight_sensitivity_tradeoff(boxes.methods)}
        manifest["boxes"] = {"ground_truth": str(overall["ground_truth"]), "boxes": int(overall["boxes"]), "images": int(overall["images"])}
    if len(words):
        metrics["words"] = word_summary(words, seed)
    manifest["example"] = {"case_id": str(first["case_id"]), "predictions": example.predictions, "regions": example.region_records(),
                           "top_words": example.words.top(5), "words_note": example.words.note}
    manifest["notes"] = (["synthetic data: not comparable with the paper's or Wang et al.'s numbers"] if iu.synthetic else []) + [
        "localisation.images: " + ("every image with ground truth" if params.images is None else f"at most {params.images} images (and boxes)"),
        GRAD_CAM_NOTE]
    empty = pd.DataFrame()
    return Study(masks.table if masks else empty, at_sight_sensitivity(masks.cases, params.sight_sensitivity) if masks else empty,
                 sanity, boxes.table if boxes else empty, boxes.methods if boxes else empty,
                 at_sight_sensitivity(boxes.cases, params.sight_sensitivity) if boxes else empty, completeness, words, metrics, manifest,
                 example)


# ----------------------------------------------------------------------------------------- Markdown
def _fmt(row: Mapping[str, Any], key: str) -> str:
    mean = row.get(f"{key}_mean")
    if mean is None or not np.isfinite(mean):
        return "—"
    return f"{mean:.3f} [{row[f'{key}_ci_low']:.3f}, {row[f'{key}_ci_high']:.3f}]"


def _num(value: Any, digits: int = 3) -> str:
    return "—" if value is None or not np.isfinite(value) else f"{value:.{digits}f}"


def _header(synthetic: bool, rule: str, steps: int, models: str) -> list[str]:
    out = ["> SYNTHETIC DATA: these numbers are not comparable with the paper's or Wang et al.'s.\n"] if synthetic else []
    out.append(f"Integrated gradients: {rule}, {steps} steps, zeros baseline; models from `{models}` (split 0). "
               "Intervals: 95% bootstrap over images. Columns (replication/explain/scoring.py): *pointing game* = the "
               "map's hottest pixel in the ground truth; *strongest region* = the centre of the detection with the largest "
               "mass in it; *IoU*, *pixel precision / recall*: all detected pixels together; per detection, a true positive "
               f"has IoBB (or IoU) with the ground truth above T, anything else is a false positive (*FP*); *accuracy* = "
               "share of cases with a true positive (Wang et al. 2017). The random map, the centre prior, the image "
               "intensity and the whole image are baselines: what a method must beat to localise anything.\n")
    return out


def _tradeoff_section(table: pd.DataFrame, what: str, per: str) -> list[str]:
    fp, acc = f"afp_iobb_{MATCH_IOBB}", f"accuracy_iobb_{MATCH_IOBB}"
    out = [f"\n### The sight-sensitivity trade-off: the paper's clusters + circles on {what}\n\n"
           f"True positive: a circle with IoBB > {MATCH_IOBB} with the ground truth.\n\n"
           f"| attribution | sight sensitivity | detections/{per} | FP/{per} | recall (a true positive) | precision of the detections "
           "| pixel precision | pixel recall | IoU |\n|---|---|---|---|---|---|---|---|---|"]
    for source in ("integrated gradients", "gradients", "random map (chance)"):
        rows = table[(table["attribution"] == source) & (table["method_key"] == "clusters_circles")].sort_values("sight_sensitivity")
        for row in rows.to_dict("records"):
            out.append(f"| {source} | {_num(row['sight_sensitivity'], 2)} | {_num(row['detections_mean'], 2)} | {_num(row[fp], 2)} | "
                       f"{_num(row[acc])} | {_num(row['precision'])} | {_num(row['pixel_precision_mean'])} | "
                       f"{_num(row['pixel_recall_mean'])} | {_num(row['iou_mean'])} |")
    verdict = sight_sensitivity_tradeoff(table)
    if verdict.get("measured"):
        lo, hi = verdict["sight_sensitivity"]
        line = (f"\nFrom sight sensitivity {lo:g} to {hi:g}, integrated gradients: FP/{per} "
                f"{verdict['false_positives_per_case'][0]:.2f} → {verdict['false_positives_per_case'][1]:.2f}, recall "
                f"{verdict['recall'][0]:.3f} → {verdict['recall'][1]:.3f}, precision {verdict['precision'][0]:.3f} → "
                f"{verdict['precision'][1]:.3f}")
        if "chance" in verdict:
            c = verdict["chance"]
            line += (f"; the random map: FP/{per} {c['false_positives_per_case'][0]:.2f} → {c['false_positives_per_case'][1]:.2f}, "
                     f"precision {c['precision'][0]:.3f} → {c['precision'][1]:.3f}")
        out.append(line + ". Fewer false positives at a higher threshold is what any map gives; the claim is worth "
                   "something only where precision rises more than the random map's.")
    return out


def _mask_section(table: pd.DataFrame, images: int, s: float) -> list[str]:
    fp = f"afp_iobb_{MATCH_IOBB}"
    out = [f"\n### Lesion masks ({images} abnormal test images): every map and method at sight sensitivity {s:g}\n\n"
           "| attribution | method | pointing game | strongest region | IoU | pixel precision | pixel recall | detections/image "
           f"| FP/image (IoBB ≤ {MATCH_IOBB}) | signal on artefacts |\n|---|---|---|---|---|---|---|---|---|---|"]
    for row in at_sight_sensitivity(table, s).to_dict("records"):
        out.append(f"| {row['attribution']} | {row['method']} | {_fmt(row, 'pointing_game')} | {_fmt(row, 'region_hit')} | "
                   f"{_fmt(row, 'iou')} | {_num(row.get('pixel_precision_mean'))} | {_num(row.get('pixel_recall_mean'))} | "
                   f"{_num(row.get('detections_mean'), 1)} | {_num(row.get(fp), 2)} | {_num(row.get('signal_on_artefacts_mean'))} |")
    return out + _tradeoff_section(table, "lesion masks", "image")


def _sanity_section(sanity: pd.DataFrame) -> list[str]:
    out = [f"\n### Sanity check: cascading randomisation (Adebayo et al. 2018), {int(sanity['images'].iloc[0])} images\n\n"
           "Each model's weights permuted within every tensor, from the output down; an explanation of the model should "
           "decorrelate from the trained model's as its weights go.\n\n"
           "| model | layers randomised | Spearman of abs(IG) with the trained model's | pointing game |\n|---|---|---|---|"]
    for row in sanity.to_dict("records"):
        out.append(f"| {row['model']} | {row['layers_randomised']} | {_fmt(row, 'spearman')} | {_fmt(row, 'pointing_game')} |")
    return out


BOX_COLUMNS = (("accuracy_iou_0.1", "acc. T(IoU)=0.1"), ("accuracy_iou_0.3", "acc. T(IoU)=0.3"), ("accuracy_iou_0.5", "acc. T(IoU)=0.5"),
               ("accuracy_iobb_0.1", "acc. T(IoBB)=0.1"), ("accuracy_iobb_0.25", "acc. T(IoBB)=0.25"),
               ("accuracy_iobb_0.5", "acc. T(IoBB)=0.5"), ("afp_iobb_0.1", "AFP T(IoBB)=0.1"))


def _boxes_section(boxes: pd.DataFrame, sight_sensitivity: float) -> list[str]:
    out = [f"\n### Boxes ({boxes['ground_truth'].iloc[0]}), pretraining model: integrated gradients, the paper's circles at sight "
           f"sensitivity {sight_sensitivity}, each circle a detection\n\n"
           f"| finding | boxes | images | pointing game | strongest region | IoU | {' | '.join(n for _, n in BOX_COLUMNS)} "
           f"| Wang et al. T(IoBB)=0.1 |\n|---|---|---|---|---|---|{'---|' * len(BOX_COLUMNS)}---|"]
    for row in boxes.to_dict("records"):
        out.append(f"| {row['finding']} | {row['boxes']} | {row['images']} | {_fmt(row, 'pointing_game')} | {_fmt(row, 'region_hit')} | "
                   f"{_fmt(row, 'iou')} | " + " | ".join(_num(row[c], 2 if c.startswith('afp') else 3) for c, _ in BOX_COLUMNS)
                   + f" | {_num(row.get(PUBLISHED_COLUMN))} |")
    return out


def _box_methods_section(methods: pd.DataFrame, sight_sensitivity: float) -> list[str]:
    out = [f"\n### Every map and method on the same {int(methods['boxes'].iloc[0])} boxes ({methods['ground_truth'].iloc[0]}), "
           f"at sight sensitivity {sight_sensitivity:g}\n\n"
           f"| attribution | method | sight sensitivity | strongest region | IoU | {' | '.join(n for _, n in BOX_COLUMNS)} |"
           f"\n|---|---|---|---|---|{'---|' * len(BOX_COLUMNS)}"]
    for row in at_sight_sensitivity(methods, sight_sensitivity).to_dict("records"):
        s = row["note"] if row.get("note") else _num(row["sight_sensitivity"], 2)
        out.append(f"| {row['attribution']} | {row['method']} | {s} | {_fmt(row, 'region_hit')} | {_fmt(row, 'iou')} | "
                   + " | ".join(_num(row[c], 2 if c.startswith('afp') else 3) for c, _ in BOX_COLUMNS) + " |")
    return out + _tradeoff_section(methods, "boxes", "box")


def boxes_markdown(boxes: pd.DataFrame, methods: pd.DataFrame | None, *, synthetic: bool, rule: str, steps: int, models: str,
                   sight_sensitivity: float) -> str:
    """`box_study`'s tables on their own (what `replication boxes` writes)."""
    out = _header(synthetic, rule, steps, models) + _boxes_section(boxes, sight_sensitivity)
    return "\n".join(out + (_box_methods_section(methods, sight_sensitivity) if methods is not None and len(methods) else [])) + "\n"


def _words_section(summary: Mapping[str, Mapping[str, Any]]) -> list[str]:
    out = [f"\n### Fig. 3 measured: the {TOP_WORDS} best-scored words of each abnormal test report that names a finding\n",
           ("Share of them that state the report's findings (the generator's ground truth), with a 95% bootstrap interval "
            "over reports; chance is those words' share of the report (k words drawn at random); the Wilcoxon signed-rank "
            "test pairs share and chance per report.\n"),
           "| gradients of | reports | top-k share [95% CI] | chance | top-1 is a finding word | share − chance | Wilcoxon p |",
           "|---|---|---|---|---|---|---|"]
    for model, r in summary.items():
        out.append(f"| {model} | {r['reports']} | {r['top_k_share']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}] | "
                   f"{r['chance_share']:.3f} | {r['top_1']:.3f} | {r['difference']:+.3f} | {_num(r['wilcoxon_p'], 2)} |")
    return out


def localisation_markdown(study: Study) -> str:
    """The stage's tables: every map and method on masks, the trade-off, the sanity check, the box scores, Fig. 3's
    word scores, the completeness delta."""
    m, p = study.manifest, study.manifest["params"]["localisation"]
    out = _header(m["synthetic"], p["rule"], p["steps"], m["models"])
    if len(study.masks):
        out += _mask_section(study.masks, m["masks"]["images"], p["sight_sensitivity"])
    if len(study.sanity):
        out += _sanity_section(study.sanity)
    if len(study.boxes):
        out += _boxes_section(study.boxes, p["sight_sensitivity"])
    if len(study.box_methods):
        out += _box_methods_section(study.box_methods, p["sight_sensitivity"])
    if "words" in study.metrics:
        out += _words_section(study.metrics["words"])
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
    out.append(f"\n{GRAD_CAM_NOTE}.")
    return "\n".join(out) + "\n"
