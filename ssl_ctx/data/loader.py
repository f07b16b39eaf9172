"""Batches straight from a prepared uint8 cache: no per-image Python decoding, augmentation on the device.

A batch is gathered from the memory-mapped array with one fancy index (or from a copy already on the GPU),
moved to the device as uint8, and only there converted to float, cropped, resized and flipped. The order of
samples depends only on (seed, epoch). Process ``rank`` of a torchrun job takes the global positions
``rank, rank + W, rank + 2W, ...`` of each global batch, with the crops and flips those samples get in a
single-process run, so the processes together see exactly the single-process batches.
"""
from __future__ import annotations

import threading
from collections.abc import Iterator
from queue import Empty, Queue
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from ssl_ctx.config import DataConfig, TrainConfig

_PRELOAD_LIMIT_BYTES = 8 << 30  # keep the whole cache on the GPU when it is smaller than this


def input_size_of(input_size: int | None, split: Any) -> tuple[int, int]:
    """(H, W) the network sees: ``data.input_size`` squared, or the cache's own size when it is null."""
    if input_size:
        return input_size, input_size
    return int(split.images.shape[1]), int(split.images.shape[2])


def to_unit_range(images_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 ``(B, H, W, 3)`` -> float ``(B, 3, H, W)`` in ``[-1, 1]`` (channels-last in memory, for free)."""
    return images_uint8.permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)


class CachedBatchLoader:
    """Iterate over a :class:`~ssl_ctx.data.CachedSplit` in batches of device tensors.

    Each batch is a dict: ``image`` float ``(B, 3, S, S)`` in ``[-1, 1]``; ``label`` long ``(B,)``,
    ``label_set`` long ``(B, K)`` (1 present, 0 difficult only, -1 absent: multi-label sets such as VOC's) and
    ``label_map`` long ``(B, S, S)`` (255 = ignore) when the split has them; ``index`` long ``(B,)``.
    """

    def __init__(self, split: Any, batch_size: int, device: torch.device | str = "cpu", seed: int = 0,
                 train: bool = True, input_size: int | None = None, crop_scale: float = 1.0, hflip: bool = True,
                 rank: int = 0, world_size: int = 1, drop_last: bool | None = None,
                 preload: bool | None = None) -> None:
        self.split = split
        self.device = torch.device(device)
        self.seed = seed
        self.train = train
        self.input_size = input_size_of(input_size, split)
        self.crop_scale = crop_scale if train else 1.0
        self.hflip = hflip and train
        self.rank, self.world_size = rank, world_size
        self.batch_size = max(1, batch_size // world_size)  # batch_size is the global batch
        self.drop_last = train if drop_last is None else drop_last
        self.num_samples = len(split.images)
        nbytes = split.images.nbytes
        self.preload = preload if preload is not None else (self.device.type == "cuda" and nbytes < _PRELOAD_LIMIT_BYTES)
        self._on_device: dict[str, torch.Tensor] = {}
        if self.preload:
            self._on_device = {name: torch.from_numpy(np.ascontiguousarray(array)).to(self.device)
                               for name, array in self._arrays().items()}

    def _arrays(self) -> dict[str, np.ndarray]:
        arrays = {"image": self.split.images}
        if getattr(self.split, "labels", None) is not None:
            arrays["label"] = self.split.labels
        if getattr(self.split, "label_maps", None) is not None:
            arrays["label_map"] = self.split.label_maps
        if getattr(self.split, "label_sets", None) is not None:
            arrays["label_set"] = self.split.label_sets
        return arrays

    def _order(self, epoch: int) -> np.ndarray:
        """This process's sample indices for ``epoch``: a permutation from (seed, epoch), sharded by rank."""
        if self.train:
            order = np.random.default_rng([self.seed, epoch]).permutation(self.num_samples)
        else:
            order = np.arange(self.num_samples)
        per_step = self.batch_size * self.world_size
        usable = (len(order) // per_step) * per_step if self.drop_last else len(order)
        return order[:usable][self.rank::self.world_size]

    def __len__(self) -> int:
        shard = len(self._order(0))
        return shard // self.batch_size if self.drop_last else -(-shard // self.batch_size)

    def batches(self, epoch: int, start: int = 0) -> Iterator[dict[str, torch.Tensor]]:
        """Yield batches ``start, start + 1, ...`` of ``epoch``; host gathering runs one batch ahead in a thread."""
        order = self._order(epoch)
        chunks = [order[i:i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        chunks = [c for c in chunks if len(c) == self.batch_size or not self.drop_last][start:]
        if self.preload:
            for number, indices in enumerate(chunks, start=start):
                index = self._to_device(torch.from_numpy(indices))
                raw = {name: array[index] for name, array in self._on_device.items()}
                yield self._finish(raw, index, epoch, number)
            return
        for number, raw in enumerate(_prefetch(self._gather, chunks), start=start):
            raw = {name: self._to_device(value) for name, value in raw.items()}
            index = raw.pop("index")
            yield self._finish(raw, index, epoch, number)

    def _to_device(self, tensor: torch.Tensor) -> torch.Tensor:
        """Host -> device without waiting: a blocking copy would make the host wait for the queued steps."""
        if self.device.type == "cuda" and not tensor.is_pinned():
            tensor = tensor.pin_memory()
        return tensor.to(self.device, non_blocking=True)

    def _gather(self, indices: np.ndarray) -> dict[str, torch.Tensor]:
        """Host tensors of one batch, in the order of ``indices`` (pinned when the batch goes to a GPU)."""
        # Read in sorted order (sequential in the memory map), then put the rows back in sampling order, so
        # a sample gets the same augmentation whichever path or number of processes served it.
        reading_order = np.argsort(indices, kind="stable")
        back = np.empty_like(reading_order)
        back[reading_order] = np.arange(len(indices))
        sorted_indices = indices[reading_order]
        raw = {name: torch.from_numpy(np.ascontiguousarray(array[sorted_indices])[back])
               for name, array in self._arrays().items()}
        raw["index"] = torch.from_numpy(np.ascontiguousarray(indices))
        if self.device.type == "cuda":
            raw = {name: value.pin_memory() for name, value in raw.items()}
        return raw

    def _finish(self, raw: dict[str, torch.Tensor], index: torch.Tensor, epoch: int,
                number: int) -> dict[str, torch.Tensor]:
        images = to_unit_range(raw["image"])
        label_map = raw.get("label_map")
        generator = torch.Generator(device=self.device)
        generator.manual_seed(int(np.random.SeedSequence([self.seed, epoch, number, 7]).generate_state(1)[0]))
        images, label_map = self._augment(images, label_map, self._draw(images.shape[0], generator))
        batch = {"image": images, "index": index}
        if "label" in raw:
            batch["label"] = raw["label"].long()
        if "label_set" in raw:
            batch["label_set"] = raw["label_set"].long()
        if label_map is not None:
            batch["label_map"] = label_map
        return batch

    def _draw(self, batch: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(shift ``(B, 2)`` in [-1, 1], flip sign ``(B,)`` of +-1) for this process's ``batch`` samples.

        The numbers are drawn for the whole global batch and this process keeps the rows of its own samples
        (global position ``rank + world_size * j``, see :meth:`_order`), so a sample is augmented the same way
        whatever the number of processes.
        """
        total = self.batch_size * self.world_size
        shift = torch.rand(total, 2, generator=generator, device=self.device) * 2 - 1
        coin = torch.rand(total, generator=generator, device=self.device) < 0.5
        flip = torch.where(coin, -1.0, 1.0) if self.hflip else torch.ones(total, device=self.device)
        mine = slice(self.rank, None, self.world_size)
        return shift[mine][:batch], flip[mine][:batch]

    def _augment(self, images: torch.Tensor, label_map: torch.Tensor | None,
                 draws: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Random crop + resize + horizontal flip (train), or a plain resize (eval), on the device."""
        batch = images.shape[0]
        size = self.input_size
        shift, flip = draws
        if self.crop_scale < 1.0:
            # One affine warp does crop, resize and flip for the whole batch.
            scale = torch.full((batch,), self.crop_scale, device=self.device)
            theta = torch.zeros(batch, 2, 3, device=self.device)
            theta[:, 0, 0] = scale * flip
            theta[:, 1, 1] = scale
            theta[:, :, 2] = shift * (1 - scale[:, None])
            grid = F.affine_grid(theta, [batch, 3, *size], align_corners=False)
            images = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
            if label_map is not None:
                warped = F.grid_sample(label_map[:, None].float(), grid, mode="nearest", align_corners=False)
                label_map = warped[:, 0]
            return images, None if label_map is None else label_map.long()
        if tuple(images.shape[-2:]) != tuple(size):
            images = F.interpolate(images, size=size, mode="bilinear", antialias=True, align_corners=False)
            if label_map is not None:
                label_map = F.interpolate(label_map[:, None].float(), size=size, mode="nearest")[:, 0]
        if self.hflip:
            flipped = flip < 0
            images = torch.where(flipped.view(-1, 1, 1, 1), images.flip(-1), images)
            if label_map is not None:
                label_map = torch.where(flipped.view(-1, 1, 1), label_map.flip(-1), label_map)
        return images, None if label_map is None else label_map.long()


def _prefetch(function, items: list, depth: int = 2) -> Iterator:
    """Run ``function`` over ``items`` in a background thread, ``depth`` results ahead; yields (item, result)."""
    queue: Queue = Queue(maxsize=depth)
    stop = threading.Event()

    def work() -> None:
        try:
            for item in items:
                if stop.is_set():
                    return
                queue.put(function(item))
        except BaseException as err:  # noqa: BLE001 - re-raised in the consumer
            queue.put(err)
        queue.put(StopIteration)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    try:
        while True:
            result = queue.get()
            if result is StopIteration:
                return
            if isinstance(result, BaseException):
                raise result
            yield result
    finally:
        # Stop the thread and wait for it: drain the queue so a blocked put returns, then join.
        stop.set()
        while thread.is_alive():
            try:
                queue.get(timeout=0.05)
            except Empty:
                pass
        thread.join()


def loader_for(split: Any, data: DataConfig, train: TrainConfig, device: torch.device, training: bool, rank: int = 0,
               world_size: int = 1, **overrides: Any) -> CachedBatchLoader:
    """A loader with the input size and augmentation of ``data`` and the batch size and seed of ``train``;
    ``overrides`` replace any of :class:`CachedBatchLoader`'s options (e.g. ``hflip=False``)."""
    options = dict(batch_size=train.batch_size, device=device, seed=train.seed, train=training,
                   input_size=data.input_size, crop_scale=data.crop_scale, hflip=data.hflip, rank=rank,
                   world_size=world_size)
    options.update(overrides)
    return CachedBatchLoader(split, **options)
