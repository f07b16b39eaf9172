"""VOC07 linear SVMs as VISSL runs them (``ssl_ctx.probes.svm``) and the multi-label mAP that scores them: VISSL's
settings, costs chosen by cross-validation, difficult images, and one result whatever the workers or CPU kernels."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ssl_ctx.errors import UserError
from ssl_ctx.probes.metrics import multilabel_mean_ap
from ssl_ctx.probes.svm import VOC_SVM_COSTS, fit_voc_svms, l2_normalised, linear_svc

# A handful of float64 divisions and sums: rounding ~1e-16.
ROUNDING = 1e-12


def multilabel(count, seed=0, signal=1.0, classes=4, dim=24):
    """Float16 features of images holding each class with probability 0.3: the sum of the present classes'
    directions (fixed, shared by every split) times ``signal``, plus unit Gaussian noise. A tenth of the present
    labels are marked difficult (0), as VOC marks images whose only instances are difficult."""
    directions = np.random.default_rng(1234).normal(size=(classes, dim))
    rng = np.random.default_rng(seed)
    present = rng.random((count, classes)) < 0.3
    features = present @ directions * signal + rng.normal(size=(count, dim))
    targets = np.where(present, 1, -1).astype(np.int8)
    targets[present & (rng.random((count, classes)) < 0.1)] = 0
    return features.astype(np.float16), targets


@pytest.fixture(scope="module")
def informative():
    features, targets = multilabel(300)
    return features, targets, fit_voc_svms(features, targets, workers=1)


def test_the_svm_has_vissls_settings():
    settings = linear_svc(5.0, seed=3).get_params()
    expected = {"C": 5.0, "class_weight": {1: 2, -1: 1}, "intercept_scaling": 1.0, "fit_intercept": True,
                "penalty": "l2", "loss": "squared_hinge", "dual": True, "tol": 1e-4, "max_iter": 2000,
                "random_state": 3}
    assert {key: settings[key] for key in expected} == expected
    assert VOC_SVM_COSTS == (0.01, 0.1, 1.0, 2.0, 5.0, 10.0, 15.0, 20.0, 50.0, 100.0, 1000.0)


def test_the_features_are_divided_by_their_l2_norm_plus_vissls_epsilon():
    features = np.array([[3.0, 4.0], [0.0, 0.0]], dtype=np.float16)
    normalised = l2_normalised(features)
    assert normalised.dtype == np.float64
    np.testing.assert_allclose(normalised, [[3 / 5.00001, 4 / 5.00001], [0.0, 0.0]], rtol=ROUNDING)


def test_average_precision_of_a_hand_ranked_example():
    scores = np.array([[0.9, 0.9], [0.8, 0.8], [0.7, 0.7], [0.6, 0.6], [0.5, 0.5]])
    # Class 0 ranks + - + - +: precision 1, 2/3, 3/5 where recall grows, never rising again after each, so
    # AP = (1 + 2/3 + 3/5) / 3 = 34/45.
    # Class 1 ranks - + + - -: precision 1/2 then 2/3; the envelope raises the first to 2/3, so AP = 2/3
    # (scikit-learn's uninterpolated AP: (1/2 + 2/3) / 2 = 7/12).
    targets = np.array([[1, -1], [-1, 1], [1, 1], [-1, -1], [1, -1]])
    result = multilabel_mean_ap(scores, targets)
    assert result["class_ap"] == pytest.approx([34 / 45, 2 / 3], rel=ROUNDING)
    assert result["map"] == pytest.approx((34 / 45 + 2 / 3) / 2, rel=ROUNDING)
    assert multilabel_mean_ap(torch.from_numpy(scores).float(), torch.from_numpy(targets)) == result  # a classifier's


def test_difficult_images_are_left_out_of_the_test_ap():
    scores = np.array([0.9, 0.8, 0.7, 0.6])[:, None].repeat(2, 1)
    targets = np.array([[1, 0], [0, -1], [-1, 0], [1, -1]])  # class 1: no present image
    result = multilabel_mean_ap(scores, targets)
    # Without the difficult image the ranking is + - +: AP = (1 + 2/3) / 2 = 5/6. As a positive it would be
    # (1 + 1 + 3/4) / 3 = 11/12, as a negative (1 + 1/2) / 2 = 3/4.
    assert result["class_ap"][0] == pytest.approx(5 / 6, rel=ROUNDING)
    assert np.isnan(result["class_ap"][1]) and result["map"] == result["class_ap"][0]


def test_average_precision_is_vocs_area_ap_and_scikit_learns_where_precision_never_rises():
    from sklearn.metrics import average_precision_score, precision_recall_curve

    rng = np.random.default_rng(0)
    scores = rng.normal(size=(200, 3))
    present = rng.random((200, 3)) < 0.3
    scores[:, 2] += 10 * present[:, 2]  # every positive first: precision 1 all the way
    ours = multilabel_mean_ap(scores, np.where(present, 1, -1))["class_ap"]
    for k in range(3):
        # The same area from scikit-learn's precision-recall points (recall from 0 up) under their envelope.
        precision, recall, _ = precision_recall_curve(present[:, k], scores[:, k])
        precision, recall = precision[::-1], recall[::-1]
        envelope = np.maximum.accumulate(precision[::-1])[::-1]
        assert ours[k] == pytest.approx(np.sum(np.diff(recall) * envelope[1:]), rel=ROUNDING)
        assert ours[k] >= average_precision_score(present[:, k], scores[:, k])
    assert ours[2] == average_precision_score(present[:, 2], scores[:, 2]) == 1.0


def test_costs_are_chosen_by_cross_validation_and_the_refit_ranks_the_test_images(informative):
    from sklearn.model_selection import cross_val_score

    features, targets, fit = informative
    assert fit.costs == VOC_SVM_COSTS and fit.cv_ap.shape == (4, len(VOC_SVM_COSTS))
    normalised = l2_normalised(features)
    for k in range(4):
        labels = np.where(targets[:, k] == 1, 1, -1)  # difficult images train as negatives
        assert fit.chosen_cost[k] == VOC_SVM_COSTS[int(np.argmax(fit.cv_ap[k]))]
        # The same computation on the same machine: exactly scikit-learn's 3-fold AP, and its fit at that cost.
        cost = VOC_SVM_COSTS[k]
        direct = cross_val_score(linear_svc(cost), normalised, labels, cv=3, scoring="average_precision")
        assert fit.cv_ap[k, k] == direct.mean()
        refit = linear_svc(fit.chosen_cost[k]).fit(normalised, labels)
        assert np.array_equal(fit.weight[:, k], refit.coef_[0]) and fit.bias[k] == refit.intercept_[0]
    test_features, test_targets = multilabel(300, seed=1)
    # Measured 0.99; SVMs fitted on features that say nothing score ~0.3 (the next test).
    assert multilabel_mean_ap(fit.decision_function(test_features), test_targets)["map"] > 0.9
    json.dumps(fit.summary())


def test_random_features_score_near_the_positive_rate():
    _, targets = multilabel(300)
    _, test_targets = multilabel(300, seed=1)
    noise = np.random.default_rng(5).normal(size=(600, 24)).astype(np.float16)  # features that say nothing
    fit = fit_voc_svms(noise[:300], targets, costs=(0.1, 10.0), workers=1)
    result = multilabel_mean_ap(fit.decision_function(noise[300:]), test_targets)
    rate = np.mean((test_targets == 1).sum(0) / (test_targets != 0).sum(0))
    # The area AP of a random ranking of 300 images, 4 classes at rate ~0.27, over 2000 draws: rate + 0.03
    # (the envelope only raises precision) with a standard deviation of 0.017; 0.1 is 4 deviations beyond.
    assert abs(result["map"] - rate) < 0.1


def test_difficult_training_images_are_negatives(informative):
    features, targets, fit = informative
    assert (targets == 0).any()
    costs = (0.1, 10.0)
    as_marked = fit_voc_svms(features, targets, costs=costs, workers=1)
    as_absent = fit_voc_svms(features, np.where(targets == 0, -1, targets), costs=costs, workers=1)
    as_present = fit_voc_svms(features, np.where(targets == 0, 1, targets), costs=costs, workers=1)
    assert np.array_equal(as_marked.weight, as_absent.weight) and np.array_equal(as_marked.cv_ap, as_absent.cv_ap)
    assert not np.array_equal(as_marked.weight, as_present.weight)


def test_the_fit_is_deterministic_and_the_same_for_any_number_of_workers(informative):
    features, targets, fit = informative
    again = fit_voc_svms(features, targets, workers=1)
    in_processes = fit_voc_svms(features, targets, workers=2)
    for other in (again, in_processes):  # the same computation on one machine: equal bits
        for name in ("cv_ap", "chosen_cost", "weight", "bias", "iterations"):
            assert np.array_equal(getattr(fit, name), getattr(other, name)), name


_FIT_SCRIPT = """
import json, sys
sys.path.insert(0, {tests!r})
from test_svm_probe import multilabel
from ssl_ctx.probes.svm import fit_voc_svms
features, targets = multilabel(300)
fit = fit_voc_svms(features, targets, workers=1)
print(json.dumps({{"cv_ap": fit.cv_ap.tolist(), "chosen": fit.chosen_cost.tolist(), "weight": fit.weight.tolist(),
                  "scores": fit.decision_function(multilabel(300, seed=1)[0]).tolist()}}))
"""

# Another CPU's kernels, emulated on this one: OpenBLAS's (Sandybridge's: scores of held-out and test images
# are BLAS products), MKL's code path, ATen's vector width and NumPy's SIMD dispatch (the row norms).
OTHER_KERNELS = {"OPENBLAS_CORETYPE": "Sandybridge", "MKL_CBWR": "COMPATIBLE", "ATEN_CPU_CAPABILITY": "avx2",
                 "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR"}
# Everything before liblinear is IEEE float64 in a fixed order and liblinear's dual solver uses no BLAS: under
# these kernels (and OpenBLAS's Haswell and Prescott ones) the weights and the cross-validated APs were equal
# bits, and the test scores, a BLAS product, moved by 5e-16 relative. An AP moves only if held-out scores swap
# places (by 1e-4 or more for one swapped pair here). 1e-12 leaves three orders of magnitude above the spread
# and is far below a fit that changed (twice the chosen cost moves the weights by 0.1 relative).
KERNEL_AGREEMENT = 1e-12


def test_the_fit_is_the_same_with_another_cpus_kernels(informative):
    features, targets, fit = informative
    script = _FIT_SCRIPT.format(tests=str(Path(__file__).parent))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env={**os.environ, **OTHER_KERNELS}, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    other = json.loads(done.stdout)
    assert other["chosen"] == fit.chosen_cost.tolist()
    np.testing.assert_allclose(other["cv_ap"], fit.cv_ap, rtol=KERNEL_AGREEMENT, atol=0)
    np.testing.assert_allclose(other["weight"], fit.weight, rtol=0, atol=KERNEL_AGREEMENT * np.abs(fit.weight).max())
    scores = fit.decision_function(multilabel(300, seed=1)[0])
    np.testing.assert_allclose(other["scores"], scores, rtol=0, atol=KERNEL_AGREEMENT * np.abs(scores).max())


@pytest.mark.parametrize("costs, named", [([0.1, 0.0], "got 0.0 in [0.1, 0.0]"), ([-1], "got -1 in"),
                                          ([], "got none in []"), ([float("nan")], "got nan in")])
def test_a_cost_that_is_not_positive_is_refused_in_one_line(costs, named):
    features, targets = multilabel(30)
    with pytest.raises(UserError, match="SVM costs must be positive") as error:
        fit_voc_svms(features, targets, costs=costs, workers=1)
    assert named in str(error.value) and "\n" not in str(error.value)


def test_bad_targets_and_workers_are_refused_in_one_line():
    features, targets = multilabel(30)
    unknown = targets.copy()
    unknown[0, 0] = 2
    cases = [(unknown, {}, "got [2]"),
             (np.pad(targets[:, :1], ((0, 0), (0, 1)), constant_values=-1), {}, "class 1 has 0 positive"),
             (targets[:10], {}, "features (30, 24) and targets (10, 4)"),
             (targets, {"workers": 0}, "got 0")]
    for bad, options, named in cases:
        with pytest.raises(UserError) as error:
            fit_voc_svms(features, bad, **options)
        assert named in str(error.value) and "\n" not in str(error.value)
    fit = fit_voc_svms(features, targets, costs=(1.0,), workers=1)
    with pytest.raises(UserError, match=r"features \(M, 24\) .* got \(30, 23\)"):
        fit.decision_function(features[:, :23])
