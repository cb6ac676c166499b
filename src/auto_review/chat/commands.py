"""``@auto-review`` chat commands in pull-request comments.

A command is a mention of the bot at the start of a line of the comment's Markdown,
outside fenced or indented code, inline code spans, HTML comments and block quotes (a
quoted or pasted earlier command must not run again). The first such mention wins; the
text after it is the command:

  @auto-review help                 -> help
  @auto-review re-review [note]     -> re-review (the note is passed on as the argument)
  @auto-review remember <text>      -> remember (text: rest of that paragraph)
  @auto-review forget <id>          -> forget (id: a positive integer, "#12" allowed)
  @auto-review <anything else>      -> question (argument: everything after the mention)

A bare mention is "help". A malformed remember/forget (no text, no or bad id, too long)
becomes "help" whose argument explains what was wrong, so the bot can answer usefully
instead of silently doing nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

DEFAULT_MENTION: Final = "@auto-review"
MAX_REMEMBER_CHARS: Final = 2000
MAX_QUESTION_CHARS: Final = 8000
MAX_LEARNING_ID: Final = 2**63 - 1


class ChatCommandKind(StrEnum):
    HELP = "help"
    RE_REVIEW = "re-review"
    REMEMBER = "remember"
    FORGET = "forget"
    QUESTION = "question"


@dataclass(frozen=True, slots=True)
class ChatCommand:
    kind: ChatCommandKind
    argument: str


def parse_chat_command(body: str, mention: str = DEFAULT_MENTION) -> ChatCommand | None:
    """The command of the first qualifying mention in `body`, or None when there is none."""
    if not mention:
        raise ValueError("mention must not be empty")
    rest = _text_after_first_mention(body, mention)
    if rest is None:
        return None
    return _interpret(rest.strip(), mention)


# -- finding the mention ---------------------------------------------------------------

_LINE_BREAK: Final = re.compile(r"\r\n|\r|\n")
_FENCE_OPEN: Final = re.compile(r"( {0,3})(`{3,}|~{3,})(.*)")
_BACKTICK_RUN: Final = re.compile(r"`+")


def _text_after_first_mention(body: str, mention: str) -> str | None:
    lines = _LINE_BREAK.split(body)
    # The mention must end where a login ends: "@auto-review-bot" is someone else.
    pattern = re.compile(
        r" {0,3}" + re.escape(mention) + r"(?=$|[\s:,;!?]|\.(?:\s|$))(.*)",
        re.IGNORECASE | re.DOTALL,
    )
    for index, in_code_span in _prose_lines(lines):
        if in_code_span:
            continue
        match = pattern.fullmatch(lines[index])
        if match is None:
            continue
        # Allow "@auto-review: help", "@auto-review, help" and a bare "@auto-review."
        first = match.group(1).lstrip(":,.;!")
        return "\n".join([first, *lines[index + 1 :]])
    return None


def _prose_lines(lines: list[str]) -> list[tuple[int, bool]]:
    """Indices of lines that are ordinary prose, each with "starts inside a code span".

    Skips fenced code (``` / ~~~, closed by a fence of the same kind at least as long,
    or running to the end), indented code (4+ columns), HTML comments and block quotes.
    """
    prose: list[int] = []
    fence: tuple[str, int] | None = None
    in_html_comment = False
    for index, line in enumerate(lines):
        if fence is not None:
            if _closes_fence(line, fence):
                fence = None
            continue
        if in_html_comment:
            in_html_comment = "-->" not in line
            continue
        opened = _opens_fence(line)
        if opened is not None:
            fence = opened
            continue
        content = line.lstrip(" ")
        if content.startswith("<!--"):
            in_html_comment = "-->" not in content[4:]
            continue
        if len(line) - len(content) >= 4 or content.startswith("\t"):
            continue  # indented code block (or indentation we do not try to interpret)
        if content.startswith(">"):
            continue
        prose.append(index)
    return _mark_code_spans(lines, prose)


def _opens_fence(line: str) -> tuple[str, int] | None:
    match = _FENCE_OPEN.fullmatch(line)
    if match is None:
        return None
    marker, info = match.group(2), match.group(3)
    if marker[0] == "`" and "`" in info:
        return None  # CommonMark: a backtick fence's info string has no backticks
    return marker[0], len(marker)


def _closes_fence(line: str, fence: tuple[str, int]) -> bool:
    char, length = fence
    content = line.lstrip(" ")
    if len(line) - len(content) > 3:
        return False
    run = len(content) - len(content.lstrip(char))
    return run >= length and not content[run:].strip()


def _mark_code_spans(lines: list[str], prose: list[int]) -> list[tuple[int, bool]]:
    """For each prose line: does it begin inside an inline code span of its paragraph?

    A code span opens with a run of N backticks and closes at the next run of exactly N
    in the same paragraph; an opening run that never closes is literal text.
    """
    result: list[tuple[int, bool]] = []
    paragraph: list[int] = []

    def flush() -> None:
        if not paragraph:
            return
        starts, offset = [], 0
        for index in paragraph:
            starts.append(offset)
            offset += len(lines[index]) + 1
        text = "\n".join(lines[index] for index in paragraph)
        spans = _code_spans(text)
        for index, start in zip(paragraph, starts, strict=True):
            result.append((index, any(low < start < high for low, high in spans)))
        paragraph.clear()

    previous = -2
    for index in prose:
        if index != previous + 1 or not lines[index].strip():
            flush()
        if lines[index].strip():
            paragraph.append(index)
        previous = index
    flush()
    return result


def _code_spans(text: str) -> list[tuple[int, int]]:
    runs = list(_BACKTICK_RUN.finditer(text))
    # next_same[i]: the next run after i with the same width (linear, not quadratic).
    next_same: list[int | None] = [None] * len(runs)
    last_seen: dict[int, int] = {}
    for i in range(len(runs) - 1, -1, -1):
        width = len(runs[i].group())
        next_same[i] = last_seen.get(width)
        last_seen[width] = i
    spans: list[tuple[int, int]] = []
    position = 0
    while position < len(runs):
        closer = next_same[position]
        if closer is None:
            position += 1  # an opener that never closes is literal backticks
            continue
        spans.append((runs[position].start(), runs[closer].end()))
        position = closer + 1
    return spans


# -- interpreting the text after the mention -------------------------------------------

_FORGET_ID: Final = re.compile(r"#?0*([1-9][0-9]{0,18})")
_PARAGRAPH_END: Final = re.compile(r"\n[ \t]*\n")

_REMEMBER_USAGE: Final = (
    "`remember` needs the text to remember, e.g. `{mention} remember prefer pathlib over os.path`"
)
_FORGET_USAGE: Final = "`forget` needs the id of one learning, e.g. `{mention} forget 12`"


def _interpret(text: str, mention: str) -> ChatCommand:
    if not text:
        return ChatCommand(ChatCommandKind.HELP, "")
    # Keyword commands read only the mention's paragraph, so a "thanks" or a signature
    # after a blank line does not turn "help" into a question or leak into a learning.
    paragraph = _PARAGRAPH_END.split(text, 1)[0]
    keyword, remainder = _first_word(paragraph)
    word = keyword.rstrip(".,;!:").lower()
    if word == "help" and not remainder:
        return ChatCommand(ChatCommandKind.HELP, "")
    if word == "re-review":
        # The optional note is context for the reviewer; an overlong one is cut, since
        # refusing would lose the re-review itself.
        return ChatCommand(ChatCommandKind.RE_REVIEW, remainder[:MAX_QUESTION_CHARS])
    if word == "remember":
        return _remember(remainder, mention)
    if word == "forget":
        return _forget(remainder, mention)
    if len(text) > MAX_QUESTION_CHARS:
        return ChatCommand(
            ChatCommandKind.HELP, f"questions are limited to {MAX_QUESTION_CHARS} characters"
        )
    return ChatCommand(ChatCommandKind.QUESTION, text)


def _first_word(text: str) -> tuple[str, str]:
    parts = text.split(None, 1)
    return parts[0], (parts[1].strip() if len(parts) > 1 else "")


def _remember(note: str, mention: str) -> ChatCommand:
    if not note:
        return ChatCommand(ChatCommandKind.HELP, _REMEMBER_USAGE.format(mention=mention))
    if len(note) > MAX_REMEMBER_CHARS:
        return ChatCommand(
            ChatCommandKind.HELP,
            f"a learning is limited to {MAX_REMEMBER_CHARS} characters; shorten it",
        )
    return ChatCommand(ChatCommandKind.REMEMBER, note)


def _forget(remainder: str, mention: str) -> ChatCommand:
    match = _FORGET_ID.fullmatch(remainder.rstrip(".!"))
    if match is None or int(match.group(1)) > MAX_LEARNING_ID:
        return ChatCommand(ChatCommandKind.HELP, _FORGET_USAGE.format(mention=mention))
    return ChatCommand(ChatCommandKind.FORGET, match.group(1))
