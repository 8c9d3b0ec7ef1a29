"""DVC stage `synth@{iu,cxr14}`: write a synthetic cohort (the embedded default dataset)."""

from __future__ import annotations

import sys
import time

from replication.data.synthetic import SynthParams, generate
from replication.params import load_params

OUT = "outputs/synthetic/{kind}"


def main(argv: list[str] | None = None) -> int:
    kind = (argv if argv is not None else sys.argv[1:])[0]
    params = load_params()
    knobs = {**params["synthetic"].get(kind, {}), "image_size": params["image_size"]}
    start = time.perf_counter()
    cohort = generate(SynthParams.from_dict(knobs), kind=kind, seed=int(params["seed"]))
    path = cohort.write(OUT.format(kind=kind))
    print(f"synth {kind}: {len(cohort.cases)} cases in {time.perf_counter() - start:.1f} s -> {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
