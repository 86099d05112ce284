"""The registry is the one owner of each fact: docs, schema and workflow derive from it."""

from __future__ import annotations

import re

from prunelib.catalogue import listing as catalogue

from prunelib.catalogue import registry

from conftest import PYTHON, REPO, run


def test_docs_methods_md_is_the_registry_rendered():
    text = (REPO / "docs" / "methods.md").read_text()
    body = text.split(catalogue.START, 1)[1].split(catalogue.END, 1)[0]
    assert body.strip() == catalogue.render_all().strip(), "docs/methods.md drifted: run `make docs`"


def test_every_registered_item_is_listed_once():
    rendered = catalogue.render_all()
    for table in (registry.METHODS, registry.ARCHS, registry.DATASETS, registry.INITS, registry.VARIANTS):
        for name in table:
            assert len(re.findall(rf"^\| `{name}`", rendered, re.M)) == 1, name


def test_a_builtin_method_is_named_in_its_module_and_its_registry_entry_only():
    """Adding a built-in method touches two files under prunelib/ and workflow/ (presets aside)."""
    files = [p for d in ("prunelib", "workflow") for p in (REPO / d).rglob("*")
             if p.is_file() and p.suffix in (".py", ".smk", ".yaml", ".rst") and "presets" not in p.parts]
    holding = {str(p.relative_to(REPO)) for p in files if re.search(r"\blamp", p.read_text())}
    assert holding == {"prunelib/catalogue/registry.py", "prunelib/methods/scorers/lamp.py"}


def test_cluster_cost_grows_with_depth_and_covers_every_network():
    cost = {a: e.cost for a, e in registry.ARCHS.items()}
    assert cost["resnet20"] < cost["resnet32"] < cost["resnet56"] < cost["resnet110"]
    assert all(c > 0 for c in cost.values())


def test_catalogue_command_lists_a_table():
    out = run([PYTHON, "-m", "prunelib", "catalogue", "archs"]).stdout
    assert all(f"| `{a}`" in out for a in registry.ARCHS)
