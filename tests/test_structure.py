"""The layering of the package, read from the source: every module-level import points down (or
sideways within a layer), and the tools run the training step instead of keeping their own."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "ginr"
# lowest first; a module may import its own layer and the ones below, nothing above
LAYERS = [
    ("ginr.coords", "ginr.constraints", "ginr.files", "ginr.ops"),
    ("ginr.models", "ginr.data"),
    ("ginr.config",),
    ("ginr.engine",),
    ("ginr.api",),
    ("ginr.tools",),
    ("ginr.train", "ginr"),
]
APART = [
    ("ginr.models", "ginr.data"),
    ("ginr.tools.bench", "ginr.tools.memory"),
    ("ginr.tools.memory", "ginr.tools.bench"),
]
TOOLS = sorted(p.name for p in (PACKAGE / "tools").iterdir() if p.is_dir() and not p.name.startswith("_"))
# The core's face to the tools (ginr/tools/__init__.py names them): nothing else of the core is imported there.
SEAMS = (
    "ginr.api", "ginr.config", "ginr.engine.build", "ginr.engine.step", "ginr.engine.evaluation",
    "ginr.engine.metrics", "ginr.engine.checkpoint", "ginr.engine.logging", "ginr.data.imagefiles", "ginr.data.splits",
    "ginr.ops.backend", "ginr.files", "ginr.coords",
)  # fmt: skip


def _name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _layer(module: str) -> int:
    best = max(
        ((i, prefix) for i, layer in enumerate(LAYERS) for prefix in layer if module == prefix or module.startswith(prefix + ".")),
        key=lambda item: len(item[1]),
    )  # fmt: skip
    return best[0]


def _exists(module: str) -> bool:
    path = PACKAGE.parent / module.replace(".", "/")
    return path.with_suffix(".py").is_file() or path.is_dir()


def _module_level_imports(path: Path) -> list[str]:
    found = []
    for node in ast.parse(path.read_text()).body:  # top-level statements only: lazy imports are allowed
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found += [
                f"{node.module}.{a.name}" if _exists(f"{node.module}.{a.name}") else node.module
                for a in node.names
            ]
        elif isinstance(node, ast.Import):
            found += [a.name for a in node.names]
    return [m for m in found if m == "ginr" or m.startswith("ginr.")]


MODULES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: _name(p))
def test_imports_point_down(path):
    here = _name(path)
    for target in _module_level_imports(path):
        if _exists(target):
            assert _layer(target) <= _layer(here), f"{here} imports {target}, a higher layer"
            for low, high in APART:
                is_in = lambda m, p: m == p or m.startswith(p + ".")
                assert not (is_in(here, low) and is_in(target, high)), f"{here} must not import {target}"


def test_the_tools_reach_the_core_only_through_its_seams():
    for path in (PACKAGE / "tools").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):  # lazy imports too
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for name in names:
                if name.startswith("ginr.") and not name.startswith("ginr.tools"):
                    assert any(name == s or name.startswith(s + ".") for s in SEAMS), f"{path.name}: {name}"


def test_the_tools_are_found():
    assert {"bench", "memory", "compare"} <= set(TOOLS)


@pytest.mark.parametrize("tool", TOOLS)
def test_tools_do_not_keep_their_own_training_step(tool):
    for path in (PACKAGE / "tools" / tool).rglob("*.py"):
        text = path.read_text()
        for mark in ("mse_loss(", "clip_grad_norm_(", "optimizer.step(", "GradScaler("):
            assert mark not in text, f"{path.name} has its own {mark}: use ginr.engine.step"


def test_data_package_imports_nothing_eagerly():
    assert _module_level_imports(PACKAGE / "data" / "__init__.py") == []
