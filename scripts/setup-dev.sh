#!/usr/bin/env bash
# Installs everything auto-review and its test suite need on a fresh Debian machine.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
if [ "$(id -u)" = 0 ]; then
  apt-get update -q
  # git: hermetic clones; runc/crun: OCI conformance; libseccomp2: seccomp filters;
  # passwd: useradd for rootless tests; util-linux: unshare; iproute2: ip.
  apt-get install -y -q --no-install-recommends \
    git runc crun libseccomp2 passwd util-linux iproute2 python3 ca-certificates >/dev/null
fi
python3 -m pip install -q --disable-pip-version-check -e '.[dev]'
# Byte-compile the package as a regular (non-editable) install would: the CLI's start-up
# time matters for `auto-review oci run`, and PYTHONDONTWRITEBYTECODE may be set.
python3 -m compileall -q src >/dev/null
