"""The same normalisation for every encoder a probe measures: BatchNorm statistics recomputed on clean images.

A random-init encoder never ran a forward pass in training mode, so its BatchNorm running statistics are the
initial mean 0 / variance 1 and its normalisation layers are identities in eval mode (activations shrink about
tenfold from conv1 to conv5); a pretext encoder's statistics were gathered on masked inputs. Before a probe,
``probe.bn_statistics=recompute`` (the default) resets them and averages the batch statistics of
``probe.bn_images`` unmasked, un-augmented training images of the probe's own dataset, in one fixed order, for
every encoder alike (``torch.optim.swa_utils.update_bn``). ``keep`` leaves the checkpoint's statistics. An
encoder without BatchNorm (the paper's LRN AlexNet) is left as it is.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from ssl_ctx.config import DataConfig, ProbeConfig, TrainConfig
from ssl_ctx.errors import unknown_name_error

BN_STATISTICS = ("recompute", "keep")
_ORDER_SEED = 0  # the images used do not depend on the run's seed: the features depend on the encoder only


def has_batch_norm(encoder: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in encoder.modules())


def clean_images(data: DataConfig, train: TrainConfig, split: Any, device: torch.device,
                 count: int) -> Iterator[torch.Tensor]:
    """Up to ``count`` training images ``(B, 3, H, W)`` at the probe's input size: no mask, crop or flip."""
    from ssl_ctx.data.loader import loader_for

    loader = loader_for(split, data, train, device, True, crop_scale=1.0, hflip=False, seed=_ORDER_SEED,
                        drop_last=False)
    seen = 0
    for batch in loader.batches(0):
        if seen >= count:
            return
        images = batch["image"][:count - seen]
        seen += len(images)
        yield images


def recompute_batch_norm_statistics(encoder: nn.Module, probe: ProbeConfig, data: DataConfig, train: TrainConfig,
                                    split: Any, device: torch.device) -> str:
    """Apply ``probe.bn_statistics`` to ``encoder`` in place, with images of ``split`` batched as ``data`` and
    ``train`` say; returns the sentence the record keeps."""
    choice, count = probe.bn_statistics, probe.bn_images
    if choice not in BN_STATISTICS:
        raise unknown_name_error("probe.bn_statistics", choice, BN_STATISTICS)
    if not has_batch_norm(encoder):
        return "no BatchNorm layers (nothing to recompute)"
    if choice == "keep":
        return "BatchNorm statistics kept from the checkpoint"
    count = min(count, len(split))
    torch.optim.swa_utils.update_bn(clean_images(data, train, split, device, count), encoder, device)
    return f"BatchNorm statistics recomputed on {count} unmasked training images ({split.dataset}/{split.split})"
