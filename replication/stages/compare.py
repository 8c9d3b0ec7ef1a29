"""DVC stage `compare`: every number of paper/reference.yaml next to this profile's results (Markdown and HTML)."""

from __future__ import annotations

import os
from pathlib import Path

from replication.experiments.comparison import compare, comparison_html, comparison_markdown
from replication.experiments.reference import load_reference
from replication.io import write_text
from replication.params import load_params
from replication.stages import arguments, timed

FIGURES = {"Fig. 5 replication (Table 3 protocol)": "table3/fig5.png", "Fig. 4 replication (transfer)": "transfer/fig4.png",
           "Fig. 2 replication (sight sensitivity)": "localisation/fig2.png", "Fig. 3 replication (word scores)": "localisation/fig3.png"}


def main(argv: list[str] | None = None) -> int:
    args = arguments(argv, __doc__, "reference", "results", "markdown", "html")
    params = load_params()
    with timed("compare", args.timings):
        rows, header = compare(load_reference(args.reference), args.results)
        text = comparison_markdown(rows, header, params.profile)
        write_text(args.markdown, text)
        here = Path(args.html).parent
        figures = {title: os.path.relpath(Path(args.results) / path, here) for title, path in FIGURES.items()
                   if (Path(args.results) / path).is_file()}
        write_text(args.html, comparison_html(text, figures))
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
