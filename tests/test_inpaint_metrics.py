"""Inpainting metrics against hand-computed values (ssl_ctx.inpaint.metrics)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from ssl_ctx.config import InpaintConfig
from ssl_ctx.inpaint.metrics import MetricAccumulator, per_image_metrics, psnr_from_mse, to_unit


def test_hand_computed_values_over_the_hole() -> None:
    target = np.zeros((1, 2, 2, 3))
    prediction = np.zeros((1, 2, 2, 3))
    prediction[0, 0, 0] = [0.1, 0.2, 0.3]  # hole pixel
    prediction[0, 0, 1] = [0.5, 0.0, 0.0]  # hole pixel
    prediction[0, 1, 1] = [1.0, 1.0, 1.0]  # context pixel: not measured over the hole
    mask = np.array([[[True, True], [False, False]]])
    values = per_image_metrics(prediction, target, mask)
    l1 = (0.1 + 0.2 + 0.3 + 0.5) / 6
    l2 = (0.01 + 0.04 + 0.09 + 0.25) / 6
    assert values["l1"][0] == pytest.approx(l1)
    assert values["l2"][0] == pytest.approx(l2)
    assert values["psnr"][0] == pytest.approx(10 * math.log10(1 / l2))
    everywhere = per_image_metrics(prediction, target, mask, region="image")
    assert everywhere["l1"][0] == pytest.approx((1.1 + 3.0) / 12)
    assert everywhere["l2"][0] == pytest.approx((0.39 + 3.0) / 12)


def test_psnr_is_per_image_then_averaged_and_l1_l2_in_percent() -> None:
    target = np.zeros((2, 1, 2, 3))
    prediction = np.zeros((2, 1, 2, 3))
    prediction[0] = 0.1  # mse 0.01 -> 20 dB
    prediction[1] = 0.01  # mse 1e-4 -> 40 dB
    mask = np.ones((2, 1, 2), dtype=bool)
    accumulator = MetricAccumulator("hole")
    accumulator.update(prediction, target, mask)
    summary = accumulator.summary()
    assert summary["psnr_db"] == pytest.approx(30.0)  # not 10 log10(1 / mean mse) = 22.97
    assert summary["l1_percent"] == pytest.approx((0.1 + 0.01) / 2 * 100)
    assert summary["l2_percent"] == pytest.approx((0.01 + 0.0001) / 2 * 100)
    assert summary["images"] == 2


def test_uint8_images_go_through_to_unit() -> None:
    target = np.full((1, 1, 1, 3), 100, dtype=np.uint8)
    prediction = np.full((1, 1, 1, 3), 151, dtype=np.uint8)
    values = per_image_metrics(to_unit(prediction), to_unit(target), np.ones((1, 1, 1), bool))
    assert values["l1"][0] == pytest.approx(51 / 255)
    assert values["l2"][0] == pytest.approx((51 / 255) ** 2)
    assert values["psnr"][0] == pytest.approx(20 * math.log10(255 / 51))


def test_identical_images_are_capped_at_the_configured_psnr() -> None:
    image = np.random.default_rng(0).random((3, 8, 8, 3))
    mask = np.ones((3, 8, 8), dtype=bool)
    assert InpaintConfig().psnr_cap == 100.0
    assert np.all(per_image_metrics(image, image, mask)["psnr"] == 100.0)
    assert np.all(per_image_metrics(image, image, mask, psnr_cap=60.0)["psnr"] == 60.0)
    assert psnr_from_mse(0.0) == 100.0
    assert psnr_from_mse(1e-30, 100.0) == 100.0  # above the cap: capped too
    accumulator = MetricAccumulator(psnr_cap=100.0)
    accumulator.update(image, image, mask)
    assert accumulator.summary()["psnr_db"] == 100.0


def test_values_outside_unit_range_are_refused() -> None:
    minus_one_to_one = np.full((1, 2, 2, 3), -0.5)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        per_image_metrics(minus_one_to_one, np.zeros((1, 2, 2, 3)), np.ones((1, 2, 2), bool))


def test_empty_hole_and_bad_shapes_are_refused() -> None:
    image = np.zeros((1, 2, 2, 3))
    with pytest.raises(ValueError, match="empty hole"):
        per_image_metrics(image, image, np.zeros((1, 2, 2), bool))
    with pytest.raises(ValueError, match="mask shape"):
        per_image_metrics(image, image, np.ones((1, 3, 2), bool))
    with pytest.raises(ValueError, match="needs the mask"):
        per_image_metrics(image, image)
