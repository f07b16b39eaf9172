"""Frozen probes: the same BatchNorm treatment for every encoder, features extracted once, solver choice."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ssl_ctx.config import ProbeConfig, load_config
from ssl_ctx.data.loader import CachedBatchLoader
from ssl_ctx.errors import UserError
from ssl_ctx.models import build_encoder, gaussian_init_
from ssl_ctx.probes.batch_norm import recompute_batch_norm_statistics
from ssl_ctx.probes.common import resolve_solver
from ssl_ctx.probes.features import FeatureSpec, cached_features, extraction_count, weights_digest
from ssl_ctx.probes.segmentation import _upsampled_at, sample_pixels
from tests.helpers import random_split


def encoder(norm="batch", seed=0):
    torch.manual_seed(seed)
    return gaussian_init_(build_encoder("alexnet32", norm=norm, width=0.25))


def full_precision():
    return torch.autocast("cpu", enabled=False)


def probe_config(*overrides):
    return load_config(None, ["probe.bn_images=16", "train.batch_size=8", *overrides])


def sections(*overrides):
    """The sections recompute_batch_norm_statistics reads: probe, data, train."""
    config = probe_config(*overrides)
    return config.probe, config.data, config.train


def test_batch_norm_statistics_are_the_clean_images_statistics():
    split = random_split(24)
    model = encoder()
    assert torch.equal(model.conv1.bn.running_mean, torch.zeros_like(model.conv1.bn.running_mean))
    said = recompute_batch_norm_statistics(model, *sections(), split, torch.device("cpu"))
    assert "recomputed on 16 unmasked training images" in said
    # The first 16 images of the fixed order, without augmentation: conv1's pre-BN mean is the running mean.
    loader = CachedBatchLoader(split, batch_size=8, train=True, seed=0, crop_scale=1.0, hflip=False, drop_last=False)
    images = torch.cat([b["image"] for b in loader.batches(0)])[:16]
    with torch.no_grad():
        expected = model.conv1.conv(images).mean(dim=(0, 2, 3))
    # float32 sums of the same values in another order: 3e-9 on every kernel path tried (tests/README.md).
    assert torch.allclose(model.conv1.bn.running_mean, expected, atol=1e-5)


def test_every_encoder_gets_the_same_images_whatever_the_seed():
    split = random_split(24)
    first, second = encoder(), encoder()
    recompute_batch_norm_statistics(first, *sections("train.seed=0"), split, torch.device("cpu"))
    recompute_batch_norm_statistics(second, *sections("train.seed=5"), split, torch.device("cpu"))
    assert weights_digest(first) == weights_digest(second)


def test_keep_and_no_batch_norm_leave_the_encoder_alone():
    split = random_split(24)
    model = encoder()
    before = weights_digest(model)
    assert "kept" in recompute_batch_norm_statistics(model, *sections("probe.bn_statistics=keep"), split, "cpu")
    assert weights_digest(model) == before
    lrn = encoder("lrn")
    assert "no BatchNorm" in recompute_batch_norm_statistics(lrn, *sections(), split, torch.device("cpu"))
    with pytest.raises(UserError, match="probe.bn_statistics"):
        recompute_batch_norm_statistics(model, *sections("probe.bn_statistics=fresh"), split, "cpu")


def test_features_are_extracted_once_and_reused(tmp_path):
    split = random_split(20)
    model = encoder()
    spec = FeatureSpec(("conv2", "conv5"), ((2, 2), None), (32, 32))
    loader = CachedBatchLoader(split, batch_size=8, train=False, drop_last=False)
    before = extraction_count()
    arrays, folder, reused = cached_features(model, spec, split, loader, tmp_path, full_precision)
    assert not reused and extraction_count() == before + 1
    assert arrays["conv2"].shape == (20, model.feature_info[1]["num_chs"] * 4) and arrays["conv5"].ndim == 4
    again, same_folder, reused = cached_features(model, spec, split, loader, tmp_path, full_precision)
    assert reused and same_folder == folder and extraction_count() == before + 1
    assert np.array_equal(arrays["conv2"], again["conv2"])
    with torch.no_grad():  # the stored features are the encoder's, pooled as specified
        maps = model.eval()(next(loader.batches(0))["image"])
    pooled = F.adaptive_avg_pool2d(maps["conv2"], (2, 2)).flatten(1)
    # float16 storage rounds by up to 2^-11 = 4.9e-4 relative (measured 4.8e-4): 2e-3 is four roundings.
    assert np.allclose(arrays["conv2"][:8], pooled.numpy(), atol=2e-3, rtol=2e-3)
    other = encoder(seed=1)  # other weights: another cache entry
    cached_features(other, spec, split, loader, tmp_path, full_precision)
    assert extraction_count() == before + 2 and len(list(tmp_path.iterdir())) == 2


def test_solver_follows_the_encoder_treatment():
    assert resolve_solver(ProbeConfig(task="classification", mode="linear")) == "ridge"
    assert resolve_solver(ProbeConfig(task="segmentation", mode="linear")) == "ridge"
    assert resolve_solver(ProbeConfig(task="detection", mode="linear")) == "sgd"
    assert resolve_solver(ProbeConfig(task="classification", mode="finetune")) == "sgd"
    with pytest.raises(UserError, match="probe.solver=ridge fits frozen features"):
        resolve_solver(ProbeConfig(task="segmentation", mode="finetune", solver="ridge"))
    with pytest.raises(UserError, match="did you mean 'ridge'"):
        resolve_solver(ProbeConfig(solver="rigde"))


def test_sampled_pixel_features_are_the_upsampled_maps():
    generator = torch.Generator().manual_seed(0)
    maps = {"a": torch.randn(2, 3, 4, 5, generator=generator), "b": torch.randn(2, 2, 8, 10, generator=generator)}
    labels = np.zeros((2, 16, 20), dtype=np.uint8)
    labels[:, :2] = 255  # void rows are never sampled
    rows, cols = sample_pixels(labels, 30)
    assert (rows >= 2).all()
    sampled = _upsampled_at(maps, rows, cols, (16, 20))
    upsampled = torch.cat([F.interpolate(m, size=(16, 20), mode="bilinear", align_corners=False)
                           for m in maps.values()], dim=1)
    expected = upsampled[torch.arange(2)[:, None], :, rows, cols]
    assert torch.allclose(sampled, expected, atol=1e-5)  # the same bilinear weights, gathered: 2.7e-7 measured


def test_features_extracted_by_a_probe_are_removed_unless_kept(tmp_path):
    from ssl_ctx.probes import remove_extracted_features

    extracted, reused = tmp_path / "a", tmp_path / "b"
    extracted.mkdir(), reused.mkdir()
    remove_extracted_features({"folders": {"train": str(extracted), "val": str(reused)},
                               "extracted": ["train"], "reused": ["val"]})
    assert not extracted.exists() and reused.exists()
