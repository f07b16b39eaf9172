"""docs/ARCHITECTURE.md stays true: its signatures, checkpoint and record keys and layers are the code's."""
from __future__ import annotations

import ast
import importlib
import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ssl_ctx.config import config_to_dict
from ssl_ctx.engine.trainer import Trainer
from ssl_ctx.pretext.base import DataInfo
from ssl_ctx.pretext.context_encoder import ContextEncoder
from ssl_ctx.results.records import read_record, write_record
from tests.helpers import random_split, small_config

REPO = Path(__file__).resolve().parents[1]
DOC = (REPO / "docs" / "ARCHITECTURE.md").read_text()
PACKAGE = REPO / "ssl_ctx"
SIGNATURE = re.compile(r"`(ssl_ctx(?:\.\w+)+)\(([^`]*)\)`")


def documented_signatures() -> list[tuple[str, str]]:
    return SIGNATURE.findall(DOC)


def resolve(dotted: str):
    """The object at ``dotted``: the longest importable module, then attributes."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for name in parts[cut:]:
            obj = getattr(obj, name)
        return obj
    raise ImportError(dotted)


def code_parameters(obj) -> str:
    """``a, b=1, *args`` as the doc writes it: no annotations, no ``self``."""
    signature = inspect.signature(obj)
    parameters = [p.replace(annotation=inspect.Parameter.empty) for p in signature.parameters.values()
                  if p.name != "self"]
    return str(signature.replace(parameters=parameters, return_annotation=inspect.Signature.empty))[1:-1]


def test_the_doc_states_signatures():
    assert len(documented_signatures()) >= 40


@pytest.mark.parametrize("dotted, parameters", documented_signatures(), ids=[d for d, _ in documented_signatures()])
def test_documented_signature_is_the_codes(dotted, parameters):
    assert code_parameters(resolve(dotted)) == parameters, f"docs/ARCHITECTURE.md: {dotted}({parameters})"


def marked(name: str) -> list[str]:
    """The backticked words between ``<!-- name -->`` and ``<!-- /name -->`` in the doc."""
    block = DOC.split(f"<!-- {name} -->")[1].split(f"<!-- /{name} -->")[0]
    return re.findall(r"`([^`]+)`", block)


def test_checkpoint_keys_are_the_documented_ones(tmp_path):
    config = small_config(tmp_path, "train.epochs=1", "train.checkpoint_every=1000")
    split = random_split(16)
    task = ContextEncoder.from_config(config, DataInfo((32, 32), split.mean_rgb))
    from ssl_ctx.data.loader import loader_for

    with Trainer(config, config.run_dir) as trainer:
        trainer.fit(task, loader_for(split, config.data, config.train, trainer.device, True))
    payload = torch.load(trainer.checkpoint_path, weights_only=True)
    assert set(payload) - {"data_info"} == set(marked("checkpoint-keys"))
    assert "data_info" in payload  # a pretext method's addition
    assert payload["encoder_spec"] == {"name": "alexnet32", "options": {"norm": "batch", "width": 0.25, "groups": 2}}


def test_record_keys_are_the_documented_ones(tmp_path):
    config = small_config(tmp_path)
    path = write_record(tmp_path, "pretext", {"loss": 1.0}, config, 1.0, "cpu")
    assert set(read_record(path)) == set(marked("record-keys"))
    assert read_record(path)["config"] == config_to_dict(config)


# ------------------------------------------------------------------------------------------------- layers


def layers() -> dict[str, int]:
    """Package or top-level module -> its layer number, from the doc's numbered list."""
    block = DOC.split("<!-- layers -->")[1].split("<!-- /layers -->")[0]
    found = {}
    for line in block.strip().splitlines():
        number, _, names = line.partition(". ")
        for name in re.findall(r"`([^`]+)`", names):
            found[name] = int(number)
    return found


def unit_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "ssl_ctx"


def package_imports() -> list[tuple[str, str, str]]:
    """(importing file, its unit, imported unit) for every ssl_ctx import of the package, lazy ones included."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        unit = path.stem if path.parent == PACKAGE else path.relative_to(PACKAGE).parts[0]
        unit = "ssl_ctx" if unit == "__init__" else unit
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "ssl_ctx":
                targets = [node.module] if node.module != "ssl_ctx" else [f"ssl_ctx.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names if a.name.split(".")[0] == "ssl_ctx"]
            else:
                continue
            found += [(str(path.relative_to(REPO)), unit, unit_of(t)) for t in targets if unit_of(t) != unit]
    return found


def test_every_package_has_a_layer():
    units = {path.stem if path.parent == PACKAGE else path.relative_to(PACKAGE).parts[0]
             for path in PACKAGE.rglob("*.py")}
    assert units - {"__init__"} <= set(layers()), sorted(units - {"__init__"} - set(layers()))


def test_no_import_runs_up_or_across_the_layers():
    layer = layers()
    wrong = [f"{path} ({unit}, layer {layer[unit]}) imports {target} (layer {layer[target]})"
             for path, unit, target in package_imports() if layer[target] >= layer[unit]]
    assert not wrong, "\n".join(wrong)


@pytest.mark.slow
def test_a_probe_of_a_pretext_checkpoint_never_imports_the_pretext_methods(real_data, tmp_path):
    from tests.test_probe_encoder_loading import save_pretext_checkpoint

    path, _ = save_pretext_checkpoint(tmp_path, "model.encoder=alexnet64", "model.width=0.25", "model.norm=batch")
    script = ("import sys; from ssl_ctx.cli import main; "
              f"status = main(['probe', 'tests/configs/probe_tiny.yaml', 'output_dir={tmp_path}', 'init={path}']); "
              "print('pretext imported:', any(m.startswith('ssl_ctx.pretext') for m in sys.modules)); "
              "sys.exit(status)")
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "pretext imported: False" in result.stdout
