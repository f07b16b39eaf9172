"""Throughput of the context encoder's pretext training step: our fast path against a plain PyTorch loop.

For each input size (227, 128 and 64 px: the alexnet227/alexnet128/alexnet64 encoders, random-region masks,
the same batch) it builds, in one run and on one device,

(a) the fast path, exactly as ``ssl-ctx pretrain`` trains: ``CachedBatchLoader`` serving the prepared uint8
    cache (kept on the GPU when it fits), conversion, resize and flip on the device, masks made on the device,
    the config's ``auto`` defaults (bf16 autocast on CUDA and on CPUs with native bf16, channels_last, fused
    Adam where torch has it), optionally ``torch.compile`` (``--compile``), and no host-device
    synchronisation inside a step;
(b) a plain reference loop: a standard ``torch.utils.data.DataLoader`` whose workers decode the extracted
    Tiny-ImageNet JPEGs with PIL and apply torchvision's Resize, RandomHorizontalFlip, ToTensor and Normalize;
    the same model in fp32 and the default memory format, masks made per batch on the CPU and then moved, and
    ``torch.optim.Adam`` with its default implementation.

Each path warms up alone (``--warmup`` steps, then a few more over which its peak memory is read), then the
two are timed interleaved: ``--steps`` pairs of one fast and one reference step (fast first on even pairs,
reference first on odd ones), each step timed on its own. Timing all of one path and then all of the other
measured the machine's load as much as the code on a shared machine; within a pair both steps see the same
load, so the ratio reported is the median over the pairs of reference time / fast time, with its
interquartile range. Per path it reports the median step time, images/s at that step time, peak memory
(CUDA: ``max_memory_allocated``; CPU: the peak resident set of this process, DataLoader workers not
included; the reference's less what the fast path holds meanwhile), the model's FLOPs per image for
forward + backward (``torch.utils.flop_counter.FlopCounterMode``: convolutions and matrix products) and the
achieved TFLOP/s, with the machine's CPUs and load average before and after the run. It prints a table and
writes a JSON file (see benchmarks/README.md).

    python benchmarks/throughput.py --sizes 227 128 64 --batch-size 64 --steps 50 --warmup 10
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import ctypes
import datetime
import gc
import json
import os
import platform
import re
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from ssl_ctx.config import Config, load_config
from ssl_ctx.data import extracted_root, load_split
from ssl_ctx.data.loader import loader_for
from ssl_ctx.engine.device import describe_device, resolve_device
from ssl_ctx.host import cpu_cores, cpu_model
from ssl_ctx.engine.trainer import Trainer
from ssl_ctx.masks import make_masks
from ssl_ctx.pretext.base import DataInfo
from ssl_ctx.pretext.context_encoder import ContextEncoder
from ssl_ctx.pretext.losses import masked_l2

DATASET = "tiny-imagenet-200"
RESULTS = Path(__file__).resolve().parent / "results"
# Dense (no sparsity) bf16 tensor-core peaks from NVIDIA's data sheets, TFLOP/s; matched on the device name.
GPU_PEAK_BF16_TFLOPS = (("H200", 989.4), ("H100 PCIe", 756.0), ("H100", 989.4), ("A100", 312.0))
# bf16 FLOP per cycle per core of the CPU's widest bf16 matrix instructions, by /proc/cpuinfo flag, widest first.
CPU_BF16_FLOP_PER_CYCLE = {"amx_bf16": 1024, "avx512_bf16": 64}
MEMORY_STEPS = 2  # steps after a path's warm-up over which its peak memory is read


# ------------------------------------------------------------------------------------------- helpers


def machine() -> dict[str, Any]:
    """What else decides the timings on a shared machine: its CPUs and, at this moment, its load."""
    return {"cpu": cpu_model(), "cpu_count": os.cpu_count(), "cpus_usable": cpu_cores(),
            "torch_threads": torch.get_num_threads(), "load_average": list(os.getloadavg())}


def device_slug(device: torch.device) -> str:
    if device.type != "cuda":
        return device.type
    return re.sub(r"[^a-z0-9]+", "-", torch.cuda.get_device_name(device).lower()).strip("-")


def peak_tflops(device: torch.device) -> tuple[float | None, str]:
    """(bf16 peak TFLOP/s of what the benchmark uses, how it was derived); None where no figure is known."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        peak = next((peak for key, peak in GPU_PEAK_BF16_TFLOPS if key in name), None)
        return peak, f"{name}: NVIDIA's dense bf16 tensor-core figure" if peak else f"{name}: no figure known"
    return cpu_peak_tflops()


def cpu_peak_tflops(cpuinfo: str | None = None, threads: int | None = None) -> tuple[float | None, str]:
    """bf16 matrix peak of the cores torch uses: threads x clock x bf16 FLOP per cycle per core.

    FLOP per cycle per core (``CPU_BF16_FLOP_PER_CYCLE``): AMX tiles 1024 (Intel's figure for AMX-BF16); AVX512-BF16
    64 (one 512-bit VDPBF16PS per cycle: 32 bf16 products and 32 sums). The clock is /proc/cpuinfo's current
    ``cpu MHz`` (a virtual machine reports its nominal clock there; turbo is not counted). ``cpuinfo`` and
    ``threads`` replace /proc/cpuinfo and torch's thread count (tests)."""
    try:
        text = cpuinfo if cpuinfo is not None else Path("/proc/cpuinfo").read_text()
    except OSError:
        return None, "no /proc/cpuinfo: peak unknown"
    flags = set((re.search(r"^flags\s*:\s*(.+)$", text, re.MULTILINE) or [None, ""])[1].split())
    clock = re.search(r"^cpu MHz\s*:\s*([0-9.]+)$", text, re.MULTILINE)
    kind = next((flag for flag in CPU_BF16_FLOP_PER_CYCLE if flag in flags), None)
    if kind is None or clock is None:
        return None, "no native bf16 matrix instructions (AMX, AVX512-BF16) or no clock: peak unknown"
    threads = threads or torch.get_num_threads()
    ghz, per_cycle = float(clock.group(1)) / 1000, CPU_BF16_FLOP_PER_CYCLE[kind]
    return (threads * ghz * per_cycle / 1000,
            f"{threads} cores x {ghz:.2f} GHz x {per_cycle} bf16 FLOP/cycle ({kind}; turbo not counted)")


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class PeakMemory:
    """Peak memory of one measurement: CUDA allocations, or this process's resident set on the CPU.

    On Linux the resident-set peak (VmHWM) is reset through /proc/self/clear_refs so each measurement has
    its own; where that is refused, ``resource.getrusage`` gives the peak since the process started.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.kind = "cuda max_memory_allocated" if device.type == "cuda" else "peak RSS of this process"

    def reset(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            return
        try:
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            self.kind = "peak RSS of this process since it started (could not reset)"

    def read_mib(self) -> float:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) / 2**20
        return self._status_mib("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB

    def in_use_mib(self) -> float:
        """Memory held now: CUDA allocations, or the resident set once freed heap is handed back to the OS.

        Both paths are alive while they are timed, so the second one's peak includes what the first holds;
        this is what is subtracted.
        """
        if self.device.type == "cuda":
            return torch.cuda.memory_allocated(self.device) / 2**20
        gc.collect()
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None).malloc_trim(0)  # glibc keeps freed activations in its heap otherwise
        return self._status_mib("VmRSS")

    @staticmethod
    def _status_mib(field: str) -> float:
        with contextlib.suppress(OSError):
            found = re.search(rf"^{field}:\s*(\d+) kB", Path("/proc/self/status").read_text(), re.MULTILINE)
            if found:
                return int(found.group(1)) / 1024
        return 0.0


def warm_up(step: Callable[[int], torch.Tensor], device: torch.device, warmup: int, memory: PeakMemory) -> float:
    """Run ``warmup`` steps, then ``MEMORY_STEPS`` more with the peak reset; return that peak (MiB).

    The warm-up takes compilation, cuDNN autotuning and the DataLoader's start out of the timings and the peak.
    """
    for number in range(warmup):
        step(number)
    synchronize(device)
    memory.reset()
    for number in range(warmup, warmup + MEMORY_STEPS):
        step(number)
    synchronize(device)
    return memory.read_mib()


def interleaved(fast_step: Callable[[int], torch.Tensor], reference_step: Callable[[int], torch.Tensor],
                steps: int, device: torch.device, first: int = 0) -> dict[str, Any]:
    """Time ``steps`` pairs of one fast and one reference step, each step on its own; ratio = reference / fast.

    Within a pair both steps see the same machine load, so the ratio measures the code; the order alternates
    (fast first on even pairs, reference first on odd ones) so that neither always runs on a warmer cache.
    Returns each path's step times (s) and mean loss, and the per-pair ratios.
    """
    paths = {"fast": fast_step, "reference": reference_step}
    seconds: dict[str, list[float]] = {name: [] for name in paths}
    losses = {name: torch.zeros((), device=device) for name in paths}
    for pair in range(steps):
        for name in ("fast", "reference") if pair % 2 == 0 else ("reference", "fast"):
            synchronize(device)
            started = time.perf_counter()
            loss = paths[name](first + pair)
            synchronize(device)
            seconds[name].append(time.perf_counter() - started)
            losses[name] += loss.detach().float()
    for name, total in losses.items():
        if not torch.isfinite(total):
            raise RuntimeError(f"the {name} path's loss became non-finite during the benchmark")
    return {**{name: {"step_s": seconds[name], "mean_loss": float(losses[name]) / steps} for name in paths},
            "ratios": [reference / fast for fast, reference in zip(seconds["fast"], seconds["reference"])]}


def paired_summary(timings: dict[str, Any], batch_size: int) -> dict[str, Any]:
    """The speedup (median paired ratio) with its interquartile range, and each path's median step."""
    ratios = timings["ratios"]
    first, _, third = statistics.quantiles(ratios, n=4, method="inclusive") if len(ratios) > 1 else ratios * 3
    summary: dict[str, Any] = {"speedup": statistics.median(ratios), "speedup_iqr": [first, third],
                               "pairs": len(ratios)}
    for path in ("fast", "reference"):
        step = statistics.median(timings[path]["step_s"])
        summary[path] = {"images_per_s": batch_size / step, "step_time_ms": 1000 * step}
    return summary


def model_config(size: int, args: argparse.Namespace, device: torch.device) -> Config:
    """The benchmarked model: ``--config``'s model options (default: the package's, i.e. the paper's widths) at
    ``size`` px."""
    return load_config(args.config, [
        f"model.encoder=alexnet{size}", f"data.input_size={size}", "mask.type=random_region",
        f"train.batch_size={args.batch_size}", f"train.device={device}", f"train.compile={str(args.compile).lower()}",
        "train.progress=false",
    ])


def flops_per_image(config: Config, info: DataInfo) -> float:
    """Forward + backward FLOPs of one training step per image (convolutions and matrix products)."""
    from torch.utils.flop_counter import FlopCounterMode

    torch.manual_seed(0)
    model = ContextEncoder.from_config(config, info)
    images = torch.zeros(2, 3, *info.input_size)
    masks = make_masks(config.mask, 2, *info.input_size, generator=torch.Generator().manual_seed(0))
    counter = FlopCounterMode(display=False)
    with counter:
        output, _ = model.reconstruct(images, masks)
        masked_l2(output, images, masks).backward()
    return counter.get_total_flops() / 2


def endless(batches: Callable[[int], Iterator[Any]]) -> Iterator[Any]:
    epoch = 0
    while True:
        yield from batches(epoch)
        epoch += 1


# ----------------------------------------------------------------------------------------- the paths


def fast_path(config: Config, split: Any, info: DataInfo, run_dir: Path) -> tuple[Callable[[int], torch.Tensor], dict]:
    """The training step of ``ssl-ctx pretrain``: the Trainer's device, precision, memory format and compile."""
    trainer = Trainer(config, run_dir)
    torch.manual_seed(0)
    task = trainer.prepare(ContextEncoder.from_config(config, info))
    task.train()
    optimizers = task.configure_optimizers(config.optim)
    loader = loader_for(split, config.data, config.train, trainer.device, training=True)
    batches = endless(loader.batches)

    def step(number: int) -> torch.Tensor:
        with trainer.autocast():
            return task.train_step(next(batches), optimizers, number)["loss"]

    settings = {"precision": str(trainer.amp_dtype or torch.float32).replace("torch.", ""),
                "channels_last": trainer.channels_last, "compile": config.train.compile,
                "fused_optimizer": bool(optimizers["model"].defaults.get("fused")),
                "batches_preloaded_on_device": loader.preload, "trainer": trainer}
    return step, settings


class JpegFiles(torch.utils.data.Dataset):
    """Images decoded with PIL from a list of JPEG files, then torchvision transforms."""

    def __init__(self, files: list[Path], transform: Callable) -> None:
        self.files = files
        self.transform = transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> torch.Tensor:
        from PIL import Image

        with Image.open(self.files[index]) as image:
            return self.transform(image.convert("RGB"))


def reference_path(config: Config, files: list[Path], info: DataInfo, device: torch.device, num_workers: int,
                   ) -> tuple[Callable[[int], torch.Tensor], dict, Callable[[], None]]:
    """A plain loop: DataLoader + PIL + torchvision, fp32, CPU masks, torch.optim.Adam (default implementation)."""
    from torchvision import transforms

    size = info.input_size
    transform = transforms.Compose([transforms.Resize(size), transforms.RandomHorizontalFlip(), transforms.ToTensor(),
                                    transforms.Normalize([0.5] * 3, [0.5] * 3)])  # -> [-1, 1], as our models take
    loader = torch.utils.data.DataLoader(
        JpegFiles(files, transform), batch_size=config.train.batch_size, shuffle=True, drop_last=True,
        num_workers=num_workers, pin_memory=device.type == "cuda", persistent_workers=num_workers > 0)
    torch.manual_seed(0)
    model = ContextEncoder.from_config(config, info).to(device)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=config.optim.lr, betas=tuple(config.optim.betas))
    generator = torch.Generator().manual_seed(0)
    batches = endless(lambda epoch: iter(loader))

    def step(number: int) -> torch.Tensor:
        images = next(batches).to(device)
        masks = make_masks(config.mask, images.shape[0], *size, device="cpu", generator=generator).to(device)
        output, _ = model.reconstruct(images, masks)
        loss = masked_l2(output, images, masks)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss

    def close() -> None:
        batches.close()
        gc.collect()  # the DataLoader's workers stop when their iterator is collected

    return step, {"precision": "float32", "channels_last": False, "compile": False, "num_workers": num_workers,
                  "decoder": "PIL", "transforms": "Resize, RandomHorizontalFlip, ToTensor, Normalize"}, close


def reference_files(limit: int | None) -> list[Path]:
    root = extracted_root(DATASET)
    files = sorted((root / "train").glob("*/images/*.JPEG"))
    if not files:
        raise SystemExit(f"no training JPEGs under {root / 'train'}; is {DATASET} extracted correctly?")
    return files[:limit] if limit else files


# ------------------------------------------------------------------------------------------ the run


def run(args: argparse.Namespace, command: str) -> dict[str, Any]:
    device = resolve_device(args.device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = True  # both paths: fixed shapes
    before = machine()
    memory = PeakMemory(device)
    split = load_split(DATASET, "train", limit=args.limit)
    files = reference_files(args.limit)
    print(f"device: {describe_device(device)}; torch {torch.__version__}; batch {args.batch_size}; "
          f"{args.warmup} + {MEMORY_STEPS} warm-up steps per path, then {args.steps} interleaved pairs; "
          f"{len(split)} cached images, {len(files)} JPEGs; load average {load_text(before['load_average'])}",
          flush=True)
    results = []
    for size in args.sizes:
        config = model_config(size, args, device)
        info = DataInfo((size, size), tuple(split.mean_rgb))
        flops = flops_per_image(config, info)
        entry: dict[str, Any] = {"size": size, "encoder": config.model.encoder, "flops_per_image": flops}
        with tempfile.TemporaryDirectory() as run_dir:
            empty = memory.in_use_mib()  # flops_per_image ran the model: the libraries are loaded already
            fast_step, fast = fast_path(config, split, info, Path(run_dir))
            trainer = fast.pop("trainer")
            fast["peak_memory_mib"] = warm_up(fast_step, device, args.warmup, memory)
            held = memory.in_use_mib() - empty
            reference_step, reference, close = reference_path(copy.deepcopy(config), files, info, device,
                                                              args.num_workers)
            reference["peak_memory_mib"] = warm_up(reference_step, device, args.warmup, memory) - held
            reference["fast_path_held_mib"] = held
            timings = interleaved(fast_step, reference_step, args.steps, device, first=args.warmup + MEMORY_STEPS)
            close()
            trainer.close()
            del fast_step, reference_step, trainer
        summary = paired_summary(timings, args.batch_size)
        for path, settings in (("fast", fast), ("reference", reference)):
            entry[path] = {**summary[path], "step_times_ms": [1000 * seconds for seconds in timings[path]["step_s"]],
                           "mean_loss": timings[path]["mean_loss"], **settings,
                           "achieved_tflops": flops * summary[path]["images_per_s"] / 1e12}
        entry.update(speedup=summary["speedup"], speedup_iqr=summary["speedup_iqr"], pairs=summary["pairs"],
                     ratios=timings["ratios"])
        results.append(entry)
        low, high = entry["speedup_iqr"]
        print(f"  {size} px: fast {entry['fast']['images_per_s']:.1f} img/s, reference "
              f"{entry['reference']['images_per_s']:.1f} img/s (median steps), ratio {entry['speedup']:.2f}x "
              f"(IQR {low:.2f}-{high:.2f}, {entry['pairs']} pairs)", flush=True)
        if device.type == "cuda":
            torch.cuda.empty_cache()
    after = machine()
    print(f"load average {load_text(after['load_average'])} after the run", flush=True)
    peak, peak_basis = peak_tflops(device)
    return {
        "benchmark": "context-encoder pretext training step (random-region masks)",
        "command": command,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": describe_device(device),
        "device_peak_bf16_tflops": peak,
        "device_peak_basis": peak_basis,
        "config": str(args.config) if args.config else None,
        "cpu": before["cpu"],
        "cpu_count": before["cpu_count"],
        "cpus_usable": before["cpus_usable"],
        "torch_threads": before["torch_threads"],
        "load_average_before": before["load_average"],
        "load_average_after": after["load_average"],
        "torch": torch.__version__,
        "python": platform.python_version(),
        "batch_size": args.batch_size,
        "warmup_steps": args.warmup,
        "memory_steps": MEMORY_STEPS,
        "measured_steps": args.steps,
        "timing": "interleaved pairs, one fast and one reference step each (fast first on even pairs), each step "
                  "timed alone and synchronised at both ends; speedup = median over the pairs of reference time "
                  "/ fast time; images/s = batch / median step time",
        "compile": args.compile,
        "num_workers": args.num_workers,
        "dataset": DATASET,
        "cached_images": len(split),
        "memory": f"{memory.kind}, over {MEMORY_STEPS} steps after the warm-up; the reference's less what the "
                  f"fast path holds meanwhile (fast_path_held_mib)",
        "flops": "forward + backward per image, convolutions and matrix products (FlopCounterMode)",
        "results": results,
    }


def load_text(load: list[float]) -> str:
    return ", ".join(f"{value:.2f}" for value in load) + " (1, 5, 15 min)"


def format_table(report: dict[str, Any]) -> str:
    """A Markdown table of the report (also printed)."""
    peak = report["device_peak_bf16_tflops"]
    lines = ["| size | path | images/s (median step) | median step (ms) | peak memory (MiB) | GFLOP/image (fwd+bwd) "
             "| TFLOP/s" + (" | % of bf16 peak" if peak else "") + " | fast / reference (median of pairs) |",
             "|---|---|---:|---:|---:|---:|---:|" + ("---:|" if peak else "") + "---:|"]
    for entry in report["results"]:
        low, high = entry["speedup_iqr"]
        for path in ("fast", "reference"):
            values = entry[path]
            cells = [f"{entry['size']} px", f"{path} ({values['precision']})", f"{values['images_per_s']:.1f}",
                     f"{values['step_time_ms']:.1f}", f"{values['peak_memory_mib']:.0f}",
                     f"{entry['flops_per_image'] / 1e9:.2f}", f"{values['achieved_tflops']:.3f}"]
            if peak:
                cells.append(f"{100 * values['achieved_tflops'] / peak:.1f} %")
            cells.append(f"**{entry['speedup']:.2f}x** (IQR {low:.2f}–{high:.2f})" if path == "fast" else "")
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_header(report: dict[str, Any]) -> str:
    """The Markdown file's preamble: what was run, how the ratio was measured, and the machine's load."""
    pairs = report["measured_steps"]
    peak, basis = report.get("device_peak_bf16_tflops"), report.get("device_peak_basis") or "unknown"
    peak_text = f"{basis} = {peak:.3f} TFLOP/s" if peak else basis
    ratios = "; ".join(f"{entry['size']} px {entry['speedup']:.2f}x (IQR {entry['speedup_iqr'][0]:.2f}–"
                       f"{entry['speedup_iqr'][1]:.2f})" for entry in report["results"])
    return (f"{report['benchmark']}, {report['device']}, torch {report['torch']}, batch {report['batch_size']}, "
            f"{report['warmup_steps']} + {report['memory_steps']} warm-up steps per path, then {pairs} pairs of "
            f"steps ({report['date']}).\n\n"
            f"The fast / reference ratio is the median of {pairs} paired ratios (reference step time / fast step "
            f"time), measured interleaved step by step, one step of each path in turn, alternating which goes "
            f"first: {ratios}. Machine: {report['cpu']}, {report['cpu_count']} CPUs ({report['cpus_usable']} usable "
            f"by the benchmark), torch threads {report['torch_threads']}; load average "
            f"{load_text(report['load_average_before'])} before the run and "
            f"{load_text(report['load_average_after'])} after. bf16 peak assumed: {peak_text}.\n\n"
            f"Command: `{report['command']}`")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[227, 128, 64], choices=[227, 128, 96, 64, 32],
                        help="input sides; each uses the alexnet<size> encoder (default: 227 128 64)")
    parser.add_argument("--batch-size", type=int, default=64, help="images per step, both paths (default: 64)")
    parser.add_argument("--steps", type=int, default=50,
                        help="measured pairs of steps, one per path, per size (default: 50)")
    parser.add_argument("--warmup", type=int, default=10,
                        help="steps each path runs alone before timing (default: 10)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default: auto)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the fast path's model")
    parser.add_argument("--config", type=Path, default=None,
                        help="pretext config whose model options (width, norm, groups, ...) are benchmarked, e.g. "
                             "configs/pretext/quick.yaml (default: the package's defaults, the paper's network)")
    parser.add_argument("--num-workers", type=int, default=min(8, os.cpu_count() or 1),
                        help="DataLoader workers of the reference loop (default: min(8, CPU cores))")
    parser.add_argument("--limit", type=int, default=None,
                        help="use only this many training images (both paths; default: all 40,000 of the set)")
    parser.add_argument("--output", type=Path, default=None,
                        help="JSON file (default: benchmarks/results/throughput-<device>.json)")
    parser.add_argument("--markdown", type=Path, default=None, help="also write the table to this Markdown file")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.warmup < 0:
        parser.error("--steps must be at least 1 and --warmup at least 0")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    report = run(args, " ".join(["python", "benchmarks/throughput.py", *argv]))
    table = format_table(report)
    print(table)
    output = args.output or RESULTS / f"throughput-{device_slug(resolve_device(args.device))}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {output}")
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(f"{format_header(report)}\n\n{table}\n")
        print(f"wrote {args.markdown}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
