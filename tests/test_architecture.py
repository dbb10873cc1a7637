"""The house rules of platform/streamssl, read from the source with `ast` (nothing is imported).

1. No import cycle between modules. Every `import` and `from ... import` counts, wherever it is
   written (a function-level import that dodges a cycle at import time is still a cycle in the
   design), except inside an `if TYPE_CHECKING:` block, which never runs.
2. The research layers (losses/, buffers/, models/, methods/, augment.py) import neither Ray nor
   `streamssl.train` nor `streamssl.commands`, directly or through other streamssl modules: a
   method or a policy is plain PyTorch, testable and reusable without a cluster.
3. No module is over MAX_LINES lines.

How a package `__init__` counts (rule 1). A package's `__init__.py` is a module of its own,
named after the package (`streamssl.ingest`). An import of `streamssl.x.y` resolves to the deepest
module it names: `from streamssl.x import y` is an edge to the submodule `streamssl.x.y` when that
exists, else to `streamssl.x` (a name defined or re-exported by the `__init__`). Importing
`streamssl.x.y` also runs the `__init__` of every package above it, so the importer gets an edge
to each of those packages too, except the packages that contain the importer itself: Python has
already started them before the importer runs, so they add no dependency (otherwise every package
whose `__init__` re-exports a submodule would be a cycle with each of its submodules). So
`methods/__init__.py` that imports `methods/imai.py` for its registry is fine, but `imai.py`
doing `from streamssl.methods import METHODS` closes a cycle, and so does `config.py` importing
`streamssl.methods.base` while any method imports `streamssl.config`.
"""

from __future__ import annotations

import ast
from collections import deque
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "platform"
PACKAGE = "streamssl"
MAX_LINES = 450
RESEARCH = ("streamssl.losses", "streamssl.buffers", "streamssl.models", "streamssl.methods", "streamssl.augment")
FORBIDDEN = ("ray", "streamssl.train", "streamssl.commands")


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted((ROOT / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _type_checking(node: ast.AST) -> bool:
    test = node.test if isinstance(node, ast.If) else None
    return isinstance(test, ast.Name | ast.Attribute) and ast.unparse(test).endswith("TYPE_CHECKING")


def _import_nodes(tree: ast.AST):
    """Every Import / ImportFrom node, at any depth, skipping the bodies of `if TYPE_CHECKING:`."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        children = node.orelse if _type_checking(node) else ast.iter_child_nodes(node)
        stack.extend(children)


def _imported_names(module: str, node: ast.Import | ast.ImportFrom) -> list[str]:
    """Fully qualified names an import statement asks for (`pkg.mod` or `pkg.mod.attr`)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
        anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
        base = ".".join(anchor + ([node.module] if node.module else []))
    return [f"{base}.{alias.name}" for alias in node.names]


def _resolve(name: str) -> str | None:
    """The deepest streamssl module that `name` (a module or a module's attribute) lies in."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _targets(importer: str, name: str) -> list[str]:
    """The modules that run when `importer` imports `name`: the module itself and the package
    `__init__`s above it that do not also contain the importer (see the module docstring)."""
    target = _resolve(name)
    if target is None or target == importer:
        return []
    parts = target.split(".")
    packages = [".".join(parts[:i]) for i in range(1, len(parts))]
    return [p for p in packages if not _under(importer, p)] + [target]


def _parse(module: str) -> ast.Module:
    return ast.parse(MODULES[module].read_text(encoding="utf-8"), filename=str(MODULES[module]))


def import_graph() -> tuple[dict[str, set[str]], dict[tuple[str, str], int], dict[str, list[tuple[str, int]]]]:
    """(module -> modules it imports, (a, b) -> line of a's first import of b, module -> external
    (non-streamssl) top-level names it imports with their lines)."""
    edges: dict[str, set[str]] = {m: set() for m in MODULES}
    lines: dict[tuple[str, str], int] = {}
    external: dict[str, list[tuple[str, int]]] = {m: [] for m in MODULES}
    for module in MODULES:
        for node in _import_nodes(_parse(module)):
            for name in _imported_names(module, node):
                if not _under(name, PACKAGE):
                    external[module].append((name, node.lineno))
                    continue
                for target in _targets(module, name):
                    edges[module].add(target)
                    lines[module, target] = min(lines.get((module, target), node.lineno), node.lineno)
    return edges, lines, external


def strongly_connected(edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components with more than one module (iterative)."""
    index, low, on_stack, stack, found, counter = {}, {}, set(), [], [], [0]

    def visit(root: str) -> None:
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter[0]
                    counter[0] += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
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

    for module in sorted(edges):
        if module not in index:
            visit(module)
    return found


def shortest_path(edges: dict[str, set[str]], start: str, goal: str, allowed: set[str] | None = None) -> list[str]:
    """Breadth-first shortest import chain start -> ... -> goal (through `allowed` modules only)."""
    previous = {start: None}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for child in sorted(edges[node]):
            if allowed is not None and child not in allowed:
                continue
            if child == goal:
                chain = [child, node]
                while previous[chain[-1]] is not None:
                    chain.append(previous[chain[-1]])
                return chain[::-1]
            if child not in previous:
                previous[child] = node
                queue.append(child)
    return []


def reachable(edges: dict[str, set[str]], start: str) -> dict[str, str | None]:
    """Every module `start` imports directly or not -> the module it is imported from on a shortest
    chain (start -> None), in breadth-first order."""
    previous: dict[str, str | None] = {start: None}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for child in sorted(edges[node]):
            if child not in previous:
                previous[child] = node
                queue.append(child)
    return previous


def describe(chain: list[str], lines: dict[tuple[str, str], int]) -> str:
    """One line per import of the chain: `file.py:LINE  a -> b`."""
    return "\n".join(f"    {MODULES[a].relative_to(ROOT)}:{lines[a, b]}  {a} -> {b}" for a, b in zip(chain, chain[1:]))


def cycle_report(edges: dict[str, set[str]], lines: dict[tuple[str, str], int]) -> list[str]:
    """For each strongly connected component: its modules and one shortest cycle through it."""
    reports = []
    for component in strongly_connected(edges):
        members = set(component)
        start = component[0]
        cycle = shortest_path(edges, start, start, members)
        reports.append(f"{len(component)} modules import each other: {', '.join(component)}\n"
                       f"  a cycle through {start}:\n{describe(cycle, lines)}")
    return reports


def test_no_import_cycles():
    edges, lines, _ = import_graph()
    reports = cycle_report(edges, lines)
    if reports:
        pytest.fail("import cycles (break each by moving the shared piece into a leaf module):\n\n"
                    + "\n\n".join(reports), pytrace=False)


def _forbidden_here(module: str, external: dict[str, list[tuple[str, int]]]) -> str | None:
    """What makes `module` off limits to the research layers: it is train/commands, or imports Ray."""
    if any(_under(module, f) for f in FORBIDDEN):
        return module
    return next((name for name, _ in external[module] if any(_under(name, f) for f in FORBIDDEN)), None)


def test_research_layers_import_no_ray_train_or_commands():
    edges, lines, external = import_graph()
    problems = []
    for module in sorted(m for m in MODULES if any(_under(m, layer) for layer in RESEARCH)):
        problems += [f"{MODULES[module].relative_to(ROOT)}:{line}  imports {name}"
                     for name, line in external[module] if any(_under(name, f) for f in FORBIDDEN)]
        previous = reachable(edges, module)  # the nearest offender first: breadth-first order
        for other in (m for m in previous if m != module):
            what = _forbidden_here(other, external)
            if what is not None:
                chain = [other]
                while previous[chain[-1]] is not None:
                    chain.append(previous[chain[-1]])
                problems.append(f"{module} reaches {what} through streamssl imports:\n{describe(chain[::-1], lines)}")
                break
    if problems:
        pytest.fail("the research layers must stay plain PyTorch:\n" + "\n".join(problems), pytrace=False)


def test_no_module_over_the_size_limit():
    sizes = {m: len(p.read_text(encoding="utf-8").splitlines()) for m, p in MODULES.items()}
    over = [f"{MODULES[m].relative_to(ROOT)}: {n} lines" for m, n in sorted(sizes.items()) if n > MAX_LINES]
    if over:
        pytest.fail(f"modules over {MAX_LINES} lines (split them by responsibility):\n" + "\n".join(over),
                    pytrace=False)


# ---------------------------------------------------------------- the checker checks itself


def test_function_level_imports_count_and_type_checking_blocks_do_not():
    tree = ast.parse("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import a\nelse:\n    import b\n"
                     "def f():\n    import c\n    from d import e\n")
    names = sorted(n for node in _import_nodes(tree) for n in _imported_names("streamssl.cli", node))
    assert names == ["b", "c", "d.e", "typing.TYPE_CHECKING"]


def test_an_import_counts_the_package_inits_above_it_outside_the_importer():
    assert _targets("streamssl.cli", "streamssl.methods.base.Method") == ["streamssl.methods", "streamssl.methods.base"]
    assert _targets("streamssl.methods.imai", "streamssl.methods.base.Method") == ["streamssl.methods.base"]
    assert _targets("streamssl.methods.imai", "streamssl.methods.METHODS") == ["streamssl.methods"]
    assert _targets("streamssl.methods.imai", "torch.nn") == []
    edges, _, _ = import_graph()
    assert "streamssl.ingest.build" in edges["streamssl.ingest"]  # the __init__ re-exports prepare


def test_the_cycle_finder_reports_a_cycle_with_its_lines():
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert strongly_connected(edges) == [["a", "b", "c"]]
    assert shortest_path(edges, "a", "a") == ["a", "b", "c", "a"]
    assert strongly_connected({"a": {"b"}, "b": set()}) == []
