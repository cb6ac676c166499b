"""`auto-review ops`: diagnostics.

``ops doctor``  the isolation decision for these settings, what the host offers the
                container boundary, and (with --gateway-url) the posture the running
                gateway verified from inside.
``ops status``  a running gateway's /readyz and /info in a few lines.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from auto_review.cli.parsing import ArgumentParser
from auto_review.cli.settings_args import (
    DOCTOR_SETTINGS,
    add_settings_arguments,
    print_settings_error,
    settings_from_namespace,
)
from auto_review.config import SettingsError
from auto_review.isolation.decision import IsolationMode, IsolationRefused, decide_isolation
from auto_review.wiring.redaction import install_secrets

EXIT_OK = 0
EXIT_PROBLEM = 1
EXIT_USAGE = 2
HTTP_TIMEOUT = 5.0


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="auto-review ops", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    doctor = commands.add_parser("doctor", help="isolation decision, host checks, live posture")
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
    report: dict[str, Any] = {}
    problem = False
    try:
        settings = settings_from_namespace(namespace)
        install_secrets(settings.secret_values())
    except SettingsError as exc:
        print_settings_error("auto-review ops doctor", exc)
        return EXIT_USAGE
    try:
        decision = decide_isolation(
            sys.platform, settings.gateway_bare, settings.gateway_external_isolation
        )
        report["decision"] = {"mode": str(decision.mode), "reason": decision.reason}
    except IsolationRefused as exc:
        report["decision"] = {"mode": "refuse", "reason": str(exc)}
        problem = True
        decision = None
    if decision is not None and decision.mode is IsolationMode.OCI:
        from auto_review.isolation.outer.host_probe import host_checks

        checks = host_checks(settings.oci_runtime)
        report["host_checks"] = {
            check.name: {"ok": check.ok, "detail": check.detail, "mandatory": check.mandatory}
            for check in checks
        }
        problem |= any(check.mandatory and not check.ok for check in checks)
    if namespace.gateway_url:
        try:
            _, info = fetch_json(namespace.gateway_url, "/info")
            posture = (info or {}).get("runtime_isolation") or (info or {}).get("isolation")
            report["gateway_posture"] = posture
            problem |= not (posture or {}).get("verified", False)
        except Exception as exc:  # any transport failure is one line, not a traceback
            report["gateway_posture"] = {"error": f"cannot fetch /info: {type(exc).__name__}"}
            problem = True
    if namespace.json:
        print(json.dumps(report, indent=2, sort_keys=True))
    else:
        print_doctor(report)
    return EXIT_PROBLEM if problem else EXIT_OK


def print_doctor(report: dict[str, Any]) -> None:
    decision = report["decision"]
    print(f"isolation decision: {decision['mode']} ({decision['reason']})")
    if decision["mode"] == "bare":
        print("WARNING: bare mode runs the gateway with no container boundary")
    for name, check in report.get("host_checks", {}).items():
        mark = "ok  " if check["ok"] else ("FAIL" if check["mandatory"] else "warn")
        print(f"  [{mark}] {name}: {check['detail']}")
    if "gateway_posture" in report:
        posture = report["gateway_posture"] or {}
        if "error" in posture:
            print(f"running gateway: {posture['error']}")
            return
        verified = "verified" if posture.get("verified") else "NOT verified"
        runtime = posture.get("runtime", "")
        print(f"running gateway: mode {posture.get('mode')} {runtime} {verified}".rstrip())
        for name, check in (posture.get("checks") or {}).items():
            degraded = name in (posture.get("degraded") or [])
            mark = "ok  " if check.get("ok") else ("warn" if degraded else "FAIL")
            print(f"  [{mark}] {name}: {check.get('detail')}")
        if posture.get("warning"):
            print(f"  {posture['warning']}")


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
    return EXIT_OK if summary["ready"] else EXIT_PROBLEM


def main(argv: list[str]) -> int:
    namespace = build_parser().parse_args(argv)
    if namespace.command == "doctor":
        return doctor(namespace)
    return status(namespace)
