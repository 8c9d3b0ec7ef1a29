"""One case explained (paper §3, Figs. 2-3): the three models' predictions, the image regions and the report's words.

``load_models`` reads a curves setting's split-0 models (outputs/models/<setting>), ``explain_case`` explains one
X-ray and report with them, and ``render_case`` draws the explanation: the one renderer of both
`replication explain` and the localise stage's example figures.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from replication.errors import DataError
from replication.explain.attribution import DEFAULT_RULE, DEFAULT_STEPS, attribute_text, integrated_gradients
from replication.explain.regions import SIGHT_SENSITIVITY, Region, cluster_regions, reduce_channels
from replication.explain.words import WordScores, word_scores

MODEL_FILES = ("text.keras", "image.keras", "multimodal.keras", "vocabulary.json", "config.json")


@dataclass
class SavedModels:
    """A curves setting's split-0 models (outputs/models/<setting>) and what encoding a case needs."""

    directory: str
    text: Any
    image: Any
    multimodal: Any
    vocabulary: Any
    image_size: int
    keep_negations: bool
    sequence_length: int


# directory -> (size and mtime_ns of every loaded file, the models): a replaced file is loaded afresh
_LOADED: dict[str, tuple[tuple, SavedModels]] = {}


def load_models(directory: str | os.PathLike) -> SavedModels:
    """The three models, the vocabulary and the encoding the curves stage saved; a DataError names what is missing.

    Loaded once per directory in a process (explaining many cases reuses the models and the traced attribution
    functions cached on them), and again whenever any of its files changes size or modification time."""
    root = Path(directory)
    missing = [n for n in MODEL_FILES if not (root / n).is_file()]
    if missing:
        raise DataError(root, f"missing {', '.join(missing)}: not a models directory of the curves stage "
                              f"(run `dvc repro curves`, or pass --models outputs/models/<setting>)")
    stamp = tuple((name, (root / name).stat().st_size, (root / name).stat().st_mtime_ns) for name in MODEL_FILES)
    key = str(root.resolve())
    if key not in _LOADED or _LOADED[key][0] != stamp:
        import keras

        import replication.models.densenet  # noqa: F401  registers the custom layers (GreyToRGB) the saved models use
        from replication.data.text import Vocabulary

        config = json.loads((root / "config.json").read_text())
        try:
            encoding = int(config["image_size"]), bool(config["text"]["keep_negations"]), int(config["text"]["sequence_length"])
        except (KeyError, TypeError) as error:
            raise DataError(root / "config.json", f"no {error} (image_size, text.keep_negations, text.sequence_length): "
                                                  "re-run the curves stage") from None
        load = lambda name: keras.saving.load_model(root / name, compile=False)  # noqa: E731
        _LOADED[key] = (stamp, SavedModels(str(root), load("text.keras"), load("image.keras"), load("multimodal.keras"),
                                           Vocabulary.from_json((root / "vocabulary.json").read_text()), *encoding))
    return _LOADED[key][1]


@dataclass(eq=False)
class CaseExplanation:
    """What `explain_case` finds for one X-ray and report."""

    predictions: dict[str, float]      # P(abnormal) of the text, image and multimodal models
    image: np.ndarray                  # (H, W) grey pixels as given
    image_attribution: np.ndarray      # (H, W) IG of the image model, channels reduced
    relative_delta: float              # IG's completeness check
    steps: int
    rule: str
    sight_sensitivity: float
    regions: list[Region]              # the paper's circles at the sight sensitivity
    words: WordScores                  # gradients at the multimodal's embedding, squared and summed per word
    tokens: list[str]

    def region_records(self) -> list[dict[str, float]]:
        return [{"center_row": r.center[0], "center_col": r.center[1], "radius": r.radius, "pixels": r.pixels,
                 "mass": r.mass, "peak": r.peak} for r in self.regions]

    def completeness(self) -> dict[str, Any]:
        return {"relative_delta": self.relative_delta, "steps": self.steps, "rule": self.rule}


def explain_case(models: SavedModels, image: np.ndarray, report: str, *, sight_sensitivity: float = SIGHT_SENSITIVITY,
                 steps: int = DEFAULT_STEPS, rule: str = DEFAULT_RULE) -> CaseExplanation:
    """Predictions of the three models, the image regions (IG + sight sensitivity + single linkage) and the
    report's word scores (gradients at the multimodal's embedding output, squared and summed per word).

    `image`: (H, W) grey pixels 0..255 at the models' size; `report`: the raw report text (cleaned here as in training).
    """
    from replication.data.text import OOV, clean_report

    size = models.image_size
    pixels = np.asarray(image, dtype=np.float32)
    if pixels.shape != (size, size):
        raise DataError("image", f"expected ({size}, {size}) grey pixels (the models' image size), got {pixels.shape}")
    if not np.isfinite(pixels).all():
        raise DataError("image", "pixel values must be finite")
    tokens = clean_report(report, models.keep_negations)
    ids, _ = models.vocabulary.encode([tokens], models.sequence_length)
    x = pixels[None, ..., None]
    predictions = {
        "text": float(models.text.predict(ids, verbose=0)[0, 0]),
        "image": float(models.image.predict(x, verbose=0)[0, 0]),
        "multimodal": float(models.multimodal.predict([ids, x], verbose=0)[0, 0]),
    }
    ig = integrated_gradients(models.image, x, steps=steps, rule=rule)
    attribution = ig.attribution[0]
    regions = cluster_regions(attribution, sight_sensitivity)
    known = ids[0][(ids[0] != 0) & (ids[0] != OOV)]
    if len(known) == 0:
        words = WordScores([], np.zeros(0), note="no word of the report is in the model's vocabulary: no text explanation")
    else:
        grads = attribute_text(models.multimodal, ids, other_inputs=[x], method="gradients")
        words = word_scores(grads.embedding_scores[0], ids[0], models.vocabulary)
    return CaseExplanation(predictions, pixels, reduce_channels(attribution), float(ig.relative_delta[0]), int(steps), rule,
                           float(sight_sensitivity), regions, words, tokens)


def render_case(case: CaseExplanation, label: str, *, notice: str = "", sweep: Sequence[float] | None = None,
                panel_png: str | os.PathLike | None = None, overlay_png: str | os.PathLike | None = None,
                words_png: str | os.PathLike | None = None, words_html: str | os.PathLike | None = None) -> list[Path]:
    """Draw a case's explanation: the sight-sensitivity panel over `sweep` (Fig. 2), the circles over the X-ray,
    and the word heatmap (Fig. 3) as PNG and interactive HTML; each only where a path is given (the word heatmaps
    only when the report has known words). `label` names the case in the titles, `notice` precedes them (e.g.
    "SYNTHETIC DATA - "). Returns the files written."""
    from replication.explain.render import overlay_regions, sight_sensitivity_panel, word_heatmap_html, word_heatmap_png

    p = case.predictions
    written = []
    if panel_png is not None:
        extra = {} if sweep is None else {"thresholds": list(sweep)}
        sight_sensitivity_panel(case.image, case.image_attribution, panel_png, **extra,
                                title=f"{notice}Fig. 2 replication: integrated gradients above each sight sensitivity "
                                      f"({label}: P(abnormal) image {p['image']:.2f}, multimodal {p['multimodal']:.2f})")
        written.append(Path(panel_png))
    if overlay_png is not None:
        overlay_regions(case.image, case.regions, overlay_png, f"{notice}{label}: sight sensitivity {case.sight_sensitivity}")
        written.append(Path(overlay_png))
    words = case.words
    title = f"{notice}Fig. 3 replication: word scores of {label} (multimodal, gradients at the embedding)"
    for path, draw in ((words_png, word_heatmap_png), (words_html, word_heatmap_html)):
        if path is not None and words.words:
            draw(words.words, words.scores, path, title)
            written.append(Path(path))
    return written


__all__ = ["CaseExplanation", "SavedModels", "explain_case", "load_models", "render_case"]
