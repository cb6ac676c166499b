"""`auto-review review diff` on input that is not a patch: exit 2, and the LLM is not asked."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from auto_review.cli.main import main


@pytest.fixture
def silent_llm(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[bytes]]:
    """A listening socket standing for the LLM: any connection to it is recorded."""
    for key in [k for k in os.environ if k.startswith("AR_")]:
        monkeypatch.delenv(key)
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.05)
    seen: list[bytes] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            seen.append(b"connection")
            conn.close()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    monkeypatch.setenv("AR_LLM_BASE_URL", f"http://127.0.0.1:{server.getsockname()[1]}/v1")
    monkeypatch.setenv("AR_LLM_REASONING_MODEL", "model")
    yield seen
    stop.set()
    thread.join()
    server.close()


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"", "it is empty"),
        (b"\n  \n", "it is empty"),
        (b"just some text\nand more\n", "no file diff"),
        (bytes(range(256)) * 8, "no file diff"),
    ],
    ids=["empty", "blank", "text", "random-bytes"],
)
def test_not_a_patch_is_a_usage_error(
    tmp_path: Path,
    silent_llm: list[bytes],
    capsys: pytest.CaptureFixture[str],
    content: bytes,
    says: str,
) -> None:
    patch = tmp_path / "input.patch"
    patch.write_bytes(content)
    assert main(["review", "diff", str(patch)]) == 2
    err = capsys.readouterr()
    assert f"{patch}: not a unified diff" in err.err and says in err.err
    assert "nothing to review" not in err.out + err.err
    assert silent_llm == []
