"""The ridge read-out of frozen probes: at its optimum, the known solution, penalty chosen on held-out rows, and
the same weights whichever CPU kernels compute them."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ssl_ctx.errors import UserError
from ssl_ctx.probes.linear_models import (
    EDGE_MARGIN,
    balanced_accuracy,
    fit_ridge_classifier,
    group_holdout,
    stratified_holdout,
)


def blobs(count=600, dim=12, classes=4, spread=3.0, seed=0):
    """Gaussian blobs, one per class, far enough apart to be linearly separable."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dim)) * spread
    labels = rng.integers(0, classes, count)
    features = centres[labels] + rng.normal(size=(count, dim)) * 0.3
    return features.astype(np.float16), labels


def near_singular(count=300, dim=40, seed=0):
    """A design whose covariance has half its eigenvalues below 1e-6: every second column is a copy of the one
    before it plus 1e-3 noise (then rounded to float16, as cached features are), for 5 classes."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(count, dim // 2))
    copies = base + 1e-3 * rng.normal(size=base.shape)
    labels = rng.integers(0, 5, count)
    features = np.stack([base, copies], axis=2).reshape(count, dim) + 0.5 * np.eye(5)[labels].repeat(dim // 5, 1)
    return features.astype(np.float16), labels


# Two float64 solvers of one ridge system differ by about (condition number) x 1e-16: near_singular() at penalty
# 1e-5 has a condition number of 3e5, and scikit-learn's solution differed by 3e-11 (relative to the largest
# weight); the same fit under another CPU's kernels by less. 1e-8 leaves a factor 300 for other designs and
# stays far below the differences a float32 Gram sum gives (1e-4 on blobs() at 1e-3 between two CPUs).
SOLVER_AGREEMENT = 1e-8


def standardised(fit, features):
    return (torch.from_numpy(features.astype(np.float64)) - fit.mean) / fit.scale


def relative_error(actual: torch.Tensor, expected) -> float:
    expected = torch.as_tensor(expected, dtype=torch.float64)
    return float((actual - expected).abs().max() / expected.abs().max())


def test_ridge_reaches_the_optimum_of_its_objective():
    features, labels = blobs()
    fit = fit_ridge_classifier(features, labels, 4, [0.5])
    z = standardised(fit, features)
    targets = torch.nn.functional.one_hot(torch.from_numpy(labels), 4).double()
    residual = z @ fit.weight + fit.bias - targets
    # Gradient of mean ||zW + b - y||² + alpha ||W||²: zero at the optimum (a solver stopping early fails this).
    grad_weight = 2 * z.T @ residual / len(z) + 2 * fit.alpha * fit.weight
    grad_bias = 2 * residual.mean(0)
    # float64 throughout: measured 4e-16 (condition number ~10 here); an iterative solver stopped early is far off.
    assert grad_weight.abs().max() < 1e-12 and grad_bias.abs().max() < 1e-12


def test_ridge_equals_scikit_learn_and_separates_separable_data():
    from sklearn.linear_model import Ridge

    features, labels = blobs()
    fit = fit_ridge_classifier(features, labels, 4, [0.5])
    z = standardised(fit, features).numpy()
    reference = Ridge(alpha=0.5 * len(z)).fit(z, np.eye(4)[labels])
    assert relative_error(fit.weight, reference.coef_.T) < SOLVER_AGREEMENT  # measured 6e-15
    assert relative_error(fit.bias, reference.intercept_) < SOLVER_AGREEMENT
    assert (fit.predict(features) == labels).all()


@pytest.mark.parametrize("alpha", [1e-5, 1e-3, 1.0])
def test_ridge_equals_scikit_learn_on_a_near_singular_design(alpha):
    from sklearn.linear_model import Ridge

    features, labels = near_singular()
    fit = fit_ridge_classifier(features, labels, 5, [alpha])
    z = standardised(fit, features).numpy()
    assert np.linalg.eigvalsh(np.cov(z.T, bias=True)).min() < 1e-6  # near-singular indeed
    # scikit-learn (SciPy's LAPACK and OpenBLAS, not torch's MKL) minimises the sum, not the mean, of squares.
    reference = Ridge(alpha=alpha * len(z), solver="cholesky").fit(z, np.eye(5)[labels])
    assert relative_error(fit.weight, reference.coef_.T) < SOLVER_AGREEMENT
    assert relative_error(fit.bias, reference.intercept_) < SOLVER_AGREEMENT


_FIT_SCRIPT = """
import json, sys
sys.path.insert(0, {tests!r})
from test_linear_models import near_singular, stratified_holdout, fit_ridge_classifier
features, labels = near_singular()
fit = fit_ridge_classifier(features, labels, 5, [1e-5, 1e-3, 1e-1, 10.0], stratified_holdout(labels, 0.2))
hardest = fit_ridge_classifier(features, labels, 5, [1e-5])
print(json.dumps({{"weight": fit.weight.tolist(), "alpha": fit.alpha, "held": fit.holdout_accuracy,
                  "hardest": hardest.weight.tolist()}}))
"""

# Another CPU's kernels, emulated on the one at hand: MKL's code path (MKL_CBWR=COMPATIBLE: the one setting that
# moved the former float32 fit on an AMD EPYC, by 3e-5 on blobs() where an Intel Xeon's MKL moved it by 2e-4),
# ATen's vector width (reduction order) and oneDNN's instruction set.
OTHER_KERNELS = {"MKL_CBWR": "COMPATIBLE", "ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}


def test_the_fit_is_the_same_with_another_cpus_kernels():
    """The whole fit (moments, held-out penalty choice, refit) under another CPU's kernels in a fresh interpreter
    picks the same penalty with the same held-out scores, and its weights equal the default kernels' to
    SOLVER_AGREEMENT, at the chosen penalty and at the grid's smallest (float32 Gram sums: 2e-2 there)."""
    script = _FIT_SCRIPT.format(tests=str(Path(__file__).parent))
    fits = []
    for extra in ({}, OTHER_KERNELS):
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                              env={**os.environ, **extra}, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        fits.append(json.loads(done.stdout))
    assert fits[0]["alpha"] == fits[1]["alpha"] and fits[0]["held"] == fits[1]["held"]
    for key in ("weight", "hardest"):
        assert relative_error(torch.tensor(fits[1][key], dtype=torch.float64), fits[0][key]) < SOLVER_AGREEMENT, key


def test_penalty_is_chosen_on_the_held_out_rows_and_refitted_on_all():
    features, labels = blobs(count=400, classes=3)
    holdout = stratified_holdout(labels, 0.25)
    fit = fit_ridge_classifier(features, labels, 3, [1e-3, 1e5], holdout)
    assert set(fit.holdout_accuracy) == {1e-3, 1e5}
    assert fit.holdout_accuracy[1e-3] == 1.0 and fit.holdout_accuracy[1e5] < 1.0 and fit.alpha == 1e-3
    refit = fit_ridge_classifier(features, labels, 3, [1e-3])
    # The same rows summed in another grouping (fit + held-out part vs all at once): float64 rounding only.
    assert relative_error(fit.weight, refit.weight) < SOLVER_AGREEMENT


def test_a_penalty_at_the_edge_of_the_grid_is_named_and_a_plateau_or_an_inside_one_is_not():
    features, labels = blobs(count=400, classes=3)
    fit = fit_ridge_classifier(features, labels, 3, [1e-3, 1e5], stratified_holdout(labels, 0.25))
    assert fit.alpha == 1e-3 and fit.holdout_accuracy[1e-3] - fit.holdout_accuracy[1e5] > EDGE_MARGIN
    assert "smallest of probe.ridge_alphas" in fit.grid_edge_warning("layer conv3")
    fit.holdout_accuracy = {1e-3: 0.5, 1e-2: 0.5 - EDGE_MARGIN / 2, 1e5: 0.1}  # a plateau reaching the edge
    assert fit.grid_edge_warning("layer conv3") is None
    fit.holdout_accuracy = {1e-4: 0.4, 1e-3: 0.5, 1e5: 0.1}  # a smaller candidate was tried and lost
    assert fit.grid_edge_warning("layer conv3") is None
    assert fit_ridge_classifier(features, labels, 3, [1e-3]).grid_edge_warning("layer conv3") is None


def test_holdouts_keep_classes_and_groups_whole():
    labels = np.repeat(np.arange(5), 20)
    held = stratified_holdout(labels, 0.1)
    assert all(held[labels == k].sum() == 2 for k in range(5))
    groups = np.repeat(np.arange(10), 7)
    held = group_holdout(groups, 0.2)
    assert held.sum() == 14 and all(held[groups == g].all() or not held[groups == g].any() for g in range(10))


def test_balanced_accuracy_weighs_every_class_alike():
    labels = torch.tensor([0, 0, 0, 0, 1])
    assert balanced_accuracy(torch.zeros(5, dtype=torch.long), labels, 2) == 0.5


def test_bad_penalties_are_one_line():
    features, labels = blobs(count=40)
    with pytest.raises(UserError, match="ridge_alphas"):
        fit_ridge_classifier(features, labels, 4, [0.0])
