"""The import graph of ``bibleqa/`` and ``sweeps/``: imports inside functions, and cycles among our modules.

    python bench/import_graph.py                 # this checkout
    python bench/import_graph.py /work/wt/before # another checkout

An import inside a function body is an ``ast.Import`` or ``ast.ImportFrom`` node under a ``def`` (methods
and nested functions included).  A cycle is one among our own modules, counting every import, the ones
inside functions too (a deferred import never hides a cycle).  ``tests/test_layout.py`` holds the rules
these figures are measured against.
"""

from __future__ import annotations

import argparse
import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PACKAGES = ("bibleqa", "sweeps")


@dataclass(frozen=True)
class Import:
    """One import statement: where it is, what it names, and whether it sits in a function body."""

    module: str
    line: int
    target: str
    in_function: bool


def module_name(root: Path, path: Path) -> str:
    """``bibleqa/lm.py`` -> ``bibleqa.lm``; ``sweeps/__init__.py`` -> ``sweeps``."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def source_files(root: Path) -> Iterator[Path]:
    for package in PACKAGES:
        yield from sorted((root / package).rglob("*.py"))


def imports_of(root: Path, path: Path) -> list[Import]:
    """Every import statement of a file, absolute names resolved (a relative import counts as its target)."""
    module = module_name(root, path)
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: list[Import] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inside = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                found.extend(Import(module, child.lineno, alias.name, in_function) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:  # relative: resolve against this module's package
                    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
                    base = ".".join(package[: len(package) - child.level + 1] + ([base] if base else []))
                # "from package import name" may name a submodule: count it as that module when it is one.
                for alias in child.names:
                    submodule = f"{base}.{alias.name}"
                    is_module = (root / Path(*submodule.split("."))).with_suffix(".py").exists() or (
                        root / Path(*submodule.split(".")) / "__init__.py"
                    ).exists()
                    found.append(Import(module, child.lineno, submodule if is_module else base, in_function))
            visit(child, inside)

    visit(tree, False)
    return found


def all_imports(root: Path) -> list[Import]:
    return [entry for path in source_files(root) for entry in imports_of(root, path)]


def own_graph(imports: list[Import]) -> dict[str, set[str]]:
    """Our modules and the modules of ours each one imports (anywhere in the file)."""
    graph: dict[str, set[str]] = {}
    for entry in imports:
        graph.setdefault(entry.module, set())
        if entry.target.split(".")[0] in PACKAGES and entry.target != entry.module:
            graph[entry.module].add(entry.target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def strongconnect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in graph:
                continue
            if target not in index:
                strongconnect(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
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
            strongconnect(node)
    return sorted(found)


def main() -> None:
    parser = argparse.ArgumentParser(description="imports inside functions, and import cycles")
    parser.add_argument("root", nargs="?", default=str(Path(__file__).resolve().parent.parent))
    parser.add_argument("--list", action="store_true", help="list every import inside a function")
    args = parser.parse_args()
    root = Path(args.root)
    imports = all_imports(root)
    deferred = [entry for entry in imports if entry.in_function]
    nodes = len({(entry.module, entry.line) for entry in deferred})  # one statement may name several modules
    print(f"{root}: {nodes} import statements inside functions; cycles: {cycles(own_graph(imports)) or 'none'}")
    if args.list:
        for entry in deferred:
            print(f"  {entry.module}:{entry.line} {entry.target}")


if __name__ == "__main__":
    main()
