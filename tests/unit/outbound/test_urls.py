"""The base-URL check: http(s) with a host, no credentials, no query or fragment; the
message names what the URL is for and never quotes it."""

from __future__ import annotations

import pytest

from auto_review.outbound.urls import check_base_url

CANARY = "canary-url-secret-5d1e"


def test_a_good_url_loses_its_trailing_slash() -> None:
    assert check_base_url("https://forge.example/", "x") == "https://forge.example"
    assert check_base_url("http://127.0.0.1:11434/v1/", "x") == "http://127.0.0.1:11434/v1"


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("ftp://forge.example", "LLM base URL must be an http(s) URL with a host"),
        ("forge.example", "LLM base URL must be an http(s) URL with a host"),
        ("https://", "LLM base URL must be an http(s) URL with a host"),
        (f"https://bot:{CANARY}@forge.example", "LLM base URL must not contain credentials"),
        (f"https://{CANARY}@forge.example", "LLM base URL must not contain credentials"),
        (f"https://forge.example/?token={CANARY}", "LLM base URL must not have a query"),
        (f"https://forge.example/#{CANARY}", "LLM base URL must not have a query or fragment"),
    ],
)
def test_bad_urls_are_refused_without_echoing_them(url: str, words: str) -> None:
    with pytest.raises(ValueError) as info:
        check_base_url(url, "LLM base URL")
    assert str(info.value).startswith(words)
    assert CANARY not in str(info.value)
    assert "forge.example" not in str(info.value)


def test_the_credentials_hint_is_the_callers() -> None:
    with pytest.raises(ValueError) as info:
        check_base_url("https://u:p@h", "AR_FORGEJO_URL", credentials_hint="set the token")
    assert str(info.value) == "AR_FORGEJO_URL must not contain credentials; set the token"
