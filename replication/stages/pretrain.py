"""DVC stage `pretrain`: CheXNet-style pretraining on the prepared ChestX-ray14(-like) cohort (replication.experiments.pretrain).

The encoder and the whole model go to --model; metrics, manifest, table, figure and per-epoch log to --results.
Per-epoch checkpoints in --checkpoints (not a DVC output) let a killed run resume; they are removed once it is done.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from replication.data.store import read_cohort
from replication.experiments.pretrain import (plot_pretrain_auroc, pretrain, pretrain_markdown, pretrain_metrics, published_mean_auroc,
                                              save_pretrained)
from replication.experiments.reference import load_reference
from replication.io import atomic_path, sha256_file, write_json, write_text
from replication.params import load_params, plain
from replication.stages import arguments, timed
from replication.tracking import log_history
from replication.training.checkpoint import checkpoint_key


def main(argv: list[str] | None = None) -> int:
    args = arguments(argv, __doc__, "cohort", "reference", "model", "results", "checkpoints")
    params = load_params()
    with timed("pretrain", args.timings):
        cohort = read_cohort(args.cohort)
        key = checkpoint_key("pretrain", plain(params.pretrain), params.image_size, params.seed, sha256_file(Path(args.cohort) / "manifest.json"))
        result = pretrain(cohort, params.pretrain, params.image_size, params.seed, checkpoint_dir=args.checkpoints, checkpoint_key=key)
        published = published_mean_auroc(load_reference(args.reference), args.reference)
        with atomic_path(args.model) as tmp:
            tmp.mkdir()
            save_pretrained(result, tmp)
        with atomic_path(args.results) as tmp:
            tmp.mkdir()
            write_json(tmp / "metrics.json", pretrain_metrics(result))
            write_json(tmp / "manifest.json", {"profile": params.profile, **result.manifest})
            log_history(tmp / "epochs" / "pretrain", result.history)
            write_text(tmp / "pretrain.md", pretrain_markdown(result, published))
            plot_pretrain_auroc(result, tmp / "auroc.png", published)
        shutil.rmtree(args.checkpoints, ignore_errors=True)
    print(open(f"{args.results}/pretrain.md").read())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
