"""Speed of the training loader on the CPU: images/s per core delivered from a prepared cache, as the pretext trains.

What is timed is what ``ssl-ctx pretrain`` does per batch outside the network, with the pretext config's data and
mask settings (default ``configs/pretext/paper_227.yaml``: a 256-px cache, random 227-px crops of 0.887 of the
side, horizontal flips, random-region masks), on a cache of real photos (CMP Facade's base set, prepared at the
config's cache size), batch ``--batch-size``:

1. gather: ``CachedBatchLoader``'s host side, one fancy index into the memory-mapped uint8 cache (in training it
   runs in the loader's prefetch thread, one batch ahead; on a GPU it is all the CPU does per batch, plus the
   pinned copy, when the cache is too large to keep on the GPU);
2. augment: the loader's conversion to float in [-1, 1], crop + resize + flip in one affine warp, on the device
   (here the CPU);
3. masks: ``ssl_ctx.masks.make_masks`` (random regions: bicubic-upsampled noise, thresholded) and
   ``apply_mask``, which the context encoder's step does on the device before the network (``ContextEncoder.masks``
   and ``reconstruct``).

Each stage is called directly, one batch at a time, so that it is timed alone on the thread count under test
(``torch.set_num_threads``), without the prefetch thread running beside it. The thread counts are interleaved
step by step (order reversed every other step), so both see the same load; the ratio between them is the median
of the per-step ratios. Reported per thread count: the median time per batch of each stage, images/s of the
loader (gather + augment) and of loader + masks, the same per core (divided by the threads), with interquartile
ranges.

    python benchmarks/loader_speed.py --threads 1 2 --batch-size 64 --steps 40
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

from timing import add_output_arguments, facade_photos, header_lines, machine, markdown_table, median_iqr, now, \
    photo_stats, photos_text, scratch_folder, script_main, spread

from ssl_ctx.config import load_config
from ssl_ctx.data import load_split
from ssl_ctx.data.loader import loader_for
from ssl_ctx.data.roots import data_root
from ssl_ctx.masks import apply_mask, fill_value, make_masks

STAGES = ("gather", "augment", "masks")


def stage_timer(config: Any, split: Any, batch_size: int) -> Any:
    """A function ``(step) -> {stage: seconds}`` that makes batch ``step`` stage by stage on the CPU."""
    loader = loader_for(split, config.data, config.train, torch.device("cpu"), training=True,
                        batch_size=batch_size, preload=False)
    order = loader._order(0)
    batches = len(order) // batch_size
    fill = fill_value(config.mask, split.mean_rgb)
    height, width = loader.input_size

    def step(number: int) -> dict[str, float]:
        epoch, index = divmod(number, batches)
        indices = loader._order(epoch)[index * batch_size:(index + 1) * batch_size]
        times = {}
        started = time.perf_counter()
        raw = loader._gather(indices)
        times["gather"] = time.perf_counter() - started
        started = time.perf_counter()
        batch = loader._finish(raw, raw.pop("index"), epoch, index)
        times["augment"] = time.perf_counter() - started
        started = time.perf_counter()
        generator = torch.Generator().manual_seed(number)
        masked = apply_mask(batch["image"], make_masks(config.mask, batch_size, height, width, generator=generator),
                            fill)
        times["masks"] = time.perf_counter() - started
        assert masked.shape == (batch_size, 3, height, width)
        return times

    return step


def run(args: argparse.Namespace, command: str) -> dict[str, Any]:
    with scratch_folder("loader-speed-") as scratch:
        return measure(args, command, scratch)


def measure(args: argparse.Namespace, command: str, scratch: Path) -> dict[str, Any]:
    photos = facade_photos(data_root(), args.photos or scratch / "photos")
    stats = photo_stats(photos)
    config = load_config(args.config, [f"data.dataset=imagefolder:{photos}", "data.train_split=all",
                                       f"train.batch_size={args.batch_size}", "train.device=cpu"])
    os.environ["SSL_CTX_CACHE"] = str(scratch / "cache")
    split = load_split(config.data.dataset, "all", size=tuple(config.data.cache_size or ()) or None)
    step = stage_timer(config, split, args.batch_size)
    before = machine()
    print(f"{photos_text(stats)}; cache {split.size[0]}x{split.size[1]}, {len(split)} images; input "
          f"{config.data.input_size} px, crop {config.data.crop_scale}, masks {config.mask.type}; threads "
          f"{args.threads}; load average {before['load_average']}", flush=True)
    times: dict[int, list[dict[str, float]]] = {threads: [] for threads in args.threads}
    for number in range(args.warmup + args.steps):
        for threads in args.threads if number % 2 == 0 else args.threads[::-1]:
            torch.set_num_threads(threads)
            result = step(number)
            if number >= args.warmup:
                times[threads].append(result)
    after = machine()
    results = [summarise(threads, steps, args.batch_size, times[args.threads[0]])
               for threads, steps in times.items()]
    for entry in results:
        print(f"  {entry['threads']} thread(s): loader {entry['loader_images_per_s']:.0f} images/s, loader + masks "
              f"{entry['total_images_per_s']:.0f} images/s ({entry['total_images_per_s_per_core']:.0f} per core)",
              flush=True)
    return {"benchmark": "training loader on the CPU: images/s per core", "command": command, "date": now(),
            **before, "load_average_before": before["load_average"], "load_average_after": after["load_average"],
            "torch": torch.__version__, "python": sys.version.split()[0], "photos": stats,
            "config": str(args.config), "cache_size": list(split.size), "cached_images": len(split),
            "input_size": config.data.input_size, "crop_scale": config.data.crop_scale, "hflip": config.data.hflip,
            "mask": config.mask.type, "batch_size": args.batch_size, "warmup_steps": args.warmup,
            "steps": args.steps,
            "timing": "Per step, each thread count in turn (order reversed every other step), each stage timed "
                      "alone; images/s = batch / median per-step time; per core = images/s / threads; ratio = "
                      f"median over steps of ({args.threads[0]} thread(s)' time / this count's time)",
            "results": results}


def summarise(threads: int, steps: list[dict[str, float]], batch_size: int,
              baseline: list[dict[str, float]]) -> dict[str, Any]:
    entry: dict[str, Any] = {"threads": threads}
    for stage in STAGES:
        entry[f"{stage}_ms"] = 1000 * median_iqr([step[stage] for step in steps])[0]
    for name, stages in (("loader", ("gather", "augment")), ("total", STAGES)):
        seconds = [sum(step[stage] for stage in stages) for step in steps]
        median, low, high = median_iqr(seconds)
        entry[f"{name}_images_per_s"] = batch_size / median
        entry[f"{name}_images_per_s_iqr"] = [batch_size / high, batch_size / low]
        entry[f"{name}_images_per_s_per_core"] = batch_size / median / threads
    ratios = [sum(base.values()) / sum(step.values()) for base, step in zip(baseline, steps)]
    entry["speedup"], *entry["speedup_iqr"] = median_iqr(ratios)
    entry["step_ms"] = [{stage: round(1000 * step[stage], 3) for stage in STAGES} for step in steps]
    return entry


def format_markdown(report: dict[str, Any]) -> str:
    setting = (f"torch {report['torch']}. Cache: {report['cached_images']} photos ({photos_text(report['photos'])}, "
               f"CMP Facade base set) prepared at {report['cache_size'][0]}x{report['cache_size'][1]}; "
               f"`{report['config']}`'s data and mask settings: input {report['input_size']} px, crop scale "
               f"{report['crop_scale']}, hflip {report['hflip']}, {report['mask']} masks; batch "
               f"{report['batch_size']}; {report['warmup_steps']} warm-up steps, then {report['steps']} timed. "
               f"{report['timing']}.")
    rows = [[str(entry["threads"]), f"{entry['gather_ms']:.1f}", f"{entry['augment_ms']:.1f}",
             f"{entry['masks_ms']:.1f}", spread(entry["loader_images_per_s"], *entry["loader_images_per_s_iqr"], 0),
             spread(entry["total_images_per_s"], *entry["total_images_per_s_iqr"], 0),
             f"{entry['total_images_per_s_per_core']:.0f}", spread(entry["speedup"], *entry["speedup_iqr"], 2, "x")]
            for entry in report["results"]]
    return "\n".join([*header_lines(report, setting), *markdown_table(
        ["torch threads", "gather ms", "augment ms", "masks ms", "loader images/s (IQR)",
         "loader + masks images/s (IQR)", "loader + masks per core", "vs first, median of steps (IQR)"], rows)])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=Path("configs/pretext/paper_227.yaml"),
                        help="pretext config whose data and mask settings are timed (default: paper_227.yaml)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch thread counts (default: 1 2)")
    parser.add_argument("--batch-size", type=int, default=64, help="images per batch (default: 64)")
    parser.add_argument("--steps", type=int, default=40, help="timed steps per thread count (default: 40)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per thread count first (default: 3)")
    add_output_arguments(parser, "loader-cpu")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.warmup < 0 or min(args.threads) < 1:
        parser.error("--steps and every --threads must be at least 1, --warmup at least 0")
    return args


def main(argv: list[str] | None = None) -> int:
    return script_main("loader_speed.py", argv, parse_args, run, format_markdown)


if __name__ == "__main__":
    raise SystemExit(main())
