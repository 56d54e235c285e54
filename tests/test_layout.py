"""The package's shape (issue 18): no import circle, layers only point down, files of readable size.

The import graph is read from the source with ``ast`` (every ``import`` and ``from ... import``, including
the lazy ones inside functions), so a circle hidden behind a function-level import is found too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "rs2sam2"

#: What each layer may import of ours (by module-name prefix), besides itself.
LAYER_RULES = {
    "rs2sam2.modeling": ("rs2sam2.config", "rs2sam2.modeling"),
    "rs2sam2.config": ("rs2sam2.config",),
}
#: Imported by nothing outside itself: the command line is the top layer.
TOP_LAYERS = ("rs2sam2.cli",)
MAX_LINES, SOFT_LINES, MAX_SOFT = 500, 400, 3


def module_names(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` file under the package folder ``root``."""
    names = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def import_graph(root: Path) -> dict[str, set[str]]:
    """module -> the package's modules it imports (submodules resolved, parents' ``__init__`` excluded)."""
    names = module_names(root)
    top = root.name
    graph: dict[str, set[str]] = {}
    for name, path in names.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    stem = ".".join(base + ([node.module] if node.module else []))
                else:
                    stem = node.module or ""
                # `from pkg import sub` imports the submodule when one exists.
                found = [f"{stem}.{a.name}" if f"{stem}.{a.name}" in names else stem for a in node.names]
            else:
                continue
            for target in found:
                if target != top and not target.startswith(top + "."):
                    continue
                while target not in names:  # `import rs2sam2.a.b` of a name inside a module
                    target = target.rpartition(".")[0]
                if target != name and not name.startswith(target + "."):  # parents load anyway
                    targets.add(target)
        graph[name] = targets
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    """``'a -> b'`` for every import that points up or sideways out of its layer."""
    bad = []
    for source, targets in graph.items():
        for layer, allowed in LAYER_RULES.items():
            if source == layer or source.startswith(layer + "."):
                bad += [
                    f"{source} -> {t}"
                    for t in targets
                    if not any(t == a or t.startswith(a + ".") for a in allowed)
                ]
        for top in TOP_LAYERS:
            if not (source == top or source.startswith(top + ".")):
                bad += [f"{source} -> {t}" for t in targets if t == top or t.startswith(top + ".")]
    return sorted(bad)


def _write_package(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "rs2sam2"


def test_checker_finds_a_lazy_circle_and_an_upward_import(tmp_path):
    pkg = _write_package(
        tmp_path,
        {
            "rs2sam2/__init__.py": "",
            "rs2sam2/config.py": "",
            "rs2sam2/weights/__init__.py": "",
            "rs2sam2/weights/hub.py": "from ..modeling import rs2sam2\n",
            "rs2sam2/modeling/__init__.py": "from .rs2sam2 import Model\n",
            "rs2sam2/modeling/rs2sam2.py": (
                "from ..config import X\ndef f():\n    from rs2sam2.weights import hub\n"
            ),
            "rs2sam2/cli/__init__.py": "",
            "rs2sam2/evaluate.py": "import rs2sam2.cli\n",
        },
    )
    graph = import_graph(pkg)
    assert graph["rs2sam2.modeling.rs2sam2"] == {"rs2sam2.config", "rs2sam2.weights.hub"}
    assert graph["rs2sam2.modeling"] == {"rs2sam2.modeling.rs2sam2"}
    assert cycles(graph) == [["rs2sam2.modeling.rs2sam2", "rs2sam2.weights.hub"]]
    assert layer_violations(graph) == [
        "rs2sam2.evaluate -> rs2sam2.cli",
        "rs2sam2.modeling.rs2sam2 -> rs2sam2.weights.hub",
    ]


def test_checker_accepts_a_downward_tree(tmp_path):
    pkg = _write_package(
        tmp_path,
        {
            "rs2sam2/__init__.py": "from .config import C\n",
            "rs2sam2/config.py": "",
            "rs2sam2/modeling/__init__.py": "from .a import A\n",
            "rs2sam2/modeling/a.py": "from ..config import C\nfrom . import b\n",
            "rs2sam2/modeling/b.py": "import rs2sam2.config\n",
            "rs2sam2/cli/__init__.py": "from ..modeling import a\n",
        },
    )
    graph = import_graph(pkg)
    assert graph["rs2sam2.modeling.a"] == {"rs2sam2.config", "rs2sam2.modeling.b"}
    assert cycles(graph) == [] and layer_violations(graph) == []


def test_package_has_no_import_circle():
    assert cycles(import_graph(PACKAGE)) == []


def test_layers_point_down():
    assert layer_violations(import_graph(PACKAGE)) == []


@pytest.mark.parametrize("name", ["rs2sam2.modeling.rs2sam2", "rs2sam2.modeling.image_encoder"])
def test_modeling_imports_only_config_and_itself(name):
    graph = import_graph(PACKAGE)
    assert name in graph
    assert all(t == "rs2sam2.config" or t.startswith("rs2sam2.modeling") for t in graph[name])


def test_file_sizes():
    sizes = {
        path.relative_to(PACKAGE.parent).as_posix(): len(path.read_text(encoding="utf-8").splitlines())
        for path in PACKAGE.rglob("*.py")
    }
    assert not {p: n for p, n in sizes.items() if n > MAX_LINES}
    assert len([p for p, n in sizes.items() if n > SOFT_LINES]) <= MAX_SOFT, sorted(
        (n, p) for p, n in sizes.items() if n > SOFT_LINES
    )
