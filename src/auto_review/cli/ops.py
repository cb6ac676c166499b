"""`auto-review ops`: diagnostics.

``ops doctor``  one [ok]/[warn]/[fail] line per check: the settings, the env file, the
                secrets, the state directory, git, the forge token and what it reaches,
                the LLM and its models, the isolation decision and what the host offers
                the container boundary, and (with --gateway-url) the posture the running
                gateway verified from inside. Exit 1 when any check fails.
``ops status``  a running gateway's /readyz and /info in a few lines.
``ops migrate`` bring the state database's schema (SQLite in the state directory, or
                PostgreSQL with AR_DATABASE_URL) to this release's version now.
``ops migrate-state --from-sqlite DIR [--into-non-empty]``  copy a SQLite state
                directory's review history, learnings and pending jobs into the
                PostgreSQL database of AR_DATABASE_URL (refused when it holds state).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from typing import Any

from auto_review.cli.parsing import ArgumentParser
from auto_review.cli.settings_args import (
    DATABASE_SETTINGS,
    DOCTOR_SETTINGS,
    add_settings_arguments,
    flag_names_of,
    flags_from_namespace,
)
from auto_review.config import SECRET_FIELDS, Settings, SettingsError, load_settings
from auto_review.isolation.decision import IsolationMode, IsolationRefused, decide_isolation
from auto_review.wiring.checks import FAIL, OK, WARN, Check
from auto_review.wiring.redaction import install_secrets, redact

EXIT_OK = 0
EXIT_PROBLEM = 1
EXIT_USAGE = 2
HTTP_TIMEOUT = 5.0


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="auto-review ops", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    doctor = commands.add_parser(
        "doctor", help="check settings, forge, LLM, host and the live posture"
    )
    doctor.add_argument(
        "--gateway-url",
        metavar="URL",
        help="also fetch the running gateway's posture from URL/info [default: none]",
    )
    doctor.add_argument("--json", action="store_true", help="one JSON document [default: text]")
    add_settings_arguments(doctor, DOCTOR_SETTINGS)
    status = commands.add_parser("status", help="a running gateway's readiness and posture")
    status.add_argument(
        "--gateway-url", required=True, metavar="URL", help="the gateway's base URL (required)"
    )
    status.add_argument("--json", action="store_true", help="one JSON document [default: text]")
    migrate = commands.add_parser(
        "migrate", help="apply the state database's schema migrations now"
    )
    add_settings_arguments(migrate, DATABASE_SETTINGS)
    copy = commands.add_parser(
        "migrate-state", help="copy a SQLite state directory into the PostgreSQL database"
    )
    copy.add_argument(
        "--from-sqlite",
        required=True,
        metavar="DIR",
        help="the state directory to copy from, read-only (required)",
    )
    copy.add_argument(
        "--into-non-empty",
        action="store_true",
        help="copy even when the database already holds state, nothing twice [default: refuse]",
    )
    add_settings_arguments(copy, DATABASE_SETTINGS)
    return parser


def fetch_json(base_url: str, path: str) -> tuple[int, Any]:
    import httpx

    with httpx.Client(base_url=base_url, timeout=HTTP_TIMEOUT, trust_env=False) as client:
        response = client.get(path)
    try:
        return response.status_code, response.json()
    except ValueError:
        return response.status_code, None


def doctor(namespace: argparse.Namespace) -> int:
    """Every check, one ``[ok]``/``[warn]``/``[fail]`` line each; exit 1 on any failure."""
    checks: list[Check] = []
    report: dict[str, Any] = {}
    warnings: list[str] = []
    try:
        settings: Settings | None = load_settings(
            flags_from_namespace(namespace),
            env_file=namespace.env_file,
            flag_names=flag_names_of(namespace),
            allow_insecure_env_file=namespace.allow_insecure_env_file,
            warn=warnings.append,
        )
    except SettingsError as exc:
        settings = None
        checks += [Check("settings", FAIL, redact(line)) for line in exc.problems]
    if settings is not None:
        install_secrets(settings.secret_values())
        checks.append(Check("settings", OK, "every setting is well-formed"))
    checks.append(env_file_check(namespace, settings, warnings))
    if settings is not None:
        from auto_review.wiring.checks import (
            database_check,
            remote_checks,
            secrets_check,
            state_dir_check,
        )

        checks += [secrets_check(settings), state_dir_check(settings.state_dir)]
        database = database_check(settings)
        if database is not None:
            checks.append(database)
        checks.append(git_check())
        checks += asyncio.run(remote_checks(settings))
        checks += isolation_checks(settings, report)
    else:
        checks.append(git_check())
    if namespace.gateway_url:
        checks += posture_checks(namespace.gateway_url, report)
    report["checks"] = [
        {"name": c.name, "level": c.level, "detail": c.detail} for c in checks
    ]
    failed = sum(c.level == FAIL for c in checks)
    if namespace.json:
        print(json.dumps(report, indent=2, sort_keys=True))
    else:
        for check in checks:
            print(f"[{check.level}] {check.name}: {check.detail}")
        warned = sum(c.level == WARN for c in checks)
        print(f"{len(checks) - failed - warned} ok, {warned} warn, {failed} fail")
    return EXIT_PROBLEM if failed else EXIT_OK


def env_file_check(
    namespace: argparse.Namespace, settings: Settings | None, warnings: list[str]
) -> Check:
    path = namespace.env_file
    if path is None:
        in_env = sorted(
            key for key in os.environ if key.startswith("AR_") and key[3:].lower() in SECRET_FIELDS
        )
        if in_env:
            return Check("env-file", WARN, f"{', '.join(in_env)} given in the environment: "
                         "put secrets in an env file (0600) and pass --env-file")  # fmt: skip
        return Check("env-file", OK, "none given, and no secret in the environment")
    try:
        mode = path.stat().st_mode & 0o777
    except OSError as exc:
        return Check("env-file", FAIL, f"{path}: {exc.strerror}")
    if warnings:
        return Check("env-file", WARN, f"{path} (mode {mode:04o}) is readable or writable by "
                     "others; accepted only because of --allow-insecure-env-file")  # fmt: skip
    if settings is None and mode & 0o066:
        return Check("env-file", FAIL, f"{path} (mode {mode:04o}): see the settings lines")
    return Check("env-file", OK, f"{path} (mode {mode:04o}, owner uid {path.stat().st_uid})")


def git_check() -> Check:
    from auto_review.wiring.checks import git_check as check

    return check()


def isolation_checks(settings: Settings, report: dict[str, Any]) -> list[Check]:
    """The isolation decision for these settings and, for the container boundary, what
    the host kernel offers it."""
    checks: list[Check] = []
    try:
        decision = decide_isolation(
            sys.platform, settings.gateway_bare, settings.gateway_external_isolation
        )
    except IsolationRefused as exc:
        report["decision"] = {"mode": "refuse", "reason": str(exc)}
        return [Check("isolation", FAIL, str(exc))]
    report["decision"] = {"mode": str(decision.mode), "reason": decision.reason}
    if decision.mode is IsolationMode.BARE:
        checks.append(Check("isolation", WARN, f"bare: {decision.reason}; WARNING: bare mode "
                            "runs the gateway with no container boundary"))  # fmt: skip
    elif decision.mode is IsolationMode.EXTERNAL:
        checks.append(Check("isolation", WARN, f"external: {decision.reason} (not verified "
                            "by auto-review)"))  # fmt: skip
    else:
        checks.append(Check("isolation", OK, f"{decision.mode}: {decision.reason}"))
        from auto_review.isolation.outer.host_probe import host_checks

        found = host_checks(settings.oci_runtime)
        report["host_checks"] = {
            check.name: {"ok": check.ok, "detail": check.detail, "mandatory": check.mandatory}
            for check in found
        }
        required = set(settings.isolation_require)
        for check in found:
            needed = check.mandatory or check.name in required
            level = OK if check.ok else (FAIL if needed else WARN)
            checks.append(Check(check.name, level, check.detail))
    return checks


def posture_checks(gateway_url: str, report: dict[str, Any]) -> list[Check]:
    """The posture the running gateway verified from inside, as ``/info`` reports it."""
    try:
        _, info = fetch_json(gateway_url, "/info")
    except Exception as exc:  # any transport failure is one line, not a traceback
        report["gateway_posture"] = {"error": f"cannot fetch /info: {type(exc).__name__}"}
        return [Check("gateway", FAIL, f"cannot fetch {gateway_url}/info: {type(exc).__name__}")]
    posture = (info or {}).get("runtime_isolation") or (info or {}).get("isolation") or {}
    report["gateway_posture"] = posture
    verified = bool(posture.get("verified"))
    runtime = posture.get("runtime") or ""
    words = f"mode {posture.get('mode')} {runtime}".rstrip()
    checks = [
        Check("gateway", OK if verified else FAIL,
              f"{words} {'verified' if verified else 'NOT verified'}"
              + (f"; {posture['warning']}" if posture.get("warning") else ""))
    ]  # fmt: skip
    degraded = posture.get("degraded") or []
    for name, check in (posture.get("checks") or {}).items():
        level = OK if check.get("ok") else (WARN if name in degraded else FAIL)
        checks.append(Check(name, level, str(check.get("detail"))))
    return checks


def status(namespace: argparse.Namespace) -> int:
    try:
        ready_status, ready = fetch_json(namespace.gateway_url, "/readyz")
        _, info = fetch_json(namespace.gateway_url, "/info")
    except Exception as exc:  # any transport failure is one line, not a traceback
        print(f"auto-review ops status: cannot reach the gateway: {type(exc).__name__}")
        return EXIT_PROBLEM
    info = info or {}
    posture = info.get("runtime_isolation") or info.get("isolation") or {}
    summary = {
        "version": info.get("version"),
        "ready": ready_status == 200,
        "readiness": (ready or {}).get("checks", {}),
        "isolation": {
            "mode": posture.get("mode"),
            "runtime": posture.get("runtime"),
            "verified": posture.get("verified"),
            "degraded": posture.get("degraded", []),
        },
        "review_pipeline": info.get("review_pipeline"),
        "jobs": info.get("jobs"),
    }
    if namespace.json:
        print(json.dumps(summary, indent=2, sort_keys=True))
    else:
        print(f"auto-review {summary['version']}: {'ready' if summary['ready'] else 'NOT ready'}")
        for name, word in summary["readiness"].items():
            print(f"  {name}: {word}")
        iso = summary["isolation"]
        verified = "verified" if iso["verified"] else "not verified"
        print(f"isolation: {iso['mode']} {iso['runtime'] or ''} {verified}".replace("  ", " "))
        if iso["degraded"]:
            print(f"  degraded: {', '.join(iso['degraded'])}")
        if summary["review_pipeline"]:
            print(f"review pipeline: {summary['review_pipeline']}")
        for line in job_lines(summary["jobs"]):
            print(line)
    return EXIT_OK if summary["ready"] else EXIT_PROBLEM


def job_lines(jobs: Any) -> list[str]:
    """The queue as /info reports it, in a few lines (nothing when the gateway does not
    report it)."""
    if jobs == "unavailable":
        return ["jobs: unavailable (the state store did not answer)"]
    if not isinstance(jobs, dict):
        return []
    by_state = jobs.get("by_state") or {}
    lines = [
        "jobs: " + ", ".join(f"{state} {count}" for state, count in by_state.items())
        + f"; oldest waiting {jobs.get('oldest_waiting_seconds', 0):.0f}s"
    ]
    ages = jobs.get("oldest_waiting_by_lane") or {}
    for kind, states in (jobs.get("queue_by_lane") or {}).items():
        counts = ", ".join(f"{state} {count}" for state, count in states.items())
        lines.append(f"  {kind}: {counts}; oldest waiting {ages.get(kind, 0):.0f}s")
    return lines


def main(argv: list[str]) -> int:
    namespace = build_parser().parse_args(argv)
    if namespace.command == "doctor":
        return doctor(namespace)
    if namespace.command == "migrate":
        return migrate(namespace)
    if namespace.command == "migrate-state":
        return migrate_state(namespace)
    return status(namespace)


def migrate_state(namespace: argparse.Namespace) -> int:
    """Copy the SQLite state; one line saying what was copied."""
    from pathlib import Path

    from auto_review.cli.settings_args import print_settings_error, settings_from_namespace
    from auto_review.store.base import StoreError
    from auto_review.wiring.stores import DatabaseSettingsError, copy_sqlite_state

    prefix = "auto-review ops migrate-state"
    try:
        settings = settings_from_namespace(namespace)
    except SettingsError as exc:
        print_settings_error(prefix, exc)
        return EXIT_USAGE
    install_secrets(settings.secret_values())
    try:
        report = copy_sqlite_state(
            settings, Path(namespace.from_sqlite), into_non_empty=namespace.into_non_empty
        )
    except DatabaseSettingsError as exc:
        print(f"{prefix}: {redact(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    except StoreError as exc:
        print(f"{prefix}: {redact(str(exc))}", file=sys.stderr)
        return EXIT_PROBLEM
    print(
        f"copied {report.reviews} reviews, {report.findings} posted findings, "
        f"{report.learnings} learnings and {report.jobs} pending jobs"
    )
    return EXIT_OK


def migrate(namespace: argparse.Namespace) -> int:
    """Apply the missing migrations; one line saying where and from which version."""
    from auto_review.cli.settings_args import print_settings_error, settings_from_namespace
    from auto_review.store.base import StoreError
    from auto_review.wiring.stores import migrate_schema

    try:
        settings = settings_from_namespace(namespace)
    except SettingsError as exc:
        print_settings_error("auto-review ops migrate", exc)
        return EXIT_USAGE
    install_secrets(settings.secret_values())
    try:
        report = migrate_schema(settings)
    except StoreError as exc:
        print(f"auto-review ops migrate: {redact(str(exc))}", file=sys.stderr)
        return EXIT_PROBLEM
    if report.before == report.after:
        print(f"{report.where}: schema at version {report.after}, nothing to apply")
    else:
        print(f"{report.where}: schema migrated from version {report.before} to {report.after}")
    return EXIT_OK
