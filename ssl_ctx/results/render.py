"""Summaries -> text: Markdown (printed and table.md), LaTeX (table.tex) and the long CSV (table.csv).

Tables are first built in a neutral form (``Table``: Unicode text, cells as (text, bold) segments), then written
out by ``to_markdown`` or ``to_latex``, so both files always show the same cells. Numbers are formatted here only:
percentages with one decimal, L2 with four, ratios with two; a value that rounds to zero never shows a sign
("0.0", "+0.0", never "-0.0"). ``training_caption`` is the line under the provenance (and under every figure)
saying what the pretext runs and the probes were trained on, so a copied table keeps it; the CSV stays one row per
statistic, without it (``provenance.json`` holds the caption beside it).
"""
from __future__ import annotations

import math
import unicodedata
from dataclasses import dataclass, field

import pandas as pd

from ssl_ctx.results.paper import PAPER_FEATURE_LEARNING, PAPER_TASK_NAMES
from ssl_ctx.results.stats import CONFIDENCE, NO_TEST, mean_fill_referenced, method_columns

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
    """What table.md and table.tex hold, in order: provenance, the caption, one table per probe, the legend, then
    the pretext table and the paper's numbers when present."""

    provenance: str
    probes: list[Table]
    legend: str
    extra: list[Table] = field(default_factory=list)
    caption: str = ""  # what the pretext runs and probes were trained on (``training_caption``), under the provenance


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
    protocol = " / ".join(p for p in pd.unique(part["protocol"]) if p)  # one, unless the methods' protocols differ
    return "; ".join(p for p in (head, protocol, f"metric {first['metric']}, in %") if p)


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


def layer_groups(part: pd.DataFrame) -> list[list[str]]:
    """One probe's methods grouped by the columns (layers) they have, in order of appearance: one group when every
    method reads the same layers, one per architecture when they differ (AlexNet's conv1-conv5, a ViT's blocks)."""
    groups: dict[tuple[str, ...], list[str]] = {}
    for method, columns in method_columns(part).items():
        groups.setdefault(columns, []).append(method)
    return list(groups.values())


def probe_tables(part: pd.DataFrame, baseline: str | None, paper: bool = False) -> list[Table]:
    """:func:`probe_table`, one per :func:`layer_groups` group (its heading naming the group's layers when there
    are several), so that encoders with different layers each get their own columns."""
    groups = layer_groups(part)
    if len(groups) == 1:
        return [probe_table(part, baseline, paper)]
    tables = []
    for methods in groups:
        mine = part[part["method"].isin(methods)]
        columns = list(pd.unique(mine["column"]))
        table = probe_table(mine, baseline, paper)
        table.heading += f" ({columns[0]}…{columns[-1]})" if len(columns) > 1 else f" ({columns[0]})"
        tables.append(table)
    return tables


def legend(baseline: str | None, baselines: dict[str, str] | None = None) -> str:
    """The one-line key to the probe tables."""
    text = "Cells: mean ± std over seeds (n = number of seeds)."
    own = "; ".join(f"{method} against {other}" for method, other in (baselines or {}).items())
    if baseline and own:
        text += (f" Methods with a baseline of their own (an encoder of another architecture is compared with "
                 f"random weights of that architecture): {own}; the others against {baseline}.")
    if baseline:
        text += (f" Δ vs X: difference of means from method X (the baseline {baseline}, or another named) with its "
                 f"{CONFIDENCE * 100:g} % confidence interval (Welch's t-test across seeds, uncorrected for multiple "
                 f"comparisons); n.s. = not significant at p < {1 - CONFIDENCE:.2g}, i.e. inside the seed noise.")
    return text


TRAINING_IMAGES_MARK = "†"


def l2_label(on_training_images: list[bool], quantity: str = "L2") -> tuple[str, bool]:
    """The name of the pretext L2 (column and figure label; ``quantity``: what is named, "value" where the rows
    are not all L2s) and whether rows must be marked: "held-out L2" only when no row's evaluation images were
    trained on, "L2 on training images" when every row's were, else the held-out name with the mark that rows
    evaluated on training images carry."""
    if not any(on_training_images):
        return f"held-out {quantity}", False
    if all(on_training_images):
        return f"{quantity} on training images", False
    return f"held-out {quantity} ({TRAINING_IMAGES_MARK} on training images)", True


def held_out_note(summary: pd.DataFrame) -> str | None:
    """Which images were held out of the pretext training ("12 of the 120 images of 'all' ..."), per method where
    they differ; None when no record says."""
    groups: dict[str, list[str]] = {}
    for method, held_out in zip(summary["method"], summary.get("held_out", [""] * len(summary))):
        if held_out and method not in groups.setdefault(held_out, []):  # a method may show several metrics
            groups[held_out].append(method)
    if not groups:
        return None
    if len(groups) == 1 and len(next(iter(groups.values()))) == summary["method"].nunique():
        return f"Held out of pretext training and evaluated on: {next(iter(groups))}."
    return "Held out of pretext training and evaluated on: " + "; ".join(
        f"{', '.join(methods)}: {held_out}" for held_out, methods in groups.items()) + "."


# What the pretext table's rows are: reconstructions (every row an L2 beside its mean fill) or other metrics.
PRETEXT_SUBJECTS = {
    True: {"trained": "Pretext training, reconstruction of the images it was trained on",
           "marked": "Pretext training, reconstruction of held-out images",
           "held_out": "Pretext training, held-out reconstruction"},
    False: {"trained": "Pretext training, metrics on the images it was trained on",
            "marked": "Pretext training, metrics on held-out images",
            "held_out": "Pretext training, held-out metrics"},
}


def pretext_table(summary: pd.DataFrame, without: list[str]) -> Table:
    """Per trained method and held-out metric its records show: train steps, what the metric measures, its value
    and the mean fill of the same pixels (mean ± std, 4 decimals) and their ratio (2 decimals). Where every row is
    an L2 with a mean-fill reference (the built-in reconstructions), the table reads as an L2 table of the pixels
    measured; otherwise each row names its metric and a row without a reference shows "—" for the mean fill and
    the ratio. The value is called held-out only where the evaluation images were not trained on
    (``stats.summarise_pretext``'s ``on_training_images``, :func:`l2_label`), and a note says which images were
    held out where the records say."""
    on_training = [bool(v) for v in summary.get("on_training_images", [False] * len(summary))]
    reconstructions = mean_fill_referenced(summary)
    label, mark = l2_label(on_training, "L2" if reconstructions else "value")
    rows = []
    for (_, row), trained_on in zip(summary.iterrows(), on_training):
        low, high = int(row["steps_min"]), int(row["steps_max"])
        model = mean_std(row["model_mean"], row["model_std"], row["n"], 4)
        referenced = not math.isnan(row["fill_mean"])
        rows.append([_text(row["method"]), _text(str(row["n"])), _text(str(low) if low == high else f"{low}–{high}"),
                     _text(row["pixels"] if reconstructions else _measured(row)),
                     _text(model + (f" {TRAINING_IMAGES_MARK}" if mark and trained_on else "")),
                     _text(_reference_cell(row, reconstructions) if referenced else "—"),
                     _text(format_number(row["ratio"], 2) if referenced else "—")])
    notes = [f"Left out, no held-out metrics in their records: {', '.join(without)}."] if without else []
    if mark:
        notes.append(f"{TRAINING_IMAGES_MARK}: evaluated on images the model was trained on "
                     "(data.eval_on_training_images), not held out.")
    held_out = held_out_note(summary)
    notes += [held_out] if held_out else []
    subjects = PRETEXT_SUBJECTS[reconstructions]
    if all(on_training) and on_training:
        what = f"{subjects['trained']} (the evaluation images were trained on: no held-out score)"
    elif mark:
        what = f"{subjects['marked']} ({TRAINING_IMAGES_MARK}: of training images)"
    else:
        what = subjects["held_out"]
    if reconstructions:
        title = (f"{what}: L2 on the [-1, 1] pixel scale (mean ± std over seeds) "
                 "of the model and of filling the same pixels with the dataset mean; ratio = model / mean fill "
                 "(below 1: better than the mean fill).")
    else:
        title = (f"{what}: each method's declared held-out metrics (mean ± std over seeds), with what they measure; "
                 "where a method declares a reference, the same metric of a trivial predictor of the same pixels "
                 "(named: the mean fill is the dataset mean colour) and ratio = model / reference (below 1: better "
                 "than the reference), else —.")
    return Table(heading="pretext", title=title,
                 header=["method", "n", "train steps", "pixels" if reconstructions else "measures (metric)", label,
                         "mean-fill L2 (same pixels)" if reconstructions else "reference (same pixels)", "ratio"],
                 rows=rows, notes=notes)


def _reference_cell(row: pd.Series, reconstructions: bool) -> str:
    """The reference's mean ± std, named where the table mixes references (a mean fill, a flat patch ...)."""
    value = mean_std(row["fill_mean"], row["fill_std"], row["n"], 4)
    label = str(row.get("reference_label") or "")
    return value if reconstructions or not label else f"{value} ({label})"


def _measured(row: pd.Series) -> str:
    """"hole (eval_masked_l2)": what a held-out metric measures and its name in the records."""
    metric, label = str(row["metric"]), str(row["pixels"])
    return f"{label} ({metric})" if label and label != metric else metric


# --- the caption: what was trained on ---------------------------------------------------------------------

def size_text(size: tuple[int, int] | None) -> str:
    """(64, 96) -> "64×96" (height × width); None -> ""."""
    return f"{size[0]}×{size[1]}" if size else ""


def _count_range(values: list[float]) -> str:
    low, high = int(min(values)), int(max(values))
    return f"{low:,}" if low == high else f"{low:,}–{high:,}"


def count_text(exact: pd.Series, limit: pd.Series) -> str:
    """How many images: "20,000", "100–120" where records differ, "≤20,000" when only the ``data.limit`` is
    known, "" when nothing is."""
    known = [float(v) for v in exact if not pd.isna(v)]
    if known:
        return _count_range(known)
    limits = [float(v) for v in limit if not pd.isna(v)]
    return "≤" + _count_range(limits) if limits and len(limits) == len(limit) else ""


def _distinct(values: pd.Series) -> list:
    return list(dict.fromkeys(v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))
                              and v != ""))


def _one_size(values: pd.Series) -> tuple[int, int] | None:
    sizes = _distinct(values)
    return sizes[0] if len(sizes) == 1 else None


def pretext_data_text(rows: pd.DataFrame) -> str:
    """One method's pretext runs (``collect.trained_on_frame`` rows): "imagefolder:/abs/photos (train split: 108
    images, 12 held out as val), 64×64 input, 2,000 steps (train.max_steps)"."""
    dataset, train_split, eval_split = (" / ".join(_distinct(rows[c])) for c in ("dataset", "train_split",
                                                                                 "eval_split"))
    train, evaluated = (count_text(rows[f"{s}_images"], rows[f"{s}_limit"]) for s in ("train", "eval"))
    if train_split:
        trained = f"{train_split} split" + (f": {train} images" if train else "")
    else:
        trained = f"{train} images" if train else ""
    if any(_distinct(rows["held_out"])):
        where = f"{evaluated + ' ' if evaluated else ''}held out as {eval_split or 'evaluation images'}"
        inner = ", ".join(p for p in (trained, where) if p)
    elif rows["on_training_images"].astype(bool).any():
        inner = "; ".join(p for p in (trained, "evaluated on the same images") if p)
    elif eval_split or evaluated:
        where = f"evaluated on {eval_split or 'other images'}" + (f": {evaluated} images" if evaluated else "")
        inner = "; ".join(p for p in (trained, where) if p)
    else:
        inner = trained
    parts = [" ".join(p for p in (dataset, f"({inner})" if inner else "") if p)] if dataset or inner else []
    size = _one_size(rows["input_size"])
    parts += [f"{size_text(size)} input"] if size else []
    steps = [float(v) for v in rows["steps"] if not pd.isna(v)]
    if steps:
        text = f"{_count_range(steps)} steps"
        planned = [float(v) for v in rows["planned_steps"] if not pd.isna(v)]
        if planned and planned != steps:
            text = f"{_count_range(steps)} of {_count_range(planned)} planned steps"
        # "train.max_steps=2000" says no more than "2,000 steps (train.max_steps)"; "train.epochs=4" keeps its value.
        bounds = [key if value == str(int(max(planned or steps))) else str(bound)
                  for bound in _distinct(rows["steps_bound"]) for key, _, value in [str(bound).partition("=")]]
        parts.append(text + (f" ({' / '.join(dict.fromkeys(bounds))})" if bounds else ""))
    return ", ".join(parts)


def _untrained(rows: pd.DataFrame) -> bool:
    """Every run of the method took no step (random_init), whatever its config planned."""
    return not any(float(v) > 0 for v in rows["steps"] if not pd.isna(v))


def probe_data_text(rows: pd.DataFrame) -> str:
    """One probe's records: "segmentation_camvid camvid train 367 → test 233 images at 96×128 (not the pretext's
    64×64 input)". The input-size mismatch is named from each record's ``pretext_input_size``: one size for all
    methods reads "the pretext's", several name their methods."""
    dataset = " / ".join(_distinct(rows["dataset"]))
    train = " ".join(p for p in (" / ".join(_distinct(rows["train_split"])),
                                 count_text(rows["train_images"], rows["train_limit"])) if p)
    evaluated = " ".join(p for p in (" / ".join(_distinct(rows["eval_split"])),
                                     count_text(rows["eval_images"], rows["eval_limit"])) if p)
    text = " ".join(p for p in (str(rows["probe"].iloc[0]), dataset) if p)
    if train or evaluated:
        text += f" {train or '?'} → {evaluated or '?'} images"
    if rows["on_training_images"].astype(bool).any():
        text += " (evaluated on training images)"
    size = _one_size(rows["input_size"])
    if not size:
        return text
    text += f" at {size_text(size)}"
    pretext_sizes: dict[tuple[int, int], list[str]] = {}
    for method, pretrained in zip(rows["method"], rows["pretext_input_size"]):
        if pretrained:
            pretext_sizes.setdefault(tuple(pretrained), [])
            if method not in pretext_sizes[tuple(pretrained)]:
                pretext_sizes[tuple(pretrained)].append(method)
    other = {s: methods for s, methods in pretext_sizes.items() if s != tuple(size)}
    if not other:
        return text
    if len(pretext_sizes) == 1:
        return text + f" (not the pretext's {size_text(next(iter(other)))} input)"
    listed = "; ".join(f"{', '.join(methods)} {size_text(s)}" for s, methods in other.items())
    return text + f" (not the pretext input of {listed})"


def training_caption(trained: pd.DataFrame) -> str:
    """The caption of every table and figure (``collect.trained_on_frame``): what the pretext runs were trained
    on, per method where they differ, with the untrained methods (random_init) named apart, then each probe's
    dataset, image counts (train → evaluation) and input size, naming a probe input size that is not the pretext's.
    "" when the records say nothing."""
    parts = []
    pretext = trained[trained["kind"] == "pretext"]
    if not pretext.empty:
        described: dict[str, list[str]] = {}
        untrained = []
        for method in pd.unique(pretext["method"]):
            rows = pretext[pretext["method"] == method]
            if _untrained(rows):
                untrained.append(str(method))
            else:
                described.setdefault(pretext_data_text(rows), []).append(str(method))
        if len(described) == 1:  # one description for every trained method: name them once
            (text, methods), = described.items()
            line = f"Pretext ({', '.join(sorted(methods))}): {text}"
        else:
            line = "Pretext: " + "; ".join(f"{', '.join(sorted(methods))}: {text}" for text, methods in
                                           described.items())
        if untrained:
            line += f"{'; ' if described else ' '}{', '.join(sorted(untrained))} untrained (no pretext steps)"
        parts.append(line + ".")
    probes = trained[trained["kind"] == "probe"]
    if not probes.empty:
        parts.append("Probes: " + "; ".join(probe_data_text(probes[probes["probe"] == probe])
                                           for probe in pd.unique(probes["probe"])) + ".")
    return " ".join(parts)


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
                 notes: dict[str, list[str]] | None = None, caption: str = "",
                 baselines: dict[str, str] | None = None) -> Report:
    """Assemble the report from ``stats.summarise`` rows, and ``stats.summarise_pretext``'s result if any;
    ``notes``: lines to print under the table of a probe, by probe name; ``caption``: what was trained on
    (:func:`training_caption`), printed under the provenance; ``baselines``: the methods compared with a baseline
    of their own (named in the legend)."""
    has_baseline = bool(summary["baseline"].astype(bool).any())
    probes = []
    for probe in pd.unique(summary["probe"]):
        for table in probe_tables(summary[summary["probe"] == probe], baseline, paper):
            table.notes += (notes or {}).get(probe, [])
            probes.append(table)
    extra = []
    if pretext is not None and (not pretext[0].empty or pretext[1]):
        extra.append(pretext_table(*pretext))
    if paper and not summary["paper"].astype(bool).any():  # no probe shows the published numbers beside ours
        extra.append(paper_table())
    return Report(provenance, probes, legend(baseline if has_baseline else None, baselines), extra, caption)


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
    parts = [report.provenance, *([report.caption] if report.caption else []),
             *(markdown_table(t) for t in report.probes), report.legend,
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
    as a comment, and the caption follows it. The text block is widened (plain length settings) so the per-layer
    tables fit."""
    return "\n".join([
        f"% {ascii_fold(report.provenance)}", "\\documentclass{article}",
        "\\setlength{\\textwidth}{6.8in}\\setlength{\\oddsidemargin}{-0.15in}\\setlength{\\evensidemargin}{-0.15in}",
        "\\begin{document}", f"{{\\footnotesize\\raggedright {latex_text(report.provenance)}\\par}}",
        *([f"{{\\footnotesize\\raggedright\\smallskip {latex_text(report.caption)}\\par}}"]
          if report.caption else []),
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
