"""`ssl-ctx eval-inpaint CONFIG`: the paper's inpainting table (mean L1, mean L2, PSNR) on held-out images.

Rows: the baselines of ``inpaint.baselines`` (``ssl_ctx.inpaint.baselines``) and every trained model of
``inpaint.checkpoints`` (row name -> checkpoint path). Columns: for each mask of ``inpaint.masks`` the three
metrics of ``ssl_ctx.inpaint.metrics`` (over the hole, pixel values in [0, 1], per image then averaged).

* Images: ``data.dataset`` / ``data.eval_split`` (CamVid test: 233 street scenes; any ``imagefolder:<path>``
  works), the first ``inpaint.num_images`` of them (all when null), resized by the data layer to
  ``inpaint.image_size`` square (bilinear, aspect ratio not kept).
* Masks, one fixed mask per image:
  ``central``: the central square of ``mask.central_fraction`` of the side less the ``model.overlap`` border on
  each side: 64 - 2·4 = 56 px at 128 px, the hole the released ``test.lua`` fills and pastes for the 128-px
  model (whose prediction covers the 4-px border of known context around it);
  ``random_block`` / ``random_region``: ``ssl_ctx.masks`` with the config's ``mask`` settings, drawn for all
  images at once from a generator seeded with ``train.seed`` (+ 1 for blocks, + 2 for regions).
* Every row sees the same masked images. The 128-px centre model answers only the central mask (its hole is
  fixed); its block/region cells are left empty, with a note. Full-image ``context_encoder`` checkpoints answer
  every mask (their input is resized to the model's resolution, see ``ssl_ctx.inpaint.model``).
* Nearest-neighbour inpainting searches ``data.train_split`` of the same dataset at the same size.

Writes into ``<output_dir>/<name>/``: ``inpainting_table.md`` (with the command that made it),
``inpainting_table.csv`` (one line per row x mask x region; ``region=image`` repeats the metrics over every
pixel), ``per_image.csv``, ``inpainting_grid.png`` (masked input | each checkpoint | original, central mask, 8 images spread over the set),
``inpainting_grid_all.png`` (every row), ``config.yaml`` and ``record.json``.
"""
from __future__ import annotations

import csv
import dataclasses
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw

from ssl_ctx.config import Config, save_config
from ssl_ctx.errors import UserError
from ssl_ctx.inpaint.baselines import BASELINES, Inpainter, build_baseline
from ssl_ctx.inpaint.metrics import MetricAccumulator, to_unit
from ssl_ctx.inpaint.model import CheckpointInpainter, load_pretext_model, resize_float, to_uint8
from ssl_ctx.masks import HOLE_TYPES, MASK_TYPES, central_mask, mask_type

MASK_SEED_OFFSETS = {"central": 0, "random_block": 1, "random_region": 2}
GRID_IMAGES = 8

# The paper's inpainting table (Paris StreetView, 100 held-out images), for reference beside ours.
PAPER_ROWS = [
    ("NN-inpainting, HOG features", 19.92, 6.92, 12.79),
    ("NN-inpainting, context-encoder features", 15.10, 4.30, 14.70),
    ("Context encoder, joint loss", 9.37, 1.96, 18.58),
]


# ------------------------------------------------------------------------------------------- inputs


def _split_images(dataset: str, split: str, size: int, limit: int | None = None) -> np.ndarray:
    from ssl_ctx.data import load_split

    data = load_split(dataset, split, size=(size, size))
    images = np.asarray(data.images[:limit] if limit else data.images)
    if images.shape[1:3] != (size, size):  # an imagefolder cache of another size, say
        images = np.stack([to_uint8(resize_float(im.astype(np.float32) / 255.0, size, size)) for im in images])
    return images


def evaluation_images(config: Config) -> np.ndarray:
    """uint8 ``(N, S, S, 3)``: the held-out images of ``config.data`` at ``inpaint.image_size``."""
    images = _split_images(config.data.dataset, config.data.eval_split, config.inpaint.image_size,
                           config.inpaint.num_images)
    if len(images) == 0:
        raise UserError(f"{config.data.dataset}/{config.data.eval_split} holds no images to evaluate")
    return images


def evaluation_masks(config: Config, count: int, size: int) -> dict[str, np.ndarray]:
    """Mask kind -> bool ``(N, S, S)``, one fixed mask per image (see the module docstring)."""
    from ssl_ctx.masks import make_masks

    masks = {}
    for kind in config.inpaint.masks:
        mask_type(kind, HOLE_TYPES, "inpaint.masks entry")
        if kind == "central":  # the centre model's hole: the central square less its overlap border
            masks[kind] = central_mask(count, size, size, config.mask.central_fraction,
                                       border=config.model.overlap)[:, 0].numpy()
            continue
        generator = torch.Generator().manual_seed(config.train.seed + MASK_SEED_OFFSETS[kind])
        mask_config = dataclasses.replace(config.mask, type=kind, per_sample=True)
        masks[kind] = make_masks(mask_config, count, size, size, "cpu", generator)[:, 0].numpy()
    return masks


def build_rows(config: Config, device: torch.device) -> dict[str, tuple[Inpainter, str]]:
    """Row name -> (inpainter, description)."""
    rows: dict[str, tuple[Inpainter, str]] = {}
    search = None
    for name in config.inpaint.baselines:
        if name not in BASELINES:
            BASELINES.get(name)  # raises the UserError that lists the known names
        if name == "nearest_neighbour" and search is None:
            search = _split_images(config.data.dataset, config.data.train_split, config.inpaint.image_size,
                                   config.data.limit)
        inpainter = build_baseline(name, search_images=search)
        rows[name] = (inpainter, "baseline: " + (type(inpainter).__doc__ or name).strip().splitlines()[0])
    for name, path in config.inpaint.checkpoints.items():
        if name in rows:
            raise UserError(f"inpaint.checkpoints row '{name}' has the name of a baseline; rename it")
        task, task_config = load_pretext_model(path, device)
        rows[name] = (CheckpointInpainter(task), f"{task_config.method.name} checkpoint {path}")
    return rows


# ------------------------------------------------------------------------------------------ running


def run_eval_inpaint(config: Config) -> dict[str, Any]:
    """Evaluate every row on every mask; write the table, CSVs, grids and record; return the summary rows."""
    from ssl_ctx.engine.device import resolve_device
    from ssl_ctx.results.records import write_record

    started = time.perf_counter()
    device = resolve_device(config.train.device)
    run_dir = config.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(config, run_dir / "config.yaml")
    images = evaluation_images(config)
    count, size = len(images), images.shape[1]
    masks = evaluation_masks(config, count, size)
    rows = build_rows(config, device)
    target = to_unit(images)

    results: list[dict[str, Any]] = []
    per_image: list[dict[str, Any]] = []
    outputs: dict[tuple[str, str], np.ndarray] = {}
    for row, (inpainter, description) in rows.items():
        for kind, mask in masks.items():
            if isinstance(inpainter, CheckpointInpainter) and not inpainter.supports(kind):
                results.append({"method": row, "mask": kind, "region": "hole", "note": "centre model: central hole only"})
                continue
            tick = time.perf_counter()
            filled = inpainter(images, mask)
            seconds = time.perf_counter() - tick
            if not np.array_equal(filled[~mask], images[~mask]):
                raise RuntimeError(f"{row} changed pixels outside the hole")  # a bug, never the user's input
            outputs[(row, kind)] = filled
            prediction = to_unit(filled)
            for region in ("hole", "image"):
                accumulator = MetricAccumulator(region, config.inpaint.psnr_cap)
                accumulator.update(prediction, target, mask)
                results.append({"method": row, "mask": kind, "region": region, **accumulator.summary(),
                                "seconds": round(seconds, 3), "note": ""})
                if region == "hole":
                    values = accumulator.per_image()
                    per_image += [{"method": row, "mask": kind, "image": i, "l1": float(values["l1"][i]),
                                   "l2": float(values["l2"][i]), "psnr": float(values["psnr"][i])}
                                  for i in range(count)]
            print(f"{row:>20s} {kind:>13s}: " + ", ".join(
                f"{k}={v:.4g}" for k, v in results[-2].items() if k in ("l1_percent", "l2_percent", "psnr_db")
            ) + f" ({seconds:.1f} s)")

    command = command_line()
    files = {
        "table_md": write_markdown(run_dir / "inpainting_table.md", results, rows, config, count, size, command),
        "table_csv": write_csv(run_dir / "inpainting_table.csv", results),
        "per_image_csv": write_csv(run_dir / "per_image.csv", per_image),
    }
    checkpoint_rows = [r for r, (inp, _) in rows.items() if isinstance(inp, CheckpointInpainter)]
    grid_kind = "central" if "central" in masks else next(iter(masks))
    files["grid"] = write_grid(run_dir / "inpainting_grid.png", images, masks[grid_kind], outputs, checkpoint_rows,
                               grid_kind)
    files["grid_all"] = write_grid(run_dir / "inpainting_grid_all.png", images, masks[grid_kind], outputs,
                                   list(rows), grid_kind)
    metrics = {f"{r['method']}/{r['mask']}/{key}": r[key] for r in results if r["region"] == "hole"
               for key in ("l1_percent", "l2_percent", "psnr_db") if key in r}
    write_record(run_dir, "inpaint", metrics, config, time.perf_counter() - started, device,
                 extra={"command": command, "images": count, "image_size": size,
                        "files": {k: str(v) for k, v in files.items()}})
    print(f"table: {files['table_md']}\ngrid: {files['grid']}")
    return {"results": results, "files": files}


def command_line() -> str:
    """The command that is running, as a user would type it (``ssl-ctx ...`` for the console script)."""
    argv = list(sys.argv)
    if argv and Path(argv[0]).name in ("ssl-ctx", "__main__.py", "-c"):
        argv[0] = "ssl-ctx"
    return shlex.join(argv)


# ------------------------------------------------------------------------------------------ writing


def _cell(result: dict[str, Any], key: str, digits: int) -> str:
    return f"{result[key]:.{digits}f}" if key in result else "—"


def write_markdown(path: Path, results: list[dict[str, Any]], rows: dict[str, tuple[Inpainter, str]],
                   config: Config, count: int, size: int, command: str) -> Path:
    kinds = list(dict.fromkeys(r["mask"] for r in results))
    hole = {(r["method"], r["mask"]): r for r in results if r["region"] == "hole"}
    header = ["method"] + [f"{MASK_TYPES[k].title} {m}" for k in kinds for m in ("L1 %", "L2 %", "PSNR dB")]
    lines = [
        f"# Inpainting on {config.data.dataset} / {config.data.eval_split}",
        "",
        f"{count} held-out images at {size}x{size} px; one fixed mask per image (seed {config.train.seed}).",
        "Mean L1 and mean L2 (mean squared error) over the hole's pixels on [0, 1], in percent; PSNR in dB per "
        f"image (capped at {config.inpaint.psnr_cap:g} dB), then averaged over images. Lower L1/L2 and higher "
        "PSNR are better. Definitions: `ssl_ctx/inpaint/metrics.py`.",
        "",
        "Command:",
        "",
        "```",
        command,
        "```",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    notes = set()
    for row in rows:
        cells = [row]
        for kind in kinds:
            result = hole.get((row, kind), {})
            if result.get("note"):
                notes.add(f"{row}: {result['note']} (empty cells)")
            cells += [_cell(result, "l1_percent", 2), _cell(result, "l2_percent", 2), _cell(result, "psnr_db", 2)]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Rows:", ""]
    lines += [f"- `{row}`: {description}" for row, (_, description) in rows.items()]
    if notes:
        lines += ["", "Notes:", ""] + [f"- {note}" for note in sorted(notes)]
    lines += ["", "Seconds per row and mask (all images):", "",
              "| method | " + " | ".join(MASK_TYPES[k].title for k in kinds) + " |",
              "|---|" + "---|" * len(kinds)]
    for row in rows:
        lines.append(f"| {row} | " + " | ".join(
            f"{hole[(row, k)]['seconds']:.1f}" if "seconds" in hole.get((row, k), {}) else "—" for k in kinds) + " |")
    lines += ["", "The paper's table for reference (Paris StreetView, 100 held-out images, central hole; "
              "not the same images):", "", "| method | L1 % | L2 % | PSNR dB |", "|---|---|---|---|"]
    lines += [f"| {name} | {l1:.2f} | {l2:.2f} | {psnr:.2f} |" for name, l1, l2, psnr in PAPER_ROWS]
    path.write_text("\n".join(lines) + "\n")
    return path


def write_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    fields = list(dict.fromkeys(key for row in rows for key in row))
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_grid(path: Path, images: np.ndarray, mask: np.ndarray, outputs: dict[tuple[str, str], np.ndarray],
               rows: list[str], kind: str, count: int = GRID_IMAGES, scale: int = 2) -> Path:
    """Columns: masked input (hole white) | each row's output | original, for ``count`` images spread evenly
    over the evaluated ones (consecutive video frames look alike)."""
    count = min(count, len(images))
    pick = np.unique(np.linspace(0, len(images) - 1, count).round().astype(int))
    count = len(pick)
    columns = [("masked input", np.where(mask[pick, ..., None], 255, images[pick]).astype(np.uint8))]
    columns += [(row, outputs[(row, kind)][pick]) for row in rows if (row, kind) in outputs]
    columns.append(("original", images[pick]))
    size = images.shape[1] * scale
    gap, header = 4, 18
    width = len(columns) * size + (len(columns) - 1) * gap
    height = header + count * size + (count - 1) * gap
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    for c, (title, column) in enumerate(columns):
        x = c * (size + gap)
        draw.text((x + 4, 3), title, fill="black")
        for r in range(count):
            tile = Image.fromarray(column[r]).resize((size, size), Image.Resampling.NEAREST)
            canvas.paste(tile, (x, header + r * (size + gap)))
    canvas.save(path)
    return path
