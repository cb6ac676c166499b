"""The intermediate's own join of a v1 cgroup fails closed with a step error."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from auto_review.oci.container_init import join_cgroup_v1
from auto_review.oci.errors import StepError


def test_a_missing_tasks_file_is_a_cgroup_step_error(tmp_path: Path) -> None:
    missing = tmp_path / "gone" / "tasks"
    with pytest.raises(StepError) as caught:
        join_cgroup_v1(str(missing))
    assert (caught.value.step, caught.value.errno, caught.value.path) == (
        "cgroup", errno.ENOENT, str(missing))


def test_a_tasks_file_refusing_the_write_is_a_cgroup_step_error(tmp_path: Path) -> None:
    # a directory cannot be opened for writing: EISDIR, reported, never ignored
    with pytest.raises(StepError) as caught:
        join_cgroup_v1(str(tmp_path))
    assert (caught.value.step, caught.value.errno) == ("cgroup", errno.EISDIR)
