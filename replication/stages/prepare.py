"""DVC stage `prepare@{iu,cxr14}`: source → prepared dataset (text, labels, images, splits, manifest)."""

from __future__ import annotations

from replication.data.prepare import data_section, prepare
from replication.params import load_params
from replication.stages import arguments, timed


def main(argv: list[str] | None = None) -> int:
    args = arguments(argv, __doc__, "out", positional=("role",))
    params = load_params()
    with timed(f"prepare {args.role}", args.timings):
        cohort = prepare(args.role, data_section(params, args.role), params.splits, params.image_size, params.seed)
        path = cohort.write(args.out)
    counts = cohort.counts()
    print(f"prepare {args.role}: {counts['cases']} cases, {counts['cases_with_image']} with an image, "
          f"{len(cohort.exclusions)} records excluded or text-only (see {path}/manifest.json) -> {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
