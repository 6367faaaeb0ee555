"""The package's layers: imports go one way, down the layers, and the original modules stay thin re-exports."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "tell_me_why"

# Lower layers never import from higher ones; rooms of the same layer never import from each other.
LAYERS = {
    "_utils": 0,
    "xaaenet": 1, "cues": 1, "attribution": 1, "metrics": 1, "testing": 1,
    "causal": 2,
    "app": 3,
    # The package's front door and the original library's module names, re-exporting the rooms.
    "__init__": 4, "__main__": 4, "model_aae": 4, "user_encoder": 4, "training": 4, "callbacks": 4,
    "feature_scores": 4, "visualization": 4,
}
LEGACY = ("model_aae", "user_encoder", "training", "callbacks", "feature_scores", "visualization")


def _room(module_path: Path) -> str:
    return module_path.relative_to(PACKAGE).parts[0].removesuffix(".py")


def _imported_rooms(module_path: Path, source: str | None = None) -> set[str]:
    """The rooms (top-level subpackages or modules of tell_me_why) that a source file imports from."""
    package_parts = module_path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1]
    found = set()
    for node in ast.walk(ast.parse(source if source is not None else module_path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package_parts[: len(package_parts) - node.level + 1]
                target = [*base, *(node.module.split(".") if node.module else [])]
            else:
                target = (node.module or "").split(".")
            if target[:1] == ["tell_me_why"]:
                # "from . import causal" names the room in the imported names.
                rooms = target[1:2] or [alias.name for alias in node.names]
                found.update(rooms)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "tell_me_why" and len(parts) > 1:
                    found.add(parts[1])
    return found


def test_every_room_has_a_layer():
    rooms = {_room(path) for path in PACKAGE.rglob("*.py")}
    assert rooms == set(LAYERS), "give each new room a layer in LAYERS (and in docs/architecture.md)"


def test_imports_only_go_down_the_layers():
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        room = _room(path)
        for imported in _imported_rooms(path) - {room}:
            if LAYERS[imported] >= LAYERS[room]:
                wrong.append(f"{path.relative_to(PACKAGE)} imports tell_me_why.{imported}")
    assert not wrong, "imports that go up or sideways a layer:\n" + "\n".join(wrong)


def test_the_checker_sees_every_form_of_import():
    source = ("from ..app.pipeline import Run\nfrom .. import causal\nimport tell_me_why.cues.table\n"
              "from .files import x\n")
    assert _imported_rooms(PACKAGE / "_utils" / "files.py", source) == {"app", "causal", "cues", "_utils"}


@pytest.mark.parametrize("name", LEGACY)
def test_original_modules_are_thin_reexports(name):
    tree = ast.parse((PACKAGE / f"{name}.py").read_text())
    kinds = {type(node).__name__ for node in tree.body}
    assert kinds <= {"Expr", "ImportFrom", "Assign"}, f"{name}.py holds logic: {kinds}"
    module = importlib.import_module(f"tell_me_why.{name}")
    for exported in module.__all__:
        assert getattr(module, exported) is not None
