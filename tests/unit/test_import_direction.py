"""The package map holds: imports run one way, and settings stop at the composition root.

Layers, highest first (a module may import its own package and any package below it):

    cli -> isolation -> gateway -> wiring -> chat | bench -> review -> hosts | llm | store
        -> outbound -> core

``chat`` and ``bench`` (the corpus scoring behind ``auto-review bench run``) are peers, as
are ``hosts``, ``llm`` and ``store``: peers do not import each other. ``outbound`` (the
one HTTP stack: retry policy, Retry-After, deadline, size cap, base-URL check) sits below
``hosts`` and ``llm`` and imports only ``core``. ``oci`` (the
embedded runtime) imports nothing of the project; ``core`` imports nothing but itself.
``config`` (the settings model) is imported only by ``cli``, ``isolation``, ``gateway``
and ``wiring``. Every import counts, function-level and ``TYPE_CHECKING`` ones included,
and the test names each offending import.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import auto_review

PACKAGE_ROOT = Path(auto_review.__file__).resolve().parent

# Rank of each top-level part of the package; a lower rank may not import a higher one.
LAYERS: dict[str, int] = {
    "cli": 8,
    "isolation": 7,
    "gateway": 6,
    "wiring": 5,
    "chat": 4,
    "bench": 4,
    "review": 3,
    "hosts": 2,
    "llm": 2,
    "store": 2,
    "outbound": 1,
    "core": 0,
}
# The settings model sits with the layers allowed to read it.
CONFIG_READERS = frozenset({"cli", "isolation", "gateway", "wiring"})
# Parts that stand alone: the embedded runtime and the package root (its version only).
STANDALONE = frozenset({"oci", "__init__", "__main__"})


@dataclass(frozen=True)
class Import:
    source: str  # the importing module's top-level part ("gateway", "config", ...)
    target: str  # the imported top-level part
    where: str  # path:line
    statement: str


def _top_part(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "auto_review":
        return None
    return parts[1] if len(parts) > 1 else "__init__"


def project_imports(root: Path) -> list[Import]:
    """Every import of the project's own modules under ``root``, wherever it appears."""
    found = []
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root)
        source = relative.parts[0].removesuffix(".py")
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        package = ["auto_review", *relative.with_suffix("").parts]
        if relative.name == "__init__.py":
            package = package[:-1]
        for node in ast.walk(tree):
            modules: list[str] = []
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package[: len(package) - node.level]
                    if relative.name == "__init__.py":
                        base = package[: len(package) - node.level + 1]
                    modules = [".".join([*base, *([node.module] if node.module else [])])]
                else:
                    modules = [node.module or ""]
            for module in modules:
                target = _top_part(module)
                if target is not None and target != source:
                    found.append(
                        Import(source, target, f"{relative}:{node.lineno}", ast.unparse(node))
                    )
    return found


def violations(imports: list[Import]) -> list[str]:
    """One line per import that breaks the map."""
    problems = []
    for item in imports:
        why = None
        if item.source == "__main__":
            continue  # ``python -m auto_review`` enters the cli
        if item.source in STANDALONE:
            why = f"{item.source} imports nothing of the project"
        elif item.target == "config":
            if item.source not in CONFIG_READERS:
                why = "only cli, isolation, gateway and wiring read the settings model"
        elif item.source == "config":
            if item.target not in ("core", "__init__"):
                why = "the settings model imports only core"
        elif item.target == "__init__":
            pass  # the package root holds the version and nothing else
        elif item.target in STANDALONE:
            if item.target == "oci" and item.source not in ("isolation", "cli"):
                why = "only isolation (and the cli's oci command) drive the embedded runtime"
        elif item.source not in LAYERS or item.target not in LAYERS:
            why = f"{item.source if item.source not in LAYERS else item.target} is not on the map"
        elif LAYERS[item.target] >= LAYERS[item.source]:
            why = f"{item.source} is below {item.target} (or its peer)"
        if why is not None:
            problems.append(f"{item.where}: {item.statement}  ({why})")
    return problems


def test_every_import_follows_the_map() -> None:
    assert violations(project_imports(PACKAGE_ROOT)) == []


def test_every_top_level_part_is_on_the_map() -> None:
    parts = {
        p.name.removesuffix(".py")
        for p in PACKAGE_ROOT.iterdir()
        if (p.is_dir() and (p / "__init__.py").exists()) or p.suffix == ".py"
    }
    assert parts - set(LAYERS) - STANDALONE - {"config"} == set()


def test_the_check_names_a_wrong_import(tmp_path: Path) -> None:
    # A deliberately wrong tree: store reaching up into review, core importing hosts,
    # a function-level import of config from llm, and oci importing the project.
    for name, text in {
        "store/db.py": "from auto_review.review.jobs import Job\n",
        "core/refs.py": "import auto_review.hosts.events\n",
        "llm/client.py": "def f():\n    from auto_review.config import Settings\n",
        "oci/api.py": "from auto_review.core import refs\n",
        "review/ok.py": "from auto_review.core.refs import RepoRef\nfrom . import ok\n",
        "chat/rel.py": "from ..review import pipeline\n",
        "outbound/up.py": "from auto_review.hosts.base import HostError\n",
        "hosts/ok.py": "from auto_review.outbound.policy import RetryPolicy\n",
        "review/up.py": "from ..chat import commands\n",
    }.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert violations(project_imports(tmp_path)) == [
        "core/refs.py:1: import auto_review.hosts.events  (core is below hosts (or its peer))",
        "llm/client.py:2: from auto_review.config import Settings  "
        "(only cli, isolation, gateway and wiring read the settings model)",
        "oci/api.py:1: from auto_review.core import refs  (oci imports nothing of the project)",
        "outbound/up.py:1: from auto_review.hosts.base import HostError  "
        "(outbound is below hosts (or its peer))",
        "review/up.py:1: from ..chat import commands  (review is below chat (or its peer))",
        "store/db.py:1: from auto_review.review.jobs import Job  "
        "(store is below review (or its peer))",
    ]


def test_no_import_cycles_between_packages() -> None:
    graph: dict[str, set[str]] = {}
    for item in project_imports(PACKAGE_ROOT):
        graph.setdefault(item.source, set()).add(item.target)
    cycles = []
    for start in graph:
        stack, seen = [(start, [start])], set()
        while stack:
            node, path = stack.pop()
            for nxt in graph.get(node, ()):
                if nxt == start:
                    cycles.append(" -> ".join([*path, nxt]))
                elif nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, [*path, nxt]))
    assert cycles == []
