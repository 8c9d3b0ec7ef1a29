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


MODEL_COLOURS = {"multimodal": "#d62728", "text": "#1f77b4", "image": "#2ca02c"}
