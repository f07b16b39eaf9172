"""The paper's 128-px centre-inpainting model (released ``train.lua``, ``fineSize=128``), L2 or joint loss.

The generator (:class:`~ssl_ctx.models.InpaintingGenerator128`) sees the whole 128x128 image with its central
``64 - 2·overlap`` square (56x56 for the code's ``overlapPred=4``) filled with the mean colour, and predicts the
central 64x64, i.e. the hole plus an ``overlap``-px border of known context around it.

Loss (``method.*``):

* reconstruction ``L_rec = mean over the (B, 3, 64, 64) patch of w ⊙ (x̂ − x)²`` on the ``[-1, 1]`` scale,
  with ``w = 1`` on the hole and ``model.overlap_weight`` (10) on the overlap border: the released code's
  ``MSECriterion`` whose gradient is scaled by ``wtl2Matrix`` (the weights are not normalised, as in the code);
* ``method.adversarial: true`` adds the code's unconditioned 64x64 discriminator (BCE, real centre vs
  predicted centre) and trains the generator on ``λ_rec·L_rec + λ_adv·L_adv`` (0.999 / 0.001); the
  generator's learning rate is then ``method.generator_lr_multiplier`` (10x) the discriminator's, as in the
  code when ``0 < λ_rec < 1``. The discriminator steps first on each batch, then the generator, as in the code.

``mask.type`` must be ``central`` with ``central_fraction`` 0.5 and ``data.input_size`` 128: the network's
geometry is fixed. ``mask.fill`` chooses the fill colour (the code's is ``imagenet_mean``).
For inpainting, :meth:`inpaint` returns the image with the predicted 64x64 centre in place;
:class:`ssl_ctx.inpaint.model.CheckpointInpainter` pastes only the hole from it.
"""
from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from ssl_ctx.config import ModelConfig
from ssl_ctx.errors import UserError
from ssl_ctx.masks import apply_mask, central_mask, central_square, fill_value
from ssl_ctx.models import InpaintingGenerator128, inpainting_discriminator, overlap_weight_map
from ssl_ctx.models.inpainting import INPUT_SIZE, OUTPUT_SIZE
from ssl_ctx.pretext.adversarial import Adversarial
from ssl_ctx.pretext.base import PretextMethod
from ssl_ctx.pretext.context_encoder import side_by_side
from ssl_ctx.pretext.declarations import HeldOutMetric
from ssl_ctx.pretext.losses import masked_l2
from ssl_ctx.registry import PRETEXT_METHODS


@PRETEXT_METHODS.register("inpainting128")
class Inpainting128(Adversarial, PretextMethod):
    """Centre inpainting at 128 px. Images ``(B, 3, 128, 128)`` in ``[-1, 1]``; prediction ``(B, 3, 64, 64)``."""

    name = "inpainting128"
    uses_mask = True
    encoder_path = "generator.encoder"  # the encoder is the generator's first part
    inpaint_hole: ClassVar[str] = "central"  # read by ssl_ctx.inpaint.model: one fixed central hole
    # The plain L2 over the hole (not the overlap-weighted training loss), against the mean fill of the hole.
    held_out_metrics = (HeldOutMetric("hole_l2", "hole", reference="mean_fill_hole_l2"),)

    @classmethod
    def network_input_side(cls, model: ModelConfig) -> int:
        return INPUT_SIZE

    def build(self) -> None:
        """The generator (its encoder is what probes transfer) and, for the joint loss, the discriminator."""
        model, mask, data = self.model_config, self.mask_config, self.data
        if tuple(data.input_size) != (INPUT_SIZE, INPUT_SIZE):
            raise UserError(f"inpainting128 works on {INPUT_SIZE}x{INPUT_SIZE} images, got input size "
                            f"{tuple(data.input_size)}; set data.input_size={INPUT_SIZE}")
        if mask.type != "central" or abs(mask.central_fraction - OUTPUT_SIZE / INPUT_SIZE) > 1e-9:
            raise UserError(f"inpainting128 predicts the central {OUTPUT_SIZE}x{OUTPUT_SIZE} square only; set "
                            f"mask.type=central and mask.central_fraction=0.5 (got {mask.type}, "
                            f"{mask.central_fraction})")
        if not 0 <= 2 * model.overlap < OUTPUT_SIZE:
            raise UserError(f"model.overlap={model.overlap} leaves no hole in the {OUTPUT_SIZE}-px centre")
        self.generator = InpaintingGenerator128(bottleneck_dim=model.bottleneck_dim)
        self.discriminator = (inpainting_discriminator(model.discriminator_widths)
                              if self.method_config.adversarial else None)
        self.overlap = model.overlap
        # 32: top-left of the predicted 64x64 patch, the central square of half the side.
        self.centre, _, _ = central_square(INPUT_SIZE, INPUT_SIZE, OUTPUT_SIZE / INPUT_SIZE)
        # (top, left, side) of the hole in the 128-px input: the predicted patch less the overlap border.
        self.hole_box = central_square(INPUT_SIZE, INPUT_SIZE, mask.central_fraction, border=model.overlap)
        self.register_buffer("fill", fill_value(mask, data.mean_rgb), persistent=False)
        self.register_buffer("loss_weights", overlap_weight_map(OUTPUT_SIZE, model.overlap, model.overlap_weight),
                             persistent=False)

    @property
    def encoder(self) -> nn.Module:
        """The generator's encoder (conv1..conv5), what a probe transfers."""
        return self.generator.encoder

    # ------------------------------------------------------------------------------------ the model

    def hole_mask(self, images: torch.Tensor) -> torch.Tensor:
        """bool ``(B, 1, 128, 128)``, True on the central ``64 - 2·overlap`` square."""
        return central_mask(images.shape[0], *images.shape[-2:], self.mask_config.central_fraction, images.device,
                            border=self.overlap)

    def centre_of(self, images: torch.Tensor) -> torch.Tensor:
        """The 64x64 patch the generator predicts: ``images[..., 32:96, 32:96]``."""
        return images[..., self.centre:self.centre + OUTPUT_SIZE, self.centre:self.centre + OUTPUT_SIZE]

    def predict(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(predicted centre ``(B, 3, 64, 64)``, masked input ``(B, 3, 128, 128)``); the hole's content is ignored."""
        masked = apply_mask(images, self.hole_mask(images), self.fill)
        return self.generator(masked), masked

    @torch.no_grad()
    def inpaint(self, images: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``images (B, 3, 128, 128)`` -> the same with the predicted 64x64 centre pasted in (overlap included).

        ``mask`` (bool ``(B, 1, 128, 128)``) must lie inside the model's hole; it is only checked, since the
        model always fills its own fixed hole.
        """
        if mask is not None and (mask & ~self.hole_mask(images)).any():
            raise ValueError("inpainting128 only fills its central hole; the mask reaches outside it")
        centre, _ = self.predict(images)
        return self._paste_centre(images, centre)

    def _paste_centre(self, images: torch.Tensor, centre: torch.Tensor) -> torch.Tensor:
        out = images.clone()
        self.centre_of(out).copy_(centre.to(out.dtype))
        return out

    def complete(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(images with the hole, and only the hole, filled by the prediction; masked input)."""
        centre, masked = self.predict(images)
        return torch.where(self.hole_mask(images), self._paste_centre(images, centre), images), masked

    def reconstruction_loss(self, centre: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        """The code's overlap-weighted MSE on the 64x64 patch (see the module docstring)."""
        squared = (centre.float() - self.centre_of(images).float()).pow(2)
        return (squared * self.loss_weights).mean()

    def losses(self, batch: dict[str, torch.Tensor], generator: torch.Generator) -> dict[str, torch.Tensor]:
        images = batch["image"]
        centre, _ = self.predict(images)
        return {"loss": self.reconstruction_loss(centre, images)}

    def evaluate_batch(self, batch: dict[str, torch.Tensor], generator: torch.Generator) -> dict[str, torch.Tensor]:
        """Weighted loss, plain L2 over the hole, and the mean-fill L2 over the hole (``[-1, 1]`` scale)."""
        images = batch["image"]
        centre, masked = self.predict(images)
        hole = self.hole_mask(images)
        completed = torch.where(hole, self._paste_centre(images, centre), images)
        return {"loss_rec": self.reconstruction_loss(centre, images),
                "hole_l2": masked_l2(completed, images, hole),
                "mean_fill_hole_l2": masked_l2(masked, images, hole)}

    def image_grid(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """masked input | output (hole filled) | original."""
        images = batch["image"][:8]
        completed, masked = self.complete(images)
        return side_by_side(masked, completed, images)

    # --------------------------------------------------------------------------------- adversarial

    def adversarial_inputs(self, batch: dict[str, torch.Tensor], step: int,
                           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The real centre 64x64, the predicted one, and the overlap-weighted reconstruction loss."""
        images = batch["image"]
        centre, _ = self.trained_call("generator", self.predict, images)
        return self.centre_of(images), centre, self.reconstruction_loss(centre, images)
