"""DVC stage `compare`: reports/paper_comparison.md and .html, every paper number next to this run's."""

from __future__ import annotations

from pathlib import Path

from replication.comparison import compare, comparison_html, comparison_markdown, load_reference
from replication.io import write_text
from replication.params import load_params

OUT = "reports"
FIGURES = {"Fig. 5 replication (Table 3 protocol)": "table3/fig5.png", "Fig. 4 replication (transfer)": "transfer/fig4.png",
           "Fig. 2 replication (sight sensitivity)": "localisation/fig2.png", "Fig. 3 replication (word scores)": "localisation/fig3.png"}


def main(argv: list[str] | None = None) -> int:
    params = load_params()
    results = Path(f"results/{params['profile']}")
    rows, header = compare(load_reference(), results, "outputs/prepared/iu")
    text = comparison_markdown(rows, header, params["profile"])
    write_text(Path(OUT) / "paper_comparison.md", text)
    figures = {title: f"../{results}/{path}" for title, path in FIGURES.items() if (results / path).is_file()}
    write_text(Path(OUT) / "paper_comparison.html", comparison_html(text, figures))
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
