"""@auto-review mentions in PR comments -> chat commands."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from auto_review.chat.commands import (
    MAX_QUESTION_CHARS,
    MAX_REMEMBER_CHARS,
    ChatCommand,
    ChatCommandKind,
    parse_chat_command,
)
from auto_review.core.refs import is_from_bot

HELP = ChatCommandKind.HELP


def cmd(kind: ChatCommandKind, argument: str = "") -> ChatCommand:
    return ChatCommand(kind, argument)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("@auto-review help", cmd(HELP)),
        ("@auto-review", cmd(HELP)),
        ("@auto-review.", cmd(HELP)),
        ("@AUTO-REVIEW Help!", cmd(HELP)),
        ("@auto-review: help", cmd(HELP)),
        ("@auto-review, help", cmd(HELP)),
        ("   @auto-review help", cmd(HELP)),
        ("@auto-review re-review", cmd(ChatCommandKind.RE_REVIEW)),
        ("@auto-review Re-Review please", cmd(ChatCommandKind.RE_REVIEW, "please")),
        (
            "@auto-review re-review\r\nfocus on auth",
            cmd(ChatCommandKind.RE_REVIEW, "focus on auth"),
        ),
        (
            "@auto-review remember we use pathlib, not os.path",
            cmd(ChatCommandKind.REMEMBER, "we use pathlib, not os.path"),
        ),
        (
            "@auto-review remember\nline one\nline two\n\nThanks!",
            cmd(ChatCommandKind.REMEMBER, "line one\nline two"),
        ),
        ("@auto-review forget 12", cmd(ChatCommandKind.FORGET, "12")),
        ("@auto-review forget #0012.", cmd(ChatCommandKind.FORGET, "12")),
        (
            "@auto-review why does this loop never end?",
            cmd(ChatCommandKind.QUESTION, "why does this loop never end?"),
        ),
        (
            "@auto-review help me understand this function",
            cmd(ChatCommandKind.QUESTION, "help me understand this function"),
        ),
        (
            "@auto-review is this safe?\n```py\nos.system(x)\n```",
            cmd(ChatCommandKind.QUESTION, "is this safe?\n```py\nos.system(x)\n```"),
        ),
    ],
)
def test_commands(body: str, expected: ChatCommand) -> None:
    assert parse_chat_command(body) == expected


@pytest.mark.parametrize(
    "body",
    [
        "",
        "LGTM",
        "thanks @auto-review help",  # not at the start of a line
        "cc: @auto-review",
        "@auto-reviewer help",  # someone else
        "@auto-review-bot help",
        "@auto-review[bot] help",
        "@auto-review.bot help",
        "auto-review help",
        "> @auto-review help",  # quoted
        "  > @auto-review help",
        ">> @auto-review help",
        "    @auto-review help",  # indented code
        "\t@auto-review help",
        "```\n@auto-review help\n```",
        "~~~~\n@auto-review help\n~~~\n~~~~~",  # closed only by a fence as long
        "```\n@auto-review help",  # unclosed fence runs to the end
        "`@auto-review help`",  # inline code
        "see `this\n@auto-review help` span",  # inline code across lines
        "<!--\n@auto-review help\n-->",
        "<!-- @auto-review help -->",
    ],
)
def test_not_commands(body: str) -> None:
    assert parse_chat_command(body) is None


def test_unclosed_backtick_is_literal() -> None:
    body = "a stray ` backtick\n@auto-review help"
    assert parse_chat_command(body) == cmd(HELP)


def test_code_span_closed_in_another_paragraph_is_literal() -> None:
    body = "a stray ` backtick\n\n@auto-review help\n\nand ` another"
    assert parse_chat_command(body) == cmd(HELP)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("@auto-review help\n\nThanks!", cmd(HELP)),
        ("@auto-review re-review\n\n-- alice", cmd(ChatCommandKind.RE_REVIEW)),
        ("@auto-review forget 3\n\ncheers", cmd(ChatCommandKind.FORGET, "3")),
        (
            "@auto-review what about\n\nthis part?",
            cmd(ChatCommandKind.QUESTION, "what about\n\nthis part?"),
        ),
    ],
)
def test_keyword_commands_read_only_their_paragraph(body: str, expected: ChatCommand) -> None:
    assert parse_chat_command(body) == expected


def test_backtick_fence_with_backticks_in_info_is_not_a_fence() -> None:
    assert parse_chat_command("``` a`b\n@auto-review help") == cmd(HELP)


def test_mention_after_fence_and_quote_counts() -> None:
    body = "> @auto-review forget 1\n```\n@auto-review forget 2\n```\n@auto-review forget 3"
    assert parse_chat_command(body) == cmd(ChatCommandKind.FORGET, "3")


def test_first_mention_wins() -> None:
    body = "intro\n@auto-review re-review\n@auto-review help"
    assert parse_chat_command(body) == cmd(ChatCommandKind.RE_REVIEW, "@auto-review help")
    body = "@auto-review forget 4\n\n@auto-review remember x"
    assert parse_chat_command(body) == cmd(ChatCommandKind.FORGET, "4")


@pytest.mark.parametrize(
    ("body", "hint"),
    [
        ("@auto-review remember", "remember"),
        ("@auto-review remember\n\nlater text", "remember"),
        ("@auto-review forget", "forget"),
        ("@auto-review forget twelve", "forget"),
        ("@auto-review forget 0", "forget"),
        ("@auto-review forget -3", "forget"),
        ("@auto-review forget 12 13", "forget"),
        ("@auto-review forget 99999999999999999999", "forget"),
        ("@auto-review remember " + "x" * (MAX_REMEMBER_CHARS + 1), "limited"),
        ("@auto-review " + "why " * MAX_QUESTION_CHARS, "limited"),
    ],
)
def test_malformed_commands_become_help_with_a_hint(body: str, hint: str) -> None:
    command = parse_chat_command(body)
    assert command is not None
    assert command.kind is HELP
    assert hint in command.argument


def test_custom_mention() -> None:
    assert parse_chat_command("@review-bot help", mention="@review-bot") == cmd(HELP)
    assert parse_chat_command("@auto-review help", mention="@review-bot") is None
    # Regex characters in the login are literal.
    assert parse_chat_command("@a.b help", mention="@a.b") == cmd(HELP)
    assert parse_chat_command("@axb help", mention="@a.b") is None
    command = parse_chat_command("@review-bot forget", mention="@review-bot")
    assert command is not None
    assert "@review-bot forget 12" in command.argument


def test_empty_mention_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="mention"):
        parse_chat_command("hello", mention="")


def test_kinds_compare_equal_to_their_contract_strings() -> None:
    assert [kind.value for kind in ChatCommandKind] == [
        "help",
        "re-review",
        "remember",
        "forget",
        "question",
    ]
    assert ChatCommandKind.RE_REVIEW == "re-review"


@pytest.mark.parametrize(
    ("author", "bot", "expected"),
    [
        ("auto-review", "auto-review", True),
        ("Auto-Review", "auto-review", True),
        ("auto-review[bot]", "auto-review", True),
        ("auto-review", "auto-review[bot]", True),
        ("auto-review[bot]", "Auto-Review[bot]", True),
        ("auto-reviewer", "auto-review", False),
        ("alice", "auto-review", False),
        ("auto-review", None, False),
        ("auto-review", "", False),
    ],
)
def test_is_from_bot(author: str, bot: str | None, expected: bool) -> None:
    assert is_from_bot(author, bot) is expected


# -- properties ------------------------------------------------------------------------

markdownish = st.text(
    alphabet=st.sampled_from(list("@auto-review help remember forget 12#`~>\n\r\t <!-->.:,")),
    max_size=300,
)


@given(body=st.one_of(st.text(max_size=500), markdownish))
def test_never_raises_and_results_are_well_formed(body: str) -> None:
    command = parse_chat_command(body)
    if command is None:
        return
    assert isinstance(command.kind, ChatCommandKind)
    assert isinstance(command.argument, str)
    assert "@auto-review" in body.lower()
    if command.kind is ChatCommandKind.FORGET:
        assert command.argument.isdigit() and int(command.argument) > 0
    if command.kind is ChatCommandKind.REMEMBER:
        assert command.argument.strip() and len(command.argument) <= MAX_REMEMBER_CHARS


@given(inner=st.text(max_size=200).filter(lambda s: "```" not in s), before=st.text(max_size=50))
def test_nothing_inside_a_closed_fence_counts(inner: str, before: str) -> None:
    # Put the fence on its own lines, after text with no mention of its own.
    prefix = before.replace("@", "").replace("`", "").replace("~", "")
    body = f"{prefix}\n```\n@auto-review help\n{inner.replace('@', '')}\n```\n"
    if parse_chat_command(prefix) is None:
        assert parse_chat_command(body) is None


@given(text=st.text(max_size=200))
def test_quoted_lines_never_count(text: str) -> None:
    quoted = "\n".join("> " + line for line in ("@auto-review help\n" + text).splitlines())
    assert parse_chat_command(quoted) is None
