"""The ridge read-out of frozen probes: at its optimum, the known solution, penalty chosen on held-out rows."""
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


def standardised(fit, features):
    return ((torch.from_numpy(features.astype(np.float32)) - fit.mean) / fit.scale).double()


def test_ridge_reaches_the_optimum_of_its_objective():
    features, labels = blobs()
    fit = fit_ridge_classifier(features, labels, 4, [0.5])
    z = standardised(fit, features)
    targets = torch.nn.functional.one_hot(torch.from_numpy(labels), 4).double()
    residual = z @ fit.weight + fit.bias - targets
    # Gradient of mean ||zW + b - y||² + alpha ||W||²: zero at the optimum (a solver stopping early fails this).
    grad_weight = 2 * z.T @ residual / len(z) + 2 * fit.alpha * fit.weight
    grad_bias = 2 * residual.mean(0)
    # (Gram sums accumulate float32 chunk products: exact to ~1e-7; an iterative solver stopped early is far off.)
    assert grad_weight.abs().max() < 1e-6 and grad_bias.abs().max() < 1e-6


def test_ridge_equals_scikit_learn_and_separates_separable_data():
    from sklearn.linear_model import Ridge

    features, labels = blobs()
    fit = fit_ridge_classifier(features, labels, 4, [0.5])
    z = standardised(fit, features).numpy()
    reference = Ridge(alpha=0.5 * len(z)).fit(z, np.eye(4)[labels])
    assert np.allclose(fit.weight.numpy(), reference.coef_.T, atol=1e-7)
    assert np.allclose(fit.bias.numpy(), reference.intercept_, atol=1e-7)
    assert (fit.predict(features) == labels).all()


def test_penalty_is_chosen_on_the_held_out_rows_and_refitted_on_all():
    features, labels = blobs(count=400, classes=3)
    holdout = stratified_holdout(labels, 0.25)
    fit = fit_ridge_classifier(features, labels, 3, [1e-3, 1e5], holdout)
    assert set(fit.holdout_accuracy) == {1e-3, 1e5}
    assert fit.holdout_accuracy[1e-3] == 1.0 and fit.holdout_accuracy[1e5] < 1.0 and fit.alpha == 1e-3
    refit = fit_ridge_classifier(features, labels, 3, [1e-3])
    assert torch.allclose(fit.weight, refit.weight, atol=1e-5)


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
