"""The package stays a house a newcomer can change (issue 19): no module over 400 lines, no function over 60 (Triton
kernel bodies excepted: a kernel is one launch), no import cycle (imports inside functions and under
TYPE_CHECKING count: they are cycles all the same), and one kind of pipeline: nothing outside the demo asks
whether it holds the demo."""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "hawk_kernels"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
EXTENSIONS = {"hawk_kernels._C"}  # setup.py's compiled module: importable, holds no Python imports


def _modules() -> dict[str, Path]:
    """dotted module name -> file, for every module of the package (a package is its __init__)."""
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def _is_triton_kernel(node) -> bool:
    for decorator in node.decorator_list:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name) and target.value.id == "triton":
            return True
    return False


def _imports(name: str, path: Path, modules) -> set[str]:
    """The package's modules `name` imports anywhere in its file: `from X import y` names X.y where y is a module,
    else X."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found, known = set(), set(modules) | EXTENSIONS
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            base = base[: len(base) - node.level + 1] if node.level else []
            source = ".".join(base + ([node.module] if node.module else []))
            found.update(f"{source}.{alias.name}" if f"{source}.{alias.name}" in known else source
                         for alias in node.names)
    return {module for module in found if module in modules and module != name}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_module_is_over_400_lines():
    long = {name: n for name, path in _modules().items() if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES}
    assert not long, f"modules over {MAX_MODULE_LINES} lines: {long}"


def test_no_function_is_over_60_lines():
    long = []
    for name, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and not _is_triton_kernel(node):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{name}.{node.name} ({lines} lines)")
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"


def test_no_import_cycles():
    modules = _modules()
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    assert not _cycles(graph), f"import cycles (function-level and TYPE_CHECKING imports count): {_cycles(graph)}"


def test_the_cycle_check_counts_imports_inside_functions_and_under_type_checking(tmp_path):
    """Negative control: a cycle made only by a function-level import and a TYPE_CHECKING import is found."""
    (tmp_path / "a.py").write_text("def f():\n    from .b import g\n    return g\n")
    (tmp_path / "b.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import a\n")
    (tmp_path / "c.py").write_text("import os\n")
    modules = {f"pkg.{p.stem}": p for p in tmp_path.glob("*.py")}
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    assert graph == {"pkg.a": {"pkg.b"}, "pkg.b": {"pkg.a"}, "pkg.c": set()}
    assert _cycles(graph) == [["pkg.a", "pkg.b"]]


def test_no_caller_asks_whether_it_holds_the_demo():
    """The demo is an ImagePipeline like the families: only pipelines/demo/ and the CLI's --demo choice
    (cli/models.py) name it; nothing tests a family name, a pipeline class, or "raw model or adapter"."""
    allowed = {PACKAGE / "cli" / "models.py"}
    found = []
    for path in PACKAGE.rglob("*.py"):
        if "demo" in path.relative_to(PACKAGE).parts[:-1] or path in allowed:
            continue
        text = path.read_text()
        for needle in ('== "demo"', "args.demo", "DemoPipeline", "is_adapter", "_is_demo", "isinstance(pipe"):
            if needle in text:
                found.append(f"{path.relative_to(PACKAGE)}: {needle}")
    assert not found, found
