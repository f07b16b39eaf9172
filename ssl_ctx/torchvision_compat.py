"""Make ``import torchvision`` work next to a CPU-only torch whose torchvision wheel has CUDA ops.

PyPI's Linux torchvision wheels are CUDA builds: next to the CPU torch pinned in ``constraints.txt``
their compiled extension (``torchvision/_C.so``) cannot load (it links ``libc10_cuda.so``), and
torchvision 0.28 then fails at import, because ``_meta_registrations`` registers fake kernels for
``torchvision::nms`` / ``qnms`` without checking that the extension loaded. timm imports torchvision,
so it fails too.

:func:`ensure_torchvision` (idempotent, a no-op where the extension loads) defines those two operator
schemas with a pure-PyTorch greedy NMS before torchvision is imported, and points
``torchvision.ops.nms`` at it. Everything else that Faster R-CNN needs has a pure-PyTorch path in
torchvision already (``roi_align`` falls back to ``_roi_align`` when the extension is missing).
Call it before the first ``import torchvision`` or ``import timm``.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

_LIBRARY: torch.library.Library | None = None  # kept alive: the operator definitions live as long as it does
_checked = False


def _suppression_matrix(boxes: np.ndarray, iou_threshold: float) -> np.ndarray:
    """(N, 4) xyxy -> (N, N) bool, True where the pair's IoU exceeds the threshold."""
    x0, y0, x1, y1 = boxes.T
    area = (x1 - x0).clip(min=0) * (y1 - y0).clip(min=0)
    width = (np.minimum(x1[:, None], x1[None]) - np.maximum(x0[:, None], x0[None])).clip(min=0)
    height = (np.minimum(y1[:, None], y1[None]) - np.maximum(y0[:, None], y0[None])).clip(min=0)
    inter = width * height
    # IoU > t  <=>  inter > t * union (no division; a zero union never suppresses)
    return inter > iou_threshold * (area[:, None] + area[None, :] - inter)


def nms_reference(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Greedy NMS with torchvision's semantics: indices kept, by decreasing score; drop IoU > threshold.

    boxes: (N, 4) xyxy, scores: (N,). Returns int64 (K,) on ``boxes.device``.
    """
    if boxes.numel() == 0:
        return torch.empty(0, dtype=torch.int64, device=boxes.device)
    order = torch.argsort(scores, descending=True, stable=True)
    suppress = _suppression_matrix(boxes[order].detach().float().cpu().numpy(), iou_threshold)
    keep = np.ones(order.numel(), dtype=bool)
    for i in range(order.numel()):
        if keep[i]:
            keep[i + 1 :] &= ~suppress[i, i + 1 :]
    return order[torch.from_numpy(np.flatnonzero(keep)).to(boxes.device)]


def _extension_loads() -> bool:
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return False
    library = Path(list(spec.submodule_search_locations)[0]) / "_C.so"
    try:
        torch.ops.load_library(str(library))
        return True
    except (OSError, RuntimeError):
        return False


def ensure_torchvision() -> None:
    """Define the operators torchvision's import needs when its compiled extension cannot load."""
    global _LIBRARY, _checked
    if _checked:
        return
    _checked = True
    if "torchvision" in sys.modules and hasattr(sys.modules["torchvision"], "ops"):
        return  # already imported successfully
    if _extension_loads() or hasattr(torch.ops.torchvision, "nms"):
        return
    _LIBRARY = torch.library.Library("torchvision", "DEF")
    _LIBRARY.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _LIBRARY.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _LIBRARY.impl("nms", nms_reference, "CompositeExplicitAutograd")

    def _no_qnms(dets: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
        raise RuntimeError("quantized NMS needs torchvision's compiled extension, which is not loadable here")

    _LIBRARY.impl("qnms", _no_qnms, "CompositeExplicitAutograd")
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]  # a failed earlier import leaves half-initialised submodules behind
    import torchvision.ops
    import torchvision.ops.boxes

    def nms(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
        return torch.ops.torchvision.nms(boxes, scores, iou_threshold)

    nms.__doc__ = torchvision.ops.boxes.nms.__doc__
    torchvision.ops.boxes.nms = nms  # batched_nms (used by Faster R-CNN) looks it up here at call time
    torchvision.ops.nms = nms
