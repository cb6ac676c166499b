"""The redacting logging layer: secrets and URL credentials never reach the output."""

from __future__ import annotations

import io
import json
import logging

from hypothesis import given, settings
from hypothesis import strategies as st

from auto_review.core.logs import configure_logging
from auto_review.core.redaction import REDACTED, Redactor
from auto_review.wiring.redaction import install_secrets, redact

CANARY = "canary-0a1b2c3d4e5f60718293a4b5c6d7e8f9-log"


def test_redactor_removes_secrets_and_url_credentials() -> None:
    redactor = Redactor([CANARY, "short"])
    text = (
        f"token {CANARY} and https://bot:{CANARY}x@forge.example/a.git and "
        "http://onlytoken@h/ and https://h/x?access_token=abc123&y=1 "
        "Authorization: Bearer abc.def"
    )
    out = redactor(text)
    assert CANARY not in out
    assert "onlytoken" not in out
    assert "abc123" not in out
    assert "abc.def" not in out
    assert "y=1" in out
    assert out.count(REDACTED) >= 4
    # Values shorter than the minimum would redact ordinary words and are not matched bare.
    assert redactor("a short word") == "a short word"


def test_log_lines_are_json_and_redacted_everywhere() -> None:
    stream = io.StringIO()
    configure_logging("json", "debug", Redactor([CANARY]), stream=stream)
    log = logging.getLogger("auto_review.test")
    log.info("delivery with %s", CANARY, extra={"detail": {"url": f"https://u:{CANARY}@h"}})
    try:
        raise RuntimeError(f"boom {CANARY}")
    except RuntimeError:
        log.exception("job crashed")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    records = [json.loads(line) for line in lines]
    assert records[0]["msg"] == f"delivery with {REDACTED}"
    assert records[1]["level"] == "error"
    assert "RuntimeError" in records[1]["exc"]
    assert CANARY not in stream.getvalue()


def test_library_loggers_are_routed_through_redaction() -> None:
    stream = io.StringIO()
    configure_logging("text", "info", install_secrets([CANARY]), stream=stream)
    logging.getLogger("uvicorn.error").error("peer sent %s", CANARY)
    assert "peer sent" in stream.getvalue()
    assert CANARY not in stream.getvalue()
    assert redact(CANARY) == REDACTED


def test_json_lines_drop_terminal_colour_copies() -> None:
    stream = io.StringIO()
    configure_logging("json", "info", stream=stream)
    logging.getLogger("uvicorn.error").info("started", extra={"color_message": "\x1b[36mstarted"})
    assert "color_message" not in json.loads(stream.getvalue())


def test_userinfo_redacted_when_the_scheme_is_glued_to_preceding_text() -> None:
    # The scheme match starts only at the beginning of a run of scheme characters (which
    # keeps long runs linear); a URL glued to a word is still caught as one longer scheme.
    redactor = Redactor()
    assert redactor("see:xhttps://bot:canary-pass@forge.example/") == (
        "see:xhttps://[REDACTED]@forge.example/"
    )
    assert "canary" not in redactor("(git+https://canary@h)")


@settings(max_examples=400, deadline=None)
@given(
    text=st.text(
        alphabet=st.sampled_from(list("ab:=@/ .?&Authorization-keyXtoken_1\"'")), max_size=80
    )
    | st.text(max_size=80)
)
def test_skipping_patterns_that_cannot_match_changes_nothing(text: str) -> None:
    # The redactor tests for a character each pattern needs before running it; the result
    # must equal running every pattern unconditionally.
    from auto_review.core import redaction

    redactor = Redactor([CANARY])
    expected = redactor._pattern.sub(REDACTED, text) if redactor._pattern else text
    expected = redaction._URL_USERINFO.sub(lambda m: f"{m['scheme']}{REDACTED}@", expected)
    expected = redaction._QUERY_TOKEN.sub(lambda m: f"{m[1]}{REDACTED}", expected)
    expected = redaction._AUTH_HEADER.sub(lambda m: f"{m[1]}{m[2]}{REDACTED}", expected)
    assert redactor(text) == expected
