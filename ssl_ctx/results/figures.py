"""Summaries -> PNG figures: one panel per probe (figure.png), score per layer (layers.png) and pretext training
(pretext.png). Drawn on matplotlib's Agg canvas directly, so no pyplot state or display is involved.
"""
from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from ssl_ctx.results.render import KIND_PHRASE, PERCENT

FONT = 9
DPI = 120


def method_colors(methods: Sequence[str]) -> dict[str, str]:
    """A fixed colour per method (tab10 in ``methods`` order), shared by every figure of one table."""
    palette = [f"C{i}" for i in range(10)]
    return {method: palette[i % len(palette)] for i, method in enumerate(methods)}


def seeds_text(counts: Sequence[int]) -> str:
    """"n = 3" or "n = 1–3" (and that a single seed has no error bar)."""
    low, high = int(min(counts)), int(max(counts))
    text = f"n = {low}" if low == high else f"n = {low}–{high}"
    return text + ("; a single seed has no error bar" if low < 2 else "")


def _panels(count: int, width: float, height: float, max_columns: int = 3) -> tuple[Figure, list]:
    columns = min(max_columns, count)
    rows = math.ceil(count / columns)
    figure = Figure(figsize=(width * columns, height * rows + 0.5), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(rows, columns, squeeze=False).ravel().tolist()
    for extra in axes[count:]:
        extra.set_visible(False)
    return figure, axes[:count]


def _std(values: pd.Series, scale: float = PERCENT) -> np.ndarray:
    return values.to_numpy(dtype=float) * scale  # NaN for one seed: matplotlib draws no bar there


def _suptitle(figure: Figure, text: str) -> None:
    """A figure-level caption wrapped to the figure's width (about 13 characters per inch at this size)."""
    figure.suptitle(textwrap.fill(text, int(figure.get_figwidth() * 13)), fontsize=FONT + 1)


def _kind(kind: str) -> str:
    return KIND_PHRASE.get(kind, kind) or "probe"


def _lines_per_method(ax, part: pd.DataFrame, colors: dict[str, str]) -> None:
    """Score vs column (layer), one line per method with std error bars, slightly offset so bars do not hide."""
    columns = list(pd.unique(part["column"]))
    methods = list(pd.unique(part["method"]))
    for i, method in enumerate(methods):
        rows = part[part["method"] == method].set_index("column").reindex(columns)
        x = np.arange(len(columns)) + (i - (len(methods) - 1) / 2) * 0.06
        ax.errorbar(x, rows["mean"] * PERCENT, yerr=_std(rows["std"]), marker="o", markersize=4, capsize=3,
                    linewidth=1.4, color=colors[method], label=method)
    ax.set_xticks(range(len(columns)), columns)
    ax.legend(fontsize=8)


def _bars_per_method(ax, part: pd.DataFrame, colors: dict[str, str]) -> None:
    methods = list(pd.unique(part["method"]))
    ax.bar(range(len(methods)), part["mean"] * PERCENT, yerr=_std(part["std"]), capsize=4,
           color=[colors[m] for m in methods])
    ax.set_xticks(range(len(methods)), methods, rotation=20, ha="right")


def probe_figure(summary: pd.DataFrame, path: Path, colors: dict[str, str]) -> Path:
    """One panel per probe, each with its own y axis: a line per method across layers for a per-layer probe,
    one bar per method otherwise; error bars = std over seeds."""
    probes = list(pd.unique(summary["probe"]))
    figure, axes = _panels(len(probes), 4.4, 3.4)
    for ax, probe in zip(axes, probes):
        part = summary[summary["probe"] == probe]
        first = part.iloc[0]
        if part["column"].nunique() > 1:
            _lines_per_method(ax, part, colors)
            ax.set_xlabel("layer", fontsize=FONT)
        else:
            _bars_per_method(ax, part, colors)
        ax.set_title(f"{probe}\n{_kind(first['kind'])}, {first['metric']}", fontsize=FONT + 1)
        ax.set_ylabel(f"{first['metric']} (%)", fontsize=FONT)
        ax.tick_params(labelsize=8)
        ax.grid(axis="y", alpha=0.3)
    _suptitle(figure, f"Probe scores, mean over seeds; error bars: std over seeds ({seeds_text(summary['n'])})")
    figure.savefig(path, dpi=DPI, format="png")
    return path


def layered_probes(summary: pd.DataFrame) -> list[str]:
    """The probes that report their metric at two or more layers."""
    return [p for p in pd.unique(summary["probe"])
            if summary.loc[(summary["probe"] == p) & (summary["layer"] != ""), "layer"].nunique() > 1]


def layer_figure(summary: pd.DataFrame, path: Path, colors: dict[str, str]) -> Path | None:
    """Score vs layer (conv1 ... conv5), a line per method with std error bars, one panel per probe of
    ``layered_probes``; None (nothing written) when there is none."""
    probes = layered_probes(summary)
    if not probes:
        return None
    figure, axes = _panels(len(probes), 4.8, 3.6, max_columns=2)
    for ax, probe in zip(axes, probes):
        part = summary[(summary["probe"] == probe) & (summary["layer"] != "")]
        first = part.iloc[0]
        _lines_per_method(ax, part, colors)
        ax.set_title(f"{probe}: {first['metric']} per layer ({_kind(first['kind'])})", fontsize=FONT + 1)
        ax.set_xlabel("layer the probe reads", fontsize=FONT)
        ax.set_ylabel(f"{first['metric']} (%)", fontsize=FONT)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
    counts = summary.loc[summary["probe"].isin(probes), "n"]
    _suptitle(figure, f"Score per layer; error bars: std over seeds ({seeds_text(counts)})")
    figure.savefig(path, dpi=DPI, format="png")
    return path


def pretext_figure(history: pd.DataFrame, pretext: pd.DataFrame, path: Path, colors: dict[str, str]) -> Path:
    """Left: training loss per method (mean over seeds at each logged step, band = min..max over seeds).
    Right: held-out L2 of each trained method beside the mean fill of the same pixels (``stats.summarise_pretext``
    rows), error bars = std over seeds."""
    figure = Figure(figsize=(10.5, 3.9), layout="constrained")
    FigureCanvasAgg(figure)
    loss_ax, l2_ax = figure.subplots(1, 2)
    if history.empty:
        loss_ax.text(0.5, 0.5, "no training history in the records", ha="center", va="center", fontsize=FONT)
        loss_ax.set_axis_off()
    for method in sorted(pd.unique(history["method"])):
        steps = history[history["method"] == method].groupby("step")["loss"].agg(["mean", "min", "max"])
        color = colors.get(method, "gray")
        loss_ax.plot(steps.index, steps["mean"], color=color, linewidth=1.4, label=method)
        loss_ax.fill_between(steps.index, steps["min"], steps["max"], color=color, alpha=0.2, linewidth=0)
    if not history.empty:
        loss_ax.set_title("Training loss (mean over seeds; band: min–max)", fontsize=FONT + 1)
        loss_ax.set_xlabel("step", fontsize=FONT)
        loss_ax.set_ylabel("training loss (each method's own objective)", fontsize=FONT)
        loss_ax.legend(fontsize=8)
        loss_ax.grid(alpha=0.3)
    x = np.arange(len(pretext))
    l2_ax.bar(x - 0.2, pretext["model_mean"], 0.4, yerr=_std(pretext["model_std"], 1.0),
              capsize=3, color=[colors.get(m, "gray") for m in pretext["method"]])
    l2_ax.bar(x + 0.2, pretext["fill_mean"], 0.4, yerr=_std(pretext["fill_std"], 1.0),
              capsize=3, color="lightgray", hatch="//", edgecolor="gray")
    l2_ax.set_xticks(x, [f"{m}\n({p})" for m, p in zip(pretext["method"], pretext["pixels"])], fontsize=8)
    l2_ax.set_title("Held-out L2 on the [-1, 1] pixel scale", fontsize=FONT + 1)
    l2_ax.set_ylabel("L2 (lower is better)", fontsize=FONT)
    top = np.nanmax(pretext[["model_mean", "fill_mean"]].to_numpy(float), initial=0.0)
    l2_ax.set_ylim(0, top * 1.3 or 1.0)  # headroom so the legend does not cover a bar
    # The model bars take each method's colour, so the legend shows neutral swatches.
    l2_ax.legend(handles=[Patch(facecolor="dimgray", label="model"),
                          Patch(facecolor="lightgray", hatch="//", edgecolor="gray", label="mean fill (same pixels)")],
                 fontsize=8, loc="upper left", ncol=2)
    l2_ax.grid(axis="y", alpha=0.3)
    counts = pretext["n"].tolist() or history.groupby("method")["seed"].nunique().tolist()
    _suptitle(figure, f"Pretext training; error bars and bands over seeds ({seeds_text(counts)})")
    figure.savefig(path, dpi=DPI, format="png")
    return path
