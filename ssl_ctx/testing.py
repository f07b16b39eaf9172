"""The pretext method contract, as one check any method's tests call: built-ins, installed plug-ins, new ones.

:func:`check_pretext_method` runs a registered method the way ``ssl-ctx pretrain`` and a probe use it, on a few
synthetic images, in seconds: it builds the method from a tiny config, trains one step with the real
:class:`~ssl_ctx.engine.trainer.Trainer` (a method with ``trains = False``, such as ``random_init``, is checkpointed
untrained instead), evaluates it, reloads its encoder from the checkpoint as a probe does
(:func:`ssl_ctx.probes.encoder_loading.load_encoder`) and checks that the reloaded encoder keeps the encoder
contract and computes what the trained one computes. ``tests/test_method_contract.py`` runs it over every name in
``PRETEXT_METHODS.names()``, so an installed plug-in is checked with the built-ins; a plug-in's own tests call
``check_pretext_method("<name>", tmp_path)``.

The tiny config is :data:`CONTRACT_OVERRIDES` (a quarter-width ``alexnet32``, batches of four, one step on the
CPU in fp32, the central mask that every built-in accepts), then the method's own defaults, then the caller's
``overrides``. A method that needs another config to be checked at all (a ViT encoder, its options) declares it on
its class, read with ``getattr`` so that no base class needs to know it::

    @PRETEXT_METHODS.register("mae")
    class MaskedAutoencoder(PretextMethod):
        contract_overrides: ClassVar[tuple[str, ...]] = (
            "model.encoder=timm:vit_tiny_patch16_224",
            "model.encoder_options={img_size: 32, patch_size: 8}",
        )

Each entry is a dotted ``section.key=value`` override, as on the command line. The images are square, of side
``input_size`` when given, else ``data.input_size``, else the side the method's network is built for
(``network_input_side``: 128 for ``inpainting128``, the encoder's otherwise), else 32. Every image has a class
label among :data:`CONTRACT_CLASSES`, for methods that need labels. A broken contract raises ``AssertionError``
naming what broke.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ssl_ctx.config import load_config
from ssl_ctx.data.loader import loader_for
from ssl_ctx.engine.trainer import Trainer
from ssl_ctx.errors import UserError
from ssl_ctx.pretext import DataInfo
from ssl_ctx.probes.encoder_loading import load_encoder
from ssl_ctx.registry import PRETEXT_METHODS

CONTRACT_OVERRIDES = ("model.encoder=alexnet32", "model.width=0.25", "model.norm=batch",
                      "model.decoder_widths=[32, 16, 8, 8]", "model.bottleneck_dim=64", "mask.type=central",
                      "train.batch_size=4", "train.max_steps=1", "train.log_every=1", "train.checkpoint_every=1000",
                      "train.image_every=0", "train.eval_batches=1", "train.device=cpu", "train.precision=fp32",
                      "train.progress=false")
CONTRACT_IMAGES = 8  # two batches: one trained on, one evaluated
CONTRACT_CLASSES = 4


@dataclass
class SyntheticSplit:
    """A few random uint8 images with class labels, standing in for a cached split (``CachedSplit``)."""

    images: np.ndarray  # (N, H, W, 3) uint8
    labels: np.ndarray  # (N,) int64
    mean_rgb: tuple[float, float, float] = (120.0, 110.0, 100.0)
    class_names: list[str] = field(default_factory=lambda: [str(i) for i in range(CONTRACT_CLASSES)])
    dataset: str = "synthetic"
    split: str = "train"

    def __len__(self) -> int:
        return len(self.images)


def synthetic_split(side: int, count: int = CONTRACT_IMAGES, seed: int = 0) -> SyntheticSplit:
    """``count`` random ``side`` x ``side`` images, each with a label among :data:`CONTRACT_CLASSES`."""
    rng = np.random.default_rng(seed)
    return SyntheticSplit(rng.integers(0, 256, (count, side, side, 3), dtype=np.uint8),
                          rng.integers(0, CONTRACT_CLASSES, count).astype(np.int64))


def check_pretext_method(name: str, workdir: str | os.PathLike, overrides: tuple[str, ...] | list[str] = (),
                         input_size: int | None = None) -> dict[str, Any]:
    """Check that the registered pretext method ``name`` keeps the method contract (module docstring); its run
    folder goes under ``workdir``. Returns the metrics a pretext record would hold (training and ``eval_*``).

    Raises ``AssertionError`` naming the broken part of the contract.
    """
    method_cls = PRETEXT_METHODS.get(name)
    _require(getattr(method_cls, "name", None) == name, f"{method_cls.__name__}.name is "
             f"{getattr(method_cls, 'name', None)!r}, not its registered name {name!r} (checkpoints and records "
             f"name the method by it)")
    config = load_config(None, [*CONTRACT_OVERRIDES, f"method.name={name}", f"output_dir={Path(workdir)}",
                                f"name=contract-{name}", *getattr(method_cls, "contract_overrides", ()),
                                *overrides])
    side = input_size or config.data.input_size or method_cls.network_input_side(config.model) or 32
    split = synthetic_split(side)
    torch.manual_seed(config.train.seed)
    try:
        method = method_cls.from_config(config, DataInfo((side, side), split.mean_rgb, CONTRACT_CLASSES))
    except UserError as err:
        raise AssertionError(f"{name} cannot be built with the contract's tiny config ({err}); declare the "
                             f"overrides it needs as {method_cls.__name__}.contract_overrides "
                             f"(ssl_ctx.testing)") from err
    encoder = method.get_submodule(method.encoder_path)
    before = {key: value.detach().clone() for key, value in encoder.named_parameters()}

    with Trainer(config, config.run_dir) as trainer:
        if method.trains:
            metrics = trainer.fit(method, loader_for(split, config.data, config.train, trainer.device, True))
            _require(math.isfinite(float(metrics.get("loss", math.nan))),
                     f"{name}: the training loss is {metrics.get('loss')!r}, not a finite number")
            _require(any(not torch.equal(before[key], value) for key, value in encoder.named_parameters()),
                     f"{name}: a training step left every encoder weight as it was")
        else:
            metrics = trainer.save_untrained(method)
        evaluation = method.evaluate(loader_for(split, config.data, config.train, trainer.device, False),
                                     trainer.autocast, config.train.eval_batches)
    bad = {key: value for key, value in evaluation.items() if not math.isfinite(float(value))}
    _require(not bad, f"{name}: held-out values that are not finite numbers: {bad}")
    _check_reloaded(name, encoder, load_encoder(str(trainer.checkpoint_path), encoder.spec), side)
    return {**metrics, **evaluation}


def _check_reloaded(name: str, trained: nn.Module, loaded: nn.Module, side: int) -> None:
    """The encoder a probe loads from the checkpoint keeps the encoder contract and computes the trained one's
    feature maps."""
    _require(loaded.weights.method == name, f"{name}: the checkpoint names the method {loaded.weights.method!r}")
    images = torch.rand(2, 3, side, side, generator=torch.Generator().manual_seed(0)) * 2 - 1
    trained, loaded = trained.eval().cpu(), loaded.eval()
    with torch.no_grad():
        expected, features = trained(images), loaded(images)
    modules = [info["module"] for info in loaded.feature_info]
    _require(list(features) == modules, f"{name}: the encoder's maps {list(features)} are not its feature_info's "
             f"modules {modules}, in order")
    for info in loaded.feature_info:
        shape = tuple(features[info["module"]].shape)
        _require(shape[:2] == (2, info["num_chs"]), f"{name}: map {info['module']} is {shape}, feature_info says "
                 f"{info['num_chs']} channels")
        _require(torch.allclose(features[info["module"]], expected[info["module"]], rtol=1e-4, atol=1e-5),
                 f"{name}: map {info['module']} of the encoder reloaded from the checkpoint differs from the "
                 f"trained encoder's")


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(message)
