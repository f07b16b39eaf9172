"""Masked autoencoding (MAE; He et al., CVPR 2022) on a timm Vision Transformer, as an ssl_ctx pretext method.

The context encoder's direct descendant: drop most of the image, predict what was dropped. As MAE describes:
the image is cut into patches, a random ``mask_ratio`` of them (0.75) is removed per image, the ViT encoder sees
only the visible patches (with their position embeddings), a light transformer decoder gets the encoded visible
tokens plus a shared learned mask token at every removed position, and the loss is the mean squared error on the
removed patches only, against each patch's pixels normalised by its own mean and variance (``norm_pix_loss``).

The encoder is ``model.encoder=timm:<any ViT>`` with ``model.encoder_options`` (timm.create_model's keywords);
its blocks, patch embedding and position embedding are timm's, and so are the decoder's blocks. The encoder's
feature maps (one per block listed in ``out_indices``, patch tokens laid out on the patch grid) are what every
ssl_ctx probe reads: per-block classification, segmentation from the patch tokens, localisation.
Install this folder (``pip install -e plugins/mae_pretext``) and ``ssl-ctx list`` shows ``mae``;
``configs/bench/mim.yaml`` puts it beside the context encoder.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ssl_ctx.engine.distributed import shard_of_global_draw
from ssl_ctx.errors import UserError
from ssl_ctx.pretext import PretextMethod
from ssl_ctx.pretext.declarations import HeldOutMetric, MethodOption
from ssl_ctx.registry import PRETEXT_METHODS


def patchify(images: torch.Tensor, patch: int) -> torch.Tensor:
    """``(B, C, H, W)`` -> ``(B, N, patch·patch·C)``, patches in raster order (the ViT's token order)."""
    batch, channels, height, width = images.shape
    grid = images.reshape(batch, channels, height // patch, patch, width // patch, patch)
    return grid.permute(0, 2, 4, 3, 5, 1).reshape(batch, (height // patch) * (width // patch), patch * patch * channels)


def unpatchify(patches: torch.Tensor, patch: int, height: int, width: int) -> torch.Tensor:
    """The inverse of :func:`patchify`."""
    batch, channels = patches.shape[0], patches.shape[-1] // (patch * patch)
    grid = patches.reshape(batch, height // patch, width // patch, patch, patch, channels)
    return grid.permute(0, 5, 1, 3, 2, 4).reshape(batch, channels, height, width)


def normalised_patches(patches: torch.Tensor, eps: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(patches with zero mean and unit variance each, their means, their standard deviations): MAE's target."""
    mean, var = patches.mean(dim=-1, keepdim=True), patches.var(dim=-1, keepdim=True)
    std = (var + eps).sqrt()
    return (patches - mean) / std, mean, std


def random_keep(noise: torch.Tensor, keep: int) -> tuple[torch.Tensor, torch.Tensor]:
    """MAE's per-sample random masking from uniform ``noise (B, N)``: (indices of the ``keep`` visible patches
    (B, keep), mask (B, N) with 1 on removed patches)."""
    order = noise.argsort(dim=1)
    visible = order[:, :keep]
    mask = torch.ones_like(noise)
    mask.scatter_(1, visible, 0.0)
    return visible, mask


@PRETEXT_METHODS.register("mae")
class MaskedAutoencoder(PretextMethod):
    """timm ViT encoder on the visible patches -> light timm transformer decoder -> pixels of every patch; the
    loss is on the removed ones. Input ``(B, 3, H, W)`` in [-1, 1], H and W multiples of the patch size."""

    name = "mae"
    # The mask is MAE's own patch mask (method.options.mask_ratio), not ssl_ctx's pixel masks (mask.*).
    uses_mask = False
    option_specs = {
        "mask_ratio": MethodOption(0.75, "fraction of each image's patches removed (MAE's 0.75)"),
        "norm_pix_loss": MethodOption(True, "target: each patch's pixels normalised by its own mean and variance"),
        "decoder_dim": MethodOption(128, "width of the decoder's transformer blocks"),
        "decoder_depth": MethodOption(2, "number of decoder blocks"),
        "decoder_heads": MethodOption(4, "attention heads of each decoder block"),
    }
    held_out_metrics = (HeldOutMetric("loss", "normalised-pixel L2 on the removed patches", "flat_patch_loss",
                                      "each removed patch flat at its own mean colour"),)
    # The config ssl_ctx.testing.check_pretext_method checks the method with: a two-block ViT for 32-px images.
    contract_overrides = (
        "model.encoder=timm:vit_tiny_patch16_224",
        "model.encoder_options={img_size: 32, patch_size: 8, depth: 2, embed_dim: 48, num_heads: 3, "
        "out_indices: [0, 1], dynamic_img_size: true}",
        "method.options={decoder_dim: 32, decoder_heads: 2, decoder_depth: 1}",
    )

    def build(self) -> None:
        super().build()  # self.encoder: the timm ViT, from model.encoder and model.encoder_options
        self.vit = vision_transformer_of(self.encoder, self.model_config.encoder)
        options = self.options  # method.options, checked against option_specs, defaults filled in
        self.mask_ratio = options["mask_ratio"]
        if not 0.0 < self.mask_ratio < 1.0:
            raise UserError(f"method.options.mask_ratio={self.mask_ratio} must be in (0, 1); MAE's is 0.75")
        self.norm_pix_loss = options["norm_pix_loss"]
        self.patch = int(self.vit.patch_embed.patch_size[0])
        height, width = self.data.input_size
        if height % self.patch or width % self.patch:
            raise UserError(f"data.input_size {height}x{width} is not a multiple of the ViT's patch size "
                            f"{self.patch}; pick a size divisible by it")
        self.grid = (height // self.patch, width // self.patch)
        width_in = self.vit.embed_dim
        decoder_dim = options["decoder_dim"]
        # The encoder's final LayerNorm (timm's features_only wrapper drops the ViT's own, which probes do not read).
        self.encoder_norm = nn.LayerNorm(width_in, eps=1e-6)
        self.decoder_embed = nn.Linear(width_in, decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_dim))
        nn.init.normal_(self.mask_token, std=0.02)
        from timm.layers import build_sincos2d_pos_embed
        from timm.models.vision_transformer import Block

        # Fixed 2-D sine-cosine position embedding of the decoder, as MAE's.
        self.register_buffer("decoder_pos_embed", build_sincos2d_pos_embed(list(self.grid), decoder_dim)[None],
                             persistent=False)
        self.decoder = nn.Sequential(*[
            Block(decoder_dim, options["decoder_heads"], mlp_ratio=4.0, qkv_bias=True)
            for _ in range(options["decoder_depth"])])
        self.decoder_norm = nn.LayerNorm(decoder_dim, eps=1e-6)
        self.decoder_pred = nn.Linear(decoder_dim, self.patch * self.patch * 3)

    # ------------------------------------------------------------------------------------ the model

    def draw_mask(self, images: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(visible patch indices, mask with 1 on removed patches) for each image; under torchrun drawn for the
        global batch, so each sample gets the mask it gets in one process."""
        count = self.grid[0] * self.grid[1]
        noise = shard_of_global_draw(
            lambda rows: torch.rand(rows, count, generator=generator, device=images.device), images.shape[0])
        return random_keep(noise, max(1, round(count * (1 - self.mask_ratio))))

    def encode_visible(self, images: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
        """The ViT on the visible patches only: ``(B, prefix + keep, D)`` after the encoder's norm."""
        vit = self.vit
        tokens = vit._pos_embed(vit.patch_embed(images))  # prefix (class) tokens first, position embedding added
        prefix, patches = tokens[:, :vit.num_prefix_tokens], tokens[:, vit.num_prefix_tokens:]
        patches = patches.gather(1, visible[..., None].expand(-1, -1, patches.shape[-1]))
        tokens = vit.norm_pre(torch.cat([prefix, patches], dim=1))
        return self.encoder_norm(vit.blocks(tokens))

    def decode(self, encoded: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
        """Encoded visible tokens -> predicted pixels of every patch ``(B, N, patch·patch·3)``."""
        prefix_count = self.vit.num_prefix_tokens
        tokens = self.decoder_embed(encoded)
        prefix, kept = tokens[:, :prefix_count], tokens[:, prefix_count:]
        count = self.grid[0] * self.grid[1]
        # Every position starts as the mask token; the visible ones get their encoded token back.
        full = self.mask_token.to(kept.dtype).expand(kept.shape[0], count, -1).clone()
        full.scatter_(1, visible[..., None].expand(-1, -1, kept.shape[-1]), kept)
        full = full + self.decoder_pos_embed.to(full.dtype)
        decoded = self.decoder_norm(self.decoder(torch.cat([prefix, full], dim=1)))
        return self.decoder_pred(decoded[:, prefix_count:])

    def target(self, images: torch.Tensor) -> torch.Tensor:
        patches = patchify(images, self.patch)
        return normalised_patches(patches)[0] if self.norm_pix_loss else patches

    def forward_loss(self, images: torch.Tensor, generator: torch.Generator,
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(loss, prediction, target, mask): the mean squared error per patch, averaged over removed patches."""
        self.attention_for(images.device)  # training, evaluation and pictures all come through here
        visible, mask = self.draw_mask(images, generator)
        prediction = self.decode(self.encode_visible(images, visible), visible)
        target = self.target(images)
        per_patch = (prediction.float() - target.float()).pow(2).mean(dim=-1)
        return (per_patch * mask).sum() / mask.sum(), prediction, target, mask

    def losses(self, batch: dict[str, torch.Tensor], generator: torch.Generator) -> dict[str, torch.Tensor]:
        return {"loss": self.forward_loss(batch["image"], generator)[0]}

    def attention_for(self, device: torch.device) -> None:
        """timm's fused attention (scaled_dot_product_attention) on CUDA, its plain matmul path on the CPU: the
        same maths, and on the CPU the fused kernel's backward made a training step 1.5x slower for these short
        sequences (17 and 65 tokens; median step 0.37 s against 0.25 s, bf16, one thread). Set once per device."""
        fused = device.type != "cpu"
        if getattr(self, "_fused_attention", None) is fused:
            return
        self._fused_attention = fused
        for module in self.modules():
            if hasattr(module, "fused_attn"):
                module.fused_attn = fused

    def evaluate_batch(self, batch: dict[str, torch.Tensor], generator: torch.Generator) -> dict[str, torch.Tensor]:
        """The loss on held-out images, and the same loss of the flat patch (each removed patch predicted as its
        own mean colour: the normalised target's zero), the analogue of the context encoder's mean fill."""
        loss, _, target, mask = self.forward_loss(batch["image"], generator)
        flat = (target.float().pow(2).mean(dim=-1) * mask).sum() / mask.sum()
        return {"loss": loss.detach(), "flat_patch_loss": flat.detach()}

    def image_grid(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """masked input | prediction pasted into the removed patches | original."""
        images = batch["image"][:8]
        _, prediction, _, mask = self.forward_loss(images, self.step_generator(0, images.device, stream=2))
        patches = patchify(images, self.patch)
        if self.norm_pix_loss:  # back to pixels with each patch's own statistics (for looking at only)
            _, mean, std = normalised_patches(patches)
            prediction = prediction.float() * std + mean
        removed = mask[..., None].bool()
        height, width = images.shape[-2:]
        masked = unpatchify(torch.where(removed, torch.zeros_like(patches), patches), self.patch, height, width)
        pasted = unpatchify(torch.where(removed, prediction.to(patches.dtype), patches), self.patch, height, width)
        columns = [c.float().clamp(-1, 1) * 0.5 + 0.5 for c in (masked, pasted, images)]
        return torch.cat([torch.cat(list(column), dim=1) for column in columns], dim=2)


def vision_transformer_of(encoder: nn.Module, name: str) -> nn.Module:
    """The timm VisionTransformer inside an ssl_ctx timm encoder; one line naming the fix for anything else."""
    vit = getattr(getattr(encoder, "model", None), "model", None)
    needed = ("patch_embed", "_pos_embed", "blocks", "norm_pre", "num_prefix_tokens", "embed_dim")
    if vit is None or not all(hasattr(vit, attribute) for attribute in needed):
        raise UserError(f"method mae needs a timm Vision Transformer encoder, not '{name}'; set "
                        f"model.encoder=timm:vit_tiny_patch16_224 (any timm ViT) with model.encoder_options, e.g. "
                        f"{{img_size: 64, patch_size: 8, depth: 6, out_indices: [0, 1, 2, 3, 4, 5], "
                        f"dynamic_img_size: true}}")
    return vit
