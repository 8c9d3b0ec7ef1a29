"""DVC stage `curves`: Fig. 5 / Table 3's protocol, text, image and multimodal on the same splits at every setting.

One process runs every setting of `curves.settings` (low, high): the three models are built and traced once and
reset between splits and settings, since each new process would pay DenseNet-121's first-step tracing again.
Per setting: <results>/<setting>/{curves.csv, final.json, epochs/} and the split-0 models in <models>/<setting>.
"""

from __future__ import annotations

from replication.data.store import read_cohort
from replication.experiments.curves import run_curves
from replication.params import load_params
from replication.stages import arguments, timed


def main(argv: list[str] | None = None) -> int:
    args = arguments(argv, __doc__, "cohort", "word2vec", "encoder", "results", "models", "partial")
    params = load_params()
    with timed("curves", args.timings):
        run_curves(read_cohort(args.cohort), params, args.encoder, args.word2vec, args.results, args.models, args.partial)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
