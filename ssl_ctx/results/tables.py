"""`ssl-ctx table RUNS_DIR`: run records -> table.md (also printed), table.csv, table.tex, figure.png, layers.png,
delta.png, pretext.png and provenance.json.

Only the orchestration lives here: ``collect`` reads the records, ``stats`` computes, ``render`` writes text and
``figures`` draws. Nothing is typed by hand: every number comes from a ``record.json`` under the runs folder,
except the paper's published numbers, shown only with ``--paper`` and labelled as the paper's. The caption of what
was trained on (``render.training_caption``) goes under the provenance of table.md and table.tex, under every
figure, and into provenance.json.
"""
from __future__ import annotations

import json
import shlex
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from ssl_ctx.errors import UserError, suggest, warn
from ssl_ctx.files import atomic_write, require_writable, write_json_atomic, write_text_atomic
from ssl_ctx.results import figures, render
from ssl_ctx.results.collect import (
    RecordSet,
    check_cells,
    history_frame,
    pretext_frame,
    probe_frame,
    read_records,
    trained_on_frame,
)
from ssl_ctx.results.records import git_commit
from ssl_ctx.results.stats import baseline_of, method_order, primary_rows, summarise, summarise_pretext

DEFAULT_BASELINE = "random_init"
# Written only when they apply; a rerun that no longer makes one removes the stale copy.
OPTIONAL_FIGURES = ("layers.png", "delta.png", "pretext.png")


def table_invocation(runs_dir: str | Path, output: str | Path | None = None, paper: bool = False,
                     baseline: str | None = DEFAULT_BASELINE, overwrite: bool = False,
                     comparisons: Sequence[tuple[str, str]] = (), baselines: Mapping[str, str] | None = None) -> str:
    """The ``ssl-ctx table`` command line that makes these tables, for the provenance of a direct call."""
    parts = ["ssl-ctx", "table", str(runs_dir)]
    parts += ["-o", str(output)] if output else []
    parts += ["--paper"] if paper else []
    parts += ["--baseline", baseline or ""] if baseline != DEFAULT_BASELINE else []
    for method, other in (baselines or {}).items():
        parts += ["--baseline-of", f"{method}:{other}"]
    for method, other in comparisons:
        parts += ["--compare", f"{method}:{other}"]
    parts += ["--overwrite"] if overwrite else []
    return shlex.join(parts)


def refuse_to_overwrite(output: Path) -> None:
    """Raise ``UserError`` when ``output`` already holds tables, naming the command that made them."""
    if not (output / "table.md").exists():
        return
    made_by = ""
    try:
        command = json.loads((output / "provenance.json").read_text()).get("command")
        made_by = f" made by `{command}`" if command else ""
    except (OSError, ValueError, AttributeError):
        pass
    raise UserError(f"'{output}' already holds tables{made_by}; pass --overwrite to replace them or -o DIR to "
                    "write elsewhere")


def provenance_line(command: str, runs_dir: Path, records: RecordSet, baseline: str | None, methods: set[str],
                    commit: str) -> str:
    """Who made the tables, when, from which commit, and from how many records of each kind."""
    line = (f"Made by `{command}` on {time.strftime('%Y-%m-%d %H:%M %Z')} (git {commit}) from "
            f"{len(records.probe)} probe records and {len(records.pretext)} pretext records under `{runs_dir}`")
    if records.unreadable:
        line += f"; {len(records.unreadable)} unreadable record.json skipped"
    if baseline and baseline not in methods:
        line += f"; baseline '{baseline}' has no probe records, so no Δ is shown"
    return line + "."


def architecture_notes(frame: pd.DataFrame, baseline: str | None = DEFAULT_BASELINE,
                       baselines: Mapping[str, str] | None = None,
                       comparisons: Sequence[tuple[str, str]] = ()) -> dict[str, list[str]]:
    """For each probe where a difference the tables show is taken between encoders of different architectures, the
    line that says so, naming those methods (a method against the random weights of its own architecture is no
    such difference)."""
    notes = {}
    for probe, part in frame.groupby("probe", sort=False):
        described = {method: sorted({a for a in rows["architecture"] if a})
                     for method, rows in part.groupby("method", sort=True)}
        def across_architectures(method: str, other: str | None) -> bool:
            return bool(described.get(method) and described.get(other) and described[method] != described[other])

        compared = [(method, baseline_of(method, baseline, baselines)) for method in described] + list(comparisons)
        mixed = {name for pair in compared if across_architectures(*pair) for name in pair}
        note = render.architecture_note({method: found for method, found in described.items() if method in mixed})
        if note:
            notes[str(probe)] = [note]
    return notes


def table_command(runs_dir: str | Path, output: str | Path | None = None, paper: bool = False,
                  baseline: str | None = DEFAULT_BASELINE, command: str | None = None,
                  overwrite: bool = False, comparisons: Sequence[tuple[str, str]] = (),
                  baselines: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Write table.md, table.csv, table.tex, figure.png (+ layers.png for per-layer probes, delta.png when some
    method has a difference from the baseline or a compared method, pretext.png when there are pretext records)
    and provenance.json into ``output`` (default ``runs_dir/tables``), print the Markdown, and return the
    per-cell statistics (``stats.summarise``). The tables and figures carry the caption of what the pretext runs
    and probes were trained on (``render.training_caption``).

    ``command`` is the command line recorded as the tables' maker (default: the equivalent ``ssl-ctx table``).
    Existing tables are replaced only with ``overwrite``. ``comparisons``: further (method, other method) pairs
    whose difference each probe table shows beside the differences from ``baseline``. ``baselines``: methods
    compared with another baseline than ``baseline`` ({method: its baseline}; methods of another architecture
    against random weights of their own).
    """
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise UserError(f"runs folder '{runs_dir}' does not exist; pass the folder a bench wrote (runs/<name>)")
    output = require_writable(Path(output) if output else runs_dir / "tables")
    if not overwrite:
        refuse_to_overwrite(output)
    records = read_records(runs_dir)
    check_cells(records)
    frame = probe_frame(records)
    if frame.empty:
        raise UserError(f"no probe records (record.json) under '{runs_dir}'; run `ssl-ctx bench` or `ssl-ctx probe` "
                        "first")
    command = command or table_invocation(runs_dir, output if output != runs_dir / "tables" else None, paper,
                                          baseline, overwrite, comparisons, baselines)
    comparisons = [tuple(pair) for pair in comparisons]
    methods_seen = set(frame["method"])
    if baseline and baseline != DEFAULT_BASELINE and baseline not in methods_seen:
        raise UserError(f"--baseline '{baseline}' is no method of the probe records under '{runs_dir}' (methods: "
                        f"{', '.join(sorted(methods_seen))}){suggest(baseline, methods_seen)}; pass one of them, "
                        f"or --baseline '' for no differences")
    baselines = dict(baselines or {})
    unknown = [f"{a}:{b}" for a, b in baselines.items() if b not in methods_seen]
    if unknown:
        raise UserError(f"--baseline-of {unknown[0]} names a baseline without probe records under '{runs_dir}' "
                        f"(methods: {', '.join(sorted(methods_seen))}); pass METHOD:BASELINE with both among them")
    missing = [f"{a}:{b}" for a, b in comparisons if a not in methods_seen or b not in methods_seen]
    if missing:
        warn(f"comparison {missing[0]} names a method without probe records under '{runs_dir}' "
             f"(methods: {', '.join(sorted(methods_seen))}); it is left out of the tables")
    summary = summarise(frame, baseline, comparisons=comparisons, baselines=baselines)
    pretexts = pretext_frame(records)
    pretext = summarise_pretext(pretexts) if records.pretext else None
    history = history_frame(records)
    commit = git_commit()
    provenance = provenance_line(command, runs_dir, records, baseline, methods_seen, commit)
    notes = architecture_notes(frame, baseline, baselines, comparisons)
    for note in dict.fromkeys(line for lines in notes.values() for line in lines):
        warn(note)
    caption = render.training_caption(trained_on_frame(records))
    report = render.build_report(summary, provenance, baseline, pretext, paper, notes, caption, baselines)
    markdown = render.to_markdown(report)

    output.mkdir(parents=True, exist_ok=True)
    write_text_atomic(output / "table.md", markdown)
    write_text_atomic(output / "table.tex", render.to_latex(report))
    atomic_write(output / "table.csv", lambda tmp: render.csv_frame(summary).to_csv(tmp, index=False))
    methods = method_order(set(frame["method"]) | set(pretexts["method"]), baseline, baselines)
    colors = figures.method_colors(methods)
    written = ["table.md", "table.csv", "table.tex", "figure.png"]
    shown = primary_rows(summary)  # the figures show each method once
    atomic_write(output / "figure.png", lambda tmp: figures.probe_figure(shown, tmp, colors, caption))
    if figures.layered_probes(shown):
        atomic_write(output / "layers.png", lambda tmp: figures.layer_figure(shown, tmp, colors, caption))
        written.append("layers.png")
    if not figures.delta_frame(summary).empty:
        atomic_write(output / "delta.png", lambda tmp: figures.delta_figure(summary, tmp, colors, caption))
        written.append("delta.png")
    if pretext is not None and (not pretext[0].empty or not history.empty):
        atomic_write(output / "pretext.png",
                     lambda tmp: figures.pretext_figure(history, pretext[0], tmp, colors, caption))
        written.append("pretext.png")
    for name in OPTIONAL_FIGURES:
        if name not in written:
            (output / name).unlink(missing_ok=True)
    write_json_atomic(output / "provenance.json", {
        "command": command, "runs_dir": str(runs_dir), "made_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "git_commit": commit, "baseline": baseline, "baselines": baselines, "caption": caption,
        "comparisons": [list(pair) for pair in comparisons], "records": records.paths(),
        "skipped_unreadable": [str(p) for p in records.unreadable], "files": written})
    print(markdown)
    print(f"tables: {output}/{', '.join(written)}, provenance.json")
    return summary
