"""Figures for the documentation and the results (matplotlib; the Agg backend is chosen per call, not at import)."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path
from typing import Any

import numpy as np

from replication.io import atomic_path


def _pick_cases(cases: Any, names: list[str], n: int, pool: int = 400) -> list[int]:
    """A varied sample: greedily cover as many findings as possible, then add a normal case, in case order."""
    flags = np.array([cases[f"finding_{name}"].to_numpy()[:pool] for name in names if f"finding_{name}" in cases]).T
    chosen: list[int] = []
    covered = np.zeros(flags.shape[1], dtype=bool) if flags.size else np.zeros(0, dtype=bool)
    while flags.size and len(chosen) < n - 1:
        gain = (flags & ~covered).sum(axis=1)
        if gain.max() == 0:
            break
        best = int(np.argmax(gain))
        chosen.append(best)
        covered |= flags[best].astype(bool)
    normal = [i for i in range(min(pool, len(cases))) if not (flags.size and flags[i].any())]
    chosen += normal[:1]
    chosen += [i for i in range(len(cases)) if i not in chosen][: n - len(chosen)]
    return sorted(chosen)


def plot_synthetic_grid(cohort: Any, out_png: str | os.PathLike, n: int = 8, real_image: str | os.PathLike | None = None) -> Path:
    """Show what the generator makes: cases with their ground-truth outlines and report text, beside a real radiograph.

    The point is to let a reader judge the synthetic data at a glance, and to make it impossible to mistake it
    for the real thing: every panel is labelled synthetic, the real one is labelled real.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    from replication.data.synthetic import FINDINGS, NOISE

    cases = cohort.cases
    idx = _pick_cases(cases, list(FINDINGS), min(n, len(cases)))
    panels = len(idx) + (real_image is not None)
    rows = (panels + 1) // 2
    colours = dict(zip(FINDINGS, plt.get_cmap("tab10").colors))
    noise_style = {"marker": ("#00e5ff", "--"), "border": ("#ff4fd8", ":")}
    fig, axes = plt.subplots(rows, 4, figsize=(15, 3.7 * rows), gridspec_kw={"width_ratios": [1, 1.35, 1, 1.35]})
    axes = np.atleast_2d(axes)
    for ax in axes.ravel():
        ax.axis("off")
    for k, i in enumerate(idx):
        ax_img, ax_txt = axes[k // 2, 2 * (k % 2)], axes[k // 2, 2 * (k % 2) + 1]
        row = cases.iloc[i]
        image = cohort.images[int(row["image_index"])]
        ax_img.imshow(image, cmap="gray", vmin=0, vmax=255, interpolation="bilinear")
        for name in list(FINDINGS) + list(NOISE):
            if name not in cohort.mask_names:
                continue
            mask = cohort.mask(name, int(row["image_index"]))
            if mask.any():
                colour, style = noise_style.get(name, (colours.get(name), "-"))
                ax_img.contour(mask.astype(float), levels=[0.5], colors=[colour], linewidths=1.2, linestyles=style)
        ax_img.set_title(f"SYNTHETIC {row['case_id']}", fontsize=9)
        truth = []
        for name in FINDINGS:
            if row.get(f"finding_{name}", 0):
                extra = " subtle" if row.get(f"subtle_{name}", 0) else ""
                truth.append(f"{name} [{row.get(f'report_{name}', '?')}{extra}]")
            elif row.get(f"report_{name}") == "false_mention":
                truth.append(f"{name} [false mention]")
        noise = [name for name in NOISE if row.get(f"noise_{name}", 0)]
        if "label" in row:
            head = f"label {row['label']}"
        else:
            head = "labels: " + (", ".join(name for name in cohort.label_names if row[name]) or "No Finding")
        text = [head, "truth: " + ("; ".join(truth) or "normal"), "noise: " + (", ".join(noise) or "none")]
        if "findings" in row:
            text += ["", "FINDINGS: " + str(row["findings"]), "IMPRESSION: " + str(row["impression"])]
        wrapped = "\n".join(textwrap.fill(t, 52) if t else "" for t in text)
        ax_txt.text(0, 1, wrapped, va="top", ha="left", fontsize=8, transform=ax_txt.transAxes)
    if real_image is not None:
        from PIL import Image

        k = len(idx)
        ax_img, ax_txt = axes[k // 2, 2 * (k % 2)], axes[k // 2, 2 * (k % 2) + 1]
        with Image.open(real_image) as im:
            ax_img.imshow(np.asarray(im.convert("L")), cmap="gray", vmin=0, vmax=255)
        ax_img.set_title(f"REAL: {Path(real_image).name}", fontsize=9, color="darkred")
        ax_txt.text(0, 1, textwrap.fill(f"REAL radiograph ({Path(real_image).name}, NIH ChestX-ray14), shown only for "
                                        "visual comparison. Everything else in this figure is synthetic.", 45),
                    va="top", ha="left", fontsize=9, color="darkred", transform=ax_txt.transAxes)
    handles = [Line2D([], [], color=colours[f], lw=2, label=f) for f in FINDINGS]
    handles += [Line2D([], [], color=c, lw=2, ls=s, label=f"{name} (structured noise)") for name, (c, s) in noise_style.items()]
    fig.legend(handles=handles, loc="lower center", ncol=6, fontsize=8, frameon=False)
    params = cohort.parameters
    fig.suptitle(f"SYNTHETIC {cohort.name} cases (replication.data.synthetic v{params.get('generator_version', '?')}, "
                 f"seed {params.get('seed', '?')}, {cohort.image_size} px) with ground-truth mask outlines: "
                 "not the paper's data", fontsize=10)
    fig.tight_layout(rect=(0, 0.04, 1, 0.97))
    out_png = Path(out_png)
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)
    return out_png


def plot_transfer_curves(
    history: Any,
    out_png: str | os.PathLike | None,
    out_html: str | os.PathLike | None,
    title: str,
    not_run: dict[str, str] | None = None,
    baseline: float | None = None,
) -> list[Path]:
    """Figure 4: validation accuracy per epoch per initialisation, mean line and ± sd band over splits.

    `history` is the transfer stage's tidy frame (init, split, epoch, val_accuracy, …). The PNG is seaborn;
    the HTML is plotly with plotly.js inlined (`include_plotlyjs=True`), so it opens offline. Initialisations
    that were not run are named under the plot; `baseline` (the majority class's validation accuracy) is a
    dotted line.
    """
    import pandas as pd

    frame = pd.DataFrame(history)
    footer = "; ".join(f"{k}: {v}" for k, v in (not_run or {}).items())
    written: list[Path] = []
    if out_png is not None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import seaborn as sns

        fig, ax = plt.subplots(figsize=(7.5, 4.6))
        if len(frame):
            sns.lineplot(data=frame, x="epoch", y="val_accuracy", hue="init", errorbar="sd", marker="o", ax=ax)
        if baseline is not None:
            ax.axhline(baseline, color="gray", ls=":", lw=1.2, label=f"majority class ({baseline:.3f})")
            ax.legend(fontsize=8)
        ax.set_xlabel("epoch")
        ax.set_ylabel("validation accuracy (IU target)")
        ax.set_title(textwrap.fill(title, 80), fontsize=9)
        if len(frame):
            ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        if footer:
            fig.text(0.01, 0.01, textwrap.fill(footer, 120), fontsize=7, color="dimgray")
        fig.tight_layout(rect=(0, 0.05 if footer else 0, 1, 1))
        out_png = Path(out_png)
        with atomic_path(out_png) as tmp:
            fig.savefig(tmp, format="png", dpi=110)
        plt.close(fig)
        written.append(out_png)
    if out_html is not None:
        import plotly.graph_objects as go

        fig = go.Figure()
        palette = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2"]
        for k, (init, group) in enumerate(frame.groupby("init", sort=False)):
            stats = group.groupby("epoch")["val_accuracy"].agg(["mean", "std", "count"]).reset_index().fillna({"std": 0.0})
            colour = palette[k % len(palette)]
            band_x = list(stats["epoch"]) + list(stats["epoch"][::-1])
            band_y = list(stats["mean"] + stats["std"]) + list((stats["mean"] - stats["std"])[::-1])
            fig.add_trace(go.Scatter(x=band_x, y=band_y, fill="toself", fillcolor=colour, opacity=0.15, line={"width": 0},
                                     hoverinfo="skip", showlegend=False, name=f"{init} ± sd"))
            fig.add_trace(go.Scatter(x=stats["epoch"], y=stats["mean"], mode="lines+markers", name=init, line={"color": colour},
                                     customdata=stats[["std", "count"]].to_numpy(),
                                     hovertemplate="epoch %{x}<br>mean val accuracy %{y:.3f}<br>sd %{customdata[0]:.3f} over %{customdata[1]} splits"))
        if baseline is not None:
            fig.add_hline(y=baseline, line_dash="dot", line_color="gray", annotation_text=f"majority class ({baseline:.3f})")
        fig.update_layout(title={"text": title, "font": {"size": 12}}, xaxis_title="epoch", yaxis_title="validation accuracy (IU target)",
                          template="plotly_white")
        if footer:
            fig.add_annotation(text=footer, xref="paper", yref="paper", x=0, y=-0.22, showarrow=False, font={"size": 10})
        out_html = Path(out_html)
        with atomic_path(out_html) as tmp:
            fig.write_html(str(tmp), include_plotlyjs=True, full_html=True)
        written.append(out_html)
    return written


def plot_pretrain_auroc(metrics: dict[str, Any], out_png: str | os.PathLike) -> Path:
    """Per-class test AUROC of the pretraining run (bars; test positives in the labels), with its mean and,
    on real 14-class data, the published means as reference lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(metrics["labels"])
    values = [metrics["test"]["auroc"][n] for n in names]
    positives = metrics["positives"]["test"]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.55 * len(names) + 2), 4.2))
    shown = [v if np.isfinite(v) else 0.0 for v in values]
    bars = ax.bar(range(len(names)), shown, color=["#4c72b0" if np.isfinite(v) else "#cccccc" for v in values])
    for bar, v in zip(bars, values):
        if not np.isfinite(v):
            bar.set_hatch("//")
    ax.set_xticks(range(len(names)), [f"{n}\n({positives[n]} pos)" for n in names], rotation=60, ha="right", fontsize=7)
    ax.axhline(0.5, color="gray", lw=0.8, ls=":")
    ax.axhline(metrics["test"]["mean_auroc"], color="#4c72b0", lw=1.2, ls="--", label=f"this run: mean {metrics['test']['mean_auroc']:.3f}")
    for (name, value), colour in zip((metrics.get("published_mean_auroc") or {}).items(), ("#dd8452", "#55a868", "#c44e52")):
        ax.axhline(value, color=colour, lw=1, label=f"{name}: {value:.3f}")
    ax.set_ylim(0, 1)
    ax.set_ylabel("test AUROC")
    tag = "SYNTHETIC DATA - " if metrics.get("synthetic") else ""
    ax.set_title(f"{tag}{metrics['architecture']} pretraining, {metrics['image_size']} px, {metrics['counts']['train']} training images "
                 f"(init: {metrics['initialisation_used']})", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    out_png = Path(out_png)
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return out_png


MODEL_COLOURS = {"multimodal": "#d62728", "text": "#1f77b4", "image": "#2ca02c"}
