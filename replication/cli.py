"""The `replication` command (also `python -m replication`).

Subcommands import their modules lazily so that `--help` answers at once.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

from replication.errors import DataError, ParameterError

DESCRIPTION = """\
Replication of 'Medical Multimodal Classifiers Under Low Data Situations' (Aydin, Zhang, Haffari, 2019).

The whole paper runs with `dvc repro` (see README.md); these subcommands are the pieces a researcher
uses by hand: generate the embedded synthetic data, fetch the real datasets, prepare a cohort,
switch the parameter profile, and inspect a cohort directory.
"""


def _synth(args: argparse.Namespace) -> int:
    from replication.data.synthetic import SynthParams, generate

    knobs = {"image_size": args.image_size}
    if args.cases is not None:
        knobs["cases"] = args.cases
    for item in args.set or []:
        key, _, value = item.partition("=")
        knobs[key] = yaml.safe_load(value)  # numbers, booleans, lists and mappings as YAML reads them
    cohort = generate(SynthParams.from_dict(knobs), kind=args.kind, seed=args.seed)
    path = cohort.write(args.out)
    print(f"wrote {len(cohort.cases)} synthetic {args.kind} cases ({cohort.image_size} px) to {path}")
    return 0


def _fetch(args: argparse.Namespace) -> int:
    from replication.data.fetch import fetch

    print(fetch(args.dataset, args.data_dir, extract=not args.no_extract))
    return 0


def _prepare(args: argparse.Namespace) -> int:
    from replication.data.prepare import data_section, prepare
    from replication.params import load_params

    params = load_params(args.params)
    cohort = prepare(args.role, data_section(params, args.role), params.splits, params.image_size, params.seed)
    path = cohort.write(args.out or f"outputs/prepared/{args.role}")
    print(json.dumps(cohort.counts(), indent=2))
    print(f"-> {path}")
    return 0


def _profile(args: argparse.Namespace) -> int:
    from replication.params import write_profile

    path = write_profile(args.name)
    print(f"{path} now holds the '{args.name}' profile; run `dvc repro` (or `make repro`)")
    return 0


def _show(args: argparse.Namespace) -> int:
    manifest = json.loads((Path(args.cohort) / "manifest.json").read_text()) if (Path(args.cohort) / "manifest.json").is_file() else None
    if manifest is None:
        raise DataError(args.cohort, "not a cohort directory (no manifest.json)")
    if manifest.get("synthetic"):
        print(manifest["synthetic_notice"])
    for key in ("name", "source", "image_size", "counts", "exclusions", "notes"):
        print(f"{key}: {json.dumps(manifest.get(key), indent=2)}")
    return 0


def _explain(args: argparse.Namespace) -> int:
    import numpy as np

    from replication.explain.case import explain_case, load_models, render_case
    from replication.io import atomic_path, write_json

    if (args.case is None) == (args.image is None):
        raise ParameterError("explain", "--case and --image" if args.case else "neither --case nor --image",
                             "either --case ID (from --cohort) or --image FILE with --report TEXT")
    if args.image is not None and args.report is None:
        raise ParameterError("--report", None, "the report's text (quote it) together with --image")
    if args.case is not None:  # the case is looked up before the models are loaded: a wrong id fails at once
        from replication.data.store import read_cohort

        cohort = read_cohort(args.cohort)
        rows = cohort.cases[cohort.cases["case_id"] == args.case]
        if rows.empty:
            raise DataError(args.cohort, f"no case {args.case!r}", record=args.case)
        row = rows.iloc[0]
        if int(row["image_index"]) < 0 or cohort.images is None:
            raise DataError(args.cohort, "this case has no image", record=args.case)
        image, report, name = np.asarray(cohort.images[int(row["image_index"])]), str(row["text"]), args.case
    models = load_models(args.models)
    if args.image is not None:
        from replication.data.images import load_image

        image, _ = load_image(args.image, models.image_size)
        report, name = args.report, Path(args.image).stem
    steps, rule = _ig_settings(args)
    case = explain_case(models, image, report, sight_sensitivity=args.sight_sensitivity, steps=steps, rule=rule)
    out = Path(args.out or f"explanations/{name}")
    words = case.words
    with atomic_path(out) as tmp:
        tmp.mkdir(parents=True)
        write_json(tmp / "explanation.json", {
            "case": name, "models": args.models, "predictions": case.predictions, "sight_sensitivity": args.sight_sensitivity,
            "completeness": case.completeness(), "regions": case.region_records(),
            "words": [{"word": w, "score": s} for w, s in words.pairs()], "words_note": words.note})
        written = render_case(case, name, panel_png=tmp / "panel.png", overlay_png=tmp / "overlay.png",
                              words_png=tmp / "words.png", words_html=tmp / "words.html")
    p = case.predictions
    print(f"{name}: P(abnormal) text {p['text']:.3f}, image {p['image']:.3f}, multimodal {p['multimodal']:.3f}; "
          f"{len(case.regions)} region(s) at sight sensitivity {args.sight_sensitivity}; "
          f"top words: {', '.join(f'{w} {s:.2f}' for w, s in words.top(5)) or words.note}")
    print(f"written: {out}/explanation.json, " + ", ".join(path.name for path in written))
    return 0


def _boxes(args: argparse.Namespace) -> int:
    import dataclasses

    from replication.data.store import read_cohort
    from replication.experiments.localisation import at_sight_sensitivity, box_study, boxes_markdown, published_iobb
    from replication.experiments.reference import load_reference
    from replication.explain.scoring import sight_sensitivity_tradeoff
    from replication.io import atomic_path, write_json, write_text
    from replication.params import load_params

    cohort = read_cohort(args.cohort)
    if cohort.boxes is None or cohort.boxes.empty:
        print(f"{args.cohort}: no ground-truth boxes; the bounding boxes of the lesion masks are used" if cohort.masks is not None
              else f"{args.cohort}: neither boxes nor masks")
    steps, rule = _ig_settings(args)
    # the sweep and top-k of params.yaml's localisation section; the rest from the command line
    params = dataclasses.replace(load_params(args.params).localisation, images=args.images, steps=steps, rule=rule,
                                 sight_sensitivity=args.sight_sensitivity)
    study = box_study(cohort, args.pretrain, params, 0, published_iobb(load_reference(args.reference), args.reference))
    if study is None:
        raise DataError(args.cohort, "no test image of split_0 has a box of a finding the model predicts")
    text = boxes_markdown(study.table, study.methods, synthetic=cohort.synthetic, rule=rule, steps=steps, models=args.pretrain,
                          sight_sensitivity=args.sight_sensitivity)
    with atomic_path(args.out) as tmp:
        tmp.mkdir(parents=True)
        study.table.to_csv(tmp / "boxes.csv", index=False, float_format="%.6g")
        study.methods.to_csv(tmp / "box_methods.csv", index=False, float_format="%.6g")
        at_sight_sensitivity(study.cases, args.sight_sensitivity).to_csv(tmp / "box_cases.csv", index=False, float_format="%.6g")
        write_text(tmp / "boxes.md", text)
        overall = study.table[study.table["finding"] == "all findings"].iloc[0]
        write_json(tmp / "metrics.json", {"synthetic": cohort.synthetic, "source": cohort.source, "sight_sensitivity": args.sight_sensitivity,
                                          "steps": steps, "rule": rule, "models": args.pretrain,
                                          "all_findings": {k: v for k, v in overall.to_dict().items() if isinstance(v, (int, float))},
                                          "sight_sensitivity_tradeoff": sight_sensitivity_tradeoff(study.methods)})
    print(text)
    return 0


def _ig_arguments(p: argparse.ArgumentParser) -> None:
    # the library's defaults, written out so that --help stays light (tests/unit/test_params_cli.py checks they agree)
    p.add_argument("--steps", type=int, help="integrated-gradients steps (default: 256, the library's)")
    p.add_argument("--rule", help="integration rule: midpoint, trapezoid, gauss_legendre or riemann_left "
                                  "(default: midpoint, the library's)")


def _ig_settings(args: argparse.Namespace) -> tuple[int, str]:
    from replication.explain.attribution import DEFAULT_RULE, DEFAULT_STEPS

    return (DEFAULT_STEPS if args.steps is None else args.steps), (DEFAULT_RULE if args.rule is None else args.rule)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="replication", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("synth", help="generate a synthetic cohort (the embedded default data)",
                       description="Write a synthetic IU-like (paired reports, binary) or ChestX-ray14-like (multi-label) cohort. Every knob: docs/SYNTHETIC.md.")
    p.add_argument("--kind", choices=["iu", "cxr14"], default="iu", help="which cohort (default: iu)")
    p.add_argument("--cases", type=int, help="number of cases (default: the generator's full size)")
    p.add_argument("--image-size", type=int, default=64, help="square image side in pixels (default: 64)")
    p.add_argument("--seed", type=int, default=2019, help="random seed (default: 2019)")
    p.add_argument("--set", action="append", metavar="KNOB=VALUE", help="any other generator knob, repeatable")
    p.add_argument("--out", required=True, help="cohort directory to write")
    p.set_defaults(func=_synth)

    p = sub.add_parser("fetch", help="download a real dataset into data/",
                       description="Download the official public archives, with checksums, resume and retries. See docs/DATA.md.")
    p.add_argument("dataset", choices=["iu-xray", "chestxray14"])
    p.add_argument("--data-dir", default="data", help="where the datasets live (default: data)")
    p.add_argument("--no-extract", action="store_true", help="download the archives but do not extract them")
    p.set_defaults(func=_fetch)

    p = sub.add_parser("prepare", help="build a prepared dataset from params.yaml (what the DVC stage runs)")
    p.add_argument("role", choices=["iu", "cxr14"], help="iu: the target cohort; cxr14: the pretraining cohort")
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--out", help="output directory (default: outputs/prepared/ROLE)")
    p.set_defaults(func=_prepare)

    p = sub.add_parser("profile", help="switch params.yaml to a profile in profiles/ (default, paper, shared-real)")
    p.add_argument("name")
    p.set_defaults(func=_profile)

    p = sub.add_parser("show", help="summarise a cohort directory: counts, exclusions with reasons, notes")
    p.add_argument("cohort")
    p.set_defaults(func=_show)

    p = sub.add_parser("explain", help="explain one case with trained models: prediction, regions, word heatmap",
                       description="The paper's detection (section 3) on one case: integrated gradients on the image model, the "
                                   "sight-sensitivity threshold, single-linkage circles, and per-word scores from the multimodal's "
                                   "gradients at the embedding output. Writes explanation.json, panel.png (Fig. 2), overlay.png, "
                                   "words.png and words.html (Fig. 3).")
    p.add_argument("--models", default="outputs/models/high", help="a curves setting's models (default: outputs/models/high)")
    p.add_argument("--case", help="a case id of --cohort")
    p.add_argument("--cohort", default="outputs/prepared/iu", help="prepared cohort for --case (default: outputs/prepared/iu)")
    p.add_argument("--image", help="a PNG or JPEG (8- or 16-bit, grey or colour), resized to the models' size")
    p.add_argument("--report", help="the report's text, with --image")
    p.add_argument("--sight-sensitivity", type=float, default=0.7, help="threshold on the normalised attributions (default: 0.7)")
    _ig_arguments(p)
    p.add_argument("--out", help="output directory (default: explanations/<case or image name>)")
    p.set_defaults(func=_explain)

    p = sub.add_parser("boxes", help="score the pretraining model's detection against ground-truth boxes (Wang et al.'s T(IoBB))",
                       description="Integrated gradients of each box's finding unit, the paper's circles at the sight sensitivity, "
                                   "then hit rate, IoU and accuracy at T(IoBB) = 0.1/0.25/0.5 per finding, next to Wang et al. 2017. "
                                   "Boxes: BBox_List_2017 on real ChestX-ray14, the lesion masks' bounding boxes on a synthetic cohort.")
    p.add_argument("--pretrain", default="outputs/pretrain", help="the pretrain stage's directory (default: outputs/pretrain)")
    p.add_argument("--cohort", default="outputs/prepared/cxr14", help="prepared ChestX-ray14(-like) cohort (default: outputs/prepared/cxr14)")
    p.add_argument("--images", type=int, default=200, help="at most this many boxes of split_0's test images (default: 200)")
    _ig_arguments(p)
    p.add_argument("--sight-sensitivity", type=float, default=0.7, help="threshold on the normalised attributions (default: 0.7)")
    p.add_argument("--params", default="params.yaml", help="the sweep and top-k of its localisation section (default: params.yaml)")
    p.add_argument("--reference", default="paper/reference.yaml", help="Wang et al.'s published accuracies (default: paper/reference.yaml)")
    p.add_argument("--out", required=True, help="output directory (boxes.csv, box_methods.csv, boxes.md, metrics.json)")
    p.set_defaults(func=_boxes)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (DataError, ParameterError, FileNotFoundError) as e:
        print(f"replication {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"replication {args.command}: interrupted; nothing half-written was left in place", file=sys.stderr)
        return 130
