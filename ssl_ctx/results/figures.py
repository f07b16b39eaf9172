"""Summaries -> PNG figures: one panel per probe (figure.png), score per layer (layers.png), each method's
difference from the baseline with its 95 % interval (delta.png) and pretext training (pretext.png). Each carries
the tables' caption of what was trained on (``render.training_caption``) under its title. Drawn on matplotlib's
Agg canvas directly, so no pyplot state or display is involved.
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

from ssl_ctx.results.render import KIND_PHRASE, PERCENT, TRAINING_IMAGES_MARK, l2_label
from ssl_ctx.results.stats import CONFIDENCE, mean_fill_referenced, method_columns

FONT = 9
CAPTION_FONT = 8
DPI = 120
DELTA_COLUMNS = ["probe", "kind", "metric", "layer", "column", "method", "baseline", "delta", "ci_low", "ci_high",
                 "significant"]


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


def _suptitle(figure: Figure, text: str, caption: str = "") -> None:
    """A figure-level title wrapped to the figure's width (about 13 characters per inch at this size), and under
    the panels the ``caption`` of what was trained on, in smaller type (about 16 characters per inch); the figure
    grows by the height of the caption and of the title's lines past the first, so the panels keep theirs."""
    title = textwrap.fill(text, int(figure.get_figwidth() * 13))
    figure.set_figheight(figure.get_figheight() + title.count("\n") * (FONT + 1) / 72 * 1.3)
    figure.suptitle(title, fontsize=FONT + 1)
    if caption:
        wrapped = textwrap.fill(caption, int(figure.get_figwidth() * 16))
        figure.set_figheight(figure.get_figheight() + (wrapped.count("\n") + 1) * CAPTION_FONT / 72 * 1.3)
        figure.supxlabel(wrapped, fontsize=CAPTION_FONT, x=0.01, ha="left", multialignment="left")


def _kind(kind: str) -> str:
    return KIND_PHRASE.get(kind, kind) or "probe"


RELATIVE_DEPTH = "relative depth (k-th of the encoder's n layers: k / n)"


def relative_depths(part: pd.DataFrame) -> dict[str, dict[str, float]] | None:
    """Where encoders of different architectures share a panel (their methods read different layers), each
    method's layers at their relative depth k / n (the k-th of its n layers); None when every method reads the
    same layers (they keep their names on the axis)."""
    layers = method_columns(part)
    if len(set(layers.values())) <= 1:
        return None
    return {m: {c: (k + 1) / len(found) for k, c in enumerate(found)} for m, found in layers.items()}


def _depth_label(method: str, depths: dict[str, float]) -> str:
    names = list(depths)
    return f"{method} ({names[0]}…{names[-1]})" if len(names) > 1 else method


def _lines_per_method(ax, part: pd.DataFrame, colors: dict[str, str], named: str) -> None:
    """Score vs column (layer), one line per method with std error bars, slightly offset so bars do not hide;
    against relative depth where the methods' encoders have different layers (:func:`relative_depths`). The x axis
    is labelled ``named`` or, against relative depth, says so."""
    columns = list(pd.unique(part["column"]))
    methods = list(pd.unique(part["method"]))
    depths = relative_depths(part)
    for i, method in enumerate(methods):
        offset = (i - (len(methods) - 1) / 2) * (0.01 if depths else 0.06)
        if depths:
            mine = depths[method]
            rows = part[part["method"] == method].drop_duplicates("column").set_index("column").reindex(list(mine))
            x, label = np.array(list(mine.values())) + offset, _depth_label(method, mine)
        else:
            rows = part[part["method"] == method].set_index("column").reindex(columns)
            x, label = np.arange(len(columns)) + offset, method
        ax.errorbar(x, rows["mean"] * PERCENT, yerr=_std(rows["std"]), marker="o", markersize=4, capsize=3,
                    linewidth=1.4, color=colors[method], label=label)
    if depths:
        ax.set_xlim(0, 1.05)
    else:
        ax.set_xticks(range(len(columns)), columns)
    ax.set_xlabel(RELATIVE_DEPTH if depths else named, fontsize=FONT)
    ax.legend(fontsize=8)


def _bars_per_method(ax, part: pd.DataFrame, colors: dict[str, str]) -> None:
    methods = list(pd.unique(part["method"]))
    ax.bar(range(len(methods)), part["mean"] * PERCENT, yerr=_std(part["std"]), capsize=4,
           color=[colors[m] for m in methods])
    ax.set_xticks(range(len(methods)), methods, rotation=20, ha="right")


def probe_figure(summary: pd.DataFrame, path: Path, colors: dict[str, str], caption: str = "") -> Path:
    """One panel per probe, each with its own y axis: a line per method across layers for a per-layer probe,
    one bar per method otherwise; error bars = std over seeds. ``caption``: what was trained on."""
    probes = list(pd.unique(summary["probe"]))
    figure, axes = _panels(len(probes), 4.4, 3.4)
    for ax, probe in zip(axes, probes):
        part = summary[summary["probe"] == probe]
        first = part.iloc[0]
        if part["column"].nunique() > 1:
            _lines_per_method(ax, part, colors, "layer")
        else:
            _bars_per_method(ax, part, colors)
        ax.set_title(f"{probe}\n{_kind(first['kind'])}, {first['metric']}", fontsize=FONT + 1)
        ax.set_ylabel(f"{first['metric']} (%)", fontsize=FONT)
        ax.tick_params(labelsize=8)
        ax.grid(axis="y", alpha=0.3)
    _suptitle(figure, f"Probe scores, mean over seeds; error bars: std over seeds ({seeds_text(summary['n'])})",
              caption)
    figure.savefig(path, dpi=DPI, format="png")
    return path


def layered_probes(summary: pd.DataFrame) -> list[str]:
    """The probes that report their metric at two or more layers."""
    return [p for p in pd.unique(summary["probe"])
            if summary.loc[(summary["probe"] == p) & (summary["layer"] != ""), "layer"].nunique() > 1]


def layer_figure(summary: pd.DataFrame, path: Path, colors: dict[str, str], caption: str = "") -> Path | None:
    """Score vs layer (conv1 ... conv5), a line per method with std error bars, one panel per probe of
    ``layered_probes``; None (nothing written) when there is none. ``caption``: what was trained on."""
    probes = layered_probes(summary)
    if not probes:
        return None
    figure, axes = _panels(len(probes), 4.8, 3.6, max_columns=2)
    for ax, probe in zip(axes, probes):
        part = summary[(summary["probe"] == probe) & (summary["layer"] != "")]
        first = part.iloc[0]
        _lines_per_method(ax, part, colors, "layer the probe reads")
        ax.set_title(f"{probe}: {first['metric']} per layer ({_kind(first['kind'])})", fontsize=FONT + 1)
        ax.set_ylabel(f"{first['metric']} (%)", fontsize=FONT)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
    counts = summary.loc[summary["probe"].isin(probes), "n"]
    _suptitle(figure, f"Score per layer; error bars: std over seeds ({seeds_text(counts)})", caption)
    figure.savefig(path, dpi=DPI, format="png")
    return path


def pretext_figure(history: pd.DataFrame, pretext: pd.DataFrame, path: Path, colors: dict[str, str],
                   caption: str = "") -> Path:
    """Left: training loss per method (mean over seeds at each logged step, band = min..max over seeds).
    Right: L2 of each trained method beside the mean fill of the same pixels (``stats.summarise_pretext`` rows),
    error bars = std over seeds; called held-out only where the evaluation images were not trained on
    (``render.l2_label``: a method evaluated on its training images is marked when others are not). Where the
    methods' declared metrics are not all L2s with a mean-fill reference, each metric's ratio to its own reference
    instead (:func:`_ratio_panel`: the values do not share a scale). ``caption``: what was trained on."""
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
    if not mean_fill_referenced(pretext):
        _ratio_panel(l2_ax, pretext, colors)
    else:
        _l2_panel(l2_ax, pretext, colors)
    counts = pretext["n"].tolist() or history.groupby("method")["seed"].nunique().tolist()
    _suptitle(figure, f"Pretext training; error bars and bands over seeds ({seeds_text(counts)})", caption)
    figure.savefig(path, dpi=DPI, format="png")
    return path


def _ratio_panel(ax, pretext: pd.DataFrame, colors: dict[str, str]) -> None:
    """Each declared metric with a reference as model / reference (1: no better than the trivial predictor)."""
    shown = pretext[pretext["fill_mean"].notna()]
    x = np.arange(len(shown))
    ax.bar(x, shown["ratio"], 0.6, color=[colors.get(m, "gray") for m in shown["method"]])
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks(x, [f"{m}\n{p}\nvs {r}" for m, p, r in zip(shown["method"], shown["pixels"],
                                                          shown["reference_label"])], fontsize=7)
    left_out = sorted(set(pretext.loc[pretext["fill_mean"].isna(), "method"]))
    ax.set_title("Held-out value / its trivial reference" + (f" ({', '.join(left_out)}: no reference)"
                                                              if left_out else ""), fontsize=FONT + 1)
    ax.set_ylabel("ratio (below 1: better than the reference)", fontsize=FONT)
    ax.grid(axis="y", alpha=0.3)


def _l2_panel(l2_ax, pretext: pd.DataFrame, colors: dict[str, str]) -> None:
    """L2 of each method beside the mean fill of the same pixels."""
    x = np.arange(len(pretext))
    l2_ax.bar(x - 0.2, pretext["model_mean"], 0.4, yerr=_std(pretext["model_std"], 1.0),
              capsize=3, color=[colors.get(m, "gray") for m in pretext["method"]])
    l2_ax.bar(x + 0.2, pretext["fill_mean"], 0.4, yerr=_std(pretext["fill_std"], 1.0),
              capsize=3, color="lightgray", hatch="//", edgecolor="gray")
    on_training = [bool(v) for v in pretext.get("on_training_images", [False] * len(pretext))]
    label, mark = l2_label(on_training)
    l2_ax.set_xticks(x, [f"{m}\n({p})" + (f"\n{TRAINING_IMAGES_MARK} training images" if mark and trained else "")
                         for m, p, trained in zip(pretext["method"], pretext["pixels"], on_training)], fontsize=8)
    l2_ax.set_title(f"{label[0].upper()}{label[1:]} on the [-1, 1] pixel scale", fontsize=FONT + 1)
    l2_ax.set_ylabel("L2 (lower is better)", fontsize=FONT)
    top = np.nanmax(pretext[["model_mean", "fill_mean"]].to_numpy(float), initial=0.0)
    l2_ax.set_ylim(0, top * 1.3 or 1.0)  # headroom so the legend does not cover a bar
    # The model bars take each method's colour, so the legend shows neutral swatches.
    l2_ax.legend(handles=[Patch(facecolor="dimgray", label="model"),
                          Patch(facecolor="lightgray", hatch="//", edgecolor="gray", label="mean fill (same pixels)")],
                 fontsize=8, loc="upper left", ncol=2)
    l2_ax.grid(axis="y", alpha=0.3)


def delta_frame(summary: pd.DataFrame) -> pd.DataFrame:
    """What delta.png draws: one row per (probe, column, method, compared method) of ``stats.summarise`` that has a
    difference (the baseline's and each further comparison's), in the table's order, with ``delta``, ``ci_low`` and
    ``ci_high`` in percentage points (the table's Δ cells before rounding) and ``significant`` (None: no test)."""
    frame = summary.loc[summary["baseline"].astype(bool), DELTA_COLUMNS].copy()
    for column in ("delta", "ci_low", "ci_high"):
        frame[column] = frame[column].astype(float) * PERCENT
    return frame.reset_index(drop=True)


def _delta_markers(ax, x: np.ndarray, rows: pd.DataFrame, color: str, marker: str, linestyle: str) -> None:
    """Points with their interval: filled where significant, hollow where n.s., a cross without a test."""
    below = (rows["delta"] - rows["ci_low"]).to_numpy(float)
    above = (rows["ci_high"] - rows["delta"]).to_numpy(float)
    ax.errorbar(x, rows["delta"], yerr=[below, above], fmt="none", ecolor=color, capsize=3, linewidth=1.2)
    if len(x) > 1:
        ax.plot(x, rows["delta"], color=color, linewidth=0.8, linestyle=linestyle, alpha=0.6)
    for xi, delta, significant in zip(x, rows["delta"], rows["significant"]):
        if significant is None or (isinstance(significant, float) and math.isnan(significant)):
            ax.plot([xi], [delta], marker="x", color=color, markersize=7, linestyle="none")
        else:
            ax.plot([xi], [delta], marker=marker, color=color, markersize=6, linestyle="none",
                    markerfacecolor=color if significant else "white", markeredgewidth=1.4)


def delta_figure(summary: pd.DataFrame, path: Path, colors: dict[str, str], caption: str = "") -> Path | None:
    """One panel per probe with a difference (``delta_frame``): each method's Δ from the baseline (circles, solid)
    and from each further compared method (other markers, dashed) with its 95 % confidence interval (Welch's t-test
    across seeds), a zero line, filled markers where significant and hollow ones where n.s.; x = layer for a
    per-layer probe, the compared pair otherwise. None (nothing written) when no Δ exists."""
    frame = delta_frame(summary)
    if frame.empty:
        return None
    probes = list(pd.unique(frame["probe"]))
    figure, axes = _panels(len(probes), 4.6, 3.6)
    others = list(pd.unique(frame["baseline"]))
    markers = dict(zip(others, "o^vsDP" * len(others)))
    for ax, probe in zip(axes, probes):
        part = frame[frame["probe"] == probe]
        first = part.iloc[0]
        columns = list(pd.unique(part["column"]))
        pairs = list(dict.fromkeys(zip(part["method"], part["baseline"])))
        layered = len(columns) > 1
        depths = relative_depths(part) if layered else None
        own = {method: other for method, other in reversed(pairs)}  # each method's first Δ: from its baseline
        for i, (method, other) in enumerate(pairs):
            rows = part[(part["method"] == method) & (part["baseline"] == other)].set_index("column")
            rows = rows.reindex([c for c in columns if c in rows.index])
            if depths:
                x = np.array([depths[method][c] for c in rows.index]) + (i - (len(pairs) - 1) / 2) * 0.01
            elif layered:
                x = np.array([columns.index(c) for c in rows.index]) + (i - (len(pairs) - 1) / 2) * 0.08
            else:
                x = np.array([float(i)])
            linestyle = "-" if other == own[method] else "--"
            _delta_markers(ax, x, rows, colors.get(method, "gray"), markers[other], linestyle)
            if layered:
                ax.plot([], [], color=colors.get(method, "gray"), marker=markers[other], linestyle=linestyle,
                        label=f"{method} − {other}")
        ax.axhline(0, color="black", linewidth=0.8)
        if depths:
            ax.set_xlim(0, 1.05)
            ax.set_xlabel(RELATIVE_DEPTH, fontsize=FONT)
            ax.legend(fontsize=7)
        elif layered:
            ax.set_xticks(range(len(columns)), columns)
            ax.set_xlabel("layer", fontsize=FONT)
            ax.legend(fontsize=7)
        else:
            ax.set_xticks(range(len(pairs)), [f"{m}\n− {o}" for m, o in pairs], fontsize=8)
            ax.set_xlim(-0.6, len(pairs) - 0.4)
        ax.set_title(f"{probe}\n{_kind(first['kind'])}, {first['metric']}", fontsize=FONT + 1)
        ax.set_ylabel(f"Δ {first['metric']} (points)", fontsize=FONT)
        ax.tick_params(labelsize=8)
        ax.grid(axis="y", alpha=0.3)
    _suptitle(figure, f"Δ = method − compared method: difference of the means over seeds, in points; bars: its "
                      f"{CONFIDENCE * 100:g} % confidence interval (Welch's t-test across seeds, uncorrected for "
                      f"multiple comparisons); filled: significant (p < {1 - CONFIDENCE:.2g}), hollow: n.s. (the "
                      "interval holds 0), ×: a single seed, no test", caption)
    figure.savefig(path, dpi=DPI, format="png")
    return path
