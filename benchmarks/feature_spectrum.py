"""How many directions do an encoder's frozen features spread over? The spectrum of each layer's feature covariance.

A ridge read-out of 200 classes can only use what the features vary along. For each encoder and layer this reads the
pooled frozen features a classification or localisation probe cached (``features/<key>/<layer>.npy`` beside the
probed checkpoint, training split), standardises every feature as the ridge does, and reports the eigenvalues of
their correlation matrix as

- ``participation``: (Σλ)² / Σλ², the number of equally strong directions with the same spread (D when every
  direction carries the same variance, 1 when one dominates);
- ``dims90``: how many leading directions hold 90 % of the variance.

A layer whose participation falls far below a random encoder's has concentrated its variation on a few directions
(what a reconstruction objective may reward), leaving fewer for a linear classifier to separate classes along.
``--truncate K`` tests that reading: it also fits the probe's ridge classifier (the same penalties and held-out
split) on each layer's top-K principal directions only, and reports top-1 on the validation features; if an
encoder's advantage at a layer comes from spreading over more directions, it vanishes when every encoder keeps K.

    python benchmarks/feature_spectrum.py NAME=RUN_FOLDER ... [--truncate K] [--json out.json]

``RUN_FOLDER`` is a pretext run (or bench cell) folder whose ``features/`` a probe left (``probe.keep_features``).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from ssl_ctx.config import ProbeConfig
from ssl_ctx.data import load_split
from ssl_ctx.probes.linear_models import feature_moments, fit_ridge_classifier, stratified_holdout

LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5")


def principal_directions(features: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(mean, scale, eigenvalues, eigenvectors) of ``features (N, D)`` standardised as the ridge probe does
    (:func:`~ssl_ctx.probes.linear_models.feature_moments`): the correlation matrix's eigenvalues in decreasing
    order, clipped at 0, and its eigenvectors as the columns in the same order."""
    mean, scale = (moment.numpy() for moment in feature_moments(features))
    standardised = (np.asarray(features, dtype=np.float64) - mean) / scale
    values, vectors = np.linalg.eigh(standardised.T @ standardised / len(standardised))
    return mean, scale, values.clip(min=0)[::-1], vectors[:, ::-1]


def spectrum(eigenvalues: np.ndarray) -> dict[str, float]:
    """Participation ratio and 90 %-variance dimension of decreasing ``eigenvalues``."""
    share = eigenvalues.cumsum() / eigenvalues.sum()
    return {"dims": int(len(eigenvalues)), "participation": float(eigenvalues.sum() ** 2 / (eigenvalues ** 2).sum()),
            "dims90": int((share < 0.9).sum()) + 1}


def cached_split(run: Path, split: str) -> tuple[Path, dict]:
    """The cached pooled feature folder of ``split`` under ``run/features`` (the largest) and its meta."""
    found = []
    for meta in sorted((run / "features").glob("*/meta.json")):
        info = json.loads(meta.read_text())
        if info.get("split") == split and info["spec"]["pools"][0] is not None:
            found.append((info["images"], str(meta.parent), info))
    if not found:
        sys.exit(f"feature_spectrum: no cached pooled {split} features under {run / 'features'}; run a "
                 "classification probe with probe.keep_features=true first")
    images, folder, info = max(found)
    return Path(folder), info


def split_labels(info: dict) -> np.ndarray:
    """The labels of the images a feature cache holds, in its order: the whole split, or the first ``images`` of
    it as ``data.limit`` takes them (a limited split is cached on its own, so ask for the same one)."""
    split = load_split(info["dataset"], info["split"])
    return split.labels if len(split) == info["images"] else load_split(
        info["dataset"], info["split"], limit=info["images"]).labels


def truncated_top1(directions: tuple[np.ndarray, ...], train: np.ndarray, evaluation: np.ndarray,
                   train_labels: np.ndarray, eval_labels: np.ndarray, keep: int) -> float:
    """Top-1 of the probe's ridge classifier (its penalties and held-out split) on the top-``keep`` principal
    ``directions`` of the standardised training features, applied alike to the evaluation features."""
    mean, scale, _, vectors = directions
    basis = vectors[:, :keep]
    train_part, eval_part = (((np.asarray(x, dtype=np.float64) - mean) / scale) @ basis for x in (train, evaluation))
    probe = ProbeConfig()
    classes = int(max(train_labels.max(), eval_labels.max())) + 1
    fit = fit_ridge_classifier(train_part, train_labels, classes, probe.ridge_alphas,
                               stratified_holdout(train_labels, probe.holdout_fraction, probe.holdout_seed))
    return float((fit.predict(eval_part) == eval_labels).mean())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", metavar="NAME=RUN_FOLDER")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    parser.add_argument("--truncate", type=int, metavar="K",
                        help="also report top-1 of the ridge probe on each layer's top-K principal directions")
    args = parser.parse_args(argv)
    report = {}
    for item in args.runs:
        name, _, folder = item.partition("=")
        train_folder, train_info = cached_split(Path(folder), "train")
        report[name] = {"features": str(train_folder)}
        if args.truncate:
            eval_folder, eval_info = cached_split(Path(folder), "val")
            labels = [split_labels(info) for info in (train_info, eval_info)]
        for layer in LAYERS:
            path = train_folder / f"{layer}.npy"
            if not path.exists():
                continue
            train = np.load(path, mmap_mode="r")
            directions = principal_directions(train)
            report[name][layer] = spectrum(directions[2])
            if args.truncate:
                report[name][layer][f"top1_top{args.truncate}"] = truncated_top1(
                    directions, train, np.load(eval_folder / f"{layer}.npy", mmap_mode="r"), *labels, args.truncate)
    print("| encoder | " + " | ".join(f"{layer} PR / dims90 / D" for layer in LAYERS) + " |")
    print("|---|" + "---:|" * len(LAYERS))
    for name, layers in report.items():
        cells = [f"{layers[layer]['participation']:.1f} / {layers[layer]['dims90']} / {layers[layer]['dims']}"
                 if layer in layers else "" for layer in LAYERS]
        print(f"| {name} | " + " | ".join(cells) + " |")
    if args.truncate:
        print(f"\ntop-1 % of the ridge probe on the top {args.truncate} principal directions of each layer:")
        print("| encoder | " + " | ".join(LAYERS) + " |")
        print("|---|" + "---:|" * len(LAYERS))
        key = f"top1_top{args.truncate}"
        for name, layers in report.items():
            print(f"| {name} | " + " | ".join(f"{100 * layers[layer][key]:.1f}" if key in layers.get(layer, {})
                                              else "" for layer in LAYERS) + " |")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
