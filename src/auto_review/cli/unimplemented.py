"""Command groups whose work belongs to a later version say so and exit 2."""

from __future__ import annotations

import sys

EXIT_UNIMPLEMENTED = 2


def refuse(group: str, argv: list[str]) -> int:
    command = " ".join(["auto-review", group, *argv[:1]])
    print(
        f"{command}: not implemented in this version of auto-review; nothing was done.",
        file=sys.stderr,
    )
    return EXIT_UNIMPLEMENTED
