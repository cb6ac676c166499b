"""Paths from git are bytes: carried losslessly, shown escaped, matched back.

Git file names are byte strings with no encoding. The diff model decodes them as UTF-8 with
``surrogateescape`` (:func:`auto_review.review.diff.model._decode_path`), so a name that is not
UTF-8 lives on as a ``str`` holding lone surrogates ``U+DC80..U+DCFF`` and
:func:`path_bytes` gives the exact bytes back. Such a ``str`` is an internal key only: it
cannot be encoded as UTF-8, so it must never reach a prompt, a JSON body or a terminal as is.

* :func:`display_path`: the one escaped form shown to the model, in review bodies and on the
  terminal. It is git's C-style quoting as ``git -c core.quotePath=false`` prints names: a name
  with no byte to escape is shown as is; otherwise it is put in double quotes, with ``\\"``,
  ``\\\\``, ``\\a \\b \\t \\n \\v \\f \\r`` for those bytes, other control bytes and every byte
  that is not part of valid UTF-8 as a three-digit octal escape (``"bad-\\377\\376.txt"``),
  and valid UTF-8 text kept readable (``"caf\u00e9\\t.py"``).
* :func:`is_representable`: the name is valid UTF-8, so a forge API (JSON strings) can carry
  it; the others cannot be the ``path`` of an inline comment.
* :class:`PathIndex`: maps a path written by the model back to a real changed file: the
  real name, its escaped form (with or without the quotes), or ``\\xHH`` escapes; ``./`` and
  ``.`` components are dropped, empty components collapsed, absolute paths and ``..``
  refused.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_NAMED_ESCAPES = {7: "a", 8: "b", 9: "t", 10: "n", 11: "v", 12: "f", 13: "r", 0x22: '"', 0x5C: "\\"}
_UNESCAPE_NAMED = {v: k for k, v in _NAMED_ESCAPES.items()}
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
MAX_MODEL_PATH_BYTES = 4096


def path_bytes(path: str) -> bytes:
    """The bytes of a path from git (lossless for names decoded with surrogateescape).

    A str holding surrogates outside the escape range (only possible for text that did not
    come from git, e.g. a model's JSON) is encoded with ``surrogatepass`` instead of failing.
    """
    try:
        return path.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return path.encode("utf-8", "surrogatepass")


def is_representable(path: str) -> bool:
    """True when the name is valid UTF-8 text (a JSON string can carry it exactly)."""
    return _LONE_SURROGATE.search(path) is None


def _needs_quoting(path: str) -> bool:
    return any(
        ord(c) < 0x20 or ord(c) == 0x7F or c in '"\\' or 0xD800 <= ord(c) <= 0xDFFF for c in path
    )


def display_path(path: str) -> str:
    """The escaped, printable form of a path (see the module doc); always valid UTF-8."""
    if not _needs_quoting(path):
        return path
    text = path_bytes(path).decode("utf-8", "surrogateescape")
    out: list[str] = []
    for ch in text:
        code = ord(ch)
        if 0xDC80 <= code <= 0xDCFF:  # a byte that is not UTF-8
            out.append(f"\\{code - 0xDC00:03o}")
        elif code in _NAMED_ESCAPES:
            out.append("\\" + _NAMED_ESCAPES[code])
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\{code:03o}")
        elif 0xD800 <= code <= 0xDFFF:  # only from non-git text: its surrogatepass bytes
            out.extend(f"\\{b:03o}" for b in ch.encode("utf-8", "surrogatepass"))
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def unescape(text: str) -> bytes | None:
    """The bytes named by C-style escapes in ``text`` (octal, ``\\xHH``, named); None when an
    escape is malformed. Unescaped characters stand for their UTF-8 bytes."""
    out = bytearray()
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch != "\\":
            out += path_bytes(ch)
            i += 1
            continue
        if i + 1 >= n:
            return None
        nxt = text[i + 1]
        if nxt in _UNESCAPE_NAMED:
            out.append(_UNESCAPE_NAMED[nxt])
            i += 2
        elif re.fullmatch("[0-3][0-7][0-7]", text[i + 1 : i + 4]):
            out.append(int(text[i + 1 : i + 4], 8))
            i += 4
        elif nxt == "x" and re.fullmatch("[0-9a-fA-F]{2}", text[i + 2 : i + 4]):
            out.append(int(text[i + 2 : i + 4], 16))
            i += 4
        else:
            return None
    return bytes(out)


def normalise(raw: bytes) -> bytes | None:
    """A relative path without ``.`` or empty components; None for an absolute path, a
    ``..`` component, NUL or nothing left."""
    if raw.startswith(b"/") or b"\0" in raw:
        return None
    parts = [part for part in raw.split(b"/") if part not in (b"", b".")]
    if not parts or b".." in parts:
        return None
    return b"/".join(parts)


class PathIndex:
    """The changed files' real paths, looked up by what the model wrote."""

    def __init__(self, paths: Iterable[str]) -> None:
        self._by_bytes: dict[bytes, str] = {}
        for path in paths:
            self._by_bytes.setdefault(path_bytes(path), path)

    def resolve(self, written: str) -> str | None:
        """The real path the model meant, or None (unknown, absolute, ``..``)."""
        if not written or len(written) > MAX_MODEL_PATH_BYTES:
            return None
        readings = _candidates(written)
        if written.strip() != written:  # a real name may start or end with blanks
            readings += _candidates(written.strip())
        for raw in readings:
            normal = normalise(raw)
            if normal is None:
                if raw.startswith(b"/") or b".." in raw.split(b"/"):
                    return None  # refused outright, whatever another reading would give
                continue
            found = self._by_bytes.get(normal)
            if found is not None:
                return found
        return None


def _candidates(written: str) -> list[bytes]:
    """Readings of a model's path, most literal first."""
    found = [path_bytes(written)]
    inner = written
    if len(written) >= 2 and written[0] == written[-1] == '"':
        inner = written[1:-1]
        found.append(path_bytes(inner))
    if "\\" in inner:
        raw = unescape(inner)
        if raw is not None:
            found.append(raw)
    return found


def scrub_surrogates(text: str) -> str:
    """Text that can be encoded as UTF-8: every lone surrogate replaced by U+FFFD."""
    return _LONE_SURROGATE.sub("\ufffd", text)
