"""The pipeline's workspace glue: git policy from the environment, credentials per host."""

from __future__ import annotations

from pathlib import Path

from auto_review.hosts.review_types import GitAccess
from auto_review.review.workspace.pull_request import credentials_for, git_policy_from_environment

ACCESS = GitAccess("bot", "tok-1234567890")


def test_credentials_are_bound_to_the_clone_host_and_port() -> None:
    creds = credentials_for("https://git.example:8443/acme/shop.git", ACCESS)
    assert creds is not None
    assert (creds.username, creds.token, creds.host) == (
        "bot",
        "tok-1234567890",
        "git.example:8443",
    )
    assert credentials_for("https://git.example/acme/shop.git", ACCESS).host == "git.example"  # type: ignore[union-attr]


def test_no_credentials_for_anything_but_https() -> None:
    assert credentials_for("http://git.example/acme/shop.git", ACCESS) is None
    assert credentials_for("file:///srv/git/shop.git", ACCESS) is None
    assert credentials_for("https://git.example/acme/shop.git", None) is None


def test_git_policy_takes_only_proxy_and_ca_from_the_environment(tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    policy = git_policy_from_environment(
        {
            "https_proxy": "http://127.0.0.1:3128",
            "no_proxy": "internal.example",
            "SSL_CERT_FILE": str(bundle),
            "GIT_SSH_COMMAND": "evil",
            "GIT_CONFIG_GLOBAL": "/tmp/evil",
        }
    )
    assert policy.https_proxy == "http://127.0.0.1:3128"
    assert policy.no_proxy == "internal.example"
    assert policy.ca_file == bundle
    assert policy.allow_file_protocol is False


def test_a_missing_ca_bundle_or_empty_proxy_is_ignored(tmp_path: Path) -> None:
    policy = git_policy_from_environment(
        {"HTTPS_PROXY": "", "SSL_CERT_FILE": str(tmp_path / "missing.pem")}
    )
    assert policy.https_proxy is None and policy.ca_file is None


def test_the_ca_file_setting_wins_over_the_environment(tmp_path: Path) -> None:
    setting, environment = tmp_path / "private-ca.pem", tmp_path / "env.pem"
    environment.write_text("x")
    policy = git_policy_from_environment({"SSL_CERT_FILE": str(environment)}, ca_file=setting)
    assert policy.ca_file == setting
