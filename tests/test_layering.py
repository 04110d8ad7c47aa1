"""The package's layering, enforced on its imports (every ``import`` statement, module level or not).

    shared contracts (errors, files, paths, images, hadamard, sites, artifacts) < models, evaluation
    < calibration < export < plugins < runtime < orchestrators (pipeline, cli)

A module imports only from its own layer or below; export and runtime take no calibration classes
(they meet calibration at the site contract and at functions that return plain models); calibration
imports nothing from plugins.
"""

from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "compsrt"
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("shared", ("compsrt", "compsrt.errors", "compsrt.files", "compsrt.paths", "compsrt.images", "compsrt.hadamard",
                "compsrt.sites", "compsrt.artifacts", "compsrt.progress")),
    ("models", ("compsrt.models", "compsrt.evaluation")),
    ("calibration", ("compsrt.calibration",)),
    ("export", ("compsrt.export",)),
    ("plugins", ("compsrt.plugins",)),
    ("runtime", ("compsrt.runtime",)),
    ("orchestrators", ("compsrt.pipeline", "compsrt.cli", "compsrt.__main__")),
]


def module_name(path: Path) -> str:
    parts = path.relative_to(PKG.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> int:
    best, found = -1, None
    for i, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > best:
                best, found = len(p), i
    assert found is not None, f"{module} belongs to no layer: add it to LAYERS"
    return found


def is_module(name: str) -> bool:
    rel = Path(*name.split("."))
    return (PKG.parent / rel).with_suffix(".py").is_file() or (PKG.parent / rel / "__init__.py").is_file()


def imports(path: Path, text: str | None = None) -> list[tuple[str, list[str], int]]:
    """(imported compsrt module, names taken from it, line) for every import in ``path`` (or ``text`` as if there)."""
    src = module_name(path)
    package = src if path.name == "__init__.py" else src.rsplit(".", 1)[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text() if text is None else text, str(path))):
        if isinstance(node, ast.Import):
            out += [(a.name, [], node.lineno) for a in node.names if a.name.split(".")[0] == "compsrt"]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            if base.split(".")[0] != "compsrt":
                continue
            names = [a.name for a in node.names]
            modules = [f"{base}.{n}" for n in names if is_module(f"{base}.{n}")]
            if modules:  # `from pkg import module`
                out += [(m, [], node.lineno) for m in modules]
            if len(modules) < len(names):
                out.append((base, [n for n in names if not is_module(f"{base}.{n}")], node.lineno))
    return out


SOURCES = sorted(PKG.rglob("*.py"))


def test_every_module_has_a_layer():
    for path in SOURCES:
        layer_of(module_name(path))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: module_name(p))
def test_imports_go_down_the_layers(path):
    src = module_name(path)
    for target, _, line in imports(path):
        assert layer_of(target) <= layer_of(src), (
            f"{path.relative_to(PKG.parent)}:{line}: {src} ({LAYERS[layer_of(src)][0]}) imports {target} "
            f"({LAYERS[layer_of(target)][0]}), a higher layer")


def test_export_and_runtime_take_no_calibration_classes():
    for path in SOURCES:
        src = module_name(path)
        if LAYERS[layer_of(src)][0] not in ("export", "runtime"):
            continue
        for target, names, line in imports(path):
            if not target.startswith("compsrt.calibration"):
                continue
            assert names, f"{src}:{line} imports the module {target}; import the function it needs"
            mod = importlib.import_module(target)
            for n in names:
                assert not inspect.isclass(getattr(mod, n)), f"{src}:{line} imports the calibration class {target}.{n}"


def test_calibration_imports_nothing_from_plugins():
    for path in (PKG / "calibration").rglob("*.py"):
        for target, _, line in imports(path):
            assert not target.startswith("compsrt.plugins"), f"{module_name(path)}:{line} imports {target}"


def test_the_checker_sees_violations():
    """Relative imports are resolved, so a planted upward import would be caught."""
    planted = PKG / "export" / "planted.py"
    found = imports(planted, "def f():\n    from ..runtime.backends import open_backend\n")
    assert found == [("compsrt.runtime.backends", ["open_backend"], 2)]
    assert layer_of("compsrt.runtime.backends") > layer_of(module_name(planted))


def test_the_pipeline_does_not_import_the_command_line():
    """The pipeline is a library function the CLI calls: it takes nothing from compsrt.cli (progress display lives
    in compsrt.progress, below both)."""
    imported = [name for name, _, _ in imports(PKG / "pipeline.py")]
    assert not [m for m in imported if m == "compsrt.cli" or m.startswith("compsrt.cli.")], imported
