"""The package's layers and their import rule, read from the source (see the README's "Layout").

* ``imle_fn._kernels``: Numba kernels; imports no torch and nothing of imle_fn outside itself.
* ``imle_fn.core``: the pipeline; imports only core and the kernels (no solver, estimator, app).
* ``imle_fn.estimators``: imports core and estimators.
* ``imle_fn.solvers``: imports core, kernels and solvers.
* ``imle_fn.distributed``: imports core and distributed.
* ``imle_fn.compat``: imports core and estimators.
* ``imle_fn.nn``: the ``torch.nn`` layers over the estimators; imports core, estimators and nn.
* ``imle_fn`` (its ``__init__``): re-exports the library layers, never an app.
* ``imle_fn.apps``: may import anything; ``imle_fn.__main__`` only starts the command line.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import pytest

import imle_fn

PACKAGE = Path(imle_fn.__file__).parent

ALLOWED: dict[str, set[str]] = {
    "kernels": {"kernels"},
    "core": {"core", "kernels"},
    "estimators": {"core", "estimators"},
    "solvers": {"core", "kernels", "solvers"},
    "distributed": {"core", "distributed"},
    "compat": {"core", "estimators"},
    "nn": {"core", "estimators", "nn"},
    "root": {"core", "estimators", "solvers", "distributed", "nn"},
    "main": {"apps"},
    "apps": {
        "root",
        "kernels",
        "core",
        "estimators",
        "solvers",
        "distributed",
        "compat",
        "nn",
        "apps",
    },
}

FIRST_LEVEL = {
    "_kernels": "kernels",
    "core": "core",
    "estimators": "estimators",
    "solvers": "solvers",
    "distributed": "distributed",
    "compat": "compat",
    "nn": "nn",
    "apps": "apps",
    "__main__": "main",
}


def layer_of(module: str) -> str:
    """The layer of a dotted module name inside imle_fn (``"root"`` for the package itself)."""
    parts = module.split(".")
    assert parts[0] == "imle_fn", module
    if len(parts) == 1 or parts[1] == "__init__":
        return "root"
    return FIRST_LEVEL[parts[1]]


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports_of(path: Path) -> list[tuple[str, int]]:
    """Every module imported anywhere in the file (function-level imports included), with lines."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[tuple[str, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}:{node.lineno}: relative import"
            assert node.module is not None
            if node.module == "imle_fn":  # `from imle_fn import x`: x may be a subpackage
                for alias in node.names:
                    sub = f"imle_fn.{alias.name}"
                    is_module = (PACKAGE / alias.name).is_dir() or (
                        PACKAGE / f"{alias.name}.py"
                    ).exists()
                    found.append((sub if is_module else "imle_fn", node.lineno))
            else:
                found.append((node.module, node.lineno))
    return found


SOURCES = sorted(PACKAGE.rglob("*.py"))


def test_every_module_belongs_to_a_layer() -> None:
    top_level = sorted(p.name for p in PACKAGE.iterdir() if p.suffix == ".py")
    assert top_level == ["__init__.py", "__main__.py", "compat.py"]
    for path in SOURCES:
        layer_of(module_name(path))  # raises KeyError for a module outside the layers


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: module_name(p))
def test_imports_follow_the_layer_rule(path: Path) -> None:
    layer = layer_of(module_name(path))
    for imported, line in imports_of(path):
        root = imported.split(".")[0]
        if layer == "kernels":
            assert root != "torch", f"{path}:{line}: kernels must not import torch"
        if root != "imle_fn":
            continue
        target = layer_of(imported)
        assert target in ALLOWED[layer], (
            f"{path}:{line}: the {layer} layer imports {imported} ({target} layer);"
            f" allowed: {sorted(ALLOWED[layer])}"
        )


def test_the_rule_catches_a_violation(tmp_path: Path) -> None:
    """The checker itself: a core module importing a solver is reported."""
    bad = tmp_path / "bad.py"
    bad.write_text("from imle_fn.solvers.grid import GridShortestPath\nimport torch\n")
    imported = [layer_of(name) for name, _ in imports_of(bad) if name.startswith("imle_fn")]
    assert imported == ["solvers"]
    assert "solvers" not in ALLOWED["core"]


def _packages() -> list[str]:
    names = ["imle_fn"]
    for info in pkgutil.walk_packages(imle_fn.__path__, "imle_fn."):
        if info.ispkg and ".apps" not in info.name:
            names.append(info.name)
    return names


@pytest.mark.parametrize("package", _packages())
def test_no_module_shares_a_name_with_what_it_exports(package: str) -> None:
    """``import imle_fn.x.y`` must give a module, never a function or class named ``y``."""
    pkg = importlib.import_module(package)
    exported = set(getattr(pkg, "__all__", ()))
    for info in pkgutil.iter_modules(pkg.__path__):
        if info.name == "__main__":  # importing it runs the command line
            continue
        assert info.name not in exported, f"{package}.{info.name} is a module and an export"
        module = importlib.import_module(f"{package}.{info.name}")
        assert info.name not in getattr(module, "__all__", ()), f"{module.__name__} exports itself"
        assert type(getattr(pkg, info.name)).__name__ == "module"


def test_library_never_imports_an_app() -> None:
    """Importing the library does not load the apps (they are imported only by the CLI)."""
    import subprocess
    import sys

    code = "import sys, imle_fn, imle_fn.compat; print(any(m.startswith('imle_fn.apps') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
