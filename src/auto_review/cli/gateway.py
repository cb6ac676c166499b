"""`auto-review gateway`: start the webhook gateway and chat poller service; and the same
start-up for `auto-review worker` (cli/worker.py), which runs the queued jobs only."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable

from auto_review.cli.parsing import ArgumentParser
from auto_review.cli.settings_args import (
    add_settings_arguments,
    flag_names_of,
    print_settings_error,
    settings_from_namespace,
)
from auto_review.config import Settings, SettingsError, gateway_warnings, validate_for_gateway
from auto_review.core.logs import configure_logging
from auto_review.core.posture import BARE_WARNING, bare_posture, external_posture
from auto_review.gateway.roles import ProcessRole
from auto_review.isolation.decision import IsolationMode, IsolationRefused, decide_isolation
from auto_review.wiring.redaction import install_secrets, redact

EXIT_CONFIG = 2
EXIT_ISOLATION = 3

log = logging.getLogger("auto_review.gateway")


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="auto-review gateway",
        description="Run the webhook gateway and chat poller. By default it runs inside the "
        "embedded OCI container boundary; --bare is the explicit opt-out. Every problem with "
        "the settings is listed at once, one line each, and stops start-up with status 2.",
        epilog="Needs a forge: AR_FORGEJO_URL, AR_FORGEJO_TOKEN and AR_WEBHOOK_SECRET, or "
        "AR_GITHUB_APP_ID, AR_GITHUB_APP_PRIVATE_KEY and AR_GITHUB_WEBHOOK_SECRET. "
        "`auto-review secrets generate` makes the webhook secret and the CI token.",
    )
    add_settings_arguments(parser)
    return parser


def fail(message: str, status: int, role: ProcessRole = ProcessRole.GATEWAY) -> int:
    print(f"auto-review {role}: {redact(message)}", file=sys.stderr)
    return status


def main(argv: list[str]) -> int:
    return start(build_parser().parse_args(argv), ProcessRole.GATEWAY)


def start(
    namespace: argparse.Namespace,
    role: ProcessRole,
    extra_checks: Callable[[Settings], None] = lambda settings: None,
) -> int:
    """Settings, isolation decision and launch, shared by `gateway` and `worker`.
    ``extra_checks`` raises SettingsError for what only this command requires."""
    prefix = f"auto-review {role}"
    try:
        settings = settings_from_namespace(namespace)
        validate_for_gateway(settings, flag_names_of(namespace), intake=role.takes_intake)
        extra_checks(settings)
    except SettingsError as exc:
        print_settings_error(prefix, exc)
        return EXIT_CONFIG
    install_secrets(settings.secret_values())
    for warning in gateway_warnings(settings):
        print(f"{prefix}: {warning}", file=sys.stderr)
    from auto_review.isolation.secrets_pipe import scrub_secret_environment

    environment_scrubbed = scrub_secret_environment()
    try:
        decision = decide_isolation(
            sys.platform, settings.gateway_bare, settings.gateway_external_isolation
        )
    except IsolationRefused as exc:
        return fail(str(exc), EXIT_ISOLATION, role)
    if not environment_scrubbed:
        print(
            f"{prefix}: warning: secrets given as environment variables stay "
            "visible in /proc/PID/environ of this process; prefer --env-file",
            file=sys.stderr,
        )
    if decision.mode is IsolationMode.OCI:
        return run_isolated(settings, role)
    return run_in_process(settings, decision.mode, role)


def run_isolated(settings: Settings, role: ProcessRole = ProcessRole.GATEWAY) -> int:
    """The outer launcher: the gateway runs inside the OCI container boundary."""
    from auto_review.isolation.outer.launcher import LaunchError, LaunchOptions, launch

    redactor = install_secrets(settings.secret_values())

    configure_logging(settings.log_format, settings.log_level, redactor)
    try:
        return launch(
            settings,
            LaunchOptions(
                oci_runtime=settings.oci_runtime,
                required_controls=tuple(settings.isolation_require),
                role=str(role),
            ),
        )
    except LaunchError as exc:
        # Never a fallback to bare: the operator opts out explicitly or nothing runs.
        return fail(
            f"{exc}; refusing to start without the container boundary", EXIT_ISOLATION, role
        )


def run_in_process(
    settings: Settings, mode: IsolationMode, role: ProcessRole = ProcessRole.GATEWAY
) -> int:
    """Serve in this process (bare, or inside an operator's container): no launcher."""
    if mode is IsolationMode.BARE:
        print(BARE_WARNING, file=sys.stderr, flush=True)
    redactor = install_secrets(settings.secret_values())
    configure_logging(settings.log_format, settings.log_level, redactor)
    posture = bare_posture() if mode is IsolationMode.BARE else external_posture()
    if mode is IsolationMode.BARE:
        log.warning(
            "running in BARE mode: no container boundary is active", extra={"posture": posture}
        )
    from auto_review.gateway.service import serve

    return serve(settings, posture=posture, role=role)
