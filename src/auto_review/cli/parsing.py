"""The argument parser every command uses: no flag abbreviations, and errors that never
repeat what was typed after a flag.

argparse's own errors quote the offending words (``unrecognized arguments: --webhook-secret
S3CRET``, ``invalid int value: 'S3CRET'``), and its prefix matching turns ``--password X``
into ``--password-stdin`` plus a stray ``X`` that it then prints. A secret typed by mistake
on the command line must not be echoed to a terminal or a log as well.
"""

from __future__ import annotations

import argparse
import re
from typing import Any, NoReturn

_UNRECOGNIZED = "unrecognized arguments: "
_QUOTED_VALUE = re.compile(r"(invalid [\w ]+ value): '.*'", re.DOTALL)


def safe_message(message: str) -> str:
    """``message`` with typed values removed: flag names stay, anything else is counted."""
    if message.startswith(_UNRECOGNIZED):
        words = message[len(_UNRECOGNIZED) :].split()
        flags = [w.split("=", 1)[0] for w in words if w.startswith("-") and len(w) > 1]
        others = len(words) - len(flags)
        parts = (
            [f"unrecognized option{'s' if len(flags) != 1 else ''} {' '.join(flags)}"]
            if flags
            else []
        )
        if others:
            parts.append(f"{others} unexpected value{'s' if others != 1 else ''} (not shown)")
        return "; ".join(parts) + " (see --help)"
    return _QUOTED_VALUE.sub(r"\1 (not shown)", message)


class ArgumentParser(argparse.ArgumentParser):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        super().error(safe_message(message))
