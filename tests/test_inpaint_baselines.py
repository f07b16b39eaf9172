"""Classical inpainting baselines: they run, fill the hole and keep the context exactly."""
from __future__ import annotations

import numpy as np
import pytest

from ssl_ctx.errors import UserError
from ssl_ctx.inpaint.baselines import (
    BASELINES,
    NearestNeighbourInpaint,
    build_baseline,
    hole_free_blocks,
)


def smooth_images(count: int = 3, size: int = 32, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:size, 0:size] / size
    images = []
    for _ in range(count):
        a, b, c = rng.random(3)
        channels = [a * ys + (1 - a) * xs, b * xs, np.full_like(xs, c)]
        images.append(np.stack(channels, -1) * 200 + rng.integers(0, 20, (size, size, 3)))
    return np.clip(images, 0, 255).astype(np.uint8)


def central(count: int, size: int, side: int) -> np.ndarray:
    mask = np.zeros((count, size, size), dtype=bool)
    top = (size - side) // 2
    mask[:, top:top + side, top:top + side] = True
    return mask


@pytest.mark.parametrize("name", BASELINES.names())
def test_every_baseline_runs_and_keeps_the_context(name: str) -> None:
    images = smooth_images(2, size=24)
    masks = central(2, 24, 8)
    masks[1] = False
    masks[1, 2:9, 14:22] = True  # another shape
    out = build_baseline(name, search_images=smooth_images(5, size=24, seed=1))(images, masks)
    assert out.dtype == np.uint8 and out.shape == images.shape
    assert np.array_equal(out[~masks], images[~masks])
    assert not np.array_equal(out[masks], np.zeros_like(out[masks]))


def test_mean_fill_is_the_context_mean() -> None:
    images = smooth_images(1)
    masks = central(1, 32, 10)
    out = build_baseline("mean_fill")(images, masks)
    expected = np.round(images[0][~masks[0]].mean(axis=0)).astype(np.uint8)
    assert np.all(out[0][masks[0]] == expected)


def test_diffusion_fills_a_smooth_ramp_closely() -> None:
    ramp = np.repeat(np.linspace(0, 255, 32)[None, :, None], 32, axis=0).repeat(3, axis=2).astype(np.uint8)[None]
    masks = central(1, 32, 8)
    for name in ("telea", "navier_stokes"):
        out = build_baseline(name)(ramp, masks)
        assert np.abs(out[masks].astype(int) - ramp[masks].astype(int)).mean() < 10


@pytest.mark.parametrize("feature", ["hog", "pixels"])
def test_nearest_neighbour_pastes_the_closest_training_image(feature: str) -> None:
    search = smooth_images(6, size=48, seed=3)
    query = search[4:5].copy()
    query[0, 16:32, 16:32] = 0  # the hole's content must not matter
    masks = central(1, 48, 16)
    inpainter = NearestNeighbourInpaint(search, feature=feature)
    out = inpainter(query, masks)
    assert inpainter.last_indices == [4]
    assert np.array_equal(out[0], search[4])


def test_hole_free_blocks_geometry() -> None:
    mask = np.zeros((32, 32), dtype=bool)  # 4x4 cells of 8 px -> 3x3 blocks of 2x2 cells
    mask[0, 0] = True  # touches cell (0, 0): only block (0, 0) holds it
    free = hole_free_blocks(mask)
    assert free.shape == (3, 3)
    assert not free[0, 0] and free.sum() == 8


def test_unknown_baseline_and_missing_search_set() -> None:
    with pytest.raises(UserError, match="did you mean 'telea'"):
        build_baseline("telia")
    with pytest.raises(ValueError, match="search_images"):
        build_baseline("nearest_neighbour")
