"""The conda env file is valid, pins every package, and agrees with pyproject.toml."""

import re
import sys
import tomllib

import yaml

from conftest import REPO


def _pins(lines):
    out = {}
    for line in lines:
        m = re.fullmatch(r"([A-Za-z0-9_.\-]+)(\[[a-z,]+\])?==([0-9][^\s;]*)", line.strip())
        assert m, f"not an exact pin: {line!r}"
        out[m.group(1).lower()] = m.group(3)
    return out


def test_env_file_matches_pyproject_pins():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pyproject = _pins(project["dependencies"])
    env = yaml.safe_load((REPO / "envs" / "prunelib.yaml").read_text())
    assert env["channels"][0] == "conda-forge"
    deps = env["dependencies"]
    assert "python=3.11" in deps
    pip = next(d["pip"] for d in deps if isinstance(d, dict))
    assert _pins(pip) == pyproject


def test_pins_cover_what_the_code_imports():
    pyproject = _pins(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"])
    imported = set()
    for path in (REPO / "prunelib").rglob("*.py"):
        for a, b in re.findall(r"^\s*(?:import (\w+)|from (\w+)\S* import )", path.read_text(), re.M):
            imported.add(a or b)
    third_party = imported - set(sys.stdlib_module_names) - {"prunelib"}
    names = {"yaml": "pyyaml"}
    assert {names.get(m, m) for m in third_party} <= set(pyproject), third_party


def test_every_rule_names_the_env_file():
    for smk in (REPO / "workflow" / "rules").glob("*.smk"):
        text = smk.read_text()
        n_rules = len(re.findall(r"^rule \w+:", text, re.M))
        assert text.count("conda:\n        ENV") == n_rules, smk.name
