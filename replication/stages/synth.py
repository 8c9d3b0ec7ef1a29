"""DVC stage `synth@{iu,cxr14}`: write a synthetic cohort (the embedded default dataset)."""

from __future__ import annotations

from replication.data.synthetic import SynthParams, generate
from replication.params import load_params
from replication.stages import arguments, timed


def main(argv: list[str] | None = None) -> int:
    args = arguments(argv, __doc__, "out", positional=("kind",))
    params = load_params()
    with timed(f"synth {args.kind}", args.timings):
        knobs = {**params.synthetic[args.kind], "image_size": params.image_size}
        cohort = generate(SynthParams.from_dict(knobs), kind=args.kind, seed=params.seed)
        path = cohort.write(args.out)
    print(f"synth {args.kind}: {len(cohort.cases)} cases -> {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
