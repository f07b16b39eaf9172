"""The base of every pretext method: built from the model, mask and method settings, one-loss training steps,
held-out evaluation, checkpoint metadata.

A new method is one file: a subclass of :class:`PretextMethod` registered under a name that makes its heads in
:meth:`PretextMethod.build` and implements :meth:`PretextMethod.losses` (see ``plugins/rotation_pretext`` for a
worked example outside this package). A method trained with the joint loss also mixes in
:class:`~ssl_ctx.pretext.adversarial.Adversarial`.

A method declares, as class attributes, the ``method.options`` it reads (``option_specs``; the constructor checks
the config's against them and keeps the result as ``self.options``), the input its encoder takes
(``encoder_input``; its checkpoints record it and probes feed it) and the held-out metrics the pretext table shows
(``held_out_metrics``; its records carry them). :mod:`ssl_ctx.pretext.declarations` defines the first and last.
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
from ssl_ctx.models.encoder_input import ENCODER_INPUTS, RGB
from ssl_ctx.pretext.declarations import HeldOutMetric, MethodOption, resolve_options


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
            encoder, ``mask.*`` drops regions, ``method.*`` holds the loss options; ``method.options`` is checked
            against ``option_specs`` and kept, defaults filled in, as ``self.options``).
        data: what the method knows about its training data (input size, mean colour, classes).
        seed: the run's seed, from which masks and other per-step draws are made (:meth:`step_generator`).

    Declarations (class attributes), e.g. of a plug-in::

        option_specs = {"mask_ratio": MethodOption(0.75, "fraction of the patches removed per image")}
        encoder_input = "gray"  # the method converts its own batches (ssl_ctx.models.encoder_input.luminance)
        held_out_metrics = (HeldOutMetric("loss", "normalised-pixel L2 on masked patches"),)
    """

    kind = "pretext"
    name: ClassVar[str] = "base"
    needs_labels: ClassVar[bool] = False  # the training split must have class labels
    trains: ClassVar[bool] = True  # False: the initial weights are the result (random_init)
    uses_mask: ClassVar[bool] = False  # True: mask.* shapes what it sees (logs name the mask only then)
    # The method.options it reads, by name; a method declaring none takes no method.options.
    option_specs: ClassVar[dict[str, MethodOption]] = {}
    # What its encoder is trained on (ssl_ctx.models.encoder_input.ENCODER_INPUTS): probes feed the same. The
    # base class never changes batches; a method taking other than rgb converts its own input.
    encoder_input: ClassVar[str] = RGB
    # The eval_<name> metrics the pretext table shows, in order; none: the method is left out of that table.
    held_out_metrics: ClassVar[tuple[HeldOutMetric, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # A wrong declaration is the method's author's mistake: say so when the class is defined.
        if cls.encoder_input not in ENCODER_INPUTS:
            raise ValueError(f"{cls.__name__}.encoder_input {cls.encoder_input!r} is not one of "
                             f"{', '.join(ENCODER_INPUTS)}")
        if not all(isinstance(spec, MethodOption) for spec in cls.option_specs.values()):
            raise TypeError(f"{cls.__name__}.option_specs must map option names to MethodOption")
        if not all(isinstance(metric, HeldOutMetric) for metric in cls.held_out_metrics):
            raise TypeError(f"{cls.__name__}.held_out_metrics must be a tuple of HeldOutMetric")

    def __init__(self, model: ModelConfig, mask: MaskConfig, method: MethodConfig, data: DataInfo,
                 seed: int = 0) -> None:
        super().__init__()
        self.model_config, self.mask_config, self.method_config = model, mask, method
        self.data = data
        self.seed = seed
        self.options = self.resolve_options(method.options)
        self.build()

    @classmethod
    def from_config(cls, config: Config, data: DataInfo) -> PretextMethod:
        """The method built with the sections of ``config`` it uses."""
        return cls(config.model, config.mask, config.method, data, config.train.seed)

    @classmethod
    def resolve_options(cls, options: dict[str, Any]) -> dict[str, Any]:
        """``method.options`` checked against ``option_specs`` (one UserError line for an unknown option or a
        value of another type), defaults filled in; needs no network, so the bench checks its cells with it."""
        return resolve_options(cls.name, cls.option_specs, options)

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
        checkpoint rebuild this method without its training data, and the input its encoder takes
        (``encoder_input``; a checkpoint without it is rgb), which probes of the checkpoint feed."""
        data = self.data
        return {**super().checkpoint_metadata(),
                "data_info": {"input_size": [int(v) for v in data.input_size],
                              "mean_rgb": None if data.mean_rgb is None else [float(v) for v in data.mean_rgb],
                              "num_classes": None if data.num_classes is None else int(data.num_classes),
                              "encoder_input": self.encoder_input}}

    @classmethod
    def held_out_record(cls) -> list[dict[str, str | None]]:
        """``held_out_metrics`` as the pretext record keeps them (its ``held_out_metrics`` extra)."""
        return [metric.to_record() for metric in cls.held_out_metrics]
