"""Run records -> comparison tables (mean ± std over seeds) and a bar chart. Nothing here is typed by hand:
every number comes from a ``record.json`` under the runs folder, except the paper's published numbers, which
are shown only with ``--paper`` and labelled as the paper's.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import pandas as pd

from ssl_ctx.errors import UserError
from ssl_ctx.results.paper import PAPER_FEATURE_LEARNING, PAPER_TASK_NAMES
from ssl_ctx.files import write_json_atomic
from ssl_ctx.results.records import RECORD_NAME, git_commit

# The metric a probe's column shows unless its bench entry names another.
PRIMARY_METRIC = {"classification": "top1", "detection": "map50", "segmentation": "miou"}


def collect_records(runs_dir: str | Path) -> pd.DataFrame:
    """One row per (run, metric) of every probe record under ``runs_dir``."""
    rows = []
    for path in sorted(Path(runs_dir).rglob(RECORD_NAME)):
        record = json.loads(path.read_text())
        config = record.get("config", {})
        tags = config.get("tags", {})
        if record.get("kind") != "probe":
            continue
        task = config.get("probe", {}).get("task", "")
        probe = tags.get("probe") or f"{task}:{config.get('data', {}).get('dataset', '')}"
        method = tags.get("method") or config.get("probe", {}).get("init", "?")
        metric = tags.get("metric") or PRIMARY_METRIC.get(task)
        metrics = {k: v for k, v in record.get("metrics", {}).items() if isinstance(v, (int, float))}
        if metric not in metrics and metrics:
            metric = next(iter(metrics))
        for name, value in metrics.items():
            rows.append({"method": method, "probe": probe, "task": task, "seed": record.get("seed"),
                         "metric": name, "value": float(value), "primary": name == metric,
                         "wall_time_s": record.get("wall_time_s"), "path": str(path.parent)})
    return pd.DataFrame(rows)


def summarise(frame: pd.DataFrame) -> pd.DataFrame:
    """mean, std (over seeds, ddof=1; 0 for one seed) and n of each (method, probe) primary metric."""
    primary = frame[frame["primary"]]
    grouped = primary.groupby(["method", "probe", "metric"])["value"]
    summary = grouped.agg(mean="mean", std=lambda v: v.std(ddof=1) if len(v) > 1 else 0.0, n="count")
    return summary.reset_index()


def _cell(mean: float, std: float, n: int, scale: float) -> str:
    return f"{mean * scale:.1f} ± {std * scale:.1f}" if n > 1 else f"{mean * scale:.1f}"


def comparison_table(summary: pd.DataFrame, baseline: str | None = "random_init", scale: float = 100.0) -> pd.DataFrame:
    """Methods x probes of ``mean ± std`` (in %), plus ``Δ <probe>`` columns against ``baseline``'s mean."""
    table = summary.pivot(index="method", columns="probe", values="mean")
    cells = pd.DataFrame(index=table.index)
    for probe in table.columns:
        part = summary[summary["probe"] == probe].set_index("method")
        metric = part["metric"].iloc[0]
        column = f"{probe} ({metric}, %)"
        cells[column] = [_cell(part.loc[m, "mean"], part.loc[m, "std"], part.loc[m, "n"], scale)
                         if m in part.index else "" for m in table.index]
        if baseline and baseline in part.index:
            base = part.loc[baseline, "mean"]
            cells[f"Δ {probe}"] = [f"{(part.loc[m, 'mean'] - base) * scale:+.1f}" if m in part.index and m != baseline
                                   else "" for m in table.index]
    seeds = summary.groupby("method")["n"].max()
    cells["seeds"] = [int(seeds[m]) for m in cells.index]
    return cells


def paper_table() -> pd.DataFrame:
    """The paper's published feature-learning numbers (Pathak et al. 2016, Table 2), labelled as such."""
    frame = pd.DataFrame(PAPER_FEATURE_LEARNING).T
    frame.columns = [f"paper: {PAPER_TASK_NAMES[c]}" for c in frame.columns]
    return frame


def to_markdown(frame: pd.DataFrame) -> str:
    """A GitHub Markdown table (pandas' own needs the optional 'tabulate' package)."""
    header = [frame.index.name or ""] + [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for index, row in frame.iterrows():
        values = ["" if (isinstance(v, float) and math.isnan(v)) else str(v) for v in row.tolist()]
        lines.append("| " + " | ".join([str(index), *values]) + " |")
    return "\n".join(lines)


def bar_chart(summary: pd.DataFrame, path: Path, scale: float = 100.0) -> Path:
    """Grouped bars: one group per probe, one bar per method, error bars = std over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    probes = list(dict.fromkeys(summary["probe"]))
    methods = list(dict.fromkeys(summary["method"]))
    width = 0.8 / max(1, len(methods))
    fig, ax = plt.subplots(figsize=(max(5.0, 1.8 * len(probes) + 1), 3.6))
    for i, method in enumerate(methods):
        part = summary[summary["method"] == method].set_index("probe")
        xs = [p + (i - (len(methods) - 1) / 2) * width for p in range(len(probes))]
        means = [part.loc[p, "mean"] * scale if p in part.index else 0 for p in probes]
        stds = [part.loc[p, "std"] * scale if p in part.index else 0 for p in probes]
        ax.bar(xs, means, width, yerr=stds, capsize=3, label=method)
    labels = [f"{p}\n({summary[summary['probe'] == p]['metric'].iloc[0]})" for p in probes]
    ax.set_xticks(range(len(probes)), labels, fontsize=8)
    ax.set_ylabel("score (%)")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


def table_command(runs_dir: str | Path, output: str | Path | None = None, paper: bool = False,
                  baseline: str | None = "random_init", command: str | None = None) -> pd.DataFrame:
    """Write table.md / table.csv / table.tex / figure.png for ``runs_dir`` and print the Markdown table."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise UserError(f"runs folder '{runs_dir}' does not exist; pass the folder a bench wrote (runs/<name>)")
    frame = collect_records(runs_dir)
    if frame.empty:
        raise UserError(f"no probe records (record.json) under '{runs_dir}'; run `ssl-ctx bench` or `ssl-ctx probe` first")
    output = Path(output) if output else runs_dir / "tables"
    output.mkdir(parents=True, exist_ok=True)
    summary = summarise(frame)
    table = comparison_table(summary, baseline if baseline in set(summary["method"]) else None)
    table.index.name = "method"
    provenance = (f"Generated {time.strftime('%Y-%m-%d %H:%M %Z')} by `{command or f'ssl-ctx table {runs_dir}'}` "
                  f"from {frame['path'].nunique()} run records under `{runs_dir}` (git {git_commit()}). "
                  f"Cells: mean ± std over seeds of each probe's metric, in %; Δ = difference from "
                  f"{baseline}'s mean.")
    markdown = f"{provenance}\n\n{to_markdown(table)}\n"
    pretext = pretext_summary(runs_dir)
    if not pretext.empty:
        markdown += ("\nPretext runs, held-out metrics (mean over seeds; masked L2 on the [-1, 1] pixel scale, "
                     "mean_fill = the hole filled with the dataset mean):\n\n"
                     f"{to_markdown(pretext.round(4))}\n")
    if paper:
        markdown += ("\nFor reference only, the paper's published numbers (Pathak et al. 2016, Table 2: AlexNet "
                     "fine-tuned on PASCAL VOC, other datasets and a far larger scale than ours):\n\n"
                     f"{to_markdown(paper_table())}\n")
    (output / "table.md").write_text(markdown)
    summary.to_csv(output / "table.csv", index=False)
    (output / "table.tex").write_text(f"% {provenance}\n" + table.to_latex(escape=True))
    bar_chart(summary, output / "figure.png")
    write_json_atomic(output / "provenance.json", {"command": command, "runs_dir": str(runs_dir),
                                                   "records": sorted(frame["path"].unique().tolist())})
    print(markdown)
    print(f"tables: {output}/table.md, table.csv, table.tex, figure.png")
    return table


def pretext_summary(runs_dir: str | Path) -> pd.DataFrame:
    """Held-out pretext metrics (masked L2 and the mean-fill baseline) per method, mean over seeds."""
    rows: list[dict[str, Any]] = []
    for path in sorted(Path(runs_dir).rglob(RECORD_NAME)):
        record = json.loads(path.read_text())
        if record.get("kind") == "pretext":
            tags = record["config"].get("tags", {})
            rows.append({"method": tags.get("method", record["config"]["method"]["name"]),
                         **{k: v for k, v in record["metrics"].items() if k.startswith("eval_")}})
    return pd.DataFrame(rows).groupby("method").mean() if rows else pd.DataFrame()
