"""The import graph of rs2sam2.weights and rs2sam2.text, read from the source (``ast``, imports inside
functions included): no cycle, ``modeling`` imports neither of them (nor the CLI), ``weights/hub.py``
takes the model class as an argument instead of importing ``modeling``, and ``weights`` never imports
``text`` (the tokenizer uses the weights' resolver, not the other way round)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "rs2sam2"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every ``rs2sam2`` module ``path`` imports, anywhere in the file, as absolute dotted names."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "rs2sam2"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "rs2sam2":
                continue
            found.add(target)
            for alias in node.names:  # ``from . import hub`` imports the submodule
                if (PACKAGE.parent / Path(*f"{target}.{alias.name}".split("."))).with_suffix(".py").is_file():
                    found.add(f"{target}.{alias.name}")
    return found


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: {t for t in _imports(path) if t in modules} - {name} for name, path in modules.items()}


def _in(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def test_modeling_imports_no_weights_text_or_cli() -> None:
    for name, targets in _graph().items():
        if _in(name, "rs2sam2.modeling"):
            bad = [
                t
                for t in targets
                if any(_in(t, p) for p in ("rs2sam2.weights", "rs2sam2.text", "rs2sam2.cli"))
            ]
            assert not bad, f"{name} imports {bad}"
            assert all(_in(t, "rs2sam2.modeling") or t in ("rs2sam2", "rs2sam2.config") for t in targets), (
                name,
                targets,
            )


def test_hub_takes_the_model_class_and_weights_never_import_text() -> None:
    graph = _graph()
    assert not [t for t in graph["rs2sam2.weights.hub"] if _in(t, "rs2sam2.modeling")]
    for name, targets in graph.items():
        if _in(name, "rs2sam2.weights"):
            assert not [t for t in targets if _in(t, "rs2sam2.text")], name


def test_no_import_cycle_through_weights_or_text() -> None:
    graph = _graph()
    for start in sorted(n for n in graph if _in(n, "rs2sam2.weights") or _in(n, "rs2sam2.text")):
        came_from: dict[str, str] = {}
        todo = [start]
        while todo:  # everything ``start`` imports, directly or not
            node = todo.pop()
            for nxt in graph[node]:
                if nxt not in came_from:
                    came_from[nxt] = node
                    todo.append(nxt)
        if start in came_from:
            cycle, node = [start], came_from[start]
            while node != start:
                cycle.append(node)
                node = came_from[node]
            raise AssertionError("import cycle: " + " -> ".join([start, *reversed(cycle[1:]), start]))
