"""spec_fields.SPEC_FIELDS must be exactly the property tree of the shipped schema."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from auto_review.oci.spec import SCHEMA_DIR
from auto_review.oci.spec_fields import SPEC_FIELDS

OTHER_PLATFORMS = ("solaris", "windows", "vm", "zos", "freebsd")


class _Schema:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.documents: dict[str, Any] = {}

    def document(self, name: str) -> Any:
        if name not in self.documents:
            self.documents[name] = json.loads((self.directory / name).read_text())
        return self.documents[name]

    def resolve(self, node: dict[str, Any], current: str) -> tuple[dict[str, Any], str]:
        while "$ref" in node:
            file_name, _, pointer = node["$ref"].partition("#")
            current = file_name or current
            node = self.document(current)
            for part in filter(None, pointer.split("/")):
                node = node[part]
        return node, current

    def tree(self, node: dict[str, Any], current: str) -> Any:
        """dict for an object's properties, [item] for an array, True for anything else."""
        node, current = self.resolve(node, current)
        combined = node.get("allOf", []) + node.get("anyOf", []) + node.get("oneOf", [])
        if "items" in node:
            return [self.tree(node["items"], current)]
        if node.get("patternProperties") or node.get("additionalProperties"):
            return True  # a free-form map
        properties: dict[str, Any] = {
            key: self.tree(child, current) for key, child in node.get("properties", {}).items()
        }
        for part in combined:
            sub = self.tree(part, current)
            if isinstance(sub, list):
                return sub
            if isinstance(sub, dict):
                properties.update(sub)
        return properties or True


def test_spec_fields_equal_the_schema_tree() -> None:
    schema = _Schema(Path(SCHEMA_DIR))
    expected = schema.tree(schema.document("config-schema.json"), "config-schema.json")
    for platform in OTHER_PLATFORMS:  # known, and refused whole
        assert platform in expected
        expected[platform] = True
    assert expected == SPEC_FIELDS


def test_the_tree_reaches_the_delegated_sections() -> None:
    """Unknown keys inside seccomp and resources are found too, not only at the top."""
    linux = SPEC_FIELDS["linux"]
    assert "errnoRet" in linux["seccomp"]["syscalls"][0]
    assert "disableOOMKiller" in linux["resources"]["memory"]
    assert "classID" in linux["resources"]["network"]
