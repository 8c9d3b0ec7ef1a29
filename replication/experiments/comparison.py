"""The paper comparison report: every number of paper/reference.yaml's index next to what this run reproduced.

Iterates the index (`replication.experiments.reference`) and reads each number's results metric of one
profile. Each row: the paper's value, the reproduced mean ± std, the difference, whether it lies within the stated tolerance, and a note. A synthetic-data run is marked as
not comparable (no row is judged); a real-data run judges only what it measured (e.g. Table 2 from the real
reports while the images are synthetic).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from replication.experiments.reference import lookup, paper_numbers, read_json

DEFAULT_TOLERANCE = 0.05


@dataclass
class Row:
    section: str
    quantity: str
    where: str
    paper: float | None
    reproduced: float | None = None
    spread: float | None = None
    verdict: str = ""
    note: str = ""

    @property
    def difference(self) -> float | None:
        return None if self.paper is None or self.reproduced is None else self.reproduced - self.paper


def _judge(row: Row, tolerance: float, comparable: bool) -> Row:
    if row.reproduced is None:
        row.verdict = "not run"
    elif not comparable:
        row.verdict = "not comparable"
    elif row.paper is None:
        row.verdict = "—"
    else:
        row.verdict = "within tolerance" if abs(row.difference) <= tolerance else "outside tolerance"
    return row


def compare(reference: Mapping[str, Any], results: str | Path) -> tuple[list[Row], dict[str, Any]]:
    """A row for every number of the reference index and a header (profile, which results are real data).

    A row is judged only when the stage that produced its metric ran on real data (the `synthetic` flag of the
    stage's manifest.json beside the metrics file); counts get ±2%, accuracies and differences the tolerance."""
    results = Path(results)
    tol = float(reference.get("tolerance", DEFAULT_TOLERANCE))
    rows: list[Row] = []
    real: dict[str, bool] = {}
    for number in paper_numbers(reference):
        stage_dir = (results / number.file).parent
        manifest = read_json(stage_dir / "manifest.json") or {}
        metrics = read_json(results / number.file)
        is_real = bool(manifest) and manifest.get("synthetic") is False
        real[stage_dir.name] = is_real
        note = number.note if number.source == "paper" else f"from the authors' notebooks, not the paper; {number.note}".rstrip("; ")
        row = Row(number.section, number.quantity, number.where, number.paper, note=note)
        value = lookup(metrics, number.metric)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            row.reproduced = float(value)
            spread = lookup(metrics, number.sd)
            row.spread = float(spread) if isinstance(spread, (int, float)) else None
        if number.kind == "unassigned":
            row.verdict = "unassigned"
        elif number.kind == "parameter":
            row.verdict = "parameter"
        elif number.kind == "count" and row.reproduced is not None and is_real:
            row.verdict = "within tolerance" if abs(row.reproduced - row.paper) <= 0.02 * abs(row.paper) else "outside tolerance"
        else:
            _judge(row, tol, is_real)
        if row.verdict == "not run" and metrics is None:
            row.note = f"no {number.file} (its stage has not run)"
        rows.append(row)
    header = {"profile": results.name, "real": real, "tolerance": tol}
    return rows, header


def _num(v: float | None, signed: bool = False) -> str:
    if v is None:
        return "—"
    if abs(v) >= 100:  # counts
        return f"{v:+,.0f}" if signed else f"{v:,.0f}"
    return f"{v:+.3f}" if signed else f"{v:.3f}"


def comparison_markdown(rows: list[Row], header: Mapping[str, Any], profile: str) -> str:
    lines = [f"# Paper comparison — profile `{profile}`", ""]
    if not any(header["real"].values()):
        lines += ["> **SYNTHETIC DATA: nothing below is comparable with the paper.** This run used the embedded synthetic",
                  "> cohorts (the default profile); the reproduced column shows that the pipeline runs end to end, not that",
                  "> the paper's numbers hold. Real data: `replication profile paper` (see README).", ""]
    else:
        lines += ["Results on real data: " + ", ".join(f"{stage} {'yes' if is_real else 'no'}" for stage, is_real in header["real"].items())
                  + ". Only rows computed on real data are judged.", ""]
    lines += [f"Tolerance: ±{header['tolerance']} absolute on accuracies and AUROCs (±2% on dataset counts).", "",
              "| section | quantity | paper | reproduced (mean ± sd) | difference | verdict | note |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        rep = "—" if r.reproduced is None else _num(r.reproduced) + ("" if r.spread is None else f" ± {r.spread:.3f}")
        lines.append(f"| {r.section} | {r.quantity} | {_num(r.paper)} | {rep} | {_num(r.difference, True)} | {r.verdict} | {r.note} |")
    lines += ["", "Where each paper number appears: " + "; ".join(sorted({f'{r.section}: {r.where}' for r in rows})) + ".",
              "Every known deviation from the paper and the authors' code: KNOWN_DEVIATIONS.md."]
    return "\n".join(lines) + "\n"


def comparison_html(markdown: str, figures: Mapping[str, str]) -> str:
    """A standalone HTML page: the comparison table and the figures (relative links to the committed PNGs)."""
    import html

    body, table = [], []
    for line in markdown.splitlines():
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if set("".join(cells)) <= set("-"):
                continue
            tag = "th" if not table else "td"
            table.append("<tr>" + "".join(f"<{tag}>{html.escape(c)}</{tag}>" for c in cells) + "</tr>")
            continue
        if table:
            body.append("<table>" + "".join(table) + "</table>")
            table = []
        if line.startswith("# "):
            body.append(f"<h1>{html.escape(line[2:])}</h1>")
        elif line.startswith(">"):
            body.append(f"<p class='warn'>{html.escape(line.lstrip('> ').replace('**', ''))}</p>")
        elif line.strip():
            body.append(f"<p>{html.escape(line)}</p>")
    if table:
        body.append("<table>" + "".join(table) + "</table>")
    for title, src in figures.items():
        body.append(f"<h2>{html.escape(title)}</h2><img src='{html.escape(src)}' alt='{html.escape(title)}' style='max-width:100%'>")
    style = ("body{font-family:sans-serif;max-width:1100px;margin:auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:3px 6px;font-size:13px}.warn{color:#a00;font-weight:bold}")
    return f"<!doctype html><html><head><meta charset='utf-8'><title>Paper comparison</title><style>{style}</style></head><body>{''.join(body)}</body></html>\n"


def key_metrics(results: str | Path) -> dict[str, float]:
    """Every number of a run's metrics files (results/<profile>/<stage>/metrics.json) as a flat {stage/key: value}:
    what `dvc metrics show` lists, and the shape of the regression baselines."""
    out: dict[str, float] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, Mapping):
            for k, v in value.items():
                walk(f"{prefix}.{k}", v)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[prefix] = float(value)

    for path in sorted(Path(results).glob("*/metrics.json")):
        for key, value in (read_json(path) or {}).items():
            walk(f"{path.parent.name}/{key}", value)
    return out
