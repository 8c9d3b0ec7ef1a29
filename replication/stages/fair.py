"""DVC stage `fair`: the fair protocol's comparisons of text, image and multimodal on the test split
(replication.experiments.fair): metrics.json, runs.json (every split's tests) and fair.md go to --results."""

from __future__ import annotations

from replication.data.store import read_cohort
from replication.experiments.fair import FairSetup, fair_markdown, fair_metrics, run_fair
from replication.io import atomic_path, write_json, write_text
from replication.params import load_params, plain
from replication.stages import arguments, timed
from replication.training.seeding import seed_everything


def main(argv: list[str] | None = None) -> int:
    args = arguments(argv, __doc__, "cohort", "word2vec", "encoder", "results")
    params = load_params()
    with timed("fair", args.timings):
        seed_everything(params.seed)
        result = run_fair(FairSetup.from_params(params), read_cohort(args.cohort), args.encoder, args.word2vec)
        text = fair_markdown(result)
        with atomic_path(args.results) as tmp:
            tmp.mkdir()
            write_json(tmp / "metrics.json", fair_metrics(result))
            write_json(tmp / "runs.json", {"profile": params.profile, "params": {"fair": plain(params.fair)}, **result})
            write_text(tmp / "fair.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
