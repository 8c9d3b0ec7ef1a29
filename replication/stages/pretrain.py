"""DVC stage `pretrain`: CheXNet-style DenseNet-121 pretraining on the prepared ChestX-ray14(-like) cohort.

Writes the encoder (what `transfer` and the multimodal start from) and the whole pretraining model
(encoder + one sigmoid per finding: what the detection stage explains) to outputs/pretrain/, and the
per-class / mean test AUROC, the per-epoch history and a figure to results/<profile>/pretrain/.
Checkpoints after every epoch go to outputs/checkpoints/pretrain/ (not a DVC output, so a killed
`dvc repro` resumes from the last epoch); outputs already made from the same inputs are not remade.
"""

from __future__ import annotations

import time

import pandas as pd

from replication.data.store import read_cohort
from replication.io import atomic_path, write_json, write_text
from replication.params import load_params

COHORT = "outputs/prepared/cxr14"
MODEL_OUT = "outputs/pretrain"
RESULTS = "results/{profile}/pretrain"
CHECKPOINT = "outputs/checkpoints/pretrain"
ENCODER_FILE = "encoder.weights.h5"
MODEL_FILE = "model.weights.h5"


def stage_fingerprint(params: dict) -> str:
    from replication.train import code_fingerprint, cohort_fingerprint, fingerprint

    return fingerprint("pretrain", params["pretrain"], params["image_size"], params["seed"], cohort_fingerprint(COHORT), code_fingerprint())


def main(argv: list[str] | None = None) -> int:
    started = time.perf_counter()
    params = load_params()
    results = RESULTS.format(profile=params["profile"])
    from replication.train import up_to_date

    key = stage_fingerprint(params)
    outputs = [f"{MODEL_OUT}/{ENCODER_FILE}", f"{MODEL_OUT}/{MODEL_FILE}", f"{results}/metrics.json", f"{results}/history.csv"]
    if up_to_date(f"{MODEL_OUT}/stamp.json", "pretrain", key, outputs):
        return 0

    from replication.figures import plot_pretrain_auroc
    from replication.image_experiment import pretrain, pretrain_markdown
    from replication.models.densenet import save_encoder
    from replication.train import save_model_weights

    cohort = read_cohort(COHORT)
    result = pretrain(cohort, params, checkpoint_dir=CHECKPOINT, checkpoint_key=key)
    metrics = {**result.metrics, "stage_seconds": time.perf_counter() - started}
    with atomic_path(MODEL_OUT) as tmp:
        tmp.mkdir()
        info = {"labels": list(cohort.label_names), "initialisation": metrics["initialisation_used"], "cohort": cohort.name,
                "synthetic": cohort.synthetic, "split": metrics["split"], "fingerprint": key}
        save_encoder(result.model, tmp / ENCODER_FILE, **info)
        save_model_weights(result.model, tmp / MODEL_FILE)  # without the optimizer's slots
        write_json(tmp / "model.json", {"builder": "replication.models.densenet.pretraining_model",
                                        "architecture": metrics["architecture"], "image_size": metrics["image_size"], **info})
        write_json(tmp / "stamp.json", {"fingerprint": key})
    with atomic_path(results) as tmp:
        tmp.mkdir()
        write_json(tmp / "metrics.json", metrics)
        pd.DataFrame(result.history).to_csv(tmp / "history.csv", index=False)
        write_text(tmp / "pretrain.md", pretrain_markdown(metrics))
        plot_pretrain_auroc(metrics, tmp / "auroc.png")
    print(open(f"{results}/pretrain.md").read())
    print(f"pretrain: encoder -> {MODEL_OUT}/{ENCODER_FILE}; metrics -> {results}/metrics.json "
          f"({metrics['stage_seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
