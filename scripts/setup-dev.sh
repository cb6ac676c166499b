#!/usr/bin/env bash
# Sets up a development environment from a clone, on Debian:
#   - as root, the Debian packages the program and its tests use, installed only when one is
#     missing (dpkg-query first: no `apt-get update` when everything is there already);
#   - a virtual environment in .venv (ignored by git) holding auto-review, editable, and the
#     dev tools, installed from requirements/dev.lock, every file checked against its sha256.
# The system's Python is left alone. Run it again at will: it only installs what changed.
set -euo pipefail
cd "$(dirname "$0")/.."
# The rootless tests run as another user: what is installed here must stay readable.
umask 022
export DEBIAN_FRONTEND=noninteractive

# git: hermetic clones; runc/crun: OCI conformance; libseccomp2: seccomp filters;
# passwd: useradd for rootless tests; util-linux: unshare; iproute2: ip;
# python3-venv: the virtual environment below; prometheus: promtool checks the alert rules;
# systemd: systemd-analyze checks the unit; sqlite3: the backup test; curl: the CI snippets;
# postgresql: the server binaries the PostgreSQL store tests start a throwaway cluster with
# (tests/support/postgres.py), never the Debian-managed cluster; pipx: the tool-install test
# installs the wheel with it (uv, the other installer, comes from requirements/dev.lock).
debian_packages=(git runc crun libseccomp2 passwd util-linux iproute2 python3 python3-venv
                 ca-certificates prometheus systemd sqlite3 curl postgresql pipx)
missing=()
if command -v dpkg-query >/dev/null; then
  for package in "${debian_packages[@]}"; do
    status="$(dpkg-query -W -f='${db:Status-Status}' "$package" 2>/dev/null || true)"
    [ "$status" = installed ] || missing+=("$package")
  done
fi
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "setup-dev: installing Debian packages: ${missing[*]}"
    apt-get update -q
    # No service may start during the install (Debian's postgresql would start its own
    # cluster): policy-rc.d answering 101 is Debian's way to say so, removed right after.
    own_policy=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
      printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
      chmod 0755 /usr/sbin/policy-rc.d
      own_policy=yes
    fi
    status=0
    apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null || status=$?
    [ -z "$own_policy" ] || rm -f /usr/sbin/policy-rc.d
    [ "$status" = 0 ] || exit "$status"
    # Only promtool is wanted: where systemd runs, the package also starts a Prometheus server.
    if [[ " ${missing[*]} " == *" prometheus "* ]] && [ -d /run/systemd/system ]; then
      systemctl disable --now prometheus >/dev/null 2>&1 || true
    fi
    # Likewise only the binaries of postgresql: its own cluster must not start at boot.
    if [[ " ${missing[*]} " == *" postgresql "* ]] && [ -d /run/systemd/system ]; then
      systemctl disable --now postgresql >/dev/null 2>&1 || true
    fi
  else
    echo "setup-dev: warning: Debian packages missing (install them as root): ${missing[*]}" >&2
  fi
fi

python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
# --no-deps: the lock is complete; --no-build-isolation: setuptools and wheel come from the
# lock too, so building the editable install fetches nothing unchecked.
.venv/bin/python -m pip install -q --disable-pip-version-check --require-hashes --no-deps \
  -r requirements/dev.lock
.venv/bin/python -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation \
  -e .
# Byte-compile the package as a regular (non-editable) install would: the CLI's start-up
# time matters for `auto-review oci run`, and PYTHONDONTWRITEBYTECODE may be set.
.venv/bin/python -m compileall -q src >/dev/null
