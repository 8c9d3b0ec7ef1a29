"""DVC stage `prepare@{iu,cxr14}`: source → prepared dataset (text, labels, images, splits, manifest)."""

from __future__ import annotations

import sys

from replication.data.prepare import prepare
from replication.params import load_params

OUT = "outputs/prepared/{role}"


def main(argv: list[str] | None = None) -> int:
    role = (argv if argv is not None else sys.argv[1:])[0]
    cohort = prepare(role, load_params())
    path = cohort.write(OUT.format(role=role))
    counts = cohort.counts()
    print(f"prepare {role}: {counts['cases']} cases, {counts['cases_with_image']} with an image, "
          f"{len(cohort.exclusions)} records excluded or text-only (see {path}/manifest.json) -> {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
