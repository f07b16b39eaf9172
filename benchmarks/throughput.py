"""Throughput of the context encoder's pretext training step: our fast path against a plain PyTorch loop.

For each input size (227, 128 and 64 px: the alexnet227/alexnet128/alexnet64 encoders, random-region masks,
the same batch) it measures, in one run and on one device,

(a) the fast path, exactly as ``ssl-ctx pretrain`` trains: ``CachedBatchLoader`` serving the prepared uint8
    cache (kept on the GPU when it fits), conversion, resize and flip on the device, masks made on the device,
    bf16 autocast and channels_last on CUDA (the config's ``auto`` defaults), fused Adam on CUDA, optionally
    ``torch.compile`` (``--compile``), and no host-device synchronisation inside a step;
(b) a plain reference loop: a standard ``torch.utils.data.DataLoader`` whose workers decode the extracted
    Tiny-ImageNet JPEGs with PIL and apply torchvision's Resize, RandomHorizontalFlip, ToTensor and Normalize;
    the same model in fp32 and the default memory format, masks made per batch on the CPU and then moved, and
    ``torch.optim.Adam`` with its default implementation;

and reports images/s, time per step, peak memory (CUDA: ``max_memory_allocated``; CPU: the peak resident set
of this process, DataLoader workers not included), the model's FLOPs per image for forward + backward
(``torch.utils.flop_counter.FlopCounterMode``: convolutions and matrix products) and the achieved TFLOP/s,
then the fast/reference ratio. It prints a table and writes a JSON file (see benchmarks/README.md).

    python benchmarks/throughput.py --sizes 227 128 64 --batch-size 64 --steps 50 --warmup 10
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import datetime
import gc
import json
import os
import platform
import re
import resource
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
from ssl_ctx.engine.device import resolve_device
from ssl_ctx.engine.trainer import Trainer
from ssl_ctx.masks import make_masks
from ssl_ctx.pretext.base import DataInfo
from ssl_ctx.pretext.context_encoder import ContextEncoder
from ssl_ctx.pretext.losses import masked_l2

DATASET = "tiny-imagenet-200"
RESULTS = Path(__file__).resolve().parent / "results"
# Dense (no sparsity) bf16 tensor-core peaks from NVIDIA's data sheets, TFLOP/s; matched on the device name.
GPU_PEAK_BF16_TFLOPS = (("H200", 989.4), ("H100 PCIe", 756.0), ("H100", 989.4), ("A100", 312.0))


# ------------------------------------------------------------------------------------------- helpers


def device_description(device: torch.device) -> str:
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return (f"cuda: {props.name}, {props.total_memory / 2**30:.0f} GiB, {props.multi_processor_count} SMs, "
                f"CUDA {torch.version.cuda}")
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        found = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.MULTILINE)
        model = found.group(1).strip() if found else model
    return f"cpu: {model}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}"


def device_slug(device: torch.device) -> str:
    if device.type != "cuda":
        return device.type
    return re.sub(r"[^a-z0-9]+", "-", torch.cuda.get_device_name(device).lower()).strip("-")


def peak_tflops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in GPU_PEAK_BF16_TFLOPS if key in name), None)


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
        with contextlib.suppress(OSError, AttributeError):
            found = re.search(r"^VmHWM:\s*(\d+) kB", Path("/proc/self/status").read_text(), re.MULTILINE)
            if found:
                return int(found.group(1)) / 1024
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def measure(step: Callable[[int], torch.Tensor], device: torch.device, warmup: int, steps: int,
            batch_size: int, memory: PeakMemory) -> dict[str, float]:
    """Run ``warmup`` then ``steps`` steps; time only the latter (synchronised at both ends)."""
    total = torch.zeros((), device=device)
    for number in range(warmup):
        total += step(number).detach().float()
    synchronize(device)
    memory.reset()
    started = time.perf_counter()
    for number in range(warmup, warmup + steps):
        total += step(number).detach().float()
    synchronize(device)
    elapsed = time.perf_counter() - started
    if not torch.isfinite(total):
        raise RuntimeError("the loss became non-finite during the benchmark")
    return {"images_per_s": batch_size * steps / elapsed, "step_time_ms": 1000 * elapsed / steps,
            "peak_memory_mib": memory.read_mib(), "mean_loss": float(total) / (warmup + steps)}


def model_config(size: int, args: argparse.Namespace, device: torch.device) -> Config:
    return load_config(None, [
        f"model.encoder=alexnet{size}", f"data.input_size={size}", "mask.type=random_region",
        f"train.batch_size={args.batch_size}", f"train.device={device}", f"train.compile={str(args.compile).lower()}",
        "train.progress=false",
    ])


def flops_per_image(config: Config, info: DataInfo) -> float:
    """Forward + backward FLOPs of one training step per image (convolutions and matrix products)."""
    from torch.utils.flop_counter import FlopCounterMode

    torch.manual_seed(0)
    model = ContextEncoder(config, info)
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
    task = trainer.prepare(ContextEncoder(config, info))
    task.train()
    optimizers = task.configure_optimizers(config.optim)
    loader = loader_for(split, config, trainer.device, train=True)
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
    with contextlib.suppress(ImportError):  # torchvision wheels built for CUDA need this next to a CPU torch
        from ssl_ctx.torchvision_compat import ensure_torchvision

        ensure_torchvision()
    from torchvision import transforms

    size = info.input_size
    transform = transforms.Compose([transforms.Resize(size), transforms.RandomHorizontalFlip(), transforms.ToTensor(),
                                    transforms.Normalize([0.5] * 3, [0.5] * 3)])  # -> [-1, 1], as our models take
    loader = torch.utils.data.DataLoader(
        JpegFiles(files, transform), batch_size=config.train.batch_size, shuffle=True, drop_last=True,
        num_workers=num_workers, pin_memory=device.type == "cuda", persistent_workers=num_workers > 0)
    torch.manual_seed(0)
    model = ContextEncoder(config, info).to(device)
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


def run(args: argparse.Namespace) -> dict[str, Any]:
    device = resolve_device(args.device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = True  # both paths: fixed shapes
    memory = PeakMemory(device)
    split = load_split(DATASET, "train", limit=args.limit)
    files = reference_files(args.limit)
    print(f"device: {device_description(device)}; torch {torch.__version__}; batch {args.batch_size}; "
          f"{args.warmup} warm-up + {args.steps} measured steps; {len(split)} cached images, {len(files)} JPEGs",
          flush=True)
    results = []
    for size in args.sizes:
        config = model_config(size, args, device)
        info = DataInfo((size, size), tuple(split.mean_rgb))
        flops = flops_per_image(config, info)
        entry: dict[str, Any] = {"size": size, "encoder": config.model.encoder, "flops_per_image": flops}
        with tempfile.TemporaryDirectory() as run_dir:
            step, settings = fast_path(config, split, info, Path(run_dir))
            trainer = settings.pop("trainer")
            entry["fast"] = {**measure(step, device, args.warmup, args.steps, args.batch_size, memory), **settings}
            trainer.close()
            del step, trainer
        reference_config = copy.deepcopy(config)
        step, settings, close = reference_path(reference_config, files, info, device, args.num_workers)
        entry["reference"] = {**measure(step, device, args.warmup, args.steps, args.batch_size, memory), **settings}
        close()
        del step
        for path in ("fast", "reference"):
            entry[path]["achieved_tflops"] = flops * entry[path]["images_per_s"] / 1e12
        entry["speedup"] = entry["fast"]["images_per_s"] / entry["reference"]["images_per_s"]
        results.append(entry)
        print(f"  {size} px: fast {entry['fast']['images_per_s']:.1f} img/s, reference "
              f"{entry['reference']['images_per_s']:.1f} img/s, ratio {entry['speedup']:.2f}x", flush=True)
        if device.type == "cuda":
            torch.cuda.empty_cache()
    peak = peak_tflops(device)
    return {
        "benchmark": "context-encoder pretext training step (random-region masks)",
        "command": " ".join(["python", *sys.argv]),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": device_description(device),
        "device_peak_bf16_tflops": peak,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "batch_size": args.batch_size,
        "warmup_steps": args.warmup,
        "measured_steps": args.steps,
        "compile": args.compile,
        "num_workers": args.num_workers,
        "dataset": DATASET,
        "cached_images": len(split),
        "memory": memory.kind,
        "flops": "forward + backward per image, convolutions and matrix products (FlopCounterMode)",
        "results": results,
    }


def format_table(report: dict[str, Any]) -> str:
    """A Markdown table of the report (also printed)."""
    peak = report["device_peak_bf16_tflops"]
    lines = ["| size | path | images/s | step (ms) | peak memory (MiB) | GFLOP/image (fwd+bwd) | TFLOP/s"
             + (" | % of bf16 peak" if peak else "") + " | fast / reference |",
             "|---|---|---:|---:|---:|---:|---:|" + ("---:|" if peak else "") + "---:|"]
    for entry in report["results"]:
        for path in ("fast", "reference"):
            values = entry[path]
            cells = [f"{entry['size']} px", f"{path} ({values['precision']})", f"{values['images_per_s']:.1f}",
                     f"{values['step_time_ms']:.1f}", f"{values['peak_memory_mib']:.0f}",
                     f"{entry['flops_per_image'] / 1e9:.2f}", f"{values['achieved_tflops']:.3f}"]
            if peak:
                cells.append(f"{100 * values['achieved_tflops'] / peak:.1f} %")
            cells.append(f"**{entry['speedup']:.2f}x**" if path == "fast" else "")
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[227, 128, 64], choices=[227, 128, 96, 64, 32],
                        help="input sides; each uses the alexnet<size> encoder (default: 227 128 64)")
    parser.add_argument("--batch-size", type=int, default=64, help="images per step, both paths (default: 64)")
    parser.add_argument("--steps", type=int, default=50, help="measured steps per path and size (default: 50)")
    parser.add_argument("--warmup", type=int, default=10, help="steps run before timing (default: 10)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default: auto)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the fast path's model")
    parser.add_argument("--num-workers", type=int, default=min(8, os.cpu_count() or 1),
                        help="DataLoader workers of the reference loop (default: min(8, CPU cores))")
    parser.add_argument("--limit", type=int, default=None,
                        help="use only this many training images (both paths; default: all 40,000 of the set)")
    parser.add_argument("--output", type=Path, default=None,
                        help="JSON file (default: benchmarks/results/throughput-<device>.json)")
    parser.add_argument("--markdown", type=Path, default=None, help="also write the table to this Markdown file")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    report = run(args)
    table = format_table(report)
    print(table)
    output = args.output or RESULTS / f"throughput-{device_slug(resolve_device(args.device))}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {output}")
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(f"{report['benchmark']}, {report['device']}, torch {report['torch']}, batch "
                                 f"{report['batch_size']}, {report['warmup_steps']} warm-up + "
                                 f"{report['measured_steps']} measured steps ({report['date']}).\n\n"
                                 f"Command: `{report['command']}`\n\n{table}\n")
        print(f"wrote {args.markdown}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
