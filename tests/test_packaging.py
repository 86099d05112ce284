"""A non-editable install works: the wheel carries the schema and presets, and a fresh
virtual environment with it resolves a config and runs a stage outside the repository."""

from __future__ import annotations

import site
import zipfile

import pytest
import yaml

from conftest import PYTHON, REPO, run


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    run([PYTHON, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", out, REPO], timeout=600)
    (whl,) = out.glob("prunelib-*.whl")
    return whl


def test_the_wheel_carries_the_schema_and_every_preset(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "prunelib/workflow/schemas/config.schema.yaml" in names
    for preset in (REPO / "workflow" / "presets").glob("*.yaml"):
        assert f"prunelib/workflow/presets/{preset.name}" in names
    assert "prunelib/catalogue/registry.py" in names and "prunelib/methods/scorers/lamp.py" in names
    assert "prunelib/report/paper_values.yaml" in names  # the papers' numbers of docs/reproductions.md


def test_a_fresh_venv_with_the_wheel_checks_a_config_and_runs_a_stage(wheel, tmp_path):
    venv = tmp_path / "venv"
    run([PYTHON, "-m", "venv", "--without-pip", venv])
    py = venv / "bin" / "python"
    target = run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip()
    zipfile.ZipFile(wheel).extractall(target)  # what pip install does with a pure wheel
    # torch & co. from this environment, as plain paths (no .pth processing: no editable prunelib)
    with open(f"{target}/deps.pth", "w") as fh:
        fh.write("\n".join(site.getsitepackages()) + "\n")
    work = tmp_path / "elsewhere"
    work.mkdir()
    (work / "config.yaml").write_text(yaml.safe_dump({"preset": "fast", "grid": {"archs": ["lenet300"]}}))
    proc = run([py, "-m", "prunelib", "check-config", "config.yaml"], cwd=work)
    assert proc.stdout.startswith("config.yaml: ok (")
    where = run([py, "-c", "import prunelib; print(prunelib.__file__)"], cwd=work).stdout
    assert where.startswith(target), where
    settings = '{"arch": "lenet300", "dataset": "mnist", "seed": 0, "init_scheme": "pytorch_default", ' \
               '"prune": {"include_bias": false, "include_norm": false}}'
    run([py, "-m", "prunelib", "init", "--settings", settings, "--out-weights", "i.pt", "--out-table", "i.parquet"],
        cwd=work)
    assert (work / "i.pt").stat().st_size > 1_000_000 and (work / "i.pt.sha256").exists()
