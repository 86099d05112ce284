"""The package's house: each subpackage imports only the floors below it (the ``May
import`` line of its docstring), and no module imports another that imports it back."""

import ast
from pathlib import Path

import prunelib

PACKAGE = Path(prunelib.__file__).parent
#: Floor of each subpackage: imports may point only at a lower floor (or the same
#: subpackage).
FLOORS = {"foundations": 0, "catalogue": 1, "data": 2, "nets": 3, "config": 3, "train": 4, "methods": 5,
          "stages": 6, "report": 6, "audit": 6, "cli": 7}
#: Pairs on the same floor that may import each other's way, stated: none.
SAME_FLOOR_OK = set()


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every prunelib module ``path`` imports (at any depth of the file)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("prunelib"):
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                out.add(full if (PACKAGE.parent / full.replace(".", "/")).with_suffix(".py").exists()
                        or (PACKAGE.parent / full.replace(".", "/")).is_dir() else node.module)
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("prunelib")}
    return out


def _subpackage(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in FLOORS else None


def test_every_module_lives_in_a_subpackage_of_the_house():
    top = sorted(p.name for p in PACKAGE.glob("*.py") if p.name not in ("__init__.py", "__main__.py"))
    assert top == []
    assert sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()) == sorted(FLOORS)


def test_imports_point_down_the_floors():
    wrong = []
    for path in PACKAGE.rglob("*.py"):
        here = _subpackage(_module_name(path))
        if here is None:
            continue
        for target in imports(path):
            there = _subpackage(target)
            if there is not None and there != here and FLOORS[there] >= FLOORS[here] \
                    and (here, there) not in SAME_FLOOR_OK:
                wrong.append(f"{_module_name(path)} ({here}, floor {FLOORS[here]}) imports {target} "
                             f"({there}, floor {FLOORS[there]})")
    assert wrong == []


def test_no_module_imports_one_that_imports_it_back():
    graph = {_module_name(p): {t for t in imports(p) if t != _module_name(p)} for p in PACKAGE.rglob("*.py")}
    cycles = []

    def visit(node, stack, seen):
        for nxt in graph.get(node, ()):
            if nxt in stack:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in seen:
                seen.add(nxt)
                visit(nxt, stack + [nxt], seen)

    for start in graph:
        visit(start, [start], {start})
    # a package's __init__ re-exporting its own modules is not a cycle between concerns
    real = [c for c in cycles if len({_subpackage(m) for m in c}) > 1 or len(set(c)) > 2]
    assert real == []


def test_every_subpackage_says_what_it_owns_and_may_import():
    for name in FLOORS:
        doc = ast.get_docstring(ast.parse((PACKAGE / name / "__init__.py").read_text())) or ""
        assert "May import" in doc and len(doc.splitlines()) >= 3, name
