"""What of a bench's records must not change when the code is reorganised, how close a computed number must stay,
and the file that holds them.

    python tests/records_golden.py write <output_dir>/bench-golden   write the golden file from a bench's records
    python tests/records_golden.py spread [--keep DIR]               run the golden bench under other CPUs' kernels
                                                                     and print each tolerance next to its spread

Everything in a record is compared exactly (structure, strings, integers, settings and their hashes, which cells
ran, the ridge penalty each probe chose) except the numbers a CPU computes, which :data:`TOLERANCES` lists by
field. A field a tolerance names ``None`` is not compared: it is a handful of near-equal scores at this scale.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
GOLDEN = Path(__file__).parent / "golden" / "bench_golden_records.json"
CONFIG = "tests/configs/bench_golden.yaml"
# Fields that describe when, where and how fast a run went rather than what it computed.
VOLATILE = {"wall_time_s", "finished_at", "git_commit", "packages", "device", "checkpoint"}
VOLATILE_METRICS = {"train_wall_time_s", "train_images_per_second"}


@dataclass(frozen=True)
class Tolerance:
    """Fields whose path matches ``pattern`` agree when ``|a - b| <= relative * |b| + absolute``; ``None``: not
    compared. ``measured``: the largest difference (in the same terms) between the kernel paths of
    :data:`KERNEL_PATHS` when the tolerance was set; the tolerance leaves about 10x, as the spread between an Intel
    Xeon and an AMD EPYC was up to 3x the emulated one (tests/README.md)."""

    name: str
    pattern: str
    relative: float | None
    absolute: float
    measured: str


PROBE = r"^/probe/{}/[^/]+/seed\d+/"  # a probe of tests/configs/bench_golden.yaml, by name
TOLERANCES = (
    Tolerance("pretext losses", r"^/pretext/[^/]+/seed\d+/(history\[\d+\]|metrics)/(loss\w*|eval_(?!top1)\w+)$",
              1e-5, 0.0, "5.4e-7 relative (supervised eval_cross_entropy)"),
    Tolerance("probe training losses", PROBE.format(r"\w+") + r"metrics/loss(_classifier|_objectness|_rpn_box_reg)?$",
              1.5e-2, 0.0, "1.4e-3 relative (supervised detection loss_classifier)"),
    Tolerance("ridge scores", PROBE.format("ridge") + r"metrics/top1@\w+$", 0.0, 0.04,
              "4.0e-3 absolute (2 of 500 images, supervised conv5)"),
    Tolerance("frozen segmentation scores", PROBE.format("segmentation_ridge") +
              r"metrics/(miou|pixel_accuracy)$", 0.0, 3e-3, "3.3e-4 absolute (supervised miou)"),
    Tolerance("trained-network scores", r"^/(pretext/[^/]+|probe/(finetune|segmentation_finetune)/[^/]+)/seed\d+/"
              r"metrics/(top1|eval_top1|batch_\w+|miou|pixel_accuracy)$", 0.0, 2e-2,
              "2.0e-3 absolute (1 of 500 images)"),
    # After one SGD step a detector's mAP is ~1e-4 (a few boxes among near-equal scores: 87 % apart between kernel
    # paths, autoencoder map50), and its box-regression loss sums over the few proposals that match a box; the
    # probe's code is held by the losses above, the metric by tests/test_probe_metrics.py. A class's IoU or AP
    # counts a few dozen pixels or boxes (their means are compared). The held-out scores of each ridge penalty are
    # counts on ~50 images or ~8 facades; the penalty they choose is compared exactly.
    Tolerance("counts too small to compare", PROBE.format(r"\w+") +
              r"(metrics/(map\w*|class_ap50\[\d+\]|class_iou\[\d+\]|loss_box_reg)|probe/.*holdout_\w+/.+)$",
              None, 0.0, "87 % relative"),
)

# Kernels another CPU would run, forced on this one (tests/README.md).
KERNEL_PATHS = {
    "oneDNN AVX2": {"ONEDNN_MAX_CPU_ISA": "AVX2"},
    "oneDNN AVX512_CORE": {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE"},
    "MKL compatible": {"MKL_CBWR": "COMPATIBLE"},
    "ATen AVX2": {"ATEN_CPU_CAPABILITY": "avx2"},
}


def tolerance_of(path: str) -> Tolerance | None:
    """The first tolerance whose pattern matches ``path``; None: the field must be equal."""
    return next((t for t in TOLERANCES if re.search(t.pattern, path)), None)


def _relative(value: Any, root: str) -> Any:
    if isinstance(value, str):  # feature folders are named by a hash that includes the data cache's path
        return re.sub(r"features/[0-9a-f]{20}", "features/<key>", value.replace(root, "<bench>"))
    if isinstance(value, dict):
        return {key: _relative(item, root) for key, item in value.items()}
    if isinstance(value, list):
        return [_relative(item, root) for item in value]
    return value


def normalised_record(path: Path, bench_dir: Path) -> dict[str, Any]:
    record = json.loads(path.read_text())
    record = {key: value for key, value in record.items() if key not in VOLATILE}
    record["metrics"] = {key: value for key, value in record["metrics"].items() if key not in VOLATILE_METRICS}
    return _relative(record, str(bench_dir.parent.resolve()))


def normalised_records(bench_dir: Path) -> dict[str, Any]:
    """Cell folder (relative) -> its record less the volatile fields, folder paths made relative."""
    return {str(path.parent.relative_to(bench_dir)): normalised_record(path, bench_dir)
            for path in sorted(bench_dir.rglob("record.json"))}


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def compare(actual: Any, expected: Any, where: str = "") -> list[str]:
    """Where ``actual`` differs from ``expected``: the same structure, and every value equal, but for the fields
    :data:`TOLERANCES` names (NaN equals NaN)."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        problems = [f"{where}/{key}: missing" for key in expected if key not in actual]
        problems += [f"{where}/{key}: unexpected" for key in actual if key not in expected]
        for key in expected.keys() & actual.keys():
            problems += compare(actual[key], expected[key], f"{where}/{key}")
        return problems
    if isinstance(expected, list) and isinstance(actual, list) and len(expected) == len(actual):
        return [problem for i, (a, e) in enumerate(zip(actual, expected)) for problem in compare(a, e, f"{where}[{i}]")]
    tolerance = tolerance_of(where) if isinstance(expected, float) and _number(actual) else None
    if tolerance is not None:
        if tolerance.relative is None:
            return []
        same = (math.isnan(actual) and math.isnan(expected)) or \
            abs(actual - expected) <= tolerance.relative * abs(expected) + tolerance.absolute
        return [] if same else [f"{where}: {actual!r} != {expected!r} ({tolerance.name})"]
    same = actual == expected or (isinstance(expected, float) and math.isnan(expected) and _number(actual)
                                  and math.isnan(actual))
    return [] if same and type(actual) is type(expected) else [f"{where}: {actual!r} != {expected!r}"]


def _leaves(value: Any, where: str = ""):
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _leaves(item, f"{where}/{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _leaves(item, f"{where}[{i}]")
    else:
        yield where, value


def spread(runs: dict[str, dict[str, Any]], reference: str) -> dict[str, tuple[float, float, str]]:
    """Tolerance name (or "exact") -> (largest relative difference, largest absolute difference, the field and run
    of the largest relative one) of every run against ``reference``, over the floats each class holds."""
    found: dict[str, tuple[float, float, str]] = {}
    base = dict(_leaves(runs[reference]))
    for name, records in runs.items():
        for where, value in _leaves(records):
            expected = base.get(where)
            if not (isinstance(expected, float) and _number(value)) or (math.isnan(expected) and math.isnan(value)):
                continue
            tolerance = tolerance_of(where)
            label = tolerance.name if tolerance else "exact"
            absolute = abs(value - expected)
            relative = absolute / max(abs(expected), abs(value)) if absolute else 0.0
            best = found.get(label, (0.0, 0.0, ""))
            found[label] = (max(best[0], relative), max(best[1], absolute),
                            f"{where} ({name})" if (relative, absolute) > best[:2] else best[2])
    return found


def _run_bench(output: Path, environment: dict[str, str]) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-m", "ssl_ctx", "bench", CONFIG, f"output_dir={output}"], cwd=REPO,
                          env={**os.environ, **environment}, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"the golden bench failed under {environment}:\n{done.stderr[-3000:]}")
    return normalised_records(output / "bench-golden")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    write = commands.add_parser("write", help="write the golden file from a bench folder's records")
    write.add_argument("bench_dir", type=Path)
    measure = commands.add_parser("spread", help="the golden bench under every kernel path of KERNEL_PATHS")
    measure.add_argument("--keep", type=Path, help="folder for the benches (default: a temporary one)")
    args = parser.parse_args(argv)
    if args.command == "write":
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps(normalised_records(args.bench_dir), indent=1, sort_keys=True) + "\n")
        print(f"wrote {GOLDEN}")
        return 0
    with tempfile.TemporaryDirectory() as scratch:
        root = args.keep or Path(scratch)
        runs = {name: _run_bench(root / name.replace(" ", "-"), environment)
                for name, environment in {"default": {}, **KERNEL_PATHS}.items()}
    found = spread(runs, "default")
    for tolerance in (*TOLERANCES, None):
        label = tolerance.name if tolerance else "exact"
        relative, absolute, where = found.get(label, (0.0, 0.0, ""))
        allowed = "not compared" if tolerance and tolerance.relative is None else \
            f"{tolerance.relative:g} rel + {tolerance.absolute:g} abs" if tolerance else "equal"
        when_set = f"  (when set: {tolerance.measured})" if tolerance else ""
        print(f"{label:28s} spread {relative:.2e} rel, {absolute:.2e} abs  allowed: {allowed}{when_set}  {where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
