"""TensorBoard scalars and image grids, written by the main process only."""
from __future__ import annotations

from pathlib import Path

import torch


class RunLogger:
    """A thin wrapper over ``SummaryWriter`` that does nothing on non-main processes or when disabled."""

    def __init__(self, log_dir: Path, enabled: bool = True) -> None:
        self._writer = None
        if enabled:
            from torch.utils.tensorboard import SummaryWriter  # imported late: slow import

            self._writer = SummaryWriter(log_dir=str(log_dir))

    def scalars(self, values: dict[str, float], step: int, prefix: str = "train") -> None:
        if self._writer is not None:
            for name, value in values.items():
                self._writer.add_scalar(f"{prefix}/{name}", value, step)

    def image(self, name: str, image: torch.Tensor, step: int, png: Path | None = None) -> None:
        """image: ``(3, H, W)`` float in ``[0, 1]``; also written to ``png`` for people without TensorBoard."""
        if self._writer is None:
            return
        image = image.detach().float().clamp(0, 1).cpu()
        self._writer.add_image(name, image, step)
        if png is not None:
            from PIL import Image

            png.parent.mkdir(parents=True, exist_ok=True)
            pixels = (image.permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
            Image.fromarray(pixels).save(png)

    def close(self) -> None:
        """Flush and stop the writer's thread (idempotent)."""
        if self._writer is not None:
            self._writer.flush()
            self._writer.close()
            self._writer = None
