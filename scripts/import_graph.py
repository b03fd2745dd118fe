"""The import graph of metarl's own modules: circles, and imports made inside functions.

    python scripts/import_graph.py            # summary: modules, edges, circles, deferred imports
    python scripts/import_graph.py --edges    # also every edge, "importer -> imported"
    python scripts/import_graph.py --check    # exit 1 on a circle or an import that points up

Reads the source (nothing is imported): every ``import`` / ``from ... import`` of a
``metarl`` module in ``metarl/`` and ``envs/`` (which installs as ``metarl.envs``). An edge
points from the importer to the imported module; a package's ``__init__`` counts as the
package; imports under ``if TYPE_CHECKING:`` are annotations only and not edges. A circle
is a strongly connected component of more than one module, over module-level and
*deferred* imports (inside a function) together, so a function-level import cannot hide
one. ``LAYERS`` is the layering of ``docs/architecture.md``: a module may import its own
layer and the layers below, never one above. Deferred imports are listed: the remaining
ones load a heavy or optional part only when it is used (the CLI's subcommands, the
batched MuJoCo backend that needs mujoco >= 4).
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"metarl": ROOT / "metarl", "metarl.envs": ROOT / "envs"}


LAYERS: list[tuple[str, tuple[str, ...]]] = [
    (
        "leaves",
        (
            "errors",
            "config",
            "task_api",
            "policies",
            "episodes",
            "linear_baseline",
            "estimators",
            "trpo",
            "stats",
            "logger",
            "checkpoint",
            "run_lock",
        ),
    ),
    ("task families", ("envs",)),
    ("family ids", ("families",)),
    ("sampling", ("sampler", "ray_sampler")),
    ("inner loop", ("adaptation",)),
    ("learners", ("learners",)),
    ("training", ("runtime", "plots", "callbacks", "trainer")),
    ("protocols", ("evaluate", "exact", "reference_methods", "benchmark", "check_env", "report")),
    ("entry points", ("cli", "")),
]
"""Bottom to top; names relative to ``metarl`` (a package name covers its modules; ``""`` is the package face)."""


def layer_of(module: str) -> int:
    """The index in ``LAYERS`` of a ``metarl`` module.

    Raises:
        KeyError: A module no layer names (add it to ``LAYERS``).
    """
    rel = module.removeprefix("metarl").removeprefix(".")
    for i, (_, names) in enumerate(LAYERS):
        for name in names:
            if rel == name or (name and rel.startswith(name + ".")):
                return i
    raise KeyError(f"{module} is in no layer of scripts/import_graph.py LAYERS: add it where it belongs.")


def upward(edges: dict[str, set[str]]) -> list[tuple[str, str]]:
    """``(importer, imported)`` pairs where the imported module sits in a higher layer."""
    return sorted((a, b) for a, targets in edges.items() for b in targets if layer_of(b) > layer_of(a))


def module_files() -> dict[str, Path]:
    """Module name -> source file, for every module of the package (``metarl.envs`` included)."""
    out: dict[str, Path] = {}
    for package, folder in PACKAGES.items():
        for path in sorted(folder.rglob("*.py")):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join([package, *parts])] = path
    return out


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The longest known module that ``name`` starts with (``metarl.x.y`` -> ``metarl.x`` if y is a name)."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> tuple[set[str], set[str]]:
    """``(module-level imports, deferred imports)`` of metarl modules made by ``module``."""
    tree = ast.parse(path.read_text(), str(path))
    is_package = path.name == "__init__.py"
    top: set[str] = set()
    deferred: set[str] = set()

    def targets(node: ast.Import | ast.ImportFrom) -> list[str]:
        if isinstance(node, ast.Import):
            return [a.name for a in node.names]
        base = node.module or ""
        if node.level:
            anchor = module.split(".") if is_package else module.split(".")[:-1]
            anchor = anchor[: len(anchor) - (node.level - 1)]
            base = ".".join([*anchor, base]) if base else ".".join(anchor)
        return [f"{base}.{a.name}" for a in node.names] + [base]

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                continue  # annotations only
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                found = {m for m in (_resolve(t, modules) for t in targets(child)) if m and m != module}
                # "from metarl.x import y" where y is a module counts as metarl.x.y only
                (deferred if in_function else top).update(found)
            visit(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    visit(tree, False)
    return top, deferred


def graph() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """``(module-level edges, deferred edges)``: importer -> imported metarl modules."""
    modules = module_files()
    top, deferred = {}, {}
    for name, path in modules.items():
        top[name], deferred[name] = imports_of(name, path, modules)
    for name in list(top):  # a package imports its parents implicitly; not an edge of the design
        top[name] = {m for m in top[name] if not name.startswith(m + ".")}
        deferred[name] = {m for m in deferred[name] if not name.startswith(m + ".")}
    return top, deferred


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def strongconnect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                strongconnect(w)
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
                out.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for v in sorted(edges):
        if v not in index:
            strongconnect(v)
    return sorted(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edges", action="store_true", help="print every edge")
    parser.add_argument("--check", action="store_true", help="exit 1 on a circle or a deferred internal import")
    args = parser.parse_args(argv)
    top, deferred = graph()
    both = {m: top[m] | deferred[m] for m in top}
    found = circles(both)
    largest = max(module_files().items(), key=lambda kv: len(kv[1].read_text().splitlines()))
    print(
        f"modules: {len(top)}, module-level edges: {sum(map(len, top.values()))}, deferred internal imports: "
        f"{sum(map(len, deferred.values()))}"
    )
    print(f"largest module: {largest[0]} ({len(largest[1].read_text().splitlines())} lines)")
    if args.edges:
        for m in sorted(top):
            for t in sorted(top[m]):
                print(f"  {m} -> {t}")
    print(f"circles (module-level and deferred imports together): {len(found)}")
    for c in found:
        print("  " + " <-> ".join(c))
    try:
        up = upward(both)
    except KeyError as e:
        print(f"error: {e.args[0]}", file=sys.stderr)
        return 2
    print(f"imports that point up a layer: {len(up)}")
    for a, b in up:
        print(f"  {a} ({LAYERS[layer_of(a)][0]}) imports {b} ({LAYERS[layer_of(b)][0]})")
    for m in sorted(deferred):
        for t in sorted(deferred[m]):
            print(f"  deferred: {m} imports {t} inside a function")
    if args.check and (found or up):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
