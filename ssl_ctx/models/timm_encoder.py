"""Any timm model as an encoder (``build_encoder("timm:<name>")``), through ``features_only=True``, and timm's
pretrained weights from the local cache (:func:`cached_pretrained_file`).

timm is imported when an encoder is built, not when this package is imported, so the CLI starts fast.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from torch import nn

from ssl_ctx.errors import UserError, suggest


def _sanitise(name: str) -> str:
    """timm module path -> a key usable as a dict key and a probe ``layer`` (``stages.0`` -> ``stages_0``)."""
    return re.sub(r"[^0-9A-Za-z_]", "_", name)


class TimmEncoder(nn.Module):
    """A timm backbone returning its feature maps by name.

    Args:
        model_name: any ``timm.list_models()`` name, e.g. ``resnet18``.
        pretrained: load timm's pretrained weights (needs them downloaded or cached; False works offline).
        **kwargs: passed to ``timm.create_model`` (``out_indices``, ``in_chans`` ...).

    Forward: ``x (B, 3, H, W) -> dict`` with one ``(B, num_chs, H / reduction, W / reduction)`` map per
    ``feature_info`` entry, keyed by timm's module name with dots replaced by ``_`` (resnet18: ``act1 layer1
    layer2 layer3 layer4``). ``input_size`` is the side the model is built for (a ViT's ``img_size``; else timm's
    default, 224 when it gives none), ``out_channels`` the last map's channels and ``out_size`` its side at ``input_size``.
    """

    def __init__(self, model_name: str, pretrained: bool = False, **kwargs: Any) -> None:
        super().__init__()
        from ssl_ctx.vision_ops import require_torchvision

        require_torchvision(f"encoder 'timm:{model_name}'")  # timm imports torchvision
        try:
            import timm  # deferred: importing timm (and torchvision) costs seconds
        except ImportError as err:
            raise UserError(f"encoder 'timm:{model_name}' needs timm ({err}); pip install timm") from err

        if not timm.is_model(model_name):
            raise UserError(
                f"unknown timm model '{model_name}'{suggest(model_name, timm.list_models())}; "
                "see timm.list_models() for the names"
            )
        self.model_name = model_name
        self.model = timm.create_model(model_name, features_only=True, pretrained=pretrained, **kwargs)
        self.feature_info = [
            dict(module=_sanitise(info["module"]), num_chs=int(info["num_chs"]), reduction=int(info["reduction"]))
            for info in self.model.feature_info.get_dicts()
        ]
        keys = [info["module"] for info in self.feature_info]
        if len(set(keys)) != len(keys):  # two timm paths that sanitise alike: number them instead
            for i, info in enumerate(self.feature_info):
                info["module"] = f"{keys[i]}_{i}"
        # timm's features_only wrapper keeps the network's own module names, under ``model.model.`` where it wraps
        # the whole network (ViTs); without the wrapper's ``model.`` they are timm.create_model(name)'s names.
        inner = getattr(self.model, "model", None)
        self.library_prefix = "model.model." if isinstance(inner, nn.Module) else "model."
        cfg = getattr(self.model, "pretrained_cfg", None) or {}
        # A ViT built for another size (``img_size=64``) says so in its patch embedding, not in pretrained_cfg.
        built_for = getattr(getattr(inner, "patch_embed", None), "img_size", None)
        self.input_size = int(built_for[-1] if built_for else cfg.get("input_size", (3, 224, 224))[-1])
        self.out_channels = self.feature_info[-1]["num_chs"]
        self.out_size = -(-self.input_size // self.feature_info[-1]["reduction"])

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        maps = self.model(x)
        if isinstance(maps, dict):
            maps = list(maps.values())
        return {info["module"]: fmap for info, fmap in zip(self.feature_info, maps)}


# The files timm's Hugging Face repositories publish weights in, in the order timm tries them.
HUB_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def cached_pretrained_file(model_name: str) -> tuple[str, Path]:
    """``(tagged name, file)`` of timm's default (or tagged: ``resnet18.tv_in1k``) pretrained weights for
    ``model_name`` found in the local caches, without the network: the Hugging Face hub cache, then torch hub's
    ``checkpoints/`` for weights timm downloads by URL. Weights not cached are one UserError line saying how to
    provide them."""
    import timm
    from huggingface_hub import constants, try_to_load_from_cache
    from torch.hub import get_dir

    from ssl_ctx.errors import UserError

    cfg = timm.models.get_pretrained_cfg(model_name)
    if cfg is None:
        raise UserError(f"timm has no pretrained weights for '{model_name}'; pick a name with weights "
                        f"(timm.list_models(pretrained=True)) or probe.init=random model.encoder=timm:{model_name}")
    tagged = f"{cfg.architecture}.{cfg.tag}" if cfg.tag else str(cfg.architecture)
    if cfg.file and Path(cfg.file).is_file():
        return tagged, Path(cfg.file)
    for filename in HUB_WEIGHT_FILES if cfg.hf_hub_id else ():
        found = try_to_load_from_cache(cfg.hf_hub_id, filename)
        if isinstance(found, str):
            return tagged, Path(found)
    hub_checkpoints = Path(get_dir()) / "checkpoints"
    if cfg.url:
        local = hub_checkpoints / os.path.basename(urlparse(cfg.url).path)
        if local.is_file():
            return tagged, local
    raise UserError(f"timm's pretrained weights {tagged} are not in the local caches ({constants.HF_HUB_CACHE}, "
                    f"{hub_checkpoints}); where there is internet, python -c \"import timm; timm.create_model("
                    f"'{tagged}', pretrained=True)\" caches them, or pass the weights file: "
                    f"probe.init=<file> model.encoder=timm:{cfg.architecture} (random weights: probe.init=random "
                    f"model.encoder=timm:{cfg.architecture})")
