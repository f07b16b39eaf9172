"""Summaries -> text: Markdown (printed and table.md), LaTeX (table.tex) and the long CSV (table.csv).

Tables are first built in a neutral form (``Table``: Unicode text, cells as (text, bold) segments), then written
out by ``to_markdown`` or ``to_latex``, so both files always show the same cells. Numbers are formatted here only:
percentages with one decimal, L2 with four, ratios with two; a value that rounds to zero never shows a sign
("0.0", "+0.0", never "-0.0").
"""
from __future__ import annotations

import math
import unicodedata
from dataclasses import dataclass, field

import pandas as pd

from ssl_ctx.results.paper import PAPER_FEATURE_LEARNING, PAPER_TASK_NAMES
from ssl_ctx.results.stats import CONFIDENCE, NO_TEST

MINUS = "\u2212"  # the typographic minus; LaTeX gets "$-$"
PERCENT = 100.0  # probe metrics are fractions in [0, 1]; tables show %
KIND_PHRASE = {"frozen": "frozen features", "fine-tuned": "fine-tuned encoder"}

Segment = tuple[str, bool]  # (text, bold)
Cell = list[Segment]


@dataclass
class Table:
    """A titled table: ``heading`` (the section name), ``title`` (one line saying what the numbers are),
    a header and rows of cells, and optional note lines under it. All text is Unicode, unescaped."""

    heading: str
    title: str
    header: list[str]
    rows: list[list[Cell]]
    notes: list[str] = field(default_factory=list)


@dataclass
class Report:
    """What table.md and table.tex hold, in order: provenance, one table per probe, the legend, then the
    pretext table and the paper's numbers when present."""

    provenance: str
    probes: list[Table]
    legend: str
    extra: list[Table] = field(default_factory=list)


def format_number(value: float, decimals: int = 1, signed: bool = False) -> str:
    """``value`` with ``decimals`` decimals, a leading "+" when ``signed`` and the minus sign U+2212 when negative;
    a value that rounds to zero is never negative: "0.0" or "+0.0"."""
    if math.isnan(value):
        return "nan"
    digits = f"{abs(value):.{decimals}f}"
    if float(digits) == 0:
        return ("+" if signed else "") + digits
    return (MINUS if value < 0 else "+" if signed else "") + digits


def mean_std(mean: float, std: float, n: int, decimals: int = 1, scale: float = 1.0) -> str:
    """"mean ± std" (std over seeds), or just the mean for one seed."""
    if n < 2 or math.isnan(std):
        return format_number(mean * scale, decimals)
    return f"{format_number(mean * scale, decimals)} ± {format_number(std * scale, decimals)}"


def delta_cell(delta: float, ci_low: float, ci_high: float, significant: bool | None, scale: float = PERCENT) -> Cell:
    """``**+1.7** [+0.9, +2.5]`` when significant, ``+0.3 [−0.4, +1.0] n.s.`` when not, and
    ``+0.3 (n < 2, no test)`` when one side has a single seed."""
    head = format_number(delta * scale, 1, signed=True)
    if significant is None:
        return [(head, False), (f" ({NO_TEST})", False)]
    interval = f" [{format_number(ci_low * scale, 1, True)}, {format_number(ci_high * scale, 1, True)}]"
    return [(head, True), (interval, False)] if significant else [(head, False), (interval + " n.s.", False)]


def _text(value: str) -> Cell:
    return [(value, False)]


def probe_title(part: pd.DataFrame) -> str:
    """"classification — frozen features; <protocol>; metric top1, in %" for one probe's summary rows."""
    first = part.iloc[0]
    head = first["task"] or first["probe"]
    if first["kind"]:
        head += f" — {KIND_PHRASE.get(first['kind'], first['kind'])}"
    return "; ".join(p for p in (head, first["protocol"], f"metric {first['metric']}, in %") if p)


def probe_table(part: pd.DataFrame, baseline: str | None, paper: bool = False) -> Table:
    """One probe's summary rows (``stats.summarise``) -> a table of methods x columns (one per layer, or the
    metric), ``mean ± std`` in %, with a ``↳ Δ vs <other>`` row under a method for each method it is compared
    with (the baseline, and any further comparison). With ``paper``, a probe that reproduces a column of the
    paper's Table 2 (its ``paper`` task) gets that column's published number beside each method's own."""
    columns = list(pd.unique(part["column"]))
    paper_task = str(part["paper"].iloc[0]) if paper and "paper" in part else ""
    rows: list[list[Cell]] = []
    for method in pd.unique(part["method"]):
        mine = part[part["method"] == method]
        cells = mine.drop_duplicates(subset=["column"], keep="first").set_index("column")
        n = int(cells["n"].max())
        values = []
        for column in columns:
            if column not in cells.index:
                values.append(_text(""))
                continue
            cell = cells.loc[column]
            text = mean_std(cell["mean"], cell["std"], int(cell["n"]), 1, PERCENT)
            values.append(_text(text + (f" (n={cell['n']})" if cell["n"] != n else "")))
        if paper_task:
            published = PAPER_FEATURE_LEARNING.get(method, {}).get(paper_task)
            values.append(_text("—" if published is None else format_number(published, 1)))
        rows.append([_text(method), _text(str(n)), *values])
        for other in [b for b in pd.unique(mine["baseline"]) if b]:
            against = mine[mine["baseline"] == other].set_index("column")
            deltas = [delta_cell(against.loc[c, "delta"], against.loc[c, "ci_low"], against.loc[c, "ci_high"],
                                 against.loc[c, "significant"]) if c in against.index else _text("")
                      for c in columns]
            rows.append([_text(f"↳ Δ vs {other}"), _text(""), *deltas, *([_text("")] if paper_task else [])])
    header = ["method", "n", *columns, *([f"paper: {PAPER_TASK_NAMES[paper_task]}"] if paper_task else [])]
    notes = [PAPER_NOTE] if paper_task else []
    return Table(heading=str(part["probe"].iloc[0]), title=probe_title(part), header=header, rows=rows, notes=notes)


def legend(baseline: str | None) -> str:
    """The one-line key to the probe tables."""
    text = "Cells: mean ± std over seeds (n = number of seeds)."
    if baseline:
        text += (f" Δ vs X: difference of means from method X (the baseline {baseline}, or another named) with its "
                 f"{CONFIDENCE * 100:g} % confidence interval (Welch's t-test across seeds, uncorrected for multiple "
                 f"comparisons); n.s. = not significant at p < {1 - CONFIDENCE:.2g}, i.e. inside the seed noise.")
    return text


def pretext_table(summary: pd.DataFrame, without: list[str]) -> Table:
    """Per trained method: train steps, the pixels measured, held-out L2 of the model and of the mean fill of the
    same pixels (mean ± std, 4 decimals) and their ratio (2 decimals)."""
    rows = []
    for _, row in summary.iterrows():
        low, high = int(row["steps_min"]), int(row["steps_max"])
        rows.append([_text(row["method"]), _text(str(row["n"])), _text(str(low) if low == high else f"{low}–{high}"),
                     _text(row["pixels"]), _text(mean_std(row["model_mean"], row["model_std"], row["n"], 4)),
                     _text(mean_std(row["fill_mean"], row["fill_std"], row["n"], 4)),
                     _text(format_number(row["ratio"], 2))])
    notes = [f"Left out, no held-out metrics in their records: {', '.join(without)}."] if without else []
    return Table(
        heading="pretext",
        title=("Pretext training, held-out reconstruction: L2 on the [-1, 1] pixel scale (mean ± std over seeds) "
               "of the model and of filling the same pixels with the dataset mean; ratio = model / mean fill "
               "(below 1: better than the mean fill)."),
        header=["method", "n", "train steps", "pixels", "held-out L2", "mean-fill L2 (same pixels)", "ratio"],
        rows=rows, notes=notes)


PAPER_NOTE = ("paper: the published number of the method of the same name (Pathak et al. 2016, Table 2), for "
              "reference, not a result of this run; — where the paper has no such row.")


def paper_table() -> Table:
    """The paper's published feature-learning numbers (Pathak et al. 2016, Table 2), labelled as the paper's."""
    tasks = list(PAPER_TASK_NAMES)
    rows = [[_text(method), *(_text(format_number(scores[t], 1)) for t in tasks)]
            for method, scores in PAPER_FEATURE_LEARNING.items()]
    return Table(
        heading="paper (not our numbers)",
        title=("For reference only, the paper's published numbers (Pathak et al. 2016, Table 2: AlexNet fine-tuned "
               "on PASCAL VOC, other datasets and a far larger scale than ours), in %:"),
        header=["method", *(f"paper: {PAPER_TASK_NAMES[t]}" for t in tasks)], rows=rows)


def architecture_note(architectures: dict[str, list[str]]) -> str | None:
    """The line under a probe table whose methods' encoders differ in architecture (``architectures``: method ->
    its encoders' descriptions), or None when they are all alike."""
    if len({a for described in architectures.values() for a in described}) < 2:
        return None
    listed = "; ".join(f"{method}: {' / '.join(described)}" for method, described in architectures.items())
    return (f"Encoders of different architectures ({listed}): a difference between these rows mixes architecture "
            f"and weights; a random init of a checkpoint's own architecture is probe.init=random:<checkpoint>.")


def build_report(summary: pd.DataFrame, provenance: str, baseline: str | None,
                 pretext: tuple[pd.DataFrame, list[str]] | None = None, paper: bool = False,
                 notes: dict[str, list[str]] | None = None) -> Report:
    """Assemble the report from ``stats.summarise`` rows, and ``stats.summarise_pretext``'s result if any;
    ``notes``: lines to print under the table of a probe, by probe name."""
    has_baseline = bool(summary["baseline"].astype(bool).any())
    probes = [probe_table(summary[summary["probe"] == p], baseline, paper) for p in pd.unique(summary["probe"])]
    for table in probes:
        table.notes += (notes or {}).get(table.heading, [])
    extra = []
    if pretext is not None and (not pretext[0].empty or pretext[1]):
        extra.append(pretext_table(*pretext))
    if paper and not summary["paper"].astype(bool).any():  # no probe shows the published numbers beside ours
        extra.append(paper_table())
    return Report(provenance, probes, legend(baseline if has_baseline else None), extra)


# --- Markdown -------------------------------------------------------------------------------------------------

def _markdown_cell(cell: Cell) -> str:
    return "".join(f"**{text}**" if bold and text else text for text, bold in cell).replace("|", "\\|")


def markdown_table(table: Table) -> str:
    """``### heading``, the title line, a GitHub table (first column left, others right aligned), notes."""
    lines = [f"### {table.heading}", "", table.title, "",
             "| " + " | ".join(table.header) + " |", "|:---|" + "---:|" * (len(table.header) - 1)]
    lines += ["| " + " | ".join(_markdown_cell(cell) for cell in row) + " |" for row in table.rows]
    if table.notes:
        lines += ["", *table.notes]
    return "\n".join(lines)


def to_markdown(report: Report) -> str:
    parts = [report.provenance, *(markdown_table(t) for t in report.probes), report.legend,
             *(markdown_table(t) for t in report.extra)]
    return "\n\n".join(parts) + "\n"


# --- LaTeX ----------------------------------------------------------------------------------------------------

_LATEX = {
    "\\": r"\textbackslash{}", "_": r"\_", "%": r"\%", "&": r"\&", "#": r"\#", "$": r"\$", "{": r"\{",
    "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "<": "$<$", ">": "$>$", "|": "$|$",
    "±": r"$\pm$", MINUS: "$-$", "Δ": r"$\Delta$", "↳": r"$\hookrightarrow$", "—": "---", "–": "--",
    "…": r"\ldots{}", "×": r"$\times$", "→": r"$\rightarrow$", "≥": r"$\geq$", "≤": r"$\leq$", "µ": r"$\mu$",
    "μ": r"$\mu$", "·": r"$\cdot$", "’": "'", "‘": "`", "“": "``", "”": "''", "\u00a0": "~",
}

_ASCII = {"±": "+/-", MINUS: "-", "Δ": "Delta", "↳": "->", "—": "--", "–": "-", "…": "...", "×": "x",
          "→": "->", "≥": ">=", "≤": "<=", "µ": "u", "μ": "u", "·": ".", "’": "'", "‘": "'", "“": '"', "”": '"'}


def ascii_fold(text: str) -> str:
    """``text`` in ASCII: the symbols we print spelled out, accents dropped, anything else "?"."""
    return "".join(char if char.isascii() else _ASCII.get(char) or
                   unicodedata.normalize("NFKD", char).encode("ascii", "ignore").decode() or "?" for char in text)


def _latex_plain(text: str) -> str:
    return "".join(_LATEX.get(char) or (char if char.isascii() else ascii_fold(char)) for char in text)


def latex_text(text: str) -> str:
    """Escape LaTeX's special characters and spell the few Unicode symbols we print in plain LaTeX, so the
    result is ASCII and needs no package; `code` spans (as in the provenance) become ``\\texttt``."""
    parts = str(text).split("`")
    if len(parts) % 2 == 0:  # an unpaired backquote: no code spans, and LaTeX would read it as a quote mark
        return _latex_plain(str(text).replace("`", "'"))
    return "".join(f"\\texttt{{{_latex_plain(part)}}}" if odd else _latex_plain(part)
                   for odd, part in zip([0, 1] * len(parts), parts))


def _latex_segments(segments: Cell) -> str:
    return "".join(f"\\textbf{{{latex_text(text)}}}" if bold and text else latex_text(text) for text, bold in segments)


def _latex_stack(lines: list[str], align: str = "r") -> str:
    """Several lines in one cell (a nested tabular, which plain LaTeX has), to keep wide tables on the page."""
    if len(lines) < 2:
        return "".join(lines)
    return f"\\begin{{tabular}}[t]{{@{{}}{align}@{{}}}}" + "\\\\{}".join(lines) + "\\end{tabular}"


def _latex_cell(cell: Cell) -> str:
    """A Δ cell goes on two lines: the difference, then its interval (or why there is none)."""
    if len(cell) < 2:
        return _latex_segments(cell)
    rest = [(text.strip() if i == 0 else text, bold) for i, (text, bold) in enumerate(cell[1:])]
    return _latex_stack([_latex_segments(cell[:1]), _latex_segments(rest)])


def _latex_header(text: str, limit: int = 14) -> str:
    """A long column name is split at the space nearest its middle."""
    spaces = [i for i, char in enumerate(text) if char == " "]
    if len(text) <= limit or not spaces:
        return latex_text(text)
    middle = min(spaces, key=lambda i: abs(i - len(text) / 2))
    return _latex_stack([latex_text(text[:middle]), latex_text(text[middle + 1:])], "c")


def latex_table(table: Table) -> str:
    """``\\subsection*``, the title and one ``tabular`` with ``\\hline`` rules."""
    spec = "l" + "r" * (len(table.header) - 1)
    lines = [f"\\subsection*{{{latex_text(table.heading)}}}", f"\\noindent {latex_text(table.title)}\\par\\smallskip",
             "{\\footnotesize\\setlength{\\tabcolsep}{4pt}", f"\\noindent\\begin{{tabular}}{{{spec}}}", "\\hline",
             " & ".join(_latex_header(h) for h in table.header) + " \\\\", "\\hline"]
    lines += [" & ".join(_latex_cell(cell) for cell in row) + " \\\\" for row in table.rows]
    lines += ["\\hline", "\\end{tabular}\\par}"]
    lines += [f"\\smallskip\\noindent {latex_text(note)}\\par" for note in table.notes]
    return "\n".join(lines)


def to_latex(report: Report) -> str:
    """A complete document for plain LaTeX (no package), ASCII only; the provenance is also its first line,
    as a comment. The text block is widened (plain length settings) so the per-layer tables fit."""
    return "\n".join([
        f"% {ascii_fold(report.provenance)}", "\\documentclass{article}",
        "\\setlength{\\textwidth}{6.8in}\\setlength{\\oddsidemargin}{-0.15in}\\setlength{\\evensidemargin}{-0.15in}",
        "\\begin{document}", f"{{\\footnotesize\\raggedright {latex_text(report.provenance)}\\par}}",
        *(latex_table(t) for t in report.probes), f"\\medskip\\noindent {latex_text(report.legend)}\\par",
        *(latex_table(t) for t in report.extra), "\\end{document}", ""])


# --- CSV ------------------------------------------------------------------------------------------------------

CSV_COLUMNS = ["probe", "kind", "protocol", "metric", "layer", "method", "n", "mean", "std", "values", "baseline",
               "delta", "ci_low", "ci_high", "p_value", "significant"]


def csv_frame(summary: pd.DataFrame) -> pd.DataFrame:
    """The long CSV: one row per (probe, metric, layer, method), unscaled fractions, per-seed values joined by
    ";"; ``significant`` is empty where there is no test."""
    frame = summary[CSV_COLUMNS].copy()
    frame["values"] = [";".join(repr(float(v)) for v in values) for values in frame["values"]]
    frame["significant"] = [("" if s is None else bool(s)) for s in frame["significant"]]
    return frame
