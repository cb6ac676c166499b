"""The settings pipe: what the launcher writes is what the inner process reads, once."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path

import pytest

from auto_review.config import Settings
from auto_review.isolation.secrets_pipe import (
    HOST_STATE_DIR_KEY,
    MAX_DOCUMENT_BYTES,
    SecretsPipeError,
    SettingsPipe,
    read_settings_pipe,
    settings_document,
    write_settings_pipe,
)

CANARY = "canary-secret-pipe-0123456789abcdef0123456789"


def sample_settings(tmp_path: Path) -> Settings:
    return Settings(
        state_dir=tmp_path / "state",
        forgejo_url="http://127.0.0.1:3000",
        forgejo_token=CANARY + "-token",
        webhook_secret=CANARY,
        poll_repos=["acme/widgets"],
    )


def test_round_trip_reveals_secrets_and_forces_the_inner_state_dir(tmp_path: Path) -> None:
    document = settings_document(sample_settings(tmp_path), state_dir=Path("/var/lib/auto_review"))
    fd = write_settings_pipe(document)
    values = read_settings_pipe(fd)
    assert values["webhook_secret"] == CANARY
    assert values["forgejo_token"] == CANARY + "-token"
    assert values["state_dir"] == "/var/lib/auto_review"
    assert values["poll_repos"] == ["acme/widgets"]
    # The operator's own state directory rides along for /info and error messages.
    assert values.pop(HOST_STATE_DIR_KEY) == str(sample_settings(tmp_path).state_dir)
    # The same settings come back out of the values.
    rebuilt = Settings(**{k: v for k, v in values.items() if v is not None})
    assert rebuilt.secret_values() == sample_settings(tmp_path).secret_values()


def test_read_end_is_close_on_exec_and_closed_after_reading(tmp_path: Path) -> None:
    fd = write_settings_pipe(settings_document(sample_settings(tmp_path), state_dir=tmp_path))
    assert fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC
    read_settings_pipe(fd)
    with pytest.raises(OSError):
        os.fstat(fd)


def test_document_larger_than_a_default_pipe_is_written_whole() -> None:
    document = {"version": 1, "settings": {"padding": "x" * 200_000}}
    fd = write_settings_pipe(document)
    assert read_settings_pipe(fd)["padding"] == "x" * 200_000


def test_oversized_document_is_refused_without_its_content() -> None:
    with pytest.raises(SecretsPipeError) as caught:
        write_settings_pipe({"version": 1, "settings": {"s": CANARY * (MAX_DOCUMENT_BYTES // 10)}})
    assert CANARY not in str(caught.value)


def test_garbage_in_the_pipe_is_an_error_that_quotes_nothing() -> None:
    read_fd, write_fd = os.pipe()
    os.write(write_fd, b'{"version": 1, "settings": {"webhook_secret": "' + CANARY.encode())
    os.close(write_fd)
    with pytest.raises(SecretsPipeError) as caught:
        read_settings_pipe(read_fd)
    assert CANARY not in str(caught.value)
    assert "JSON" in str(caught.value)


def test_unknown_version_is_refused() -> None:
    read_fd, write_fd = os.pipe()
    os.write(write_fd, b'{"version": 99, "settings": {}}')
    os.close(write_fd)
    with pytest.raises(SecretsPipeError, match="version"):
        read_settings_pipe(read_fd)


def test_a_closed_descriptor_is_named() -> None:
    read_fd, write_fd = os.pipe()
    os.close(read_fd)
    os.close(write_fd)
    with pytest.raises(SecretsPipeError, match=f"fd {read_fd}"):
        read_settings_pipe(read_fd)


def test_secret_variables_are_scrubbed_from_the_initial_environment() -> None:
    script = (
        "import os\n"
        "from auto_review.isolation.secrets_pipe import scrub_secret_environment\n"
        "assert scrub_secret_environment()\n"
        "data = open('/proc/self/environ', 'rb').read()\n"
        "print(sorted(k for k in os.environ if k.startswith('AR_')))\n"
        "print(data.count(b'" + CANARY + "'), b'AR_STATE_DIR=/keep' in data)\n"
    )
    env = {**os.environ, "AR_WEBHOOK_SECRET": CANARY, "AR_FORGEJO_TOKEN": CANARY + "-t",
           "AR_STATE_DIR": "/keep"}  # fmt: skip
    completed = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    names, counts = completed.stdout.splitlines()
    assert "AR_WEBHOOK_SECRET" not in names
    assert "AR_STATE_DIR" in names  # only secrets go
    assert counts == "0 True"


def test_a_reader_waits_for_a_document_delivered_later(tmp_path: Path) -> None:
    """The launcher hands the read end to the container first and writes once the egress
    proxy listens: a reader started before the delivery gets the whole document."""
    pipe = SettingsPipe(settings_document(sample_settings(tmp_path), state_dir=tmp_path))
    reader = subprocess.Popen(
        [sys.executable, "-c", "import os, sys; sys.stdout.buffer.write(os.read(0, 1 << 20))"],
        stdin=pipe.read_fd, stdout=subprocess.PIPE,
    )  # fmt: skip
    os.close(pipe.read_fd)
    pipe.read_fd = -1
    assert reader.poll() is None  # nothing written yet: it waits
    pipe.deliver()
    out, _ = reader.communicate(timeout=30)
    assert CANARY.encode() in out
    with pytest.raises(SecretsPipeError, match="already written or abandoned"):
        pipe.deliver()


def test_an_abandoned_pipe_is_refused_by_the_reader(tmp_path: Path) -> None:
    pipe = SettingsPipe(settings_document(sample_settings(tmp_path), state_dir=tmp_path))
    pipe.abandon()
    pipe.abandon()  # idempotent
    with pytest.raises(SecretsPipeError, match="does not hold a JSON document") as caught:
        read_settings_pipe(pipe.read_fd)
    assert CANARY not in str(caught.value)
    pipe.read_fd = -1  # read_settings_pipe closed it
    pipe.close()
    with pytest.raises(SecretsPipeError):
        pipe.deliver()


def test_the_ca_file_is_handed_over_as_the_container_sees_it(tmp_path: Path) -> None:
    settings = sample_settings(tmp_path)
    settings = Settings(**{**{n: getattr(settings, n) for n in settings.field_names()},
                           "ca_file": tmp_path / "host-ca.pem"})  # fmt: skip
    inside = Path("/etc/auto-review/ca.pem")
    values = settings_document(settings, state_dir=Path("/s"), ca_file=inside)["settings"]
    assert values["ca_file"] == str(inside)
    unchanged = settings_document(settings, state_dir=Path("/s"))["settings"]
    assert unchanged["ca_file"] == str(tmp_path / "host-ca.pem")
