"""Egress policy: targets from settings, host and port normalisation, exact matching."""

from __future__ import annotations

from pathlib import Path

import pytest

from auto_review.config import Settings
from auto_review.isolation.egress.policy import (
    EgressPolicy,
    EgressTarget,
    PolicyError,
    normalise_host,
    parse_port,
    target_from_url,
)

KEY = "-----BEGIN PRIVATE KEY-----\nx\n-----END PRIVATE KEY-----"


def settings(**values: object) -> Settings:
    return Settings(state_dir=Path("/tmp/unused"), **values)  # type: ignore[arg-type]


def test_targets_from_settings_with_default_ports() -> None:
    policy = EgressPolicy.from_settings(
        settings(
            forgejo_url="https://Git.Example.ORG",
            llm_base_url="http://10.0.0.5/v1",
        )
    )
    assert policy.targets == (
        EgressTarget("git.example.org", 443, "https", "forgejo"),
        EgressTarget("10.0.0.5", 80, "http", "llm"),
    )
    assert policy.describe() == [
        "https://git.example.org:443 (forgejo)",
        "http://10.0.0.5:80 (llm)",
    ]


def test_github_only_when_the_app_is_configured() -> None:
    # github_api_url always has a default; alone it must not open a path.
    assert EgressPolicy.from_settings(settings(forgejo_url="http://f:3000")).targets == (
        EgressTarget("f", 3000, "http", "forgejo"),
    )
    public = EgressPolicy.from_settings(settings(github_app_id="12", github_app_private_key=KEY))
    assert public.targets == (
        EgressTarget("api.github.com", 443, "https", "github-api"),
        EgressTarget("github.com", 443, "https", "github-git"),
    )
    enterprise = EgressPolicy.from_settings(
        settings(
            github_app_id="12",
            github_app_private_key=KEY,
            github_api_url="https://ghe.corp.example:8443/api/v3",
        )
    )
    assert enterprise.targets == (EgressTarget("ghe.corp.example", 8443, "https", "github-api"),)


def test_nothing_configured_allows_nothing() -> None:
    policy = EgressPolicy.from_settings(settings())
    assert policy.targets == ()
    assert policy.match("api.github.com", 443) is None


@pytest.mark.parametrize(
    ("spelling", "canonical"),
    [
        ("Forge.Example.COM", "forge.example.com"),
        ("forge.example.com.", "forge.example.com"),
        ("bücher.example", "xn--bcher-kva.example"),
        ("127.0.0.1", "127.0.0.1"),
        ("[::1]", "::1"),
        ("0:0:0:0:0:0:0:1", "::1"),
        ("[2001:DB8::0001]", "2001:db8::1"),
    ],
)
def test_host_normalisation(spelling: str, canonical: str) -> None:
    assert normalise_host(spelling) == canonical


@pytest.mark.parametrize(
    "bad",
    ["", ".", "a..b", "-a.example", "a_b.example", "a b", "x%2e.example", "2130706433",
     "127.1", "[127.0.0.1]", "[::1", "a" * 64 + ".example", "user@host"],
)  # fmt: skip
def test_bad_hosts_refused(bad: str) -> None:
    with pytest.raises(PolicyError):
        normalise_host(bad)


@pytest.mark.parametrize("bad", ["", "0", "00443", "0443", "65536", "+443", " 443", "44 3", "1e3"])
def test_bad_ports_refused(bad: str) -> None:
    with pytest.raises(PolicyError):
        parse_port(bad)


def test_ports_accepted() -> None:
    assert parse_port("1") == 1
    assert parse_port("65535") == 65535


def test_match_is_exact_on_host_and_port() -> None:
    policy = EgressPolicy(
        (
            EgressTarget("localhost", 3000, "http", "forgejo"),
            EgressTarget("127.0.0.1", 8000, "https", "llm"),
        )
    )
    assert policy.match("localhost", 3000) is policy.targets[0]
    assert policy.match("localhost", 8000) is None  # a known host, another port
    assert policy.match("127.0.0.1", 3000) is None  # the name's address is another host
    assert policy.match("127.0.0.1", 8000) is policy.targets[1]
    assert policy.knows_host("localhost") and not policy.knows_host("::1")
    assert policy.targets[1].is_ip_literal and not policy.targets[0].is_ip_literal


def test_url_with_credentials_or_bad_port_refused() -> None:
    with pytest.raises(PolicyError, match="credentials"):
        target_from_url("https://u:p@x.example", "llm")
    with pytest.raises(PolicyError, match="port"):
        target_from_url("https://x.example:99999", "llm")
    with pytest.raises(PolicyError, match="http"):
        target_from_url("ftp://x.example", "llm")
