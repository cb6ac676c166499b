"""What a failed fetch means, decided from what real git says against a loopback https forge:
network failures (refused connection, 5xx/429 answers, a pack cut short) are transient; a
missing ref or repository, a corrupt repository on the remote and refused credentials are
permanent. Each transient case is followed by the same fetch succeeding."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.support.https_forge import ForgeRepository, HttpsForgejo, git, make_private_ca
from tests.support.ports import closed_port

from auto_review.core.errors import is_transient
from auto_review.hosts.review_types import GitAccess, PullRequestDetails
from auto_review.isolation.egress.bridge import EgressBridgeThread
from auto_review.isolation.egress.policy import EgressPolicy, EgressTarget
from auto_review.isolation.egress.proxy import EgressProxyThread
from auto_review.review.pipeline import describe_failure
from auto_review.review.workspace.checkout import WorkspaceError
from auto_review.review.workspace.gitenv import GitAuthRefused, GitNetworkError, GitPolicy
from auto_review.review.workspace.pull_request import (
    GitCredentialsRefused,
    WorkspaceSettings,
    pr_workspace,
)

TOKEN = "tok-9d1e-CANARY-git-failures"
BOT = "review-bot"


@pytest.fixture
def forge(tmp_path: Path) -> Iterator[HttpsForgejo]:
    tls = make_private_ca(tmp_path / "tls")
    served = HttpsForgejo.serve(tmp_path / "served", tls, token=TOKEN, bot_login=BOT)
    served.ca = tls.ca  # type: ignore[attr-defined]
    try:
        yield served
    finally:
        served.stop()


@pytest.fixture
def repo(forge: HttpsForgejo) -> ForgeRepository:
    created = forge.create_repository("acme", "shop", {"a.py": "x = 1\n"}, number=1)
    created.push({"a.py": "x = 2\n"})
    return created


def details(
    forge: HttpsForgejo, repo: ForgeRepository, *, url: str = "", number: int = 1
) -> PullRequestDetails:
    return PullRequestDetails(
        number=number,
        head_sha=repo.head_sha,
        base_sha=repo.base_sha,
        head_ref=f"refs/pull/{number}/head",
        base_branch="main",
        author="carol",
        draft=False,
        state="open",
        title="t",
        body="",
        labels=(),
        clone_url=url or f"{forge.url}/acme/shop.git",
    )


def fetch(
    forge: HttpsForgejo,
    tmp_path: Path,
    pr: PullRequestDetails,
    token: str = TOKEN,
    policy: GitPolicy | None = None,
) -> str:
    settings = WorkspaceSettings(
        parent=tmp_path / "work",
        policy=policy or GitPolicy(ca_file=forge.ca),  # type: ignore[attr-defined]
        max_clone_bytes=50_000_000,
        max_diff_bytes=1_000_000,
    )

    async def go() -> str:
        async with pr_workspace(pr, GitAccess(BOT, token), settings) as workspace:
            return workspace.head_sha

    return asyncio.run(go())


def failure(
    forge: HttpsForgejo, tmp_path: Path, pr: PullRequestDetails, **kw: Any
) -> WorkspaceError:
    with pytest.raises(WorkspaceError) as info:
        fetch(forge, tmp_path, pr, **kw)
    message = str(info.value)
    assert TOKEN not in message and "\n" not in message
    return info.value


@pytest.mark.parametrize(
    "fault",
    [
        "503 on the ref advertisement",
        "502 on upload-pack",
        "429",
        "ref listing cut short",
        "pack cut short",
    ],
)
def test_network_failures_are_transient(
    forge: HttpsForgejo, repo: ForgeRepository, tmp_path: Path, fault: str
) -> None:
    if fault == "503 on the ref advertisement":
        forge.git.fail(503, path_contains="info/refs")
    elif fault == "502 on upload-pack":
        forge.git.fail(502, path_contains="/git-upload-pack")
    elif fault == "429":
        forge.git.fail(429)
    elif fault == "ref listing cut short":
        forge.git.cut()
    else:
        forge.git.cut(skip=1)  # protocol v2: ls-refs first, then the fetch with the pack
    error = failure(forge, tmp_path, details(forge, repo))
    assert isinstance(error.__cause__, GitNetworkError) and is_transient(error)
    assert fetch(forge, tmp_path, details(forge, repo)) == repo.head_sha  # the retry works


def test_a_refused_connection_is_transient(
    forge: HttpsForgejo, repo: ForgeRepository, tmp_path: Path
) -> None:
    url = f"https://127.0.0.1:{closed_port()}/acme/shop.git"
    error = failure(forge, tmp_path, details(forge, repo, url=url))
    assert isinstance(error.__cause__, GitNetworkError) and is_transient(error)


def test_a_missing_ref_or_repository_is_permanent(
    forge: HttpsForgejo, repo: ForgeRepository, tmp_path: Path
) -> None:
    missing_ref = failure(forge, tmp_path, details(forge, repo, number=9))
    assert "couldn't find remote ref" in str(missing_ref) and not is_transient(missing_ref)
    missing_repo = details(forge, repo, url=f"{forge.url}/acme/gone.git")
    assert not is_transient(failure(forge, tmp_path, missing_repo))


def test_a_corrupt_repository_on_the_forge_is_permanent(
    forge: HttpsForgejo, repo: ForgeRepository, tmp_path: Path
) -> None:
    corrupt_loose_tree(repo)
    error = failure(forge, tmp_path, details(forge, repo))
    assert "corruption" in str(error) and not is_transient(error)


def test_refused_credentials_are_permanent_and_not_renewed_on_forgejo(
    forge: HttpsForgejo, repo: ForgeRepository, tmp_path: Path
) -> None:
    error = failure(forge, tmp_path, details(forge, repo), token="tok-revoked-CANARY")
    assert isinstance(error, GitCredentialsRefused) and not error.renewed
    assert isinstance(error.__cause__, GitAuthRefused) and not is_transient(error)
    assert "tok-revoked-CANARY" not in str(error)
    assert describe_failure(error) == "git was refused (HTTP 401) the forge credentials"
    assert forge.git.refused >= 1


def corrupt_loose_tree(repo: ForgeRepository) -> None:
    """Unpack the head's objects loose in the bare repository and break its root tree."""
    tree = git(repo.bare, "rev-parse", f"{repo.head_sha}^{{tree}}")
    packs = list((repo.bare / "objects" / "pack").glob("*.pack"))
    for pack in packs:
        data = pack.read_bytes()
        pack.rename(pack.with_suffix(".pack-moved"))
        pack.with_suffix(".idx").rename(pack.with_suffix(".idx-moved"))
        subprocess.run(["git", "unpack-objects", "-q"], input=data, cwd=repo.bare, check=True)
    loose = repo.bare / "objects" / tree[:2] / tree[2:]
    if not loose.exists():  # the push left it loose already
        raise AssertionError("the head's tree is not a loose object")
    loose.chmod(0o644)
    loose.write_bytes(b"not a zlib stream")


def test_through_the_egress_proxy_a_forge_down_is_transient_and_a_refusal_permanent(
    forge: HttpsForgejo, repo: ForgeRepository, tmp_path: Path
) -> None:
    """In container mode git reaches the forge through the egress proxy: a forge that does
    not answer becomes the proxy's 502 to CONNECT, a host the policy does not name its 403."""
    down = closed_port()
    policy = EgressPolicy(
        (
            EgressTarget("127.0.0.1", forge.port, "https", "forgejo"),
            EgressTarget("127.0.0.1", down, "https", "forgejo"),
        )
    )
    sockets = Path(tempfile.mkdtemp(prefix="egress-", dir="/tmp"))  # short: a socket path
    try:
        with (
            EgressProxyThread(policy, sockets / "proxy.sock") as proxy,
            EgressBridgeThread(sockets / "proxy.sock") as bridge,
        ):
            via_proxy = GitPolicy(https_proxy=bridge.proxy_url, ca_file=forge.ca)  # type: ignore[attr-defined]
            unreachable = f"https://127.0.0.1:{down}/acme/shop.git"
            not_allowed = f"https://127.0.0.1:{closed_port()}/acme/shop.git"
            outcomes = {
                url: failure(forge, tmp_path, details(forge, repo, url=url), policy=via_proxy)
                for url in (unreachable, not_allowed)
            }
            reached = fetch(forge, tmp_path, details(forge, repo), policy=via_proxy)
            stats = proxy.stats
    finally:
        shutil.rmtree(sockets, ignore_errors=True)
    assert "response 502" in str(outcomes[unreachable]) and is_transient(outcomes[unreachable])
    assert "response 403" in str(outcomes[not_allowed])
    assert not is_transient(outcomes[not_allowed])
    assert reached == repo.head_sha and stats.refused_total >= 1
