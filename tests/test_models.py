"""ssl_ctx.models: the encoder contract for every registered encoder, and each building block's shapes."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from ssl_ctx.errors import UserError
from ssl_ctx.models import (
    ALEXNET_VARIANTS,
    AlexNetEncoder,
    ChannelwiseBottleneck,
    ChannelwiseFC,
    Discriminator,
    InpaintingGenerator128,
    UpconvDecoder,
    build_encoder,
    encoder_names,
    gaussian_init_,
    inpainting_discriminator,
    overlap_weight_map,
)
from ssl_ctx.registry import ENCODERS

TIMM_CASE = "timm:resnet18"
TIMM_INPUT = 64  # small input keeps the timm case fast; its maps are still stride 2..32


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # These tensors are tiny: on a busy 2-core machine, intra-op threads cost 10x more than they save.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _input_side(name: str, encoder: nn.Module) -> int:
    return TIMM_INPUT if name.startswith("timm:") else encoder.input_size


# ------------------------------------------------------------------------------------------ encoder contract


@pytest.mark.parametrize("name", [*encoder_names(), TIMM_CASE])
def test_encoder_features_match_feature_info(name: str) -> None:
    encoder = build_encoder(name).eval()
    side = _input_side(name, encoder)
    with torch.no_grad():
        features = encoder(torch.randn(2, 3, side, side))

    assert list(features) == [info["module"] for info in encoder.feature_info]
    for info in encoder.feature_info:
        fmap = features[info["module"]]
        assert fmap.shape[:2] == (2, info["num_chs"]), info
        assert fmap.shape[2] == fmap.shape[3]
        # Nominal stride within a factor sqrt(2) of the real one (unpadded convs and pools round down).
        assert abs(math.log2(side / fmap.shape[2] / info["reduction"])) < 0.5, (info, fmap.shape)
    last = encoder.feature_info[-1]
    assert encoder.out_channels == last["num_chs"]
    if not name.startswith("timm:"):
        assert features[last["module"]].shape[2] == encoder.out_size


def test_all_variants_registered() -> None:
    assert {*ALEXNET_VARIANTS, "inpainting128"} <= set(encoder_names())
    assert set(ALEXNET_VARIANTS) == {"alexnet227", "alexnet128", "alexnet96", "alexnet64", "alexnet32"}


def test_alexnet227_is_caffenet_geometry() -> None:
    encoder = build_encoder("alexnet227").eval()
    with torch.no_grad():
        features = encoder(torch.randn(1, 3, 227, 227))
    assert features["conv1"].shape == (1, 96, 55, 55)
    assert features["conv5"].shape == (1, 256, 13, 13)
    assert features["pool5"].shape == (1, 256, 6, 6)
    assert encoder.out_size == 6 and encoder.out_channels == 256
    conv1 = encoder.conv1.conv
    assert conv1.kernel_size == (11, 11) and conv1.stride == (4, 4) and conv1.groups == 1


@pytest.mark.parametrize("name", sorted(ALEXNET_VARIANTS))
def test_alexnet_variants_keep_five_convs_and_a_spatial_pool5(name: str) -> None:
    encoder = build_encoder(name)
    convs = [m for m in encoder.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [96, 256, 384, 384, 256]
    assert encoder.out_size >= 2


@pytest.mark.parametrize(
    ("norm", "has_lrn", "has_bn"), [("lrn", True, False), ("batch", False, True), ("none", False, False)]
)
def test_alexnet_norm_option(norm: str, has_lrn: bool, has_bn: bool) -> None:
    encoder = build_encoder("alexnet32", norm=norm)
    kinds = {type(m) for m in encoder.modules()}
    assert (nn.LocalResponseNorm in kinds) == has_lrn
    assert (nn.BatchNorm2d in kinds) == has_bn
    if has_lrn:  # CaffeNet: norm1 and norm2 only
        assert sum(isinstance(m, nn.LocalResponseNorm) for m in encoder.modules()) == 2


def test_features_are_post_activation() -> None:
    encoder = build_encoder("alexnet32").eval()
    with torch.no_grad():
        features = encoder(torch.randn(2, 3, 32, 32))
    assert all(fmap.min() >= 0 for fmap in features.values())


def test_unknown_names_are_user_errors() -> None:
    with pytest.raises(UserError, match="alexnet64"):
        build_encoder("alexnet63")
    with pytest.raises(UserError, match="lrn"):
        AlexNetEncoder("alexnet64", norm="lnr")
    with pytest.raises(UserError, match="unknown timm model 'resnet18x'.*resnet18"):
        build_encoder("timm:resnet18x")


def test_registry_rejects_duplicate_name() -> None:
    with pytest.raises(ValueError, match="already registered"):
        ENCODERS.register("alexnet64")(lambda **kwargs: None)


# ------------------------------------------------------------------------------------------- channel-wise FC


def test_channelwise_fc_parameter_count() -> None:
    m, n = 5, 4
    layer = ChannelwiseFC(m, n)
    assert sum(p.numel() for p in layer.parameters()) == m * n**4 + m * n**2
    assert layer.weight.shape == (m, n * n, n * n) and layer.bias.shape == (m, n * n)


def test_channelwise_fc_is_channelwise_and_matches_per_channel_linear() -> None:
    layer = ChannelwiseFC(3, 4)
    x = torch.randn(2, 3, 4, 4)
    y = layer(x)
    x2 = x.clone()
    x2[:, 0] += torch.randn(2, 4, 4)
    y2 = layer(x2)
    assert not torch.allclose(y2[:, 0], y[:, 0])
    torch.testing.assert_close(y2[:, 1:], y[:, 1:])
    # assert_close's float32 defaults (rtol 1.3e-6, atol 1e-5: a few ulps); measured 0 on every kernel path tried.
    for c in range(3):  # parity with the definition: one n^2 -> n^2 linear map per channel
        expected = x[:, c].flatten(1) @ layer.weight[c].T + layer.bias[c]
        torch.testing.assert_close(y[:, c].flatten(1), expected)


def test_channelwise_bottleneck_sees_the_whole_map_and_conv1x1_does_not() -> None:
    x = torch.rand(1, 8, 4, 4)
    x2 = x.clone()
    x2[..., 0, 0] += 1.0  # one corner pixel of every channel
    for kind, global_view in (("channelwise_fc", True), ("conv1x1", False)):
        bottleneck = ChannelwiseBottleneck(8, 4, kind=kind, init="torch").eval()
        y, y2 = bottleneck(x), bottleneck(x2)
        assert y.shape == (1, 8, 4, 4)
        assert (not torch.allclose(y[..., 3, 3], y2[..., 3, 3])) == global_view, kind
    assert not any(isinstance(m, ChannelwiseFC) for m in ChannelwiseBottleneck(8, 4, kind="conv1x1").modules())
    conv = ChannelwiseBottleneck(8, 4).conv
    assert conv.kernel_size == (1, 1) and conv.stride == (1, 1)


# ----------------------------------------------------------------------------------------------- decoder


@pytest.mark.parametrize("name", sorted(ALEXNET_VARIANTS))
def test_decoder_reaches_the_input_size(name: str) -> None:
    encoder = build_encoder(name).eval()
    bottleneck = ChannelwiseBottleneck(encoder.out_channels, encoder.out_size).eval()
    decoder = UpconvDecoder(encoder.out_channels, encoder.out_size, encoder.input_size).eval()
    side = encoder.input_size
    with torch.no_grad():
        image = decoder(bottleneck(encoder(torch.randn(1, 3, side, side))["pool5"]))
    assert image.shape == (1, 3, side, side)
    assert image.abs().max() <= 1.0
    assert sum(isinstance(m, nn.ConvTranspose2d) for m in decoder.modules()) == 5


@pytest.mark.parametrize(("in_size", "out_size"), [(1, 64), (2, 32), (3, 64), (5, 100), (6, 227), (7, 128), (13, 227)])
def test_decoder_exact_for_any_sizes(in_size: int, out_size: int) -> None:
    decoder = UpconvDecoder(4, in_size, out_size, widths=(4, 4, 4, 4), norm="none")
    assert decoder(torch.randn(1, 4, in_size, in_size)).shape == (1, 3, out_size, out_size)
    assert decoder.sides[-1] == out_size


def test_decoder_norm_option() -> None:
    with_bn = UpconvDecoder(8, 4, 64)
    without = UpconvDecoder(8, 4, 64, norm="none")
    assert sum(isinstance(m, nn.BatchNorm2d) for m in with_bn.modules()) == 4  # not after the last up-conv
    assert not any(isinstance(m, nn.BatchNorm2d) for m in without.modules())


# ------------------------------------------------------------------------------------------ discriminator


@pytest.mark.parametrize("size", [32, 64, 128])
def test_discriminator_gives_one_logit_per_image(size: int) -> None:
    disc = Discriminator(size)
    logits = disc(torch.randn(2, 3, size, size))
    assert logits.shape == (2,)
    assert logits.requires_grad


def test_discriminator_64_is_the_released_codes() -> None:
    disc = inpainting_discriminator()
    convs = [m for m in disc.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 128, 256, 512, 1]
    assert all(c.kernel_size == (4, 4) for c in convs)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in disc.modules()) == 3
    assert not any(isinstance(m, nn.Sigmoid) for m in disc.modules())


# -------------------------------------------------------------------------------------- inpainting model


def test_inpainting_generator_shapes_with_the_4000d_bottleneck() -> None:
    with torch.device("meta"):  # the real 71M-parameter model, shapes only (no memory, no time)
        generator = InpaintingGenerator128()
        x = torch.empty(2, 3, 128, 128)
        assert generator.encode(x).shape == (2, 4000)
        assert generator(x).shape == (2, 3, 64, 64)
    assert generator.bottleneck.conv.out_channels == 4000
    assert generator.decoder.sides == [4, 8, 16, 32, 64]
    widths = [m.out_channels for m in generator.decoder.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert widths == [512, 256, 128, 64, 3]


def test_inpainting_generator_forward_values() -> None:
    generator = InpaintingGenerator128(bottleneck_dim=32, encoder_widths=(8, 8, 8, 8, 8), decoder_widths=(8, 8, 8, 8))
    out = generator(torch.randn(2, 3, 128, 128))
    assert out.shape == (2, 3, 64, 64)
    assert out.abs().max() <= 1.0


def test_overlap_weight_map() -> None:
    weights = overlap_weight_map(64, overlap=4, border_weight=10.0)
    assert weights.shape == (1, 1, 64, 64)
    assert weights[0, 0, 4:60, 4:60].eq(1).all()
    assert weights[0, 0, :4].eq(10).all() and weights[0, 0, :, 60:].eq(10).all()
    assert int(weights.eq(10).sum()) == 64 * 64 - 56 * 56


# ------------------------------------------------------------------------------------------------- init


def test_gaussian_init() -> None:
    model = nn.Sequential(nn.Conv2d(64, 64, 3), nn.BatchNorm2d(256), nn.ConvTranspose2d(64, 64, 4))
    gaussian_init_(model)
    for layer in (model[0], model[2]):
        assert abs(layer.weight.std().item() - 0.02) < 0.001
        assert abs(layer.weight.mean().item()) < 0.001
        assert layer.bias.eq(0).all()
    assert abs(model[1].weight.mean().item() - 1.0) < 0.01
    assert abs(model[1].weight.std().item() - 0.02) < 0.005
    assert model[1].bias.eq(0).all()


def test_builders_apply_gaussian_init_by_default() -> None:
    conv2 = build_encoder("alexnet32").conv2.conv.weight
    assert abs(conv2.std().item() - 0.02) < 0.001
    torch_default = build_encoder("alexnet32", init="torch", groups=1).conv2.conv.weight
    assert torch_default.std().item() < 0.015  # Kaiming-uniform, 1 / sqrt(3 * 96 * 25)
    assert abs(ChannelwiseFC(4, 6).weight.std().item() - 0.02) > 0.05  # the layer alone keeps nn.Linear's
    assert abs(ChannelwiseBottleneck(64, 6).fc.weight.std().item() - 0.02) < 0.001


def test_caffenet_groups_split_conv2_conv4_conv5() -> None:
    grouped, plain = build_encoder("alexnet227", groups=2), build_encoder("alexnet227", groups=1)
    assert [grouped.get_submodule(f"conv{i}.conv").groups for i in range(1, 6)] == [1, 2, 1, 2, 2]
    assert [plain.get_submodule(f"conv{i}.conv").groups for i in range(1, 6)] == [1, 1, 1, 1, 1]
    # CaffeNet's conv1-conv5 weights: 34,848 + 307,200 + 884,736 + 663,552 + 442,368 (biases aside)
    weights = [grouped.get_submodule(f"conv{i}.conv").weight.numel() for i in range(1, 6)]
    assert weights == [34848, 307200, 884736, 663552, 442368]
