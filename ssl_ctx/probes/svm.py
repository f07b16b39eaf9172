"""VOC07 linear-SVM classification of frozen features, as VISSL runs it (Goyal et al., "Scaling and Benchmarking
Self-Supervised Visual Representation Learning", ICCV 2019; VISSL's ``svm_utils/svm_trainer.py`` with the settings
of its ``eval_*_transfer_voc07_svm.yaml``).

The protocol, setting by setting:

- features: float64, each row divided by its L2 norm + 1e-5 (:data:`NORM_EPSILON`), train and test alike;
- one binary SVM per class and per cost of :data:`VOC_SVM_COSTS`, scikit-learn's ``LinearSVC`` (liblinear):
  squared hinge loss, L2 penalty, the dual problem by coordinate descent, tolerance 1e-4, at most 2000
  iterations, an intercept (a constant feature of 1.0, penalised like a weight), class weights 2 for the
  positives and 1 for the negatives (:func:`linear_svc`);
- training labels per class: present -> positive; absent *and difficult* -> negative (VISSL keeps an image whose
  only instances are difficult as a negative when it trains, and leaves it out when it tests);
- the cost of each class: the highest mean average precision over 3-fold cross-validation on the training set
  (``cross_val_score``: stratified folds in file order, no shuffling; ``scoring="average_precision"``, scikit-learn's
  non-interpolated AP), the first in list order on a tie;
- that class's SVM, fitted on every training image at its cost, scores the test images; the benchmark number is
  :func:`~ssl_ctx.probes.metrics.multilabel_mean_ap` of those scores (difficult images left out, VOC's
  all-point AP).

scikit-learn does the fitting and the folds because that is what VISSL runs: the same liblinear solver, folds
and scorer give numbers comparable with the published VOC07 SVM tables, which a solver of our own would only
approximate (an unconverged dual coordinate descent at cost 1000 is part of the protocol).

Named departures, none of which changes what a converged fit computes:

- Reproducible fits. VISSL leaves ``LinearSVC``'s ``random_state`` unset, so liblinear's random order of dual
  coordinates is drawn from NumPy's global generator, and its threads share liblinear's one global generator;
  here every fit is seeded with ``seed`` and the fits run in separate processes (``workers``), so a result
  depends on the features, targets, costs and seed only, not on the number of workers.
- VISSL refits every cost on the whole training set and keeps the chosen one; here only the chosen cost is
  refitted (the same model, a quarter less work).
- Target encoding: VOC's own (1 present, -1 absent, 0 difficult only: its ``ImageSets/Main/<class>_*.txt``);
  VISSL's label files swap 0 and -1.

Numbers: every step before liblinear is float64 arithmetic that IEEE fixes bit for bit (float16 -> float64 is
exact; NumPy sums a row's squares pairwise in a fixed order whatever SIMD path it takes), and liblinear's dual
solver is plain C without BLAS, so the SVM weights, the cross-validated APs and the chosen costs are the same
bits on Intel and AMD CPUs. Only the scores of held-out and test images go through BLAS (OpenBLAS picks its
kernels per CPU), which moves them by ~1e-16 relative: an AP moves only if two images' scores tie that closely.
float32 would save nothing: liblinear converts its input to float64 anyway.
"""
from __future__ import annotations

import math
import numbers
import sys
import tempfile
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ssl_ctx.errors import UserError

# VISSL's VOC07 costs (configs/config/benchmark/linear_image_classification/voc07/*svm*.yaml).
VOC_SVM_COSTS = (0.01, 0.1, 1.0, 2.0, 5.0, 10.0, 15.0, 20.0, 50.0, 100.0, 1000.0)
CROSS_VALIDATION_FOLDS = 3
NORM_EPSILON = 1e-5  # added to each row's L2 norm before dividing by it

# Per-image class targets, VOC's encoding.
PRESENT, ABSENT, DIFFICULT = 1, -1, 0

_CHUNK = 4096  # rows converted to float64 at a time (a memory map is read piece by piece)


def linear_svc(cost: float, seed: int = 0) -> Any:
    """VISSL's per-class SVM at ``cost``: a ``LinearSVC`` with every setting of VISSL's trainer and VOC07 config
    (labels +1 / -1; the positives weigh 2), seeded with ``seed`` (VISSL leaves it unseeded)."""
    from sklearn.svm import LinearSVC

    return LinearSVC(C=cost, class_weight={1: 2, -1: 1}, intercept_scaling=1.0, fit_intercept=True, penalty="l2",
                     loss="squared_hinge", dual=True, tol=1e-4, max_iter=2000, random_state=seed)


def _normalise_rows(rows: np.ndarray) -> np.ndarray:
    """``(n, D)`` rows as float64, each divided by its L2 norm + :data:`NORM_EPSILON`."""
    rows = np.asarray(rows, dtype=np.float64)
    return rows / (np.linalg.norm(rows, axis=1) + NORM_EPSILON)[:, None]


def l2_normalised(features: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``(N, D)`` features (any float dtype, possibly a memory map) -> float64 rows of unit L2 norm, as VISSL's
    SVMs read them; written into ``out`` (for example a memory map for worker processes) when given."""
    out = np.empty(features.shape, dtype=np.float64) if out is None else out
    for start in range(0, len(features), _CHUNK):
        out[start:start + _CHUNK] = _normalise_rows(features[start:start + _CHUNK])
    return out


@dataclass
class SvmFit:
    """VISSL's per-class linear SVMs: ``scores = normalised(features) @ weight + bias``, one column per class."""

    costs: tuple[float, ...]  # the candidate costs, in the order given
    cv_ap: np.ndarray  # (K, C) float64: mean cross-validated AP (scikit-learn's) of class k at cost c
    chosen_cost: np.ndarray  # (K,) float64: the cost of each class's SVM
    weight: np.ndarray  # (D, K) float64
    bias: np.ndarray  # (K,) float64
    iterations: np.ndarray  # (K,) int: liblinear's iterations for each class's SVM (2000: stopped by the limit)
    folds: int
    seed: int

    def decision_function(self, features: np.ndarray) -> np.ndarray:
        """``(M, K)`` float64 scores of ``(M, D)`` features (normalised as the training features were)."""
        if features.ndim != 2 or features.shape[1] != len(self.weight):
            raise UserError(f"the SVMs score features (M, {len(self.weight)}) like those they were fitted on; got "
                            f"{tuple(features.shape)}")
        scores = np.empty((len(features), self.weight.shape[1]), dtype=np.float64)
        for start in range(0, len(features), _CHUNK):
            scores[start:start + _CHUNK] = _normalise_rows(features[start:start + _CHUNK]) @ self.weight + self.bias
        return scores

    def summary(self) -> dict[str, Any]:
        """What a run record keeps of the fit: the costs chosen, the cross-validated APs they were chosen by
        (cost -> one AP per class) and the iterations each class's SVM took."""
        return {"chosen_cost": self.chosen_cost.tolist(),
                "cv_ap": {f"{cost:g}": self.cv_ap[:, index].tolist() for index, cost in enumerate(self.costs)},
                "iterations": self.iterations.tolist(), "folds": self.folds, "seed": self.seed}


def _check_costs(costs: Sequence[float]) -> tuple[float, ...]:
    """``costs`` as floats, once each is a positive finite number."""
    bad = [c for c in costs if isinstance(c, bool) or not isinstance(c, numbers.Real) or not math.isfinite(c) or c <= 0]
    if bad or not costs:
        raise UserError(f"SVM costs must be positive numbers; got {bad[0] if bad else 'none'} in {list(costs)}: use "
                        f"positive ones such as VISSL's VOC07 list {list(VOC_SVM_COSTS)}")
    return tuple(float(c) for c in costs)


def training_sides(targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(positive, negative) training images per class of ``(N, K)`` targets, as the SVMs train: present against
    absent or difficult only (:func:`_svm_labels`). A class needs ``folds`` of each to be cross-validated."""
    positives = (np.asarray(targets) == PRESENT).sum(0)
    return positives, len(targets) - positives


def _check_targets(features: np.ndarray, targets: np.ndarray, folds: int) -> np.ndarray:
    """The ``(N, K)`` targets as int8, once they fit ``features`` and the cross-validation."""
    targets = np.asarray(targets)
    if features.ndim != 2 or targets.ndim != 2 or len(targets) != len(features) or len(targets) == 0:
        raise UserError(f"the SVM probe needs features (N, D) and class targets (N, K) with one row per image; got "
                        f"features {tuple(features.shape)} and targets {tuple(targets.shape)}")
    unknown = np.setdiff1d(np.unique(targets), (PRESENT, ABSENT, DIFFICULT))
    if unknown.size:
        raise UserError(f"SVM class targets must be 1 (present), -1 (absent) or 0 (difficult only); got "
                        f"{unknown[:5].tolist()}")
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
        raise UserError(f"cross-validation folds must be an integer of 2 or more, got {folds!r}; VISSL uses "
                        f"{CROSS_VALIDATION_FOLDS}")
    positives, negatives = training_sides(targets)
    for k in range(targets.shape[1]):
        if min(positives[k], negatives[k]) < folds:
            raise UserError(f"class {k} has {positives[k]} positive and {negatives[k]} negative training images; "
                            f"{folds}-fold cross-validation needs at least {folds} of each")
    return targets.astype(np.int8)


def _svm_labels(targets: np.ndarray) -> np.ndarray:
    """One class's ``(N,)`` targets -> VISSL's training labels: +1 present, -1 absent or difficult."""
    return np.where(targets == PRESENT, 1, -1).astype(np.int32)


def _cross_validated_ap(features: np.ndarray, labels: np.ndarray, cost: float, folds: int, seed: int) -> float:
    """Mean AP (scikit-learn's) of ``folds``-fold cross-validation of :func:`linear_svc` at ``cost``."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import cross_val_score

    with warnings.catch_warnings():  # reaching max_iter is part of the protocol; the refit reports its iterations
        warnings.simplefilter("ignore", ConvergenceWarning)
        return float(cross_val_score(linear_svc(cost, seed), features, labels, cv=folds,
                                     scoring="average_precision").mean())


def _fit_svm(features: np.ndarray, labels: np.ndarray, cost: float, seed: int) -> tuple[np.ndarray, float, int]:
    """(weight (D,), bias, liblinear's iterations) of :func:`linear_svc` at ``cost`` fitted on every row."""
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = linear_svc(cost, seed).fit(features, labels)
    return model.coef_.ravel().copy(), float(model.intercept_[0]), int(model.n_iter_)


def _run(calls: list[tuple[Any, tuple]], workers: int, progress: Any) -> Iterable[Any]:
    """Results of ``function(*arguments)`` for every call, in order: in this process, or in ``workers`` processes
    (liblinear draws from one generator per process, so threads would race for it)."""
    if workers == 1:
        results: Iterable[Any] = (function(*arguments) for function, arguments in calls)
    else:
        from joblib import Parallel, delayed

        results = Parallel(n_jobs=workers, return_as="generator")(
            delayed(function)(*arguments) for function, arguments in calls)
    for result in results:
        progress.update(1)
        yield result


def fit_voc_svms(train_features: np.ndarray, train_targets: np.ndarray, costs: Sequence[float] = VOC_SVM_COSTS,
                 folds: int = CROSS_VALIDATION_FOLDS, seed: int = 0, workers: int | None = None,
                 description: str = "SVMs") -> SvmFit:
    """VISSL's VOC07 SVMs (module docstring) on frozen ``train_features (N, D)`` with per-image class targets
    ``train_targets (N, K)`` in {1 present, -1 absent, 0 difficult only}: for every class, ``folds``-fold
    cross-validated AP at every cost, then the best cost's SVM refitted on every image.

    ``workers``: processes fitting classes and costs side by side (default: every core this process may use);
    the result does not depend on it. A progress bar (one step per class and cost) goes to stderr, headed
    ``description``. ``scores = fit.decision_function(test_features)`` and
    :func:`~ssl_ctx.probes.metrics.multilabel_mean_ap` (``scores``, test targets) give the benchmark's mAP.
    """
    from tqdm.auto import tqdm

    from ssl_ctx.host import cpu_cores

    costs = _check_costs(costs)
    targets = _check_targets(train_features, train_targets, folds)
    classes = targets.shape[1]
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise UserError(f"SVM workers must be a positive integer, got {workers!r}")
    workers = min(workers or cpu_cores(), classes * len(costs))
    labels = [_svm_labels(targets[:, k]) for k in range(classes)]
    with tempfile.TemporaryDirectory(prefix="ssl-ctx-svm-") as folder, \
            tqdm(total=classes * (len(costs) + 1), desc=description, unit="svm", leave=False, file=sys.stderr) as bar:
        if workers == 1:
            features = l2_normalised(train_features)
        else:  # worker processes map the file rather than receive a pickled copy each
            path = Path(folder) / "features.npy"
            l2_normalised(train_features, np.lib.format.open_memmap(path, "w+", np.float64, train_features.shape))
            features = np.load(path, mmap_mode="r")
        grid = [(k, c) for k in range(classes) for c in range(len(costs))]
        cv_ap = np.zeros((classes, len(costs)))
        calls = [(_cross_validated_ap, (features, labels[k], costs[c], folds, seed)) for k, c in grid]
        for (k, c), value in zip(grid, _run(calls, workers, bar)):
            cv_ap[k, c] = value
        chosen = np.array([costs[int(np.argmax(row))] for row in cv_ap])  # argmax: the first of equal APs
        calls = [(_fit_svm, (features, labels[k], float(chosen[k]), seed)) for k in range(classes)]
        fits = list(_run(calls, workers, bar))
    return SvmFit(costs=costs, cv_ap=cv_ap, chosen_cost=chosen,
                  weight=np.stack([weight for weight, _, _ in fits], axis=1),
                  bias=np.array([bias for _, bias, _ in fits]), iterations=np.array([n for _, _, n in fits]),
                  folds=folds, seed=seed)
