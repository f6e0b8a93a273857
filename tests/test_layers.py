"""The package's layers import one way, and only the compat modules touch upstream internals.

ARCHITECTURE.md draws the same map; this test is what keeps it true. Every import in every
module counts, lazy ones inside functions too: a lazy import that climbs a layer is still a
dependency the module cannot be understood without.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "deid_workers"

# Top to bottom. A module may import its own layer and any layer below it, never one above.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("front door", ("deid_workers", "deid_workers.__main__", "deid_workers.cli",
                    "deid_workers.worker", "deid_workers.embedded", "deid_workers.producer",
                    "deid_workers.prepare", "deid_workers.arguments",
                    "deid_workers.progress", "deid_workers.synth", "deid_workers.synth_burned")),
    ("celery glue", ("deid_workers.app", "deid_workers.tasks")),
    ("run state", ("deid_workers.run",)),
    ("one file", ("deid_workers.files",)),
    ("ids and ocr", ("deid_workers.ids", "deid_workers.ocr")),
    ("recipe engine", ("deid_workers.recipe",)),
    ("bytes", ("deid_workers.dicom",)),
    ("filesystem", ("deid_workers.fs",)),
    ("base", ("deid_workers.errors", "deid_workers.reasons", "deid_workers.config",
              "deid_workers.keys", "deid_workers.logs", "deid_workers.version")),
]

# The only modules that may name a private of these upstream packages.
FENCES = {
    "pydicom": "deid_workers.dicom.compat",
    "celery": "deid_workers.tasks.compat",
    "kombu": "deid_workers.tasks.compat",
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, ast.Module]:
    return {_module_name(p): ast.parse(p.read_text(), str(p)) for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(name: str, tree: ast.Module, is_package: bool) -> list[tuple[int, str, list[str]]]:
    """(line, absolute module, imported names) of every import in the module."""
    found = []
    package = name if is_package else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name, []) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.append((node.lineno, target, [a.name for a in node.names]))
    return found


def _layer(module: str) -> int | None:
    best: tuple[int, int] | None = None  # (prefix length, layer) of the longest matching prefix
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            # The package itself (its __init__, the public API) is one module, not a prefix.
            if module == prefix or (prefix != "deid_workers" and module.startswith(prefix + ".")):
                if best is None or len(prefix) > best[0]:
                    best = (len(prefix), index)
    return None if best is None else best[1]


MODULES = _modules()
PACKAGES = {_module_name(p) for p in PACKAGE.rglob("__init__.py")}


def test_every_module_has_a_layer() -> None:
    assert [m for m in MODULES if _layer(m) is None] == []


def test_imports_go_one_way() -> None:
    upward = []
    for name, tree in MODULES.items():
        own = _layer(name)
        for line, target, names in _imports(name, tree, name in PACKAGES):
            if not target.startswith("deid_workers"):
                continue
            # "from . import x" names submodules: judge each one, not the package.
            targets = [f"{target}.{n}" if f"{target}.{n}" in MODULES else target for n in names] or [target]
            for t in targets:
                layer = _layer(t)
                assert own is not None and layer is not None
                if layer < own:
                    upward.append(f"{name}:{line} ({LAYERS[own][0]}) imports {t} ({LAYERS[layer][0]})")
    assert upward == []


def _private_uses(tree: ast.Module, upstream: str) -> list[int]:
    """Lines that import a private module or name of ``upstream``."""
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and not node.level and node.module:
            mod = node.module
            if mod.split(".")[0] == upstream and (
                any(part.startswith("_") for part in mod.split("."))
                or any(a.name.startswith("_") and not a.name.startswith("__") for a in node.names)
            ):
                lines.append(node.lineno)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == upstream and any(
                    p.startswith("_") for p in alias.name.split(".")
                ):
                    lines.append(node.lineno)
    return lines


@pytest.mark.parametrize("upstream", sorted(FENCES))
def test_only_the_fence_imports_upstream_privates(upstream: str) -> None:
    offenders = [
        f"{name}:{line}"
        for name, tree in MODULES.items()
        if name != FENCES[upstream]
        for line in _private_uses(tree, upstream)
    ]
    assert offenders == []


def test_the_check_sees_an_upward_import() -> None:
    """The checker itself: a made-up base module importing the front door is caught."""
    tree = ast.parse("from .cli import main\nfrom pydicom.dataelem import _private\n")
    [(line, target, names)] = _imports("deid_workers.errors", tree, False)[:1]
    assert target == "deid_workers.cli" and _layer(target) < _layer("deid_workers.errors")
    assert _private_uses(tree, "pydicom") == [2]
    assert _layer("deid_workers.newmodule") is None  # a module outside the map is noticed
