"""Every registered pretext method keeps the method contract (``ssl_ctx.testing``), plug-ins installed here too."""
from __future__ import annotations

import pytest

from ssl_ctx.registry import PRETEXT_METHODS
from ssl_ctx.testing import check_pretext_method


@pytest.mark.parametrize("name", PRETEXT_METHODS.names())
def test_method_keeps_the_contract(name, tmp_path):
    metrics = check_pretext_method(name, tmp_path)
    assert metrics["train_steps"] == (1.0 if PRETEXT_METHODS.get(name).trains else 0.0)


def test_a_broken_method_is_named_with_what_broke(tmp_path, monkeypatch):
    from ssl_ctx.pretext.context_encoder import ContextEncoder

    class Frozen(ContextEncoder):
        """Trains its head only: the encoder a probe reads never learns."""

        name = "frozen_for_test"

        def build(self) -> None:
            super().build()
            self.encoder.requires_grad_(False)

    PRETEXT_METHODS.names()  # the built-ins first, then this test's method, removed afterwards
    monkeypatch.setitem(PRETEXT_METHODS._items, "frozen_for_test", Frozen)
    monkeypatch.setitem(PRETEXT_METHODS._info, "frozen_for_test", {})
    with pytest.raises(AssertionError, match="frozen_for_test: a training step left every encoder weight"):
        check_pretext_method("frozen_for_test", tmp_path)


def test_a_method_the_tiny_config_cannot_build_is_told_how_to_declare_its_own(tmp_path):
    with pytest.raises(AssertionError, match="declare the overrides it needs as Inpainting128.contract_overrides"):
        check_pretext_method("inpainting128", tmp_path, overrides=["mask.type=random_block"])
