"""Every config we ship loads without an unknown key, and every cell of every bench config resolves."""
from __future__ import annotations

from pathlib import Path

import pytest

from ssl_ctx.bench.plan import cells, configs_root, pretext_config, probe_config
from ssl_ctx.config import load_config
from ssl_ctx.errors import UserError
from ssl_ctx.probes.common import resolve_solver
from ssl_ctx.registry import PRETEXT_METHODS

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
ALL = sorted(CONFIGS.rglob("*.yaml"))


@pytest.mark.parametrize("path", ALL, ids=[str(p.relative_to(CONFIGS)) for p in ALL])
def test_config_loads(path):
    config = load_config(path)
    assert config.name


@pytest.mark.parametrize("path", sorted((CONFIGS / "bench").glob("*.yaml")), ids=lambda p: p.name)
def test_every_bench_cell_resolves(path, tmp_path):
    bench = load_config(path, [f"output_dir={tmp_path}"])
    root = configs_root(path)
    for cell in cells(bench):
        if cell.probe is None:
            config = pretext_config(bench, cell, root)
            # A bench method is named for its row (random_init_vit runs random_init on a ViT); it runs a registered
            # pretext method, with options that method declares.
            assert config.tags["method"] == cell.method and config.train.seed == cell.seed
            PRETEXT_METHODS.get(config.method.name).resolve_options(config.method.options)
        else:
            config = probe_config(bench, cell, root, tmp_path / "last.pt")
            assert config.probe.init == str(tmp_path / "last.pt") and config.tags["probe"] == cell.probe
            resolve_solver(config.probe)  # the probe's solver fits its task and mode
        assert config.run_dir == cell.run_dir(bench.run_dir)


def test_a_bench_probe_names_a_column_of_the_papers_table(tmp_path):
    """``paper: <column>`` ties a probe to the paper's Table 2 (its published number beside ours with --paper); a
    misspelt column is one line with the right one."""
    path = CONFIGS / "bench" / "paper_voc.yaml"
    bench = load_config(path, [f"output_dir={tmp_path}"])
    cell = next(c for c in cells(bench) if c.probe == "voc07_detection_finetune")
    assert probe_config(bench, cell, configs_root(path), tmp_path / "last.pt").tags["paper"] == "detection"
    misspelt = load_config(path, [f"output_dir={tmp_path}",
                                  "bench.probes.voc07_detection_finetune.paper=detections"])
    with pytest.raises(UserError, match=r"paper 'detections' is no column .*did you mean 'detection'"):
        cells(misspelt)
