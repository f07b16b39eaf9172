"""Speed of ``ssl-ctx data prepare`` on full-size JPEG photos: images/s with 1 and N decoding workers, per core.

The photos are CMP Facade's base set (real photos, as the archive in ``$SSL_CTX_DATA`` holds them: at most 512 px
on the long side; their mean size is in the results), extracted once into a flat folder, each photo there
``--copies`` times (so a run lasts long enough that its fixed start does not decide the rate), and prepared as an
``imagefolder:`` at each ``--sizes`` side, every run into a fresh, empty cache folder: listing and indexing the
folder, decoding, resizing, writing the arrays, finishing the cache, all of it (the number ``prepare`` itself
reports). Each worker count first runs once untimed (the photos enter the page cache, the forkserver starts),
then the counts are timed in turn, ``--repeats`` rounds, the order reversed every other round, so every count
runs under the same load; the ratio to one worker is the median of the per-round ratios, with its
interquartile range. Per core = images/s / workers: with one worker the parent process decodes, with N it
reads files and writes arrays while N processes decode (its CPU time per image is reported too).

    python benchmarks/prepare_speed.py --sizes 227 256 --workers 1 2 --repeats 5 --copies 4
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from timing import add_output_arguments, facade_photos, header_lines, machine, markdown_table, median_iqr, now, \
    photo_stats, photos_text, scratch_folder, script_main, spread

from ssl_ctx.data import prepare
from ssl_ctx.data.roots import data_root


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def repeated(photos: Path, copies: int, target: Path) -> Path:
    """A folder holding every photo ``copies`` times (hard links where the file system allows): runs long enough
    that the per-image work, not the fixed start of a run, decides the rate."""
    target.mkdir(parents=True, exist_ok=True)
    for copy in range(copies):
        for photo in sorted(photos.glob("*.jpg")):
            link = target / f"{copy}-{photo.name}"
            try:
                os.link(photo, link)
            except OSError:
                shutil.copyfile(photo, link)
    return target


def timed_prepare(photos: Path, size: int, workers: int, scratch: Path) -> dict[str, float]:
    """One prepare of the photos at ``size`` with ``workers`` into a fresh cache folder: wall and parent CPU s."""
    cache = Path(tempfile.mkdtemp(dir=scratch))
    os.environ["SSL_CTX_CACHE"] = str(cache)
    try:
        started, cpu = time.perf_counter(), cpu_seconds()
        prepare(f"imagefolder:{photos}", size=size, progress=False, workers=workers)
        return {"seconds": time.perf_counter() - started, "parent_cpu_seconds": cpu_seconds() - cpu}
    finally:
        shutil.rmtree(cache)


def run(args: argparse.Namespace, command: str) -> dict[str, Any]:
    with scratch_folder("prepare-speed-") as scratch:
        stats = photo_stats(facade_photos(data_root(), args.photos or scratch / "photos"))
        photos = repeated(args.photos or scratch / "photos", args.copies, scratch / "repeated")
        images = stats["photos"] * args.copies
        before = machine()
        print(f"{photos_text(stats)}, each {args.copies} times: {images} images per run; workers {args.workers}; "
              f"{args.repeats} rounds; load average {before['load_average']}", flush=True)
        results = []
        for size in args.sizes:
            runs: dict[int, list[dict[str, float]]] = {workers: [] for workers in args.workers}
            for workers in args.workers:
                timed_prepare(photos, size, workers, scratch)  # untimed: page cache, forkserver
            for round_number in range(args.repeats):
                for workers in args.workers if round_number % 2 == 0 else args.workers[::-1]:
                    runs[workers].append(timed_prepare(photos, size, workers, scratch))
            results.append(summarise(size, runs, images))
            for entry in results[-1]["workers"]:
                print(f"  {size} px, {entry['workers']} worker(s): {entry['images_per_s']:.1f} images/s "
                      f"({entry['images_per_s_per_core']:.1f} per core), x{entry['ratio_to_one_worker']:.2f} "
                      f"one worker's", flush=True)
        after = machine()
    return {"benchmark": "ssl-ctx data prepare: images/s by decoding workers", "command": command, "date": now(),
            **before, "load_average_before": before["load_average"], "load_average_after": after["load_average"],
            "python": sys.version.split()[0], "photos": stats, "copies": args.copies, "images_per_run": images,
            "repeats": args.repeats,
            "timing": "each run prepares every photo into a fresh cache folder (listing, decoding, resizing, "
                      "writing, finishing); one untimed run per worker count first; worker counts in turn per "
                      "round, order reversed every other round; images/s = photos / median run time; ratio = "
                      "median over rounds of (this count's images/s / one worker's)",
            "results": results}


def summarise(size: int, runs: dict[int, list[dict[str, float]]], photos: int) -> dict[str, Any]:
    one = runs.get(1)
    entries = []
    for workers, timings in runs.items():
        seconds = [timing["seconds"] for timing in timings]
        median, low, high = median_iqr(seconds)
        ratios = [one_run["seconds"] / run_["seconds"] for one_run, run_ in zip(one, timings)] if one else [1.0]
        ratio, ratio_low, ratio_high = median_iqr(ratios)
        entries.append({"workers": workers, "images_per_s": photos / median,
                        "images_per_s_iqr": [photos / high, photos / low],
                        "images_per_s_per_core": photos / median / workers,
                        "parent_cpu_ms_per_image": 1000 * median_iqr([t["parent_cpu_seconds"] for t in timings])[0]
                        / photos,
                        "ratio_to_one_worker": ratio, "ratio_iqr": [ratio_low, ratio_high],
                        "seconds": seconds})
    return {"size": size, "workers": entries}


def format_markdown(report: dict[str, Any]) -> str:
    rows = [[f"{result['size']} px", str(entry["workers"]), spread(entry["images_per_s"], *entry["images_per_s_iqr"]),
             f"{entry['images_per_s_per_core']:.1f}", f"{entry['parent_cpu_ms_per_image']:.2f}",
             spread(entry["ratio_to_one_worker"], *entry["ratio_iqr"], digits=2, unit="x")]
            for result in report["results"] for entry in result["workers"]]
    setting = (f"Photos: {photos_text(report['photos'])} (CMP Facade base set, as `$SSL_CTX_DATA` holds it), each "
               f"{report['copies']} times in the folder: {report['images_per_run']} images per run. "
               f"{report['repeats']} rounds; {report['timing']}.")
    return "\n".join([*header_lines(report, setting), *markdown_table(
        ["size", "workers", "images/s, median run (IQR)", "images/s per core", "parent CPU ms / image",
         "vs 1 worker, median of rounds (IQR)"], rows)])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[227], help="cache sides in px (default: 227)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2],
                        help="worker counts to compare; include 1 for the ratios (default: 1 2)")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds per size (default: 5)")
    parser.add_argument("--copies", type=int, default=4,
                        help="times each of the 378 photos is in the prepared folder (default: 4: 1512 images)")
    add_output_arguments(parser, "prepare-cpu")
    args = parser.parse_args(argv)
    if min(args.repeats, args.copies, *args.workers) < 1:
        parser.error("--repeats, --copies and every --workers must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    return script_main("prepare_speed.py", argv, parse_args, run, format_markdown)


if __name__ == "__main__":
    raise SystemExit(main())
