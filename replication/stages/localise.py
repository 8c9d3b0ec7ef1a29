"""DVC stage `localise`: the paper's detection (Figs. 2-3) on the trained models, scored against ground truth.

Writes to --results: masks.csv, mask_cases.csv (per image), sanity.csv, boxes.csv, box_methods.csv, box_cases.csv
(per box), completeness.csv, words.csv (Fig. 3 measured, per report), metrics.json, manifest.json,
localisation.md, fig2.png, overlay.png and fig3.png; to --html: fig3.html (plotly.js inlined). The tables:
replication/experiments/localisation.py.
"""

from __future__ import annotations

from replication.data.store import read_cohort
from replication.experiments.localisation import localisation_markdown, localisation_study, published_iobb
from replication.experiments.reference import load_reference
from replication.io import atomic_path, write_json, write_text
from replication.params import load_params
from replication.stages import arguments, timed


def main(argv: list[str] | None = None) -> int:
    args = arguments(argv, __doc__, "iu", "cxr14", "models", "pretrain", "reference", "results", "html")
    params = load_params()
    with timed("localise", args.timings):
        study = localisation_study(read_cohort(args.iu), read_cohort(args.cxr14), args.models, args.pretrain, params.localisation,
                                   params.seed, published_iobb(load_reference(args.reference), args.reference))
        with atomic_path(args.results) as tmp:
            tmp.mkdir()
            for name in ("masks", "mask_cases", "sanity", "boxes", "box_methods", "box_cases", "completeness", "words"):
                getattr(study, name).to_csv(tmp / f"{name}.csv", index=False, float_format="%.6g")
            write_json(tmp / "metrics.json", study.metrics)
            write_json(tmp / "manifest.json", {"profile": params.profile, **study.manifest})
            write_text(tmp / "localisation.md", localisation_markdown(study))
            study.draw(tmp / "fig2.png", tmp / "overlay.png", tmp / "fig3.png")
        with atomic_path(args.html) as tmp:
            tmp.mkdir()
            study.draw(fig3_html=tmp / "fig3.html")
    print(open(f"{args.results}/localisation.md").read())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
