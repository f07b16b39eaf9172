"""Baseline: no training. The encoder keeps the paper's random Gaussian initialisation (N(0, 0.02))."""
from __future__ import annotations

import torch

from ssl_ctx.pretext.base import PretextMethod
from ssl_ctx.registry import PRETEXT_METHODS


@PRETEXT_METHODS.register("random_init")
class RandomInit(PretextMethod):
    """Its checkpoint holds the seeded initial weights, so probes load it like any other method's."""

    name = "random_init"
    trains = False

    def losses(self, batch: dict[str, torch.Tensor], generator: torch.Generator) -> dict[str, torch.Tensor]:
        return {}
