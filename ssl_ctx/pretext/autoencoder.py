"""Baseline: the context encoder's network reconstructing the whole image, with nothing dropped."""
from __future__ import annotations

import torch

from ssl_ctx.pretext.context_encoder import ContextEncoder
from ssl_ctx.pretext.declarations import HeldOutMetric
from ssl_ctx.registry import PRETEXT_METHODS


@PRETEXT_METHODS.register("autoencoder")
class Autoencoder(ContextEncoder):
    """Same encoder, channel-wise FC and decoder; the input is whole and the L2 covers every pixel."""

    name = "autoencoder"
    uses_mask = False  # nothing is dropped
    held_out_metrics = (HeldOutMetric("l2", "whole image", reference="mean_fill_l2"),)

    def masks(self, images: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (images.shape[0], 1, *images.shape[-2:])
        nothing = torch.zeros(shape, dtype=torch.bool, device=images.device)
        return nothing, ~nothing

    def evaluate_batch(self, batch: dict[str, torch.Tensor], generator: torch.Generator) -> dict[str, torch.Tensor]:
        values = super().evaluate_batch(batch, generator)
        return {"l2": values["masked_l2"], "mean_fill_l2": values["mean_fill_l2"]}
