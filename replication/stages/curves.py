"""DVC stage `curves`: text, image and multimodal trained on the same splits at each learning-rate setting.

One process runs every setting of `curves.settings` (low, high): the three models are built and traced once and
reset between splits and settings, since each new process would pay DenseNet-121's first-step tracing again
(~100 s for the image model and the multimodal on 2 CPU cores, measured). Per setting it writes
results/<profile>/curves/<setting>/{curves.csv, final.json} and the split-0 models to outputs/models/<setting>.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from replication.data.store import read_cohort
from replication.errors import ParameterError
from replication.io import atomic_path, write_json
from replication.multimodal_experiment import run_setting
from replication.params import load_params

ENCODER = "outputs/pretrain/encoder.weights.h5"
RESULTS = "results/{profile}/curves/{setting}"
MODELS = "outputs/models/{setting}"
PARTIAL = "outputs/partial/curves-{setting}"   # per-epoch histories while training; what a NaN loss leaves behind
SETTINGS = ("low", "high")                     # dvc.yaml declares these outputs


def main(argv: list[str] | None = None) -> int:
    from replication.train import seed_everything

    params = load_params()
    settings = params["curves"]["settings"]
    if sorted(settings) != sorted(SETTINGS):
        raise ParameterError("curves.settings", sorted(settings), f"exactly the settings {list(SETTINGS)} (dvc.yaml declares their outputs)")
    cohort = read_cohort("outputs/prepared/iu")
    seed_everything(int(params["seed"]))
    shared: dict = {}
    for setting in SETTINGS:
        start = time.perf_counter()
        partial = Path(PARTIAL.format(setting=setting))
        shutil.rmtree(partial, ignore_errors=True)
        curves, finals, excluded = run_setting(setting, settings[setting], cohort, params, ENCODER, "outputs/word2vec",
                                               save_models_to=MODELS.format(setting=setting), partial_dir=partial, models_cache=shared)
        shutil.rmtree(partial, ignore_errors=True)
        with atomic_path(RESULTS.format(profile=params["profile"], setting=setting)) as tmp:
            tmp.mkdir(parents=True)
            curves.to_csv(tmp / "curves.csv", index=False)
            write_json(tmp / "final.json", {"setting": setting, "synthetic": cohort.synthetic, "source": cohort.source,
                                            "excluded": excluded.summary(), "runs": finals, "stage_seconds": time.perf_counter() - start})
        print(f"curves {setting}: {len(curves)} rows in {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
