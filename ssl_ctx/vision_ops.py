"""The one check that torchvision and its compiled operators load beside this torch.

Detection (``nms``, ``roi_align`` inside Faster R-CNN) and timm encoders need torchvision. A torchvision
wheel built for another torch either fails at import ("operator torchvision::nms does not exist") or imports
without its operators; both end here in one line that names the installed pair and the fix, at the first
command that needs them, instead of a traceback (or an abort) deep inside torchvision.
"""
from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from types import ModuleType

from ssl_ctx.errors import UserError

# The pair this project is tested with (constraints.txt); any pair built together works.
TESTED_PAIR = "torch==2.14.1 torchvision==0.29.1"


def _installed(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


def require_torchvision(needed_for: str) -> ModuleType:
    """``import torchvision`` with its compiled operators loaded, or one UserError naming the fix."""
    problem = None
    try:
        import torchvision
        from torchvision.extension import _has_ops
    except (ImportError, RuntimeError, OSError) as err:  # RuntimeError: operators registered for another torch
        problem = f"{type(err).__name__}: {(str(err).splitlines() or [''])[0][:160]}"
    else:
        if _has_ops():
            return torchvision
        problem = "its compiled operators (nms, roi_align) did not load"
    raise UserError(f"{needed_for} needs torchvision's operators, but torchvision {_installed('torchvision')} "
                    f"beside torch {_installed('torch')} failed ({problem}); install a pair built together, "
                    f"e.g. pip install {TESTED_PAIR}")
