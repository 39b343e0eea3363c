"""Import direction (DESIGN §2): the stack never knows the CLI; the sans-IO core never does I/O."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
STACK = ROOT / "stack"

# What each sans-IO layer may not import (top-level module names).
IO_MODULES = {"socket", "select", "selectors", "time", "os", "fcntl", "random", "subprocess"}
# A dynamic import could hide any of the above, so the sans-IO layers may not use one.
DYNAMIC = {"importlib", "__import__"}
FORBIDDEN: dict[str, set[str]] = {
    "stack/trace.py": IO_MODULES | DYNAMIC | {"stack"},
    "stack/wire": IO_MODULES
    | DYNAMIC
    | {"stack.io", "stack.tcp", "stack.host", "stack.api", "stack.control"},
    "stack/tcp": IO_MODULES | DYNAMIC | {"stack.io", "stack.host", "stack.api", "stack.control"},
    "stack/host.py": IO_MODULES | DYNAMIC | {"stack.io", "stack.api", "stack.control"},
    "stack/script": IO_MODULES | DYNAMIC | {"stack.io", "stack.api", "stack.control"},
    "stack/fragments.py": IO_MODULES | DYNAMIC | {"stack.io", "stack.host", "stack.api",
                                                  "stack.control"},
    "stack/io": {"stack.api", "stack.control"},
    "stack/api.py": {"stack.control"},
}
EVERYWHERE_IN_STACK = {"click", "pytcpcli"}


def _is_type_checking_block(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and (
        (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING")
        or (isinstance(node.test, ast.Attribute) and node.test.attr == "TYPE_CHECKING")
    )


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node except those under `if TYPE_CHECKING:` (annotations never run)."""
    out: list[ast.AST] = []
    stack = [tree]
    while stack:
        node = stack.pop()
        out.append(node)
        if _is_type_checking_block(node):
            stack.extend(node.orelse)  # type: ignore[attr-defined]
            continue
        stack.extend(ast.iter_child_nodes(node))
    return out


def _package_of(path: Path, root: Path) -> list[str]:
    """The dotted package a module file lives in, as parts (stack/tcp/seq.py -> stack.tcp)."""
    try:
        parts = list(path.resolve().relative_to(root).with_suffix("").parts)
    except ValueError:  # a file outside the tree (the checker's own tests): top level
        return []
    return parts[:-1]  # a module and a package's __init__ alike: their directory


def imported_modules(path: Path, root: Path = ROOT) -> set[str]:
    """Every module a file imports at run time, relative imports made absolute, plus
    "__import__" for a call of the builtin of that name."""
    tree = ast.parse(path.read_text(), str(path))
    names: set[str] = set()
    for node in _runtime_nodes(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                package = _package_of(path, root)
                base_parts = package[: len(package) - (node.level - 1)]
                base = ".".join([*base_parts, *([node.module] if node.module else [])])
            else:
                base = node.module or ""
            if base:
                names.add(base)
            names.update(f"{base}.{alias.name}".lstrip(".") for alias in node.names)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "__import__"
        ):
            names.add("__import__")
    return names


def violates(name: str, banned: set[str]) -> bool:
    return any(name == b or name.startswith(b + ".") for b in banned)


def stack_files() -> list[Path]:
    return sorted(STACK.rglob("*.py"))


@pytest.mark.parametrize("path", stack_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_stack_module_imports_point_down(path: Path) -> None:
    rel = path.relative_to(ROOT).as_posix()
    banned = set(EVERYWHERE_IN_STACK)
    for prefix, extra in FORBIDDEN.items():
        if rel == prefix or rel.startswith(prefix + "/"):
            banned |= extra
    bad = sorted(n for n in imported_modules(path) if violates(n, banned))
    assert bad == [], f"{rel} imports {bad}, against DESIGN §2"


def test_type_checking_imports_do_not_count(tmp_path: Path) -> None:
    f = tmp_path / "typed.py"
    f.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import random\n")
    assert "random" not in imported_modules(f)


def test_checker_catches_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import time\nfrom stack.io.loop import Loop\nimport click\n")
    names = imported_modules(bad)
    assert violates("time", IO_MODULES)
    assert {"time", "stack.io.loop", "click"} <= names
    assert [n for n in names if violates(n, FORBIDDEN["stack/tcp"] | EVERYWHERE_IN_STACK)]


def test_checker_resolves_relative_and_dynamic_imports(tmp_path: Path) -> None:
    pkg = tmp_path / "stack" / "tcp"
    pkg.mkdir(parents=True)
    bad = pkg / "seq.py"
    bad.write_text(
        "from ..io import tun\nfrom . import clock\nimport importlib\n__import__('time')\n"
    )
    names = imported_modules(bad, root=tmp_path)
    assert {"stack.io", "stack.io.tun", "stack.tcp.clock", "importlib", "__import__"} <= names
    banned = FORBIDDEN["stack/tcp"]
    assert sorted(n for n in names if violates(n, banned)) == [
        "__import__",
        "importlib",
        "stack.io",
        "stack.io.tun",
    ]
