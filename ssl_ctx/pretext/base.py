"""Shared machinery of pretext methods: the encoder, the optimiser, one-loss training steps, evaluation.

A new method subclasses :class:`PretextMethod`, registers under a name, and implements :meth:`losses`
(see ``plugins/rotation_pretext`` for a worked example outside this package).
"""
from __future__ import annotations

import inspect
import typing
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from ssl_ctx.config import Config, OptimConfig
from ssl_ctx.engine.distributed import all_reduce_mean
from ssl_ctx.engine.optim import build_optimizer, optimize
from ssl_ctx.engine.task import TrainingTask
from ssl_ctx.models import build_encoder
from ssl_ctx.pretext.losses import discriminator_loss, generator_adversarial_loss
from ssl_ctx.registry import ENCODERS


@dataclass(frozen=True)
class DataInfo:
    """What a method needs to know about its training data."""

    input_size: tuple[int, int]
    mean_rgb: tuple[float, float, float] | None = None
    num_classes: int | None = None


def encoder_kwargs(config: Config) -> dict[str, Any]:
    """The model config's options that the encoder's builder accepts (AlexNet: ``norm``, ``width``, ``groups``)."""
    name = config.model.encoder
    if name.startswith("timm:"):
        return {}
    builder = ENCODERS.get(name)
    accepted = inspect.signature(builder).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values()):
        # A builder that forwards **kwargs: look at the class it returns.
        built = typing.get_type_hints(builder).get("return")
        accepted = inspect.signature(built).parameters if isinstance(built, type) else accepted
    offered = {"norm": config.model.norm, "width": config.model.width, "groups": config.model.groups}
    return {key: value for key, value in offered.items() if key in accepted}


class PretextMethod(TrainingTask):
    """Base of every pretext method: owns ``self.encoder``; subclasses add heads and :meth:`losses`."""

    name: ClassVar[str] = "base"
    needs_labels: ClassVar[bool] = False  # the training split must have class labels
    trains: ClassVar[bool] = True  # False: the initial weights are the result (random_init)

    def __init__(self, config: Config, data: DataInfo) -> None:
        super().__init__()
        self.config = config
        self.data = data
        self.encoder = build_encoder(config.model.encoder, **encoder_kwargs(config))

    # -------------------------------------------------------------------------------- to override

    def losses(self, batch: dict[str, torch.Tensor], generator: torch.Generator) -> dict[str, torch.Tensor]:
        """Return ``{"loss": scalar, ...}`` for one batch; ``generator`` seeds any randomness (masks)."""
        raise NotImplementedError

    def image_grid(self, batch: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """Optional ``(3, H, W)`` picture in ``[0, 1]`` for TensorBoard."""
        return None

    # ---------------------------------------------------------------------------- shared machinery

    def configure_optimizers(self, optim: OptimConfig) -> dict[str, torch.optim.Optimizer]:
        return {"model": build_optimizer(self.parameters(), optim, device_type=self._device_type())}

    def trained_modules(self) -> dict[str, list[nn.Module]]:
        """One group, or with a discriminator: the generator (every other child) and the discriminator."""
        discriminator = getattr(self, "discriminator", None)
        if discriminator is None:
            return super().trained_modules()
        return {"generator": [child for name, child in self.named_children() if name != "discriminator"],
                "discriminator": [discriminator]}

    def train_step(self, batch: dict[str, torch.Tensor], optimizers: dict[str, torch.optim.Optimizer],
                   step: int) -> dict[str, torch.Tensor]:
        losses = self.trained_call("model", self.losses, batch, self.step_generator(step, batch["image"].device))
        optimize(losses["loss"], optimizers["model"])
        return {name: value.detach() for name, value in losses.items()}

    def step_generator(self, step: int, device: torch.device, stream: int = 0) -> torch.Generator:
        """A device generator seeded from (seed, step, stream): masks repeat exactly after a resume."""
        generator = torch.Generator(device=device)
        state = np.random.SeedSequence([self.config.train.seed, step, stream, 11]).generate_state(1)[0]
        generator.manual_seed(int(state))
        return generator

    @torch.no_grad()
    def evaluate(self, loader: Any, autocast: Any, max_batches: int | None = None) -> dict[str, float]:
        """Average :meth:`evaluate_batch` over held-out batches (fixed masks: the generator is seeded per batch)."""
        self.eval()
        totals: dict[str, torch.Tensor] = {}
        count = 0
        for number, batch in enumerate(loader.batches(0)):
            if max_batches is not None and number >= max_batches:
                break
            with autocast():
                values = self.evaluate_batch(batch, self.step_generator(number, batch["image"].device, stream=1))
            for name, value in values.items():
                totals[name] = totals.get(name, 0) + value.float()
            count += 1
        return {f"eval_{name}": float(all_reduce_mean(total / max(count, 1))) for name, total in totals.items()}

    def evaluate_batch(self, batch: dict[str, torch.Tensor], generator: torch.Generator) -> dict[str, torch.Tensor]:
        return {name: value.detach() for name, value in self.losses(batch, generator).items()}

    # ----------------------------------------------------------------- adversarial (joint) training

    def adversarial_optimizers(self, generator_params: list[nn.Parameter],
                               optim: OptimConfig) -> dict[str, torch.optim.Optimizer]:
        """Generator and discriminator optimisers; the generator's lr is 10x when 0 < λ_rec < 1 (released code)."""
        method = self.config.method
        scale = method.generator_lr_multiplier if 0 < method.lambda_rec < 1 else 1.0
        device_type = self._device_type()
        return {"generator": build_optimizer(generator_params, optim, lr_scale=scale, device_type=device_type),
                "discriminator": build_optimizer(self.discriminator.parameters(), optim, device_type=device_type)}

    def adversarial_step(self, real: torch.Tensor, fake: torch.Tensor, loss_rec: torch.Tensor,
                         optimizers: dict[str, torch.optim.Optimizer]) -> dict[str, torch.Tensor]:
        """One discriminator step (``real`` vs ``fake``), then one generator step on the joint loss
        ``λ_rec · loss_rec + λ_adv · L_adv`` (standard GAN BCE; the discriminator never sees the context alone)."""
        method = self.config.method

        def discriminate(images: torch.Tensor) -> torch.Tensor:
            return self.trained_call("discriminator", self.discriminator, images)

        loss_d = discriminator_loss(discriminate(real), discriminate(fake.detach()))
        optimize(loss_d, optimizers["discriminator"])
        loss_adv = generator_adversarial_loss(discriminate(fake))
        loss = method.lambda_rec * loss_rec + method.lambda_adv * loss_adv
        # The discriminator's weights also receive gradients here; its next zero_grad clears them.
        optimize(loss, optimizers["generator"])
        return {"loss": loss.detach(), "loss_rec": loss_rec.detach(), "loss_adv": loss_adv.detach(),
                "loss_discriminator": loss_d.detach()}

    def checkpoint_metadata(self) -> dict[str, Any]:
        """What a checkpoint stores beside the weights and the config. ``data_info`` (input size, mean colour
        0-255 that fills the holes, classes) lets a checkpoint rebuild this method without its training data."""
        data = self.data
        return {"kind": "pretext", "method": self.name, "encoder": self.config.model.encoder,
                "encoder_prefix": "encoder.",
                "data_info": {"input_size": [int(v) for v in data.input_size],
                              "mean_rgb": None if data.mean_rgb is None else [float(v) for v in data.mean_rgb],
                              "num_classes": None if data.num_classes is None else int(data.num_classes)}}

    def _device_type(self) -> str:
        return next(self.parameters()).device.type
