"""The base of every pretext method: built from the model, mask and method settings, one-loss training steps,
held-out evaluation, checkpoint metadata.

A new method is one file: a subclass of :class:`PretextMethod` registered under a name that makes its heads in
:meth:`PretextMethod.build` and implements :meth:`PretextMethod.losses` (see ``plugins/rotation_pretext`` for a
worked example outside this package). A method trained with the joint loss also mixes in
:class:`~ssl_ctx.pretext.adversarial.Adversarial`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from ssl_ctx.config import Config, MaskConfig, MethodConfig, ModelConfig
from ssl_ctx.engine.distributed import all_reduce_mean
from ssl_ctx.engine.optim import optimize
from ssl_ctx.engine.task import TrainingTask
from ssl_ctx.models import build_encoder, encoder_input_side, encoder_spec


@dataclass(frozen=True)
class DataInfo:
    """What a method needs to know about its training data."""

    input_size: tuple[int, int]
    mean_rgb: tuple[float, float, float] | None = None
    num_classes: int | None = None


class PretextMethod(TrainingTask):
    """Base of every pretext method: owns ``self.encoder``; subclasses add heads in :meth:`build` and implement
    :meth:`losses`.

    Args:
        model, mask, method: the config sections the method is built and trained with (``model.*`` builds the
            encoder, ``mask.*`` drops regions, ``method.*`` holds the loss options).
        data: what the method knows about its training data (input size, mean colour, classes).
        seed: the run's seed, from which masks and other per-step draws are made (:meth:`step_generator`).
    """

    kind = "pretext"
    name: ClassVar[str] = "base"
    needs_labels: ClassVar[bool] = False  # the training split must have class labels
    trains: ClassVar[bool] = True  # False: the initial weights are the result (random_init)
    uses_mask: ClassVar[bool] = False  # True: mask.* shapes what it sees (logs name the mask only then)

    def __init__(self, model: ModelConfig, mask: MaskConfig, method: MethodConfig, data: DataInfo,
                 seed: int = 0) -> None:
        super().__init__()
        self.model_config, self.mask_config, self.method_config = model, mask, method
        self.data = data
        self.seed = seed
        self.build()

    @classmethod
    def from_config(cls, config: Config, data: DataInfo) -> PretextMethod:
        """The method built with the sections of ``config`` it uses."""
        return cls(config.model, config.mask, config.method, data, config.train.seed)

    @classmethod
    def network_input_side(cls, model: ModelConfig) -> int | None:
        """The side of the images this method's network is built for, without building it (an image folder is
        cached at it): the encoder's, by default."""
        return encoder_input_side(encoder_spec(model.encoder, model))

    # -------------------------------------------------------------------------------- to override

    def build(self) -> None:
        """Make the networks. The default makes ``self.encoder`` from ``model.*`` (its spec goes into checkpoints);
        a method adds its heads after ``super().build()``."""
        self.encoder = build_encoder(encoder_spec(self.model_config.encoder, self.model_config))

    def losses(self, batch: dict[str, torch.Tensor], generator: torch.Generator) -> dict[str, torch.Tensor]:
        """Return ``{"loss": scalar, ...}`` for one batch; ``generator`` seeds any randomness (masks)."""
        raise NotImplementedError

    def evaluate_batch(self, batch: dict[str, torch.Tensor], generator: torch.Generator) -> dict[str, torch.Tensor]:
        """Held-out values of one batch, averaged over batches into ``eval_<name>`` metrics (default: the losses)."""
        return {name: value.detach() for name, value in self.losses(batch, generator).items()}

    def image_grid(self, batch: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """Optional ``(3, H, W)`` picture in ``[0, 1]`` for TensorBoard."""
        return None

    # ---------------------------------------------------------------------------- shared machinery

    def train_step(self, batch: dict[str, torch.Tensor], optimizers: dict[str, torch.optim.Optimizer],
                   step: int) -> dict[str, torch.Tensor]:
        losses = self.trained_call("model", self.losses, batch, self.step_generator(step, batch["image"].device))
        optimize(losses["loss"], optimizers["model"])
        return {name: value.detach() for name, value in losses.items()}

    def step_generator(self, step: int, device: torch.device, stream: int = 0) -> torch.Generator:
        """A device generator seeded from (seed, step, stream): masks repeat exactly after a resume."""
        generator = torch.Generator(device=device)
        state = np.random.SeedSequence([self.seed, step, stream, 11]).generate_state(1)[0]
        generator.manual_seed(int(state))
        return generator

    def evaluation_step(self, batch: dict[str, torch.Tensor], number: int) -> dict[str, torch.Tensor]:
        """:meth:`evaluate_batch` with fixed masks: the generator is seeded by the batch's number."""
        generator = self.step_generator(number, batch["image"].device, stream=1)
        return {name: value.float() for name, value in self.evaluate_batch(batch, generator).items()}

    def evaluation_summary(self, totals: dict[str, torch.Tensor], batches: int) -> dict[str, float]:
        """The mean over batches (and processes) of each value, as ``eval_<name>``."""
        return {f"eval_{name}": float(all_reduce_mean(total / max(batches, 1))) for name, total in totals.items()}

    def checkpoint_metadata(self) -> dict[str, Any]:
        """The task's, and ``data_info`` (input size, mean colour 0-255 that fills the holes, classes), which lets a
        checkpoint rebuild this method without its training data."""
        data = self.data
        return {**super().checkpoint_metadata(),
                "data_info": {"input_size": [int(v) for v in data.input_size],
                              "mean_rgb": None if data.mean_rgb is None else [float(v) for v in data.mean_rgb],
                              "num_classes": None if data.num_classes is None else int(data.num_classes)}}
