#!/bin/sh
# auto-review @VERSION@ for Linux, one file: this POSIX shell script, then (from byte
# @OFFSET@) a gzip-compressed tar of the program (PyInstaller's one-directory build). The
# script unpacks it once into a private cache directory, checks that directory and the
# directories above it on every start, and runs the program from it. Anything unsafe or
# unusable stops it with one line naming the path (exit 2). docs/RELEASE.md ("The unpack
# cache") and docs/THREAT-MODEL.md ("The unpack cache", row 23) explain every step.
# Host tools: sh, id, find, ls, mkdir, mktemp, mv, rm, tail, sha256sum, gzip, tar.
# Made by scripts/single_file.py; the values below were written at build time.
set -eu
umask 077
ar_entry_name='@ENTRY@'
ar_sha256='@SHA256@'
ar_offset=@OFFSET@

ar_fail() {
  printf 'auto-review: %s\n' "$*" >&2
  exit 2
}

ar_uid=$(id -u)
case $0 in
  /*) ar_self=$0 ;;
  *) ar_self=$(pwd -P)/$0 ;;
esac

# Where: AR_UNPACK_CACHE, else the XDG cache directory, else ~/.cache; no fallback.
if [ -n "${AR_UNPACK_CACHE:-}" ]; then
  ar_root=$AR_UNPACK_CACHE
elif [ -n "${XDG_CACHE_HOME:-}" ] && [ "${XDG_CACHE_HOME#/}" != "$XDG_CACHE_HOME" ]; then
  ar_root=$XDG_CACHE_HOME/auto-review
elif [ -n "${HOME:-}" ]; then
  ar_root=$HOME/.cache/auto-review
else
  ar_fail "no unpack cache: HOME is not set; set AR_UNPACK_CACHE to a directory of this" \
    "user's (docs/RELEASE.md)"
fi
case $ar_root in
  /*) ;;
  *) ar_fail "unpack cache $ar_root is not an absolute path" ;;
esac

# Why a directory fails its check, for the one line (only on the failure path). $1: the
# path; $2: "own" (this user's, nobody else writes it) or "above" (this user's or root's,
# others write it only when sticky).
ar_why() {
  if [ -L "$1" ]; then echo "is a symbolic link, not a directory"; return; fi
  if [ ! -d "$1" ]; then echo "is not a directory"; return; fi
  set -f
  # shellcheck disable=SC2046  # the fields of ls -ldn: mode, links, uid, ...
  set -- "$1" "$2" $(ls -ldn -- "$1")
  set +f
  case $2 in
    own)
      if [ "$5" != "$ar_uid" ]; then echo "is owned by uid $5, not $ar_uid"; return; fi
      case $3 in ?????w* | ????????w*) echo "is writable by group or others ($3)"; return ;; esac
      ;;
    above)
      if [ "$5" != "$ar_uid" ] && [ "$5" != 0 ]; then
        echo "is owned by uid $5 (neither this user nor root)"; return
      fi
      case $3 in
        ?????????[tT]*) ;;
        ?????w* | ????????w*) echo "can be written by group or others without the sticky" \
          "bit ($3)"; return ;;
      esac
      ;;
  esac
  echo "could not be checked"
}

# Each path: a real directory of this user's that nobody else can write (one find).
ar_check_own() {
  ar_bad=$(find "$@" -prune ! \( -type d -user "$ar_uid" ! -perm -020 ! -perm -002 \) \
    -print 2>/dev/null) || ar_bad=failed
  [ -z "$ar_bad" ] && return
  for ar_path in "$@"; do
    ar_reason=$(ar_why "$ar_path" own)
    [ "$ar_reason" = "could not be checked" ] || ar_fail "unpack cache $ar_path $ar_reason"
  done
  ar_fail "unpack cache $1 could not be checked"
}

# Every directory above $1 up to /: this user's or root's, and not writable by others
# unless sticky (/tmp), so nobody else can rename the cache away and put theirs there.
ar_check_above() {
  ar_below=$1
  ar_path=$1
  set --
  while :; do
    ar_path=${ar_path%/*}
    set -- "$@" "${ar_path:-/}"
    [ -n "$ar_path" ] || break
  done
  ar_bad=$(find "$@" -prune ! \( -type d \( -user "$ar_uid" -o -user 0 \) \
    \( -perm -1000 -o \( ! -perm -020 ! -perm -002 \) \) \) -print 2>/dev/null) || ar_bad=failed
  [ -z "$ar_bad" ] && return
  for ar_path in "$@"; do
    ar_reason=$(ar_why "$ar_path" above)
    [ "$ar_reason" = "could not be checked" ] || ar_fail "unpack cache $ar_below is in" \
      "$ar_path, which $ar_reason"
  done
  ar_fail "unpack cache $ar_below: the directories above it could not be checked"
}

# Fills the entry: the payload's hash checked first, unpacked into a private temporary
# directory beside it, the hash written last, then renamed into place in one step. A start
# that loses a race to fill it uses the winner's entry; a crash leaves only a .fill.* directory
# that is never used (removed by a later fill once a day old).
ar_fill() {
  exec 8<"$ar_self" 9<"$ar_self"
  for ar_path in "$ar_phys"/.fill.*; do
    [ ! -d "$ar_path" ] || find "$ar_path" -prune -mtime +0 -exec rm -rf {} + 2>/dev/null || :
  done
  ar_tmp=$(mktemp -d "$ar_phys/.fill.XXXXXXXXXX") ||
    ar_fail "unpack cache $ar_phys: cannot make a temporary directory in it"
  trap 'rm -rf "$ar_tmp"' EXIT
  trap 'exit 129' HUP
  trap 'exit 130' INT
  trap 'exit 143' TERM
  ar_found=$(tail -c +"$ar_offset" <&8 | sha256sum) || ar_found=
  if [ "${ar_found%% *}" != "$ar_sha256" ]; then
    ar_fail "$ar_self is damaged: its payload does not have the sha256 it was built with"
  fi
  tail -c +"$ar_offset" <&9 | gzip -dc | tar -xf - -C "$ar_tmp" 2>/dev/null ||
    ar_fail "unpack cache $ar_phys: could not unpack $ar_self into it (disk full?)"
  exec 8<&- 9<&-
  printf '%s\n' "$ar_sha256" >"$ar_tmp/.payload-sha256"
  # mv onto an entry another start made meanwhile puts this one inside it (or fails).
  mv "$ar_tmp" "$ar_entry" 2>/dev/null || :
  rm -rf "$ar_entry/${ar_tmp##*/}" "$ar_tmp"
  trap - EXIT HUP INT TERM
}

if [ ! -e "$ar_root" ] && [ ! -L "$ar_root" ]; then
  ar_error=$(mkdir -p -- "$ar_root" 2>&1) ||
    ar_fail "cannot create the unpack cache $ar_root (${ar_error##*: }); set" \
      "AR_UNPACK_CACHE to a directory of this user's (docs/RELEASE.md)"
fi
if ! ar_phys=$(cd -P -- "$ar_root" 2>/dev/null && pwd -P); then
  ar_check_own "$ar_root"
  ar_fail "unpack cache $ar_root cannot be entered"
fi
ar_check_above "$ar_phys"
ar_entry=$ar_phys/$ar_entry_name
if [ ! -e "$ar_entry" ] && [ ! -L "$ar_entry" ]; then
  ar_check_own "$ar_root"
  ar_fill
fi
ar_check_own "$ar_root" "$ar_entry"
ar_mark=
{ IFS= read -r ar_mark <"$ar_entry/.payload-sha256"; } 2>/dev/null || :
if [ "$ar_mark" != "$ar_sha256" ]; then
  ar_fail "unpack cache entry $ar_entry is incomplete or not this file's (its" \
    ".payload-sha256 is not $ar_sha256): remove it"
fi
AUTO_REVIEW_SINGLE_FILE=$ar_self
export AUTO_REVIEW_SINGLE_FILE
exec "$ar_entry/auto-review" "$@"
exit 2
