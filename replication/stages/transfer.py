"""DVC stage `transfer`: Fig. 4, IU fine-tuning from the ChestX-ray14 encoder, ImageNet (when cached) and scratch
(replication.experiments.transfer).

Metrics, manifest, runs, table, fig4.png and one per-epoch log per run go to --results; the interactive figure
(plotly.js inlined, works offline) to --html. Finished runs and per-epoch checkpoints in --checkpoints (not a DVC
output) let a killed stage resume where it stopped; they are removed once the stage is done.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from replication import statistics as st
from replication.data.store import read_cohort
from replication.experiments.table2 import clean_cases
from replication.experiments.transfer import (figure_4, summarise_transfer, transfer_comparison, transfer_manifest, transfer_markdown,
                                              transfer_metrics, transfer_tests, transfer_tests_markdown)
from replication.io import atomic_path, sha256_file, write_json, write_text
from replication.params import load_params, plain
from replication.stages import arguments, timed
from replication.tracking import log_history
from replication.training.checkpoint import checkpoint_key


def main(argv: list[str] | None = None) -> int:
    args = arguments(argv, __doc__, "cohort", "encoder", "results", "html", "checkpoints")
    params = load_params()
    section, architecture = params.transfer, params.pretrain.architecture
    with timed("transfer", args.timings):
        cohort = read_cohort(args.cohort)
        key = checkpoint_key("transfer", plain(section), architecture, params.image_size, params.seed, sha256_file(Path(args.cohort) / "manifest.json"))
        result = transfer_comparison(cohort, section, architecture, params.image_size, params.seed, args.encoder,
                                     checkpoint_root=args.checkpoints, checkpoint_key=key)
        summary = summarise_transfer(result)
        cleaned, _ = clean_cases(cohort.cases, params.text.keep_negations)
        tests = transfer_tests(result, dict(zip(cleaned["case_id"], cleaned["tokens"])), params.statistics, params.seed)
        with atomic_path(args.results) as tmp:
            tmp.mkdir()
            write_json(tmp / "metrics.json", {**transfer_metrics(summary), "test": st.summary_metrics(tests)})
            write_json(tmp / "manifest.json", {"profile": params.profile, "image_size": params.image_size, "seed": params.seed,
                                               "pretrained_architecture": architecture, **transfer_manifest(cohort, result, summary),
                                               "params": {"transfer": plain(section)}})
            write_json(tmp / "runs.json", result.runs)
            write_json(tmp / "tests.json", tests)
            for name, history in result.histories.items():
                log_history(tmp / "epochs" / name, history)
            write_text(tmp / "transfer.md", transfer_markdown(summary, cohort.synthetic) + "\n" + transfer_tests_markdown(tests, params.statistics.confidence))
            figure_4(result, summary, section, params.image_size, cohort.synthetic, tmp / "fig4.png", None)
        with atomic_path(args.html) as tmp:
            tmp.mkdir()
            figure_4(result, summary, section, params.image_size, cohort.synthetic, None, tmp / "fig4.html")
        shutil.rmtree(args.checkpoints, ignore_errors=True)
    print(open(f"{args.results}/transfer.md").read())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
