"""DVC stage `table3`: paper Table 3 and Fig. 5 from the curves of every learning-rate setting."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import yaml

from replication.curves import table3, table3_markdown
from replication.io import atomic_path, write_json, write_text
from replication.params import load_params

RESULTS = "results/{profile}"
HTML_OUT = "outputs/table3"


def main(argv: list[str] | None = None) -> int:
    from replication.figures import plot_fig5

    params = load_params()
    root = Path(RESULTS.format(profile=params["profile"]))
    settings = list(params["curves"]["settings"])
    curves = pd.concat([pd.read_csv(root / "curves" / s / "curves.csv") for s in settings], ignore_index=True)
    finals = [json.loads((root / "curves" / s / "final.json").read_text()) for s in settings]
    reference = yaml.safe_load(open("paper/reference.yaml"))["table3"]
    summary = table3(curves, reference)
    baselines = {}
    for final in finals:
        runs = pd.DataFrame(final["runs"])
        base = runs[runs["model"].isin(["tf-idf + logistic regression", "majority class"])]
        baselines[final["setting"]] = {m: {"accuracy": float(g["val_accuracy"].mean()), "auroc": float(g["val_auroc"].mean())}
                                       for m, g in base.groupby("model")}
        tested = runs[runs["model"].isin(["text", "image", "multimodal"])]
        for model, g in tested.groupby("model"):
            summary[final["setting"]]["models"][model]["test_accuracy"] = {"mean": float(g["test_accuracy"].mean()), "std": float(g["test_accuracy"].std(ddof=1)) if len(g) > 1 else 0.0}
    synthetic = any(f["synthetic"] for f in finals)
    with atomic_path(root / "table3") as tmp:
        tmp.mkdir()
        write_json(tmp / "metrics.json", {"synthetic": synthetic, "source": finals[0]["source"], "profile": params["profile"],
                                          "summary": summary, "baselines": baselines})
        text = "".join(table3_markdown({s: summary[s]}, synthetic and i == 0, baselines.get(s)) for i, s in enumerate(settings))
        write_text(tmp / "table3.md", text)
        plot_fig5(curves, tmp / "fig5.png", None, synthetic=synthetic)
    with atomic_path(HTML_OUT) as tmp:
        tmp.mkdir()
        plot_fig5(curves, None, tmp / "fig5.html", synthetic=synthetic)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
