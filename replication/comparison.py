"""The paper comparison report: every number of paper/reference.yaml next to what this run reproduced.

Reads the stages' metrics.json files of one profile. Each row: the paper's value, the reproduced mean ± std,
the difference, whether it lies within the stated tolerance, and a note. A synthetic-data run is marked as
not comparable (no row is judged); a real-data run judges only what it measured (e.g. Table 2 from the real
reports while the images are synthetic).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import yaml

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


def _read(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.is_file() else None


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


def compare(reference: Mapping[str, Any], results: str | Path, prepared_iu: str | Path) -> tuple[list[Row], dict[str, Any]]:
    """Rows for every reference number and a header (profile, sources, what is comparable)."""
    results = Path(results)
    tol = float(reference.get("tolerance", DEFAULT_TOLERANCE))
    manifest = _read(Path(prepared_iu) / "manifest.json") or {}
    table2, table3 = _read(results / "table2" / "metrics.json"), _read(results / "table3" / "metrics.json")
    transfer = _read(results / "transfer" / "metrics.json")
    text_real = bool(table2) and not table2.get("synthetic", True)
    images_real = bool(table3) and not table3.get("synthetic", True)
    rows: list[Row] = []

    ref2 = reference["table2"]
    for variant in ("custom", "generic"):
        for part in ("train", "val", "test"):
            row = Row("Table 2", f"{variant} embedding, {part} accuracy", ref2["where"], ref2[variant][part])
            entry = (table2 or {}).get("summary", {}).get(variant)
            if entry and f"{part}_accuracy" in entry:
                row.reproduced, row.spread = entry[f"{part}_accuracy"]["mean"], entry[f"{part}_accuracy"]["std"]
            elif table2:
                row.note = (table2.get("not_run", {}) or {}).get(variant, "not run (no embedding file)") if variant == "generic" else ""
            rows.append(_judge(row, tol, text_real))

    ref3 = reference["table3"]
    for setting in ("low", "high"):
        for model in ("multimodal", "text", "image"):
            row = Row("Table 3", f"{model}, {setting} learning rate ({ref3[setting]['learning_rate']:g}), accuracy averaged over epochs",
                      ref3["where"], ref3[setting][model])
            entry = (table3 or {}).get("summary", {}).get(setting, {}).get("models", {}).get(model)
            if entry:
                row.reproduced, row.spread = entry["mean_accuracy"]["mean"], entry["mean_accuracy"]["std"]
                row.note = f"{entry['splits']} splits × {entry['epochs']} epochs (paper: {ref3[setting]['epochs']} epochs)"
            rows.append(_judge(row, tol, images_real))
        for other in ("text", "image"):
            d = (table3 or {}).get("summary", {}).get(setting, {}).get("differences", {}).get(f"multimodal - {other}")
            paper = ref3[setting]["multimodal"] - ref3[setting][other]
            row = Row("Table 3", f"multimodal − {other}, {setting} learning rate (paired)", ref3["where"], round(paper, 3))
            if d:
                row.reproduced, row.note = d["mean"], f"95% interval {d['low']:+.3f} to {d['high']:+.3f} over {d['splits']} splits"
            rows.append(_judge(row, tol, images_real))

    auroc = reference.get("auroc", {})
    ours = {m: e["final_auroc"] for m, e in (table3 or {}).get("summary", {}).get("high", {}).get("models", {}).items()}
    mine = ", ".join(f"{m} {v['mean']:.3f} ± {v['std']:.3f}" for m, v in ours.items()) or "not run"
    for k, value in enumerate(auroc.get("quoted", [])):
        note = f"{auroc.get('note', '')}. Ours (final-epoch validation AUROC, high learning rate): {mine}" if k == 0 else "see above"
        rows.append(Row("AUROC", f"quoted AUROC {k + 1} of {len(auroc['quoted'])}", auroc["where"], value, verdict="unassigned", note=note))

    ds = reference["dataset"]
    counts = manifest.get("counts", {})
    real_iu = manifest.get("source") == "iu_xray"
    for key, value, reproduced, note in (
        ("reports", ds["reports"], counts.get("cases"), "cases in the prepared IU cohort"),
        ("abnormal fraction", ds["abnormal_fraction"], counts["label_1"] / counts["cases"] if counts.get("cases") else None, "label 1 = any MeSH finding"),
        ("mean words per report", ds["mean_words_per_report"], ((table2 or {}).get("corpus") or {}).get("mean_words"), "after the paper's cleaning"),
        ("sequence length", ds["sequence_length"], None, "a parameter (text.sequence_length), not a measurement"),
        ("frontal image-report pairs", ds["frontal_pairs"], counts.get("cases_with_image"), "cases with a frontal image"),
    ):
        row = Row("Data", key, ds["where"], value, reproduced, note=note)
        if reproduced is None:
            row.verdict = "parameter" if key == "sequence length" else "not run"
        elif not real_iu:
            row.verdict = "not comparable"
        else:
            within = abs(reproduced - value) <= (0.02 * value if value > 1 else tol)
            row.verdict = "within tolerance" if within else "outside tolerance"
        rows.append(row)

    header = {
        "profile": (table3 or table2 or transfer or {}).get("profile") or manifest.get("parameters", {}).get("profile"),
        "iu_source": manifest.get("source", "not prepared"),
        "text_real": text_real, "images_real": images_real, "tolerance": tol,
    }
    return rows, header


def _num(v: float | None, signed: bool = False) -> str:
    if v is None:
        return "—"
    if abs(v) >= 100:  # counts
        return f"{v:+,.0f}" if signed else f"{v:,.0f}"
    return f"{v:+.3f}" if signed else f"{v:.3f}"


def comparison_markdown(rows: list[Row], header: Mapping[str, Any], profile: str) -> str:
    lines = [f"# Paper comparison — profile `{profile}`", ""]
    if not header["text_real"] and not header["images_real"]:
        lines += ["> **SYNTHETIC DATA: nothing below is comparable with the paper.** This run used the embedded synthetic",
                  "> cohorts (the default profile); the reproduced column shows that the pipeline runs end to end, not that",
                  "> the paper's numbers hold. Real data: `replication profile paper` (see README).", ""]
    else:
        lines += [f"Data: IU X-ray source `{header['iu_source']}`; text results real: {header['text_real']}; image and multimodal "
                  f"results real: {header['images_real']}. Only rows computed on real data are judged.", ""]
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


def load_reference(path: str | Path = "paper/reference.yaml") -> dict[str, Any]:
    return yaml.safe_load(Path(path).read_text())


def key_metrics(results: str | Path) -> dict[str, float]:
    """The headline numbers of a run's results/<profile>/ as a flat {name: value} (the regression baseline's shape)."""
    results = Path(results)
    out: dict[str, float] = {}
    table2 = _read(results / "table2" / "metrics.json") or {}
    for variant, entry in table2.get("summary", {}).items():
        if "test_accuracy" in entry:
            out[f"table2.{variant}.test_accuracy"] = entry["test_accuracy"]["mean"]
    transfer = _read(results / "transfer" / "metrics.json") or {}
    for init, entry in transfer.get("summary", {}).items():
        if "final_val_accuracy" in entry:
            out[f"transfer.{init}.mean_val_accuracy_over_epochs"] = entry["mean_val_accuracy_over_epochs"]["mean"]
    table3 = _read(results / "table3" / "metrics.json") or {}
    for setting, entry in table3.get("summary", {}).items():
        for model, stats in entry["models"].items():
            out[f"table3.{setting}.{model}.mean_accuracy"] = stats["mean_accuracy"]["mean"]
            out[f"table3.{setting}.{model}.final_auroc"] = stats["final_auroc"]["mean"]
    localisation = _read(results / "localisation" / "metrics.json") or {}
    masks = localisation.get("masks", {})
    for key, value in masks.get("paper_method_at_sight_sensitivity", {}).items():
        out[f"localisation.masks.{key}"] = value
    for key, value in masks.get("pointing_game", {}).items():
        out[f"localisation.pointing_game.{key}"] = value
    for key, value in localisation.get("boxes", {}).items():
        if isinstance(value, float):
            out[f"localisation.boxes.{key}"] = value
    return {k: float(v) for k, v in out.items()}
