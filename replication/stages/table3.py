"""DVC stage `table3`: paper Table 3 and Fig. 5 from the curves of every learning-rate setting (the `paper` protocol),
with the `fair` protocol's test-split comparisons (the `fair` stage's runs.json) beside them."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from replication.experiments.fair import fair_markdown, fair_metrics
from replication.experiments.curves import plot_fig5, table3_markdown, table3_metrics, table3_summary
from replication.experiments.reference import load_reference
from replication.io import atomic_path, write_json, write_text
from replication.params import load_params
from replication.stages import arguments, timed


def main(argv: list[str] | None = None) -> int:
    args = arguments(argv, __doc__, "curves", "fair", "reference", "results", "html")
    params = load_params()
    with timed("table3", args.timings):
        settings = list(params.curves.settings)
        curves = pd.concat([pd.read_csv(Path(args.curves) / s / "curves.csv") for s in settings], ignore_index=True)
        finals = [json.loads((Path(args.curves) / s / "final.json").read_text()) for s in settings]
        summary, baselines = table3_summary(curves, [r for f in finals for r in f["runs"]], load_reference(args.reference))
        synthetic = any(f["synthetic"] for f in finals)
        fair = json.loads((Path(args.fair) / "runs.json").read_text())
        text = ("**Paper protocol** (validation accuracy, as the paper reports it)\n\n"
                + "".join(table3_markdown({s: summary[s]}, synthetic and i == 0, baselines.get(s)) for i, s in enumerate(settings))
                + "\n" + fair_markdown({**fair, "synthetic": False}))
        with atomic_path(args.results) as tmp:
            tmp.mkdir()
            write_json(tmp / "metrics.json", {**table3_metrics(summary, baselines), "fair": fair_metrics(fair)})
            write_json(tmp / "manifest.json", {"synthetic": synthetic, "source": finals[0]["source"], "profile": params.profile,
                                               "summary": summary, "baselines": baselines,
                                               "fair": {"summary": fair["summary"], "encoder": fair["encoder"]}})
            write_text(tmp / "table3.md", text)
            plot_fig5(curves, tmp / "fig5.png", None, synthetic=synthetic)
        with atomic_path(args.html) as tmp:
            tmp.mkdir()
            plot_fig5(curves, None, tmp / "fig5.html", synthetic=synthetic)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
