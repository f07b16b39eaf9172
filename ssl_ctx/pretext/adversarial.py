"""Joint (reconstruction + adversarial) training, mixed into the methods that offer it (``method.adversarial``).

The generator is every network of the method but ``self.discriminator``; each gets its optimiser (the generator's
learning rate 10x the discriminator's when 0 < λ_rec < 1, as the released code) and its own DDP group. A step is
one discriminator update on real vs fake, then one generator update on ``λ_rec · L_rec + λ_adv · L_adv``
(standard GAN BCE). With ``self.discriminator`` None the method trains on its reconstruction loss alone.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ssl_ctx.config import OptimConfig
from ssl_ctx.engine.optim import build_optimizer, optimize
from ssl_ctx.pretext.losses import discriminator_loss, generator_adversarial_loss

DISCRIMINATOR = "discriminator"


class Adversarial:
    """Mix-in for a :class:`~ssl_ctx.pretext.base.PretextMethod` with a ``discriminator`` attribute (None: no
    adversarial loss). The method implements :meth:`adversarial_inputs`; put the mix-in first among the bases."""

    discriminator: nn.Module | None

    def adversarial_inputs(self, batch: dict[str, torch.Tensor], step: int,
                           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(real, fake, loss_rec)`` of one batch: what the discriminator sees as real and as fake, and the
        generator's reconstruction loss. The generator runs through ``self.trained_call("generator", ...)``."""
        raise NotImplementedError

    def trained_modules(self) -> dict[str, list[nn.Module]]:
        if self.discriminator is None:
            return super().trained_modules()  # type: ignore[misc]
        return {"generator": [child for name, child in self.named_children() if name != DISCRIMINATOR],
                DISCRIMINATOR: [self.discriminator]}

    def configure_optimizers(self, optim: OptimConfig) -> dict[str, torch.optim.Optimizer]:
        if self.discriminator is None:
            return super().configure_optimizers(optim)  # type: ignore[misc]
        method = self.method_config
        scale = method.generator_lr_multiplier if 0 < method.lambda_rec < 1 else 1.0
        generator = [p for name, p in self.named_parameters() if not name.startswith(DISCRIMINATOR + ".")]
        return {"generator": build_optimizer(generator, optim, lr_scale=scale, device_type=self.device_type),
                DISCRIMINATOR: build_optimizer(self.discriminator.parameters(), optim, device_type=self.device_type)}

    def train_step(self, batch: dict[str, torch.Tensor], optimizers: dict[str, torch.optim.Optimizer],
                   step: int) -> dict[str, Any]:
        if self.discriminator is None:
            return super().train_step(batch, optimizers, step)  # type: ignore[misc]
        real, fake, loss_rec = self.adversarial_inputs(batch, step)
        method = self.method_config

        def discriminate(images: torch.Tensor) -> torch.Tensor:
            return self.trained_call(DISCRIMINATOR, self.discriminator, images)

        loss_d = discriminator_loss(discriminate(real), discriminate(fake.detach()))
        optimize(loss_d, optimizers[DISCRIMINATOR])
        loss_adv = generator_adversarial_loss(discriminate(fake))
        loss = method.lambda_rec * loss_rec + method.lambda_adv * loss_adv
        # The discriminator's weights also receive gradients here; its next zero_grad clears them.
        optimize(loss, optimizers["generator"])
        return {"loss": loss.detach(), "loss_rec": loss_rec.detach(), "loss_adv": loss_adv.detach(),
                "loss_discriminator": loss_d.detach()}
