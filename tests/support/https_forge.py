"""A loopback Forgejo over HTTPS that also serves its repositories by git smart HTTP.

The API fake (:class:`tests.support.fake_forgejo.FakeForgejo`) and ``git http-backend``
(:class:`tests.support.git_http_backend.GitHttpBackend`) answer on ONE https host:port, as
a self-hosted Forgejo does, with a certificate issued by a throwaway private CA: the file
an operator would give as ``AR_CA_FILE``. Use::

    tls = make_private_ca(directory)                 # ca.pem (public), server cert and key
    forge = HttpsForgejo.start(directory / "served", tls, token=..., bot_login=...)
    repo = forge.create_repository("acme", "shop", {"a.py": "..."}, number=1)
    repo.push({"a.py": "changed"})                   # the PR head, refs/pull/1/head
    forge.publish(repo)                              # the PR on the API, clone_url on forge.url
"""

from __future__ import annotations

import ssl
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tests.support.fake_forgejo import FakeForgejo
from tests.support.git_env import isolated_git_env
from tests.support.git_http_backend import GitHttpBackend

GIT_PATH = "/usr/local/bin:/usr/bin:/bin"


@dataclass(frozen=True)
class TlsFiles:
    ca: Path  # the CA certificate only (what AR_CA_FILE names)
    cert: Path  # the server's certificate for IP 127.0.0.1, issued by the CA
    key: Path  # the server's key

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(self.cert), str(self.key))
        return context


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=30)


def make_private_ca(directory: Path) -> TlsFiles:
    """A one-day CA and a server certificate it issued (EC keys: fast to make)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca, ca_key = directory / "ca.pem", directory / "ca.key"
    cert, key, csr = directory / "server.pem", directory / "server.key", directory / "server.csr"
    extensions = directory / "server.ext"
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-days", "1", "-keyout", str(ca_key), "-out", str(ca),
             "-subj", "/CN=auto-review test private CA",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")  # fmt: skip
    _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", "/CN=127.0.0.1")  # fmt: skip
    extensions.write_text(
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
        "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid,issuer\n"
    )
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
             "-CAcreateserial", "-days", "1", "-out", str(cert),
             "-extfile", str(extensions))  # fmt: skip
    ca_key.unlink()  # nothing else is ever issued by it
    return TlsFiles(ca, cert, key)


def git(cwd: Path, *args: str) -> str:
    env = {
        **isolated_git_env(cwd, path=GIT_PATH),
        "GIT_AUTHOR_DATE": "2026-01-01T00:00:00Z",
        "GIT_COMMITTER_DATE": "2026-01-01T00:00:00Z",
    }
    done = subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True)
    return done.stdout.decode("utf-8", "replace").strip()


@dataclass
class ForgeRepository:
    """A work repository and its bare copy under the forge's project root; the PR head is
    ``refs/pull/<number>/head`` in the bare copy, as on Forgejo."""

    owner: str
    name: str
    work: Path
    bare: Path
    number: int
    base_sha: str
    head_sha: str = ""

    def push(self, files: Mapping[str, str], message: str = "change") -> str:
        git(self.work, "checkout", "-q", "feature")
        for path, text in files.items():
            (self.work / path).parent.mkdir(parents=True, exist_ok=True)
            (self.work / path).write_text(text)
        git(self.work, "add", "-A")
        git(self.work, "commit", "-qm", message)
        self.head_sha = git(self.work, "rev-parse", "HEAD")
        git(self.work, "push", "-q", "--force", str(self.bare), "feature:feature")
        git(self.bare, "update-ref", f"refs/pull/{self.number}/head", self.head_sha)
        return self.head_sha

    def diff(self) -> str:
        return git(self.work, "diff", "--full-index", self.base_sha, self.head_sha) + "\n"


def create_repository(
    project_root: Path, owner: str, name: str, files: Mapping[str, str], *, number: int
) -> ForgeRepository:
    """A work repository with ``files`` on ``main`` and a ``feature`` branch, and its bare
    copy at ``project_root/<owner>/<name>.git`` (what a git backend serves)."""
    work = project_root.parent / f"work-{owner}-{name}"
    work.mkdir(parents=True)
    git(work, "init", "-q", "-b", "main")
    for path, text in files.items():
        (work / path).parent.mkdir(parents=True, exist_ok=True)
        (work / path).write_text(text)
    git(work, "add", "-A")
    git(work, "commit", "-qm", "base")
    base = git(work, "rev-parse", "HEAD")
    git(work, "branch", "feature")
    bare = project_root / owner / f"{name}.git"
    bare.parent.mkdir(parents=True, exist_ok=True)
    git(project_root, "clone", "-q", "--bare", str(work), str(bare))
    return ForgeRepository(owner, name, work, bare, number, base)


class HttpsForgejo(FakeForgejo):
    """FakeForgejo on https with git smart HTTP for ``/<owner>/<repo>.git`` beside the API."""

    def __init__(self, project_root: Path, *, token: str, bot_login: str) -> None:
        super().__init__(token, bot_login=bot_login)
        self.project_root = project_root
        self.git = GitHttpBackend(project_root, bot_login, token)
        self.passthrough = self.git

    @classmethod
    def serve(
        cls, project_root: Path, tls: TlsFiles, *, token: str, bot_login: str
    ) -> HttpsForgejo:
        project_root.mkdir(parents=True, exist_ok=True)
        forge = cls(project_root, token=token, bot_login=bot_login)
        forge.start(tls=tls.server_context())
        return forge

    def create_repository(
        self, owner: str, name: str, files: Mapping[str, str], *, number: int
    ) -> ForgeRepository:
        return create_repository(self.project_root, owner, name, files, number=number)

    def publish(self, repo: ForgeRepository, **details: object) -> None:
        """(Re)announce the PR at the repository's head; its clone URL is on this forge."""
        self.add_pull_request(
            repo.owner, repo.name, repo.number, head_sha=repo.head_sha,
            base_sha=repo.base_sha, diff=repo.diff(), **details,  # type: ignore[arg-type]
        )  # fmt: skip
