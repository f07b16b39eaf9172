"""A plug-in's own exception is one line naming the plug-in; a core bug keeps its traceback."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from ssl_ctx.cli import main
from ssl_ctx.errors import TRACEBACK_VARIABLE, one_line, plugin_failure
from ssl_ctx.pretext import PretextMethod
from ssl_ctx.registry import PRETEXT_METHODS

THIS_MODULE = __name__.split(".")[0]  # how a plug-in's modules are named: by their top-level module


class FailingMethod(PretextMethod):
    """A method whose loss fails the way a plug-in's bug would."""

    name = "failing_for_test"

    def losses(self, batch: dict[str, torch.Tensor], generator: torch.Generator) -> dict[str, torch.Tensor]:
        raise RuntimeError("the plug-in's own failure\nsecond line")


def caught(function) -> BaseException:
    try:
        function()
    except Exception as err:  # noqa: BLE001 - the test inspects whatever was raised
        return err
    raise AssertionError("nothing was raised")


def test_the_innermost_plugin_or_core_frame_decides(monkeypatch):
    monkeypatch.delenv(TRACEBACK_VARIABLE, raising=False)
    plugins = {THIS_MODULE: "ssl-ctx-example"}
    own = caught(lambda: FailingMethod.losses(None, {}, None))
    line = plugin_failure(own, plugins)
    assert line.startswith("plug-in ssl-ctx-example raised RuntimeError: the plug-in's own failure (at ")
    assert f"{__file__}:" in line and line.endswith(f"; {TRACEBACK_VARIABLE}=1 shows the traceback")
    # An error inside torch that the plug-in's call caused is the plug-in's.
    assert "raised RuntimeError" in plugin_failure(caught(lambda: torch.zeros(2) @ torch.zeros(3)), plugins)
    # A failure inside ssl_ctx (here within the standard library it calls) is a core bug: the traceback stays.
    assert plugin_failure(caught(lambda: one_line(None)), plugins) is None
    assert plugin_failure(own, {}) is None  # not a registered plug-in's module
    monkeypatch.setenv(TRACEBACK_VARIABLE, "1")
    assert plugin_failure(own, plugins) is None


@pytest.fixture
def failing_method(monkeypatch):
    """``failing_for_test`` registered as a plug-in's method would be, for one test."""
    PRETEXT_METHODS.names()  # the built-ins first, then this test's method, removed afterwards
    monkeypatch.setitem(PRETEXT_METHODS._items, FailingMethod.name, FailingMethod)
    monkeypatch.setitem(PRETEXT_METHODS._info, FailingMethod.name, {})
    return FailingMethod.name


def pretrain_args(env, name: str) -> list[str]:
    photos = env / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for index in range(12):
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(photos / f"{index:02d}.png")
    config = env / "pretext.yaml"
    config.write_text(f"data: {{dataset: 'imagefolder:{photos}'}}\n"
                      "model: {encoder: alexnet32, width: 0.25, norm: batch}\n"
                      "train: {batch_size: 4, max_steps: 1, progress: false, image_every: 0, device: cpu}\n")
    return ["pretrain", str(config), f"output_dir={env / 'runs'}", "name=failing", f"method.name={name}"]


def test_a_plugin_exception_in_pretrain_is_one_line_and_leaves_no_run_folder(env, failing_method, capsys,
                                                                              monkeypatch):
    monkeypatch.delenv(TRACEBACK_VARIABLE, raising=False)
    status = main(pretrain_args(env, failing_method))
    stderr = capsys.readouterr().err.strip()
    assert status == 2
    assert stderr.count("\n") == 0, stderr
    assert stderr.startswith(f"ssl-ctx: error: plug-in {FailingMethod.__module__} raised RuntimeError: "
                             f"the plug-in's own failure (at {__file__}:")
    assert stderr.endswith(f"; {TRACEBACK_VARIABLE}=1 shows the traceback")
    assert not (env / "runs" / "failing").exists(), "a half-made run folder was left"


def test_the_traceback_variable_shows_the_plugin_exception(env, failing_method, monkeypatch):
    monkeypatch.setenv(TRACEBACK_VARIABLE, "1")
    with pytest.raises(RuntimeError, match="the plug-in's own failure"):
        main(pretrain_args(env, failing_method))
    assert not (env / "runs" / "failing").exists()
