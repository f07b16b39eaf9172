"""The linear read-out of every frozen probe: ridge regression, solved in closed form, on one-hot targets
(classification) and on continuous ones (the localisation probe's box coordinates).

The classifier minimises ``mean_i ||z_i W + b - y_i||² + alpha ||W||²`` on standardised features ``z``, so it is
at its optimum by construction (no learning rate, no epochs, nothing stops early). The penalty is chosen among
``probe.ridge_alphas`` by the balanced accuracy (mean recall over classes) of a fit on the rest of the training
set scored on a held-out part of it, from one eigendecomposition of the covariance (each candidate then costs a
matrix product), and the classifier is refitted on the whole training set through a Cholesky factor of
``covariance + alpha I``. scikit-learn's ``RidgeClassifierCV`` gives the same solution but factorises the data
again for every fit (or runs a full SVD of it), which costs minutes per layer on a 2-core machine instead of
seconds. Several blocks of targets (a class and a box) share the moments and the eigendecomposition, and each
block gets its own penalty, chosen by its own held-out score (:func:`fit_ridge`).

Every step after reading the features is float64: the moments, the standardisation, the Gram sums and the
solve. A float32 Gram sum carries ~1e-7 relative rounding that depends on the BLAS kernel (so on the CPU), and
``covariance + alpha I`` multiplies it by its condition number (up to ~D / alpha): at alpha = 1e-3 that moved
weights in their 4th digit from one CPU to another. In float64 the same amplification leaves ~1e-10.

Features arrive as ``(N, D)`` arrays (NumPy, possibly memory-mapped float16) and are read in chunks, so the
training set never has to fit in memory in float64.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from ssl_ctx.errors import UserError

_CHUNK = 4096  # rows per chunk when streaming features


def _chunks(features: np.ndarray, chunk: int = _CHUNK) -> Iterator[tuple[int, torch.Tensor]]:
    """(first row, float64 tensor) pieces of ``features`` in order."""
    for start in range(0, len(features), chunk):
        yield start, torch.from_numpy(np.asarray(features[start:start + chunk], dtype=np.float64))


def stratified_holdout(labels: np.ndarray, fraction: float, seed: int = 0) -> np.ndarray:
    """Bool mask ``(N,)``: about ``fraction`` of each class, at least one sample per class of two or more."""
    rng = np.random.default_rng(seed)
    held = np.zeros(len(labels), dtype=bool)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        count = min(len(members) - 1, max(1, round(fraction * len(members))))
        if count > 0:
            held[rng.choice(members, size=count, replace=False)] = True
    return held


def group_holdout(groups: np.ndarray, fraction: float, seed: int = 0) -> np.ndarray:
    """Bool mask ``(N,)`` holding out every row of about ``fraction`` of the groups (e.g. all sampled pixels of
    some images, which are too alike to score a fit on the rest of their image); at least one group is kept."""
    names = np.unique(groups)
    count = min(len(names) - 1, max(1, round(fraction * len(names))))
    chosen = np.random.default_rng(seed).choice(names, size=max(count, 0), replace=False)
    return np.isin(groups, chosen)


@dataclass
class _Moments:
    """Running sums of standardised features ``z`` and targets ``y``: n, Σz, Σzzᵀ, Σzyᵀ, Σy."""

    dim: int
    targets: int
    count: int = 0
    z_sum: torch.Tensor = field(init=False)
    zz: torch.Tensor = field(init=False)
    zy: torch.Tensor = field(init=False)
    y_sum: torch.Tensor = field(init=False)

    def __post_init__(self) -> None:
        self.z_sum = torch.zeros(self.dim, dtype=torch.float64)
        self.zz = torch.zeros(self.dim, self.dim, dtype=torch.float64)
        self.zy = torch.zeros(self.dim, self.targets, dtype=torch.float64)
        self.y_sum = torch.zeros(self.targets, dtype=torch.float64)

    def add(self, z: torch.Tensor, y: torch.Tensor) -> None:
        """``z``: ``(n, D)`` float64 standardised features; ``y``: ``(n, T)`` float64 targets."""
        self.count += len(z)
        self.z_sum += z.sum(0)
        self.zz += z.T @ z
        self.zy += z.T @ y
        self.y_sum += y.sum(0)

    def __add__(self, other: _Moments) -> _Moments:
        total = _Moments(self.dim, self.targets)
        total.count = self.count + other.count
        for name in ("z_sum", "zz", "zy", "y_sum"):
            setattr(total, name, getattr(self, name) + getattr(other, name))
        return total

    def centred(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(covariance ``(D, D)``, cross-covariance ``(D, T)``, mean z, mean y), all divided by n."""
        z_mean, y_mean = self.z_sum / self.count, self.y_sum / self.count
        covariance = self.zz / self.count - torch.outer(z_mean, z_mean)
        cross = self.zy / self.count - torch.outer(z_mean, y_mean)
        return covariance, cross, z_mean, y_mean


# Held-out score by which a penalty at the edge of the grid must beat its neighbour to be worth a warning.
EDGE_MARGIN = 0.001

# How a candidate penalty is scored on the held-out rows: (their predicted targets (n, T) float64, their row
# numbers in the training set (n,)) -> a score, higher is better.
HoldoutScore = Callable[[torch.Tensor, np.ndarray], float]


@dataclass(frozen=True)
class TargetBlock:
    """Target columns ``columns`` of a multi-output ridge that get their own penalty, chosen by ``score``."""

    name: str
    columns: slice
    score: HoldoutScore


@dataclass
class RidgeFit:
    """A fitted ridge read-out: ``outputs = ((x - mean) / scale) @ weight + bias``."""

    mean: torch.Tensor  # (D,) float64
    scale: torch.Tensor  # (D,) float64
    weight: torch.Tensor  # (D, T) float64
    bias: torch.Tensor  # (T,) float64
    alpha: float  # the chosen penalty (on the covariance of standardised features)
    holdout_scores: dict[float, float]  # penalty -> held-out score

    def outputs(self, features: np.ndarray) -> torch.Tensor:
        """``(N, T)`` float64 outputs of ``(N, D)`` features."""
        parts = [((chunk - self.mean) / self.scale) @ self.weight + self.bias
                 for _, chunk in _chunks(features)]
        return torch.cat(parts) if parts else torch.zeros(0, self.weight.shape[1], dtype=torch.float64)

    def grid_edge_warning(self, what: str) -> str | None:
        """The message for :func:`~ssl_ctx.errors.warn` when the chosen penalty is the smallest or largest
        candidate and beats its neighbour by more than :data:`EDGE_MARGIN`: the optimum may lie beyond the grid.
        A plateau reaching the edge is no warning (with plenty of rows per feature, the smallest penalties all
        fit the same read-out)."""
        penalties = sorted(self.holdout_scores)
        if len(penalties) < 2:
            return None
        for edge, neighbour, name, advice in ((penalties[0], penalties[1], "smallest", "smaller"),
                                              (penalties[-1], penalties[-2], "largest", "larger")):
            margin = self.holdout_scores[edge] - self.holdout_scores[neighbour]
            if self.alpha == edge and margin > EDGE_MARGIN:
                return (f"{what}: the ridge penalty chosen ({edge:g}) is the {name} of probe.ridge_alphas and "
                        f"beats the next by {margin:.2%} on the held-out rows; add {advice} values to find its "
                        f"optimum")
        return None


@dataclass
class RidgeClassifier(RidgeFit):
    """A ridge fit to one-hot targets; the class is the arg-max of its outputs."""

    @property
    def holdout_accuracy(self) -> dict[float, float]:
        """Penalty -> balanced accuracy on the held-out rows."""
        return self.holdout_scores

    @holdout_accuracy.setter
    def holdout_accuracy(self, value: dict[float, float]) -> None:
        self.holdout_scores = value

    def scores(self, features: np.ndarray) -> torch.Tensor:
        """``(N, K)`` float64 class scores of ``(N, D)`` features."""
        return self.outputs(features)

    def predict(self, features: np.ndarray) -> np.ndarray:
        return self.scores(features).argmax(1).numpy()


def feature_moments(features: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-column float64 mean and standard deviation ``(D,)``; a constant column gets scale 1 (it stays 0)."""
    total = torch.zeros(features.shape[1], dtype=torch.float64)
    for _, chunk in _chunks(features):
        total += chunk.sum(0)
    mean = total / len(features)
    squares = torch.zeros_like(total)
    for _, chunk in _chunks(features):  # two passes: no cancellation in E[x²] - E[x]² for large means
        squares += (chunk - mean).pow(2).sum(0)
    std = (squares / len(features)).sqrt()
    return mean, torch.where(std > 1e-6 * std.max().clamp_min(1e-30), std, torch.ones_like(std))


def _solve(covariance: torch.Tensor, cross: torch.Tensor, alpha: float) -> torch.Tensor:
    """``(covariance + alpha I)⁻¹ cross`` through a Cholesky factor: the matrix is symmetric positive definite
    for alpha > 0, and the factorisation is backward stable, so the error is ~ condition number x 1e-16."""
    factor = torch.linalg.cholesky(covariance + alpha * torch.eye(len(covariance), dtype=covariance.dtype))
    return torch.cholesky_solve(cross, factor)


def balanced_accuracy(predicted: torch.Tensor, labels: torch.Tensor, num_classes: int) -> float:
    """Mean over the classes present in ``labels`` of the fraction of their samples predicted right."""
    hits = torch.bincount(labels[predicted == labels], minlength=num_classes).double()
    counts = torch.bincount(labels, minlength=num_classes).double()
    present = counts > 0
    return float((hits[present] / counts[present]).mean())


def one_hot(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """``(N,)`` class indices -> ``(N, K)`` float64 one-hot targets."""
    targets = np.zeros((len(labels), num_classes), dtype=np.float64)
    targets[np.arange(len(labels)), np.asarray(labels, dtype=np.int64)] = 1.0
    return targets


def balanced_accuracy_score(labels: np.ndarray, num_classes: int) -> HoldoutScore:
    """The held-out score of a classifier block: balanced accuracy of the arg-max against ``labels`` (all rows)."""

    def score(outputs: torch.Tensor, rows: np.ndarray) -> float:
        return balanced_accuracy(outputs.argmax(1), torch.from_numpy(labels[rows].astype(np.int64)), num_classes)

    return score


def fit_ridge(features: np.ndarray, targets: np.ndarray, blocks: Sequence[TargetBlock], alphas: Sequence[float],
              holdout: np.ndarray | None = None) -> dict[str, RidgeFit]:
    """Closed-form multi-output ridge on standardised ``features (N, D)`` against ``targets (N, T)``.

    Every block of target columns gets its own penalty among ``alphas``, scored by the block's ``score`` on the
    ``holdout`` rows (bool ``(N,)``) of a fit on the other rows; ties go to the larger penalty. All blocks share
    the feature moments and one eigendecomposition of the covariance, which are the costly part. Each returned
    fit (by block name) is refitted on every row with its chosen penalty.
    """
    targets = np.asarray(targets, dtype=np.float64).reshape(len(targets), -1)
    if len(features) != len(targets) or len(targets) == 0:
        raise UserError(f"the ridge probe needs one target per feature row; got {len(features)} rows and "
                        f"{len(targets)} targets")
    if not alphas or min(alphas) <= 0:
        raise UserError(f"probe.ridge_alphas must be positive numbers, got {list(alphas)}")
    held = holdout if len(alphas) > 1 and holdout is not None else np.zeros(len(targets), dtype=bool)
    mean, scale = feature_moments(features)
    fit_part, held_part = _Moments(features.shape[1], targets.shape[1]), _Moments(features.shape[1], targets.shape[1])
    held_rows = []
    for start, chunk in _chunks(features):
        z = (chunk - mean) / scale
        y = torch.from_numpy(targets[start:start + len(chunk)])
        chunk_held = torch.from_numpy(held[start:start + len(chunk)])
        fit_part.add(z[~chunk_held], y[~chunk_held])
        if chunk_held.any():
            held_part.add(z[chunk_held], y[chunk_held])
            held_rows.append(z[chunk_held])

    chosen = {block.name: (float(max(alphas)), {}) for block in blocks}
    if held.any():
        covariance, cross, z_mean, y_mean = fit_part.centred()
        values, vectors = torch.linalg.eigh(covariance)
        projected = (torch.cat(held_rows) - z_mean) @ vectors
        rotated = vectors.T @ cross  # one rotation serves every penalty
        rows = np.flatnonzero(held)
        for block in blocks:
            scores = {}
            for candidate in sorted(float(a) for a in alphas):
                outputs = (projected / (values.clamp_min(0) + candidate)) @ rotated[:, block.columns]
                scores[candidate] = block.score(outputs + y_mean[block.columns], rows)
            best = max(scores.values())
            chosen[block.name] = (max(a for a, value in scores.items() if value == best), scores)

    covariance, cross, z_mean, y_mean = (fit_part + held_part).centred() if held.any() else fit_part.centred()
    fits = {}
    for block in blocks:
        alpha, scores = chosen[block.name]
        weight = _solve(covariance, cross[:, block.columns], alpha)
        fits[block.name] = RidgeFit(mean, scale, weight, y_mean[block.columns] - z_mean @ weight, alpha, scores)
    return fits


def fit_ridge_classifier(features: np.ndarray, labels: np.ndarray, num_classes: int, alphas: Sequence[float],
                         holdout: np.ndarray | None = None) -> RidgeClassifier:
    """Closed-form ridge on standardised ``features (N, D)`` against one-hot ``labels (N,)`` (:func:`fit_ridge`),
    its penalty chosen by balanced accuracy on the ``holdout`` rows (for example :func:`stratified_holdout`)."""
    labels = np.asarray(labels)
    if len(features) != len(labels) or len(labels) == 0:
        raise UserError(f"the ridge probe needs one label per feature row; got {len(features)} rows and "
                        f"{len(labels)} labels")
    block = TargetBlock("class", slice(0, num_classes), balanced_accuracy_score(labels, num_classes))
    fit = fit_ridge(features, one_hot(labels, num_classes), [block], alphas, holdout)["class"]
    return RidgeClassifier(**vars(fit))
