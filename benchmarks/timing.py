"""What the data benchmarks share: real photos to time, the machine and its load, paired ratios, result files.

``prepare_speed.py`` and ``loader_speed.py`` import it from this folder (it is not a package). Torch-free, so that
timing ``ssl-ctx data prepare`` does not load torch into the process that prepares.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import re
import shutil
import statistics
import sys
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from PIL import Image

from ssl_ctx.host import cpu_cores, cpu_model

RESULTS = Path(__file__).resolve().parent / "results"
FACADE_ARCHIVE = "CMP_facade_DB_base.tar.gz"


def facade_photos(data: Path, target: Path) -> Path:
    """The CMP Facade base set's JPEG photos (``base/cmp_b*.jpg``, 378 facades, at most 512 px on the long side as
    the archive in ``data`` holds them) extracted into ``target``, one flat folder: an unlabelled ``imagefolder:``."""
    target.mkdir(parents=True, exist_ok=True)
    if not any(target.glob("*.jpg")):
        with tarfile.open(data / FACADE_ARCHIVE, "r|gz") as tar:
            for member in tar:
                if member.isfile() and re.fullmatch(r"(.*/)?cmp_b\d+\.jpg", member.name):
                    (target / Path(member.name).name).write_bytes(tar.extractfile(member).read())
    return target


def photo_stats(folder: Path) -> dict[str, Any]:
    """Count, mean width x height, mean megapixels and mean file size of the JPEGs in ``folder``."""
    files = sorted(folder.glob("*.jpg"))
    sizes = [Image.open(path).size for path in files]
    return {"photos": len(files),
            "mean_width": statistics.fmean(w for w, _ in sizes), "mean_height": statistics.fmean(h for _, h in sizes),
            "mean_megapixels": statistics.fmean(w * h for w, h in sizes) / 1e6,
            "mean_kilobytes": statistics.fmean(path.stat().st_size for path in files) / 1000}


def photos_text(stats: dict[str, Any]) -> str:
    return (f"{stats['photos']} JPEG photos, mean {stats['mean_width']:.0f} x {stats['mean_height']:.0f} px "
            f"({stats['mean_megapixels']:.2f} Mpx), mean {stats['mean_kilobytes']:.0f} kB")


def machine() -> dict[str, Any]:
    """The CPU, its cores (all, and those this process may use) and, at this moment, the load average."""
    return {"cpu": cpu_model(), "cpu_count": os.cpu_count(), "cpus_usable": cpu_cores(),
            "load_average": [round(value, 2) for value in os.getloadavg()]}


def load_text(load: list[float]) -> str:
    return ", ".join(f"{value:.2f}" for value in load) + " (1, 5, 15 min)"


def machine_text(before: dict[str, Any], after: dict[str, Any]) -> str:
    return (f"Machine: {before['cpu']}, {before['cpu_count']} CPUs ({before['cpus_usable']} usable by the "
            f"benchmark); load average {load_text(before['load_average'])} before the run and "
            f"{load_text(after['load_average'])} after.")


def median_iqr(values: list[float]) -> tuple[float, float, float]:
    """(median, 25th percentile, 75th percentile)."""
    if len(values) < 2:
        return values[0], values[0], values[0]
    first, _, third = statistics.quantiles(values, n=4, method="inclusive")
    return statistics.median(values), first, third


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def header_lines(report: dict[str, Any], setting: str) -> list[str]:
    """The Markdown page's preamble: title and date, what was timed (``setting``), the machine and its load before
    and after, the command."""
    return [f"{report['benchmark']} ({report['date']}).", "", setting, "",
            machine_text({**report, "load_average": report["load_average_before"]},
                         {"load_average": report["load_average_after"]}), "",
            f"Command: `{report['command']}`", ""]


def markdown_table(columns: list[str], rows: list[list[str]]) -> list[str]:
    """A Markdown table: the first column left-aligned, the others (numbers) right-aligned."""
    return [f"| {' | '.join(columns)} |", "|---|" + "---:|" * (len(columns) - 1),
            *(f"| {' | '.join(row)} |" for row in rows)]


def spread(value: float, low: float, high: float, digits: int = 1, unit: str = "") -> str:
    """``value`` with its interquartile range: ``12.3 (11.9–12.8)``; ``unit`` follows the value (``x``)."""
    return f"{value:.{digits}f}{unit} ({low:.{digits}f}–{high:.{digits}f})"


@contextlib.contextmanager
def scratch_folder(prefix: str) -> Iterator[Path]:
    """A temporary folder for the photos and caches of one run, removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def add_output_arguments(parser: argparse.ArgumentParser, name: str) -> None:
    """``--photos`` and ``--output`` (default ``benchmarks/results/<name>.json``, the Markdown beside it)."""
    parser.add_argument("--photos", type=Path, default=None,
                        help="folder to extract the photos into, kept (default: a temporary folder)")
    parser.add_argument("--output", type=Path, default=RESULTS / f"{name}.json",
                        help=f"JSON file (default: benchmarks/results/{name}.json); the Markdown goes beside it")


def script_main(script: str, argv: list[str] | None, parse_args: Callable[[list[str]], argparse.Namespace],
                run: Callable[[argparse.Namespace, str], dict[str, Any]],
                format_markdown: Callable[[dict[str, Any]], str]) -> int:
    """Parse, run, print the Markdown page, then write it and the JSON report (``--output``)."""
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    report = run(args, " ".join(["python", f"benchmarks/{script}", *argv]))
    markdown = format_markdown(report)
    print(markdown)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    args.output.with_suffix(".md").write_text(markdown + "\n")
    print(f"wrote {args.output} and {args.output.with_suffix('.md')}")
    return 0
