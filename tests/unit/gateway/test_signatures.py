"""HMAC-SHA256 webhook signatures: documented vectors, every malformed form, and fuzzing."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.support.reference import load_json, reference_path

from auto_review.gateway.signatures import (
    SignatureError,
    SignatureMalformed,
    SignatureMismatch,
    SignatureMissing,
    forgejo_signature_header,
    github_signature_header,
    verify_forgejo,
    verify_forgejo_request,
    verify_github,
    verify_github_request,
)

# GitHub's documented test vector (docs: "Testing the webhook payload validation").
GITHUB_DOC_SECRET = b"It's a Secret to Everybody"
GITHUB_DOC_PAYLOAD = b"Hello, World!"
GITHUB_DOC_DIGEST = "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"


def _vector() -> dict[str, Any]:
    data = load_json(reference_path("github", "signature-test-vector.json"))
    assert isinstance(data, dict)
    return data


VECTOR = _vector()
SECRET = VECTOR["secret"].encode()
BODY = VECTOR["payload"].encode()
HEADERS = VECTOR["expected_headers"]


def test_github_documented_vector() -> None:
    verify_github(GITHUB_DOC_SECRET, GITHUB_DOC_PAYLOAD, f"sha256={GITHUB_DOC_DIGEST}")
    # The reference file carries the same vector.
    assert HEADERS["X-Hub-Signature-256"] == f"sha256={GITHUB_DOC_DIGEST}"
    verify_github(SECRET, BODY, HEADERS["X-Hub-Signature-256"])


@pytest.mark.parametrize("header", ["X-Gitea-Signature", "X-Forgejo-Signature"])
def test_forgejo_and_gitea_forms_of_the_vector(header: str) -> None:
    verify_forgejo(SECRET, BODY, HEADERS[header])
    verify_forgejo_request(SECRET, BODY, {header: HEADERS[header]})


def test_legacy_sha1_header_alone_counts_as_missing() -> None:
    with pytest.raises(SignatureMissing):
        verify_github_request(SECRET, BODY, {"X-Hub-Signature": HEADERS["X-Hub-Signature"]})


def test_gogs_header_is_not_accepted_on_the_forgejo_route() -> None:
    with pytest.raises(SignatureMissing):
        verify_forgejo_request(SECRET, BODY, {"X-Gogs-Signature": HEADERS["X-Gogs-Signature"]})


def test_sha1_prefix_on_the_sha256_header_is_malformed() -> None:
    sha1 = HEADERS["X-Hub-Signature"]  # "sha1=<40 hex>"
    with pytest.raises(SignatureMalformed):
        verify_github(SECRET, BODY, sha1)
    # Even with a 64-digit value, sha1= is not the algorithm we verify.
    with pytest.raises(SignatureMalformed):
        verify_github(SECRET, BODY, f"sha1={GITHUB_DOC_DIGEST}")


@pytest.mark.parametrize("header", [None, "", "   ", "\t"])
def test_missing_or_empty_is_401(header: str | None) -> None:
    for verify in (verify_forgejo, verify_github):
        with pytest.raises(SignatureMissing) as caught:
            verify(SECRET, BODY, header)
        assert caught.value.status_code == 401


@pytest.mark.parametrize(
    "value",
    [
        GITHUB_DOC_DIGEST[:-1],  # 63 digits
        GITHUB_DOC_DIGEST + "0",  # 65 digits
        GITHUB_DOC_DIGEST[:40],  # SHA-1 length
        GITHUB_DOC_DIGEST[:-1] + "g",  # not hex
        GITHUB_DOC_DIGEST[:32] + " " + GITHUB_DOC_DIGEST[32:63],  # inner space
        f"sha256={GITHUB_DOC_DIGEST}",  # GitHub form on the Forgejo header
        "0x" + GITHUB_DOC_DIGEST[:62],
        GITHUB_DOC_DIGEST[:-1] + "\u0660",  # Arabic-Indic digit zero
        GITHUB_DOC_DIGEST + "\n",
    ],
    ids=range(9),
)
def test_malformed_forgejo_is_400(value: str) -> None:
    with pytest.raises(SignatureMalformed) as caught:
        verify_forgejo(SECRET, BODY, value)
    assert caught.value.status_code == 400


@pytest.mark.parametrize(
    "value",
    [
        GITHUB_DOC_DIGEST,  # no prefix
        f"sha256:{GITHUB_DOC_DIGEST}",
        f"sha256 ={GITHUB_DOC_DIGEST}",
        f"sha256= {GITHUB_DOC_DIGEST}",
        f"sha512={GITHUB_DOC_DIGEST}",
        f"sha256={GITHUB_DOC_DIGEST[:-2]}",
        f"sha256={GITHUB_DOC_DIGEST}=",
        "sha256=",
    ],
    ids=range(8),
)
def test_malformed_github_is_400(value: str) -> None:
    with pytest.raises(SignatureMalformed) as caught:
        verify_github(SECRET, BODY, value)
    assert caught.value.status_code == 400


def test_upper_case_hex_and_surrounding_whitespace_are_accepted() -> None:
    verify_forgejo(SECRET, BODY, GITHUB_DOC_DIGEST.upper())
    verify_forgejo(SECRET, BODY, f" \t{GITHUB_DOC_DIGEST} ")
    verify_github(SECRET, BODY, f"SHA256={GITHUB_DOC_DIGEST.upper()}")
    verify_github(SECRET, BODY, f"  sha256={GITHUB_DOC_DIGEST}\t")


def test_mismatch_is_401() -> None:
    wrong = hmac.new(b"another secret", BODY, hashlib.sha256).hexdigest()
    for verify, header in ((verify_forgejo, wrong), (verify_github, f"sha256={wrong}")):
        with pytest.raises(SignatureMismatch) as caught:
            verify(SECRET, BODY, header)
        assert caught.value.status_code == 401
    with pytest.raises(SignatureMismatch):
        verify_forgejo(SECRET, BODY + b" ", GITHUB_DOC_DIGEST)


def test_errors_reveal_neither_secret_nor_digests() -> None:
    supplied = "ab" * 32
    with pytest.raises(SignatureError) as caught:
        verify_forgejo(SECRET, BODY, supplied)
    text = str(caught.value) + repr(caught.value)
    for leak in (VECTOR["secret"], GITHUB_DOC_DIGEST, supplied):
        assert leak not in text


def test_empty_secret_is_refused() -> None:
    digest = hmac.new(b"", BODY, hashlib.sha256).hexdigest()
    with pytest.raises(ValueError, match="secret is empty"):
        verify_forgejo(b"", BODY, digest)


# -- header selection (both Forgejo and Gitea headers present) -------------------------


def test_forgejo_sends_both_headers_with_the_same_value() -> None:
    headers = {
        "X-Forgejo-Signature": HEADERS["X-Forgejo-Signature"],
        "X-Gitea-Signature": HEADERS["X-Gitea-Signature"].upper(),
    }
    assert forgejo_signature_header(headers) == HEADERS["X-Forgejo-Signature"]
    verify_forgejo_request(SECRET, BODY, headers)


def test_header_names_are_case_insensitive() -> None:
    verify_forgejo_request(SECRET, BODY, {"x-gitea-signature": GITHUB_DOC_DIGEST})
    verify_github_request(SECRET, BODY, {"x-hub-signature-256": f"sha256={GITHUB_DOC_DIGEST}"})


@pytest.mark.parametrize("valid_one", ["X-Forgejo-Signature", "X-Gitea-Signature"])
def test_disagreeing_headers_are_refused_even_if_one_is_valid(valid_one: str) -> None:
    other = "X-Gitea-Signature" if valid_one == "X-Forgejo-Signature" else "X-Forgejo-Signature"
    headers = {valid_one: GITHUB_DOC_DIGEST, other: "0" * 64}
    with pytest.raises(SignatureMismatch):
        verify_forgejo_request(SECRET, BODY, headers)


def test_empty_companion_header_is_treated_as_absent() -> None:
    headers = {"X-Forgejo-Signature": "", "X-Gitea-Signature": GITHUB_DOC_DIGEST}
    verify_forgejo_request(SECRET, BODY, headers)


class MultiHeaders:
    """A mapping whose items() repeats a header, as Starlette's Headers does."""

    def __init__(self, items: list[tuple[str, str]]) -> None:
        self._items = items

    def items(self) -> list[tuple[str, str]]:
        return self._items


def test_repeated_header_copies_must_agree() -> None:
    good = f"sha256={GITHUB_DOC_DIGEST}"
    same = MultiHeaders([("x-hub-signature-256", good), ("x-hub-signature-256", good)])
    assert github_signature_header(same) == good  # type: ignore[arg-type]
    bad = "sha256=" + "0" * 64
    mixed = MultiHeaders([("x-hub-signature-256", good), ("x-hub-signature-256", bad)])
    with pytest.raises(SignatureMismatch):
        verify_github_request(SECRET, BODY, mixed)  # type: ignore[arg-type]


def test_works_with_starlette_headers() -> None:
    from starlette.datastructures import Headers

    headers = Headers(raw=[(b"x-gitea-signature", GITHUB_DOC_DIGEST.encode())])
    verify_forgejo_request(SECRET, BODY, headers)
    repeated = Headers(
        raw=[
            (b"x-gitea-signature", GITHUB_DOC_DIGEST.encode()),
            (b"x-gitea-signature", b"0" * 64),
        ]
    )
    with pytest.raises(SignatureMismatch):
        verify_forgejo_request(SECRET, BODY, repeated)


# -- properties ------------------------------------------------------------------------


@given(secret=st.binary(min_size=1, max_size=64), body=st.binary(max_size=2048))
def test_own_signatures_verify_and_any_body_change_is_caught(secret: bytes, body: bytes) -> None:
    digest = hmac.new(secret, body, hashlib.sha256).hexdigest()
    verify_forgejo(secret, body, digest)
    verify_github(secret, body, f"sha256={digest}")
    tampered = body + b"\x00"
    with pytest.raises(SignatureMismatch):
        verify_forgejo(secret, tampered, digest)
    with pytest.raises(SignatureMismatch):
        verify_github(secret, tampered, f"sha256={digest}")


@given(header=st.text(max_size=100))
def test_arbitrary_headers_only_raise_signature_errors(header: str) -> None:
    for verify in (verify_forgejo, verify_github):
        try:
            verify(SECRET, BODY, header)
        except SignatureError:
            continue
        # Accepted: it must really be the right digest, in one of the accepted spellings.
        digest = header.strip(" \t").lower().removeprefix("sha256=")
        assert digest == GITHUB_DOC_DIGEST


@given(position=st.integers(0, 63), replacement=st.sampled_from("0123456789abcdef"))
def test_any_single_digit_change_is_a_mismatch(position: int, replacement: str) -> None:
    changed = GITHUB_DOC_DIGEST[:position] + replacement + GITHUB_DOC_DIGEST[position + 1 :]
    if changed == GITHUB_DOC_DIGEST:
        verify_forgejo(SECRET, BODY, changed)
        return
    with pytest.raises(SignatureMismatch):
        verify_forgejo(SECRET, BODY, changed)
