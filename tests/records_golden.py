"""What of a bench's records must not change when the code is reorganised, and the file that holds it."""
from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

GOLDEN = Path(__file__).parent / "golden" / "bench_golden_records.json"
# Fields that describe when, where and how fast a run went rather than what it computed.
VOLATILE = {"wall_time_s", "finished_at", "git_commit", "packages", "device", "checkpoint"}
VOLATILE_METRICS = {"train_wall_time_s", "train_images_per_second"}


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


def compare(actual: Any, expected: Any, where: str = "") -> list[str]:
    """Where ``actual`` differs from ``expected``: equal structure and values, floats to 1e-6 relative (the
    rounding of another CPU's kernels), everything else exactly."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        problems = [f"{where}/{key}: missing" for key in expected if key not in actual]
        problems += [f"{where}/{key}: unexpected" for key in actual if key not in expected]
        for key in expected.keys() & actual.keys():
            problems += compare(actual[key], expected[key], f"{where}/{key}")
        return problems
    if isinstance(expected, list) and isinstance(actual, list) and len(expected) == len(actual):
        return [problem for i, (a, e) in enumerate(zip(actual, expected)) for problem in compare(a, e, f"{where}[{i}]")]
    if isinstance(expected, float) and isinstance(actual, (int, float)) and not isinstance(actual, bool):
        same = (math.isnan(actual) and math.isnan(expected)) or \
            abs(actual - expected) <= 1e-6 * max(abs(expected), abs(actual), 1e-12)
        return [] if same else [f"{where}: {actual!r} != {expected!r}"]
    return [] if actual == expected and type(actual) is type(expected) else [f"{where}: {actual!r} != {expected!r}"]


if __name__ == "__main__":  # python tests/records_golden.py <output_dir>/bench-golden: write the golden file
    import sys

    GOLDEN.parent.mkdir(exist_ok=True)
    GOLDEN.write_text(json.dumps(normalised_records(Path(sys.argv[1])), indent=1, sort_keys=True) + "\n")
    print(f"wrote {GOLDEN}")
