"""DVC stage `curves@{low,high}`: text, image and multimodal trained on the same splits at one learning-rate setting."""

from __future__ import annotations

import shutil
import sys
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


def main(argv: list[str] | None = None) -> int:
    setting = (argv if argv is not None else sys.argv[1:])[0]
    params = load_params()
    start = time.perf_counter()
    cohort = read_cohort("outputs/prepared/iu")
    settings = params["curves"]["settings"]
    if setting not in settings:
        raise ParameterError("curves setting", setting, f"one of {sorted(settings)} (curves.settings in params.yaml)")
    partial = Path(PARTIAL.format(setting=setting))
    shutil.rmtree(partial, ignore_errors=True)
    curves, finals, excluded = run_setting(setting, settings[setting], cohort, params, ENCODER, "outputs/word2vec",
                                           save_models_to=MODELS.format(setting=setting), partial_dir=partial)
    shutil.rmtree(partial, ignore_errors=True)
    with atomic_path(RESULTS.format(profile=params["profile"], setting=setting)) as tmp:
        tmp.mkdir()
        curves.to_csv(tmp / "curves.csv", index=False)
        write_json(tmp / "final.json", {"setting": setting, "synthetic": cohort.synthetic, "source": cohort.source,
                                        "excluded": excluded.summary(), "runs": finals, "stage_seconds": time.perf_counter() - start})
    print(f"curves {setting}: {len(curves)} rows in {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
