"""scripts/wheelhouse.py without the network: what it accepts in a wheelhouse, and when it
reuses one instead of fetching. Filling it from the index is run by the tool-install tests
(tests/integration/deploy/test_tool_install.py) and by .ci/run."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from scripts.wheelhouse import WheelhouseError, check_files, complete, ensure, stamp_name

GOOD = b"a locked wheel"


def lock_file(tmp_path: Path) -> Path:
    digest = hashlib.sha256(GOOD).hexdigest()
    lock = tmp_path / "release.lock"
    lock.write_text(f"demo==1.0 \\\n    --hash=sha256:{digest}\n    # via -r pyproject.toml\n")
    return lock


def test_every_wheel_must_have_a_hash_the_lock_allows(tmp_path: Path) -> None:
    lock = lock_file(tmp_path)
    house = tmp_path / "house"
    house.mkdir()
    (house / "demo-1.0-py3-none-any.whl").write_bytes(GOOD)
    assert check_files(house, lock) == 1
    (house / "other-2.0-py3-none-any.whl").write_bytes(b"something else")
    with pytest.raises(WheelhouseError, match=r"other-2\.0-py3-none-any\.whl has a sha256"):
        check_files(house, lock)


def test_an_empty_wheelhouse_is_refused(tmp_path: Path) -> None:
    house = tmp_path / "house"
    house.mkdir()
    with pytest.raises(WheelhouseError, match="holds no wheel"):
        check_files(house, lock_file(tmp_path))


def test_a_complete_stamp_is_reused_without_fetching(tmp_path: Path) -> None:
    lock = lock_file(tmp_path)
    house = tmp_path / "house"
    house.mkdir()
    (house / "demo-1.0-py3-none-any.whl").write_bytes(GOOD)
    stamp = house / stamp_name(lock, "3.11")
    stamp.write_text("demo-1.0-py3-none-any.whl\n")
    assert complete(stamp)
    # A stand-in interpreter that says 3.11: with the stamp complete, nothing is fetched.
    python = tmp_path / "python"
    python.write_text("#!/bin/sh\necho 3.11\n")
    python.chmod(0o755)
    assert ensure(house, lock, str(python)) == house
    # A listed wheel gone: the stamp no longer counts.
    (house / "demo-1.0-py3-none-any.whl").unlink()
    assert not complete(stamp)
