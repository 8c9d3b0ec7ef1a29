"""DVC stages: each module reads its paths from the command line (named only in dvc.yaml) and its parameter
sections from params.yaml, calls one experiment function, and writes atomically.

`arguments` parses the paths; `timed` records the stage's wall time in a separate file (an uncommitted output
under outputs/timings/), so that a re-run which changes nothing leaves the committed results identical.
"""

from __future__ import annotations

import argparse
import contextlib
import time
from pathlib import Path
from typing import Iterator, Sequence

from replication.io import write_json


def arguments(argv: Sequence[str] | None, description: str, *paths: str, optional: Sequence[str] = (),
              positional: Sequence[str] = ()) -> argparse.Namespace:
    """`--name PATH` for every name in `paths` (required) and `optional`; `--timings PATH` always (optional)."""
    parser = argparse.ArgumentParser(description=description)
    for name in positional:
        parser.add_argument(name)
    for name in paths:
        parser.add_argument(f"--{name.replace('_', '-')}", dest=name, required=True, metavar="PATH")
    for name in optional:
        parser.add_argument(f"--{name.replace('_', '-')}", dest=name, default=None, metavar="PATH")
    parser.add_argument("--timings", default=None, metavar="PATH", help="write the stage's wall time here (JSON)")
    return parser.parse_args(argv)


@contextlib.contextmanager
def timed(stage: str, path: str | Path | None) -> Iterator[None]:
    """Time the block; write {"stage", "seconds"} to `path` (when given) only if it succeeds."""
    start = time.perf_counter()
    yield
    seconds = time.perf_counter() - start
    if path is not None:
        write_json(path, {"stage": stage, "seconds": round(seconds, 1)})
    print(f"{stage}: {seconds:.0f} s")
