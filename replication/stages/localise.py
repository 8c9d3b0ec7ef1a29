"""DVC stage `localise`: the paper's detection (Figs. 2-3) on the trained models, scored against ground truth.

Writes results/<profile>/localisation/: masks.csv (IU-like target, fine-tuned image model: every method over
the sight-sensitivity sweep), boxes.csv (the pretraining model's finding units against boxes, per finding),
box_methods.csv (every method on those boxes, with a cross-fitted tuned threshold),
completeness.csv (IG's completeness delta against steps for each rule), metrics.json, localisation.md,
fig2.png (the sight-sensitivity panel), overlay.png (circles) and fig3.png (word scores); the interactive
word heatmap (plotly.js inlined) goes to outputs/localisation/fig3.html.
"""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd

from replication.data.store import read_cohort
from replication.io import atomic_path, write_json, write_text
from replication.params import load_params

RESULTS = "results/{profile}/localisation"
HTML_OUT = "outputs/localisation"
PRETRAIN = "outputs/pretrain"


def main(argv: list[str] | None = None) -> int:
    from replication.detection import localisation_study, localisation_markdown

    started = time.perf_counter()
    params = load_params()
    cfg = params["localisation"]
    iu, cxr14 = read_cohort("outputs/prepared/iu"), read_cohort("outputs/prepared/cxr14")
    study = localisation_study(iu, cxr14, f"outputs/models/{cfg['models']}", PRETRAIN, cfg, seed=int(params["seed"]))
    results = Path(RESULTS.format(profile=params["profile"]))
    with atomic_path(results) as tmp:
        tmp.mkdir()
        study.masks.to_csv(tmp / "masks.csv", index=False)
        study.boxes.to_csv(tmp / "boxes.csv", index=False)
        study.box_methods.to_csv(tmp / "box_methods.csv", index=False)
        pd.DataFrame(study.completeness).to_csv(tmp / "completeness.csv", index=False)
        write_json(tmp / "metrics.json", {**study.metrics, "stage_seconds": time.perf_counter() - started})
        write_text(tmp / "localisation.md", localisation_markdown(study))
        study.draw(tmp / "fig2.png", tmp / "overlay.png", tmp / "fig3.png", None)
    with atomic_path(HTML_OUT) as tmp:
        tmp.mkdir()
        study.draw(None, None, None, tmp / "fig3.html")
    print((results / "localisation.md").read_text())
    print(f"localise: {results} ({time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
