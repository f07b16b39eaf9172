"""Small in-memory stand-ins for the data cache, for unit tests of the training machinery."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ssl_ctx.config import Config, load_config


@dataclass
class ArraySplit:
    """Duck-types ``ssl_ctx.data.CachedSplit`` with random uint8 images."""

    images: np.ndarray
    labels: np.ndarray | None = None
    label_maps: np.ndarray | None = None
    boxes: list[np.ndarray] | None = None  # per image (k, 4) relative xyxy
    mean_rgb: tuple[float, float, float] = (120.0, 110.0, 100.0)
    class_names: list[str] = field(default_factory=list)
    dataset: str = "random"
    split: str = "train"
    path: str = "memory"

    def __len__(self) -> int:
        return len(self.images)


def random_split(count: int = 40, size: int = 32, classes: int = 0, seed: int = 0) -> ArraySplit:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (count, size, size, 3), dtype=np.uint8)
    labels = rng.integers(0, classes, count) if classes else None
    return ArraySplit(images, labels, class_names=[str(i) for i in range(classes)])


def small_config(tmp_path, *overrides: str) -> Config:
    return load_config(None, [f"output_dir={tmp_path}", "name=run", "model.encoder=alexnet32", "model.width=0.25", "model.norm=batch",
                              "model.decoder_widths=[64, 32, 16, 8]", "train.batch_size=8", "train.epochs=2",
                              "train.log_every=2", "train.checkpoint_every=3", "train.progress=false",
                              "train.image_every=0", *overrides])


def file_digests(folder) -> dict[str, str]:
    """SHA-256 of every file under ``folder`` by relative path (lock files aside: they name their last holder):
    'nothing lost or changed' is equality."""
    import hashlib
    from pathlib import Path

    folder = Path(folder)
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.suffix != ".lock"}


def leftovers(folder) -> list[str]:
    """Temporary files or folders (``.<name>.tmp-<pid>-<hex>``) left under ``folder``."""
    from pathlib import Path

    return [str(p) for p in Path(folder).rglob("*.tmp-*")]
