"""DVC stage `transfer`: Figure 4, validation accuracy per epoch on the IU target for DenseNet-121 initialised
from the ChestX-ray14 encoder (the pretrain stage's), from ImageNet (when cached) and from scratch.

Writes results/<profile>/transfer/: history.csv (tidy: init, split, epoch, val_accuracy, val_loss,
val_auroc; a DVC plot), metrics.json, runs.json, transfer.md and fig4.png; the interactive plotly figure
(plotly.js inlined, works offline) goes to outputs/transfer/fig4.html. Finished runs and per-epoch
checkpoints live in outputs/checkpoints/transfer/, so a killed stage resumes where it stopped.
"""

from __future__ import annotations

import time
from pathlib import Path

from replication.data.store import read_cohort
from replication.io import atomic_path, sha256_file, write_json, write_text
from replication.params import load_params

COHORT = "outputs/prepared/iu"
ENCODER = "outputs/pretrain/encoder.weights.h5"
RESULTS = "results/{profile}/transfer"
HTML_OUT = "outputs/transfer"
CHECKPOINTS = "outputs/checkpoints/transfer"


def stage_fingerprint(params: dict) -> str:
    from replication.train import code_fingerprint, cohort_fingerprint, fingerprint

    encoder = sha256_file(ENCODER) if Path(ENCODER).is_file() else None
    return fingerprint("transfer", params["transfer"], params.get("pretrain", {}).get("architecture"), params["image_size"],
                       params["seed"], cohort_fingerprint(COHORT), encoder, code_fingerprint())


def main(argv: list[str] | None = None) -> int:
    started = time.perf_counter()
    params = load_params()
    results = RESULTS.format(profile=params["profile"])
    from replication.train import up_to_date

    key = stage_fingerprint(params)
    if up_to_date(f"{HTML_OUT}/stamp.json", "transfer", key, [f"{results}/history.csv", f"{results}/metrics.json", f"{HTML_OUT}/fig4.html"]):
        return 0

    from replication.figures import plot_transfer_curves
    from replication.image_experiment import summarise_transfer, transfer_comparison, transfer_markdown

    cohort = read_cohort(COHORT)
    result = transfer_comparison(cohort, params, ENCODER, checkpoint_root=CHECKPOINTS, checkpoint_key=key)
    summary = summarise_transfer(result)
    title = (f"Fig. 4 replication: IU validation accuracy per epoch (mean ± sd over {params['transfer'].get('splits')} splits, "
             f"{params['image_size']} px, lr {params['transfer'].get('learning_rate')})")
    if cohort.synthetic:
        title = "SYNTHETIC DATA - " + title
    majority = [r["metrics"]["majority_class"]["val_accuracy"] for r in result.runs if r.get("metrics")]
    baseline = sum(majority) / len(majority) if majority else None
    not_run = {k: v["not_run"] for k, v in summary.items() if "not_run" in v}
    metrics = {"synthetic": cohort.synthetic, "source": cohort.source, "image_size": params["image_size"],
               "transfer": params["transfer"], "summary": summary, "notes": result.notes,
               "stage_seconds": time.perf_counter() - started}
    with atomic_path(results) as tmp:
        tmp.mkdir()
        result.history.to_csv(tmp / "history.csv", index=False)
        write_json(tmp / "metrics.json", metrics)
        write_json(tmp / "runs.json", [{k: v for k, v in r.items() if k != "history"} for r in result.runs])
        write_text(tmp / "transfer.md", transfer_markdown(summary, cohort.synthetic))
        plot_transfer_curves(result.history, tmp / "fig4.png", None, title, not_run=not_run, baseline=baseline)
    with atomic_path(HTML_OUT) as tmp:
        tmp.mkdir()
        plot_transfer_curves(result.history, None, tmp / "fig4.html", title, not_run=not_run, baseline=baseline)
        write_json(tmp / "stamp.json", {"fingerprint": key})
    print(open(f"{results}/transfer.md").read())
    print(f"transfer: {results}/history.csv, {results}/fig4.png, {HTML_OUT}/fig4.html ({metrics['stage_seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
