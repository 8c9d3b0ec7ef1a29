"""Figures of the detection: circles over the X-ray, the sight-sensitivity panel (Fig. 2), word heatmaps (Fig. 3).

Matplotlib draws on an Agg canvas created inside each function (no pyplot, no global backend switch), and
plotly writes standalone HTML with plotly.js embedded, so every figure works offline. Every file is written
atomically.
"""

from __future__ import annotations

import html
import os
from typing import Sequence

import numpy as np

from replication.errors import ParameterError
from replication.explain.regions import Region, cluster_regions, reduce_channels, normalise
from replication.io import atomic_path, write_text


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def _save(fig, out_png: str | os.PathLike, dpi: int) -> None:
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")


def _grey(image: np.ndarray) -> np.ndarray:
    """An image for display: (H, W) in [0, 1] (or (H, W, 3) RGB kept as is, scaled to [0, 1])."""
    a = np.asarray(image, dtype=np.float64)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)):
        raise ParameterError("image", a.shape, "(H, W), (H, W, 1) or (H, W, 3)")
    lo, hi = float(np.nanmin(a)), float(np.nanmax(a))
    return (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)


def _draw_regions(ax, regions: Sequence[Region], color: str, label: bool) -> None:
    from matplotlib.patches import Circle

    for k, r in enumerate(regions):
        ax.add_patch(Circle((r.center[1], r.center[0]), r.radius, fill=False, edgecolor=color, linewidth=1.5))
        if label:
            ax.text(r.center[1], r.center[0] - r.radius, str(k + 1), color=color, fontsize=8, ha="center", va="bottom")


def overlay_regions(image: np.ndarray, regions: Sequence[Region], out_png: str | os.PathLike, title: str | None = None,
                    *, color: str = "red", dpi: int = 100) -> None:
    """The X-ray with a circle around each detected region (numbered by mass, strongest first)."""
    img = _grey(image)
    fig = _figure(5, 5)
    ax = fig.add_subplot(1, 1, 1)
    ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1)
    _draw_regions(ax, regions, color, label=True)
    ax.set_xlim(-0.5, img.shape[1] - 0.5)
    ax.set_ylim(img.shape[0] - 0.5, -0.5)
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    _save(fig, out_png, dpi)


def sight_sensitivity_panel(image: np.ndarray, attribution_map: np.ndarray, out_png: str | os.PathLike,
                            thresholds: Sequence[float] = (0.5, 0.6, 0.7, 0.8, 0.9), *, show_regions: bool = True,
                            cluster_distance: float | None = None, margin: float | None = None,
                            channel_reduce: str = "sum_abs", title: str | None = None, dpi: int = 100) -> None:
    """The paper's Fig. 2: the pixels that survive each sight sensitivity, scattered over the X-ray, with clusters."""
    img = _grey(image)
    values = reduce_channels(attribution_map, channel_reduce)
    if values.shape != img.shape[:2]:
        raise ParameterError("attribution_map", values.shape, f"the image's shape {img.shape[:2]}")
    norm = normalise(values)
    fig = _figure(3.2 * len(thresholds), 3.6)
    for k, t in enumerate(thresholds):
        ax = fig.add_subplot(1, len(thresholds), k + 1)
        ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1)
        points = np.zeros((0, 2), dtype=int) if norm is None else np.argwhere(norm >= t)
        if len(points):
            ax.scatter(points[:, 1], points[:, 0], s=1.5, c=norm[points[:, 0], points[:, 1]], cmap="autumn",
                       vmin=t, vmax=1, linewidths=0)
        regions = cluster_regions(values, t, cluster_distance, margin) if show_regions else []
        _draw_regions(ax, regions, "cyan", label=False)
        ax.set_xlim(-0.5, img.shape[1] - 0.5)
        ax.set_ylim(img.shape[0] - 0.5, -0.5)
        ax.set_axis_off()
        ax.set_title(f"sight sensitivity {t:.2f}\n{len(points)} px, {len(regions)} regions", fontsize=9)
    if title:
        fig.suptitle(title)
    _save(fig, out_png, dpi)


def _check_words(words: Sequence[str], scores: Sequence[float] | np.ndarray) -> np.ndarray:
    s = np.asarray(scores, dtype=np.float64).ravel()
    if len(words) != len(s):
        raise ParameterError("scores", len(s), f"one score per word ({len(words)})")
    if not np.all(np.isfinite(s)):
        raise ParameterError("scores", "NaN/inf", "finite scores")
    return s


def _grid(n: int, per_row: int) -> tuple[int, int]:
    rows = max(1, -(-n // per_row))
    return rows, min(max(n, 1), per_row)


def word_heatmap_html(words: Sequence[str], scores: Sequence[float] | np.ndarray, out_html: str | os.PathLike,
                      title: str = "", *, words_per_row: int = 10) -> None:
    """Fig. 3: the report's words laid out in reading order, coloured by score, the score on hover.

    Standalone HTML with plotly.js embedded (works offline, no external script).
    """
    import plotly.graph_objects as go

    s = _check_words(words, scores)
    rows, cols = _grid(len(words), words_per_row)
    z = np.full((rows, cols), np.nan)
    text = np.full((rows, cols), "", dtype=object)
    for i, (w, v) in enumerate(zip(words, s)):
        z[i // cols, i % cols] = v
        text[i // cols, i % cols] = w
    fig = go.Figure(go.Heatmap(z=z, text=text, texttemplate="%{text}", hovertemplate="%{text}: %{z:.4f}<extra></extra>",
                               colorscale="Reds", zmin=0, zmax=float(s.max()) if len(s) else 1.0, xgap=2, ygap=2,
                               colorbar={"title": "score"}))
    fig.update_layout(title=html.escape(title) if title else None, yaxis={"autorange": "reversed", "visible": False},
                      xaxis={"visible": False}, height=120 + 40 * rows, width=max(400, 95 * cols),
                      plot_bgcolor="white", margin={"l": 10, "r": 10, "t": 50 if title else 10, "b": 10})
    if not len(words):
        fig.add_annotation(text="no words to show", showarrow=False)
    write_text(out_html, fig.to_html(include_plotlyjs=True, full_html=True))


def word_heatmap_png(words: Sequence[str], scores: Sequence[float] | np.ndarray, out_png: str | os.PathLike,
                     title: str = "", *, words_per_row: int = 10, dpi: int = 100) -> None:
    """The same word heatmap as a static PNG (matplotlib; no browser or kaleido needed)."""
    from matplotlib import colormaps

    s = _check_words(words, scores)
    rows, cols = _grid(len(words), words_per_row)
    fig = _figure(1.1 * cols + 0.5, 0.45 * rows + (0.6 if title else 0.2))
    ax = fig.add_axes((0, 0, 1, 1) if not title else (0, 0, 1, 0.85))
    cmap = colormaps["Reds"]
    top = float(s.max()) if len(s) and s.max() > 0 else 1.0
    for i, (w, v) in enumerate(zip(words, s)):
        r, c = divmod(i, cols)
        ax.text(c + 0.5, rows - r - 0.5, w, ha="center", va="center", fontsize=9,
                bbox={"boxstyle": "round,pad=0.2", "facecolor": cmap(0.1 + 0.85 * v / top), "edgecolor": "none"},
                color="white" if v / top > 0.6 else "black")
    if not len(words):
        ax.text(0.5, 0.5, "no words to show", ha="center", va="center")
    ax.set_xlim(0, cols)
    ax.set_ylim(0, rows)
    ax.set_axis_off()
    if title:
        fig.suptitle(title, fontsize=10)
    _save(fig, out_png, dpi)


__all__ = ["overlay_regions", "sight_sensitivity_panel", "word_heatmap_html", "word_heatmap_png"]
