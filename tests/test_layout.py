"""The package layout DESIGN.md describes: no import cycles, dependencies pointing one way, and
light imports for inference (Colab loads predictors without the input pipeline)."""

import ast
import subprocess
import sys

from tests import helpers

PACKAGE = helpers.REPO / "gentg_jax"


def _module_name(path) -> str:
    parts = path.relative_to(helpers.REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    """Module -> the gentg_jax modules it imports anywhere in its body (functions included).

    `from pkg import mod` is an edge to pkg.mod (a module), `from pkg import name` to pkg.
    """
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                for alias in node.names:
                    submodule = f"{node.module}.{alias.name}"
                    found.add(submodule if submodule in modules else node.module)
        graph[name] = {m for m in found if m in modules and m != name}
    return graph


def _reaches(graph, start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for child in graph[todo.pop()] - seen:
            seen.add(child)
            todo.append(child)
    return seen


def test_no_import_cycles_and_no_importlib():
    graph = _imports()
    # A package's __init__ re-exports its modules; an edge into it is an edge into them.
    cycles = sorted(name for name in graph if name in _reaches(graph, name))
    assert not cycles, f"modules on an import cycle: {cycles}"
    users = [
        path.name
        for path in PACKAGE.rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Import) and any(a.name == "importlib" for a in node.names)
    ]
    assert not users, f"importlib hides imports from this check: {users}"


def test_dependencies_point_one_way():
    graph = _imports()
    below = {
        "gentg_jax.models": ("gentg_jax.data", "gentg_jax.train", "gentg_jax.predict"),
        "gentg_jax.data": ("gentg_jax.train", "gentg_jax.models", "gentg_jax.inference"),
        "gentg_jax.predict": ("gentg_jax.train", "gentg_jax.data", "gentg_jax.evaluation"),
        "gentg_jax.inference": ("gentg_jax.train", "gentg_jax.data.pipeline"),
        "gentg_jax.camera": ("gentg_jax.data", "gentg_jax.models"),
    }
    wrong = [
        (module, target)
        for module in graph
        for prefix, banned in below.items()
        if module.startswith(prefix)
        for target in _reaches(graph, module)
        if target.startswith(banned)
    ]
    assert not wrong, f"upward imports: {wrong[:5]}"


def test_inference_does_not_load_the_input_pipeline():
    code = (
        "import sys, gentg_jax.inference; "
        "print(sorted(m for m in ('grain', 'tensorflow_datasets') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=helpers.REPO, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"
