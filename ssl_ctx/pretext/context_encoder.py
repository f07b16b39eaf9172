"""The context encoder (Pathak et al., 2016): encoder -> channel-wise FC -> up-conv decoder fills dropped regions.

Loss: the normalised masked L2 over the hole (the paper's Eq. 1; ``method.context_weight`` and
``method.loss_normalisation`` give the released train_random.lua's all-pixel MSE instead), optionally joint with
an adversarial loss ``L = λ_rec · L_rec + λ_adv · L_adv`` (λ_rec 0.999, λ_adv 0.001) where a discriminator tells
real images from the generator's output (``method.discriminator_input``: its raw output, as the paper and the
code, or the prediction pasted into the real context); the generator's learning rate is then 10x the
discriminator's, as in the released code.
"""
from __future__ import annotations

import torch

from ssl_ctx.engine.distributed import shard_of_global_draw
from ssl_ctx.errors import UserError, unknown_name_error
from ssl_ctx.masks import apply_mask, fill_value, make_masks
from ssl_ctx.models import ChannelwiseBottleneck, Discriminator, UpconvDecoder, last_feature_shape
from ssl_ctx.pretext.adversarial import Adversarial
from ssl_ctx.pretext.base import PretextMethod
from ssl_ctx.pretext.declarations import HeldOutMetric
from ssl_ctx.pretext.losses import masked_l2, reconstruction_loss
from ssl_ctx.registry import PRETEXT_METHODS


def side_by_side(*rows: torch.Tensor, limit: int = 8) -> torch.Tensor:
    """Columns of images (each ``(B, 3, H, W)`` in [-1, 1]) -> one ``(3, n·H, k·W)`` picture in [0, 1]."""
    columns = [r[:limit].float().clamp(-1, 1) * 0.5 + 0.5 for r in rows]
    return torch.cat([torch.cat(list(column), dim=1) for column in columns], dim=2)


DISCRIMINATOR_INPUTS = ("raw", "pasted")


@PRETEXT_METHODS.register("context_encoder")
class ContextEncoder(Adversarial, PretextMethod):
    """Fills the hole of a masked image. Input and output: ``(B, 3, H, W)`` in [-1, 1]."""

    name = "context_encoder"
    uses_mask = True
    held_out_metrics = (HeldOutMetric("masked_l2", "hole", reference="mean_fill_l2"),)

    def build(self) -> None:
        super().build()
        model, data = self.model_config, self.data
        choice = self.method_config.discriminator_input
        if choice not in DISCRIMINATOR_INPUTS:
            raise unknown_name_error("method.discriminator_input", choice, DISCRIMINATOR_INPUTS)
        deepest = last_feature_shape(self.encoder, data.input_size)
        self.feature_name, channels, height, width = deepest.name, deepest.channels, deepest.height, deepest.width
        if height != width:
            raise UserError(f"the channel-wise FC needs a square feature map, but {model.encoder} gives "
                            f"{height}x{width} for input {data.input_size}; set data.input_size to a square size")
        self.bottleneck = ChannelwiseBottleneck(channels, height, dropout=model.dropout, kind=model.bottleneck)
        self.decoder = UpconvDecoder(channels, height, data.input_size[0], widths=model.decoder_widths,
                                     norm=model.decoder_norm)
        self.discriminator = (Discriminator(data.input_size[0], widths=model.discriminator_widths)
                              if self.method_config.adversarial else None)
        self.register_buffer("fill", fill_value(self.mask_config, data.mean_rgb), persistent=False)

    # ------------------------------------------------------------------------------------ the model

    def masks(self, images: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(input_mask, loss_mask): pixels dropped from the input, and pixels the loss is measured on."""
        batch, _, height, width = images.shape
        # Under torchrun, masks are drawn for the global batch and each process keeps its samples' rows.
        mask = shard_of_global_draw(
            lambda count: make_masks(self.mask_config, count, height, width, images.device, generator), batch)
        return mask, mask

    def reconstruct(self, images: torch.Tensor, input_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(output, masked input). images ``(B, 3, H, W)``, input_mask bool ``(B, 1, H, W)``."""
        masked = apply_mask(images, input_mask, self.fill)
        features = self.encoder(masked)[self.feature_name]
        return self.decoder(self.bottleneck(features)), masked

    def reconstruction_loss(self, output: torch.Tensor, images: torch.Tensor, loss_mask: torch.Tensor) -> torch.Tensor:
        method = self.method_config
        return reconstruction_loss(output, images, loss_mask, method.context_weight, method.loss_normalisation)

    def losses(self, batch: dict[str, torch.Tensor], generator: torch.Generator) -> dict[str, torch.Tensor]:
        images = batch["image"]
        input_mask, loss_mask = self.masks(images, generator)
        output, _ = self.reconstruct(images, input_mask)
        return {"loss": self.reconstruction_loss(output, images, loss_mask)}

    def evaluate_batch(self, batch: dict[str, torch.Tensor], generator: torch.Generator) -> dict[str, torch.Tensor]:
        """Masked L2 of the model and of the mean-fill baseline on the same masks."""
        images = batch["image"]
        input_mask, loss_mask = self.masks(images, generator)
        output, masked = self.reconstruct(images, input_mask)
        return {"masked_l2": masked_l2(output, images, loss_mask),
                "mean_fill_l2": masked_l2(self.fill.expand_as(images), images, loss_mask)}

    def image_grid(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """masked input | output (prediction pasted into the hole) | original."""
        images = batch["image"][:8]
        input_mask, loss_mask = self.masks(images, self.step_generator(0, images.device, stream=2))
        output, masked = self.reconstruct(images, input_mask)
        return side_by_side(masked, torch.where(loss_mask, output, images), images)

    # --------------------------------------------------------------------------------- adversarial

    def adversarial_inputs(self, batch: dict[str, torch.Tensor], step: int,
                           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Real images; the generator's raw output or its prediction pasted into the real context
        (``method.discriminator_input``); the reconstruction loss on the hole."""
        images = batch["image"]
        input_mask, loss_mask = self.masks(images, self.step_generator(step, images.device))
        output, _ = self.trained_call("generator", self.reconstruct, images, input_mask)
        fake = output if self.method_config.discriminator_input == "raw" else torch.where(loss_mask, output, images)
        return images, fake, self.reconstruction_loss(output, images, loss_mask)
