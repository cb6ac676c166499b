"""The workspace, confinement and diff modules stand alone: they import nothing from the
gateway, the CLI or the forge hosts (those use them, not the other way round)."""

from __future__ import annotations

import ast
from pathlib import Path

import auto_review.review as review_package

MODULES = [
    "diff/model.py",
    "diff/positions.py",
    "workspace/gitenv.py",
    "workspace/checkout.py",
    "workspace/confined.py",
]
FORBIDDEN = ("auto_review.gateway", "auto_review.cli", "auto_review.hosts")


def test_no_imports_from_gateway_cli_or_hosts() -> None:
    package_dir = Path(review_package.__file__).parent
    for name in MODULES:
        tree = ast.parse((package_dir / name).read_text())
        imported: list[str] = []
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                imported.append(node.module)
            elif isinstance(node, ast.Import):
                imported.extend(alias.name for alias in node.names)
        assert imported, name
        bad = [m for m in imported if m.startswith(FORBIDDEN)]
        assert bad == [], f"{name} imports {bad}"
        project = [m for m in imported if m.startswith("auto_review")]
        allowed = ("auto_review.review.", "auto_review.core.")  # core: the shared vocabulary
        assert all(m.startswith(allowed) for m in project), (name, project)
