"""Feature-map shapes of any encoder (the contract in docs/ARCHITECTURE.md) at a given input size."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class FeatureShape:
    """One encoder feature map at a given input size: name, channels, height, width."""

    name: str
    channels: int
    height: int
    width: int


@torch.no_grad()
def feature_shapes(encoder: nn.Module, input_size: tuple[int, int]) -> dict[str, FeatureShape]:
    """Every feature map's shape for an input of ``input_size`` (H, W), from one dry run in eval mode."""
    was_training = encoder.training
    encoder.eval()
    device = next(encoder.parameters()).device
    features = encoder(torch.zeros(1, 3, *input_size, device=device))
    encoder.train(was_training)
    return {name: FeatureShape(name, int(f.shape[1]), int(f.shape[2]), int(f.shape[3])) for name, f in features.items()}


def last_feature_shape(encoder: nn.Module, input_size: tuple[int, int]) -> FeatureShape:
    """The shape of the encoder's deepest map (the last ``feature_info`` entry), where pretext heads attach."""
    return feature_shapes(encoder, input_size)[encoder.feature_info[-1]["module"]]
