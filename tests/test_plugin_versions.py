"""A plug-in's version is part of the settings and the records, so a bench never mixes cells of two versions."""
from __future__ import annotations

from importlib.metadata import entry_points
from pathlib import Path

import pytest

from ssl_ctx.bench.plan import Cell, cells, check_settings, pretext_config, probe_config
from ssl_ctx.bench.runner import run_bench
from ssl_ctx.config import config_to_dict, load_config
from ssl_ctx.errors import UserError
from ssl_ctx.registry import PRETEXT_METHODS
from ssl_ctx.results.records import read_record, write_record
from ssl_ctx.settings import CODE_VERSION_KEY, record_identity, settings_of

REPO = Path(__file__).resolve().parents[1]
ROTATION_BENCH = REPO / "plugins" / "rotation_pretext" / "tests" / "bench_rotation.yaml"
KEY = "code.ssl-ctx-rotation"
installed = any(ep.name == "rotation" for ep in entry_points(group="ssl_ctx.pretext_methods"))
pytestmark = pytest.mark.skipif(not installed, reason="needs plugins/rotation_pretext installed (pip install -e)")


def bumped(monkeypatch: pytest.MonkeyPatch, new_version: str = "0.2.0") -> str:
    """Make the rotation plug-in look installed at ``new_version``; returns the version really installed."""
    lookup = PRETEXT_METHODS.distribution
    installed_version = lookup("rotation")[1]

    def distribution(name: str) -> tuple[str, str] | None:
        found = lookup(name)
        return (found[0], new_version) if found and found[0] == "ssl-ctx-rotation" else found

    monkeypatch.setattr(PRETEXT_METHODS, "distribution", distribution)
    return installed_version


def finished_cells(bench, root: Path) -> None:
    """Records of the bench's cells written as finished cells write them (``write_record`` with the cell's config),
    without training: the pretext cells first, whose settings hash each probe then names."""
    plan = cells(bench)
    for cell in plan:
        if cell.probe is None:
            write_record(cell.run_dir(bench.run_dir), "pretext", {}, pretext_config(bench, cell, root), 1.0, "cpu")
    for cell in plan:
        if cell.probe is not None:
            config = probe_config(bench, cell, root, cell.checkpoint(bench.run_dir))
            write_record(cell.run_dir(bench.run_dir), "probe", {"top1": 0.5}, config, 1.0, "cpu")


def test_a_plugin_method_puts_its_version_in_settings_and_packages_and_builtins_do_not(tmp_path):
    rotation = load_config(None, [f"output_dir={tmp_path}", "name=rotation", "method.name=rotation"])
    record = read_record(write_record(rotation.run_dir, "pretext", {}, rotation, 1.0, "cpu"))
    version = PRETEXT_METHODS.distribution("rotation")[1]
    assert record["settings"][KEY] == record["packages"]["ssl-ctx-rotation"] == version
    builtin = load_config(None, [f"output_dir={tmp_path}", "name=builtin"])
    settings = settings_of(config_to_dict(builtin), kind="pretext")
    assert [key for key in settings if key.startswith("code.")] == [CODE_VERSION_KEY]
    # A probe does not run the pretext method its config's method section names: no key for it.
    assert KEY not in settings_of(config_to_dict(rotation), kind="probe")


def test_an_old_record_without_settings_keeps_the_version_it_ran_with(tmp_path, monkeypatch):
    config = load_config(None, [f"output_dir={tmp_path}", "method.name=rotation"])
    old = {"kind": "pretext", "config": config_to_dict(config), "packages": {"ssl-ctx-rotation": "0.0.9"}}
    bumped(monkeypatch)
    settings, stored = record_identity(old)
    assert not stored and settings[KEY] == "0.0.9"


def test_bench_refuses_to_mix_cells_of_two_plugin_versions(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    bench = load_config(ROTATION_BENCH, [f"output_dir={tmp_path}"])
    root = REPO / "tests" / "configs"
    finished_cells(bench, root)
    check_settings(bench, cells(bench), root, replace_changed=False)  # records and the bench agree: nothing changed
    probe = read_record(Cell("rotation", 0, "tiny_linear").run_dir(bench.run_dir) / "record.json")
    assert KEY not in probe["settings"]  # the probe carries the version through its pretext run's settings hash

    installed_version = bumped(monkeypatch)
    with pytest.raises(UserError) as caught:
        run_bench(bench, ROTATION_BENCH)
    message = str(caught.value)
    assert "holds 2 cell(s) made with other settings" in message  # rotation's pretext cell and its probe
    assert f"first pretext / rotation / seed 0 ({KEY} {installed_version} -> 0.2.0)" in message
    assert "--replace-changed" in message
    assert not list(tmp_path.rglob("bench.yaml")), "the bench went on after refusing"

    check_settings(bench, cells(bench), root, replace_changed=True)
    moved = next(tmp_path.glob("bench-rotation.replaced-*"))
    assert (moved / "pretext" / "rotation" / "seed0" / "record.json").exists()
    assert (moved / "probe" / "tiny_linear" / "rotation" / "seed0" / "record.json").exists()
    assert (bench.run_dir / "pretext" / "random_init" / "seed0" / "record.json").exists()  # a built-in's stays


@pytest.mark.slow
def test_a_bench_run_with_one_plugin_version_refuses_another(real_data, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    bench = load_config(ROTATION_BENCH, [f"output_dir={tmp_path}"])
    assert run_bench(bench, ROTATION_BENCH)
    record = read_record(bench.run_dir / "pretext" / "rotation" / "seed0" / "record.json")
    installed_version = bumped(monkeypatch)
    assert record["settings"][KEY] == installed_version
    with pytest.raises(UserError, match=rf"pretext / rotation / seed 0 \({KEY} {installed_version} -> 0\.2\.0\)"):
        run_bench(bench, ROTATION_BENCH)
