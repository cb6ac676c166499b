"""`auto-review worker`: run the queued review jobs of a shared PostgreSQL queue, and no
intake (no webhook, CI trigger or chat poller). Same settings, isolation default and
start-up as `auto-review gateway`; its HTTP listener (AR_GATEWAY_BIND) answers only
/healthz, /readyz, /version, /info and /metrics, for probes and scraping."""

from __future__ import annotations

import argparse

from auto_review.cli.gateway import start
from auto_review.cli.parsing import ArgumentParser
from auto_review.cli.settings_args import add_settings_arguments
from auto_review.config import Settings, SettingsError
from auto_review.gateway.roles import ProcessRole


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="auto-review worker",
        description="Run review workers on the job queue in PostgreSQL (AR_DATABASE_URL), "
        "with no intake: gateways (`auto-review gateway`, e.g. with --workers 0) accept the "
        "webhooks. Its HTTP listener serves only health, readiness, /info and /metrics. By "
        "default it runs inside the embedded OCI container boundary, like the gateway; "
        "--bare is the explicit opt-out.",
        epilog="Needs AR_DATABASE_URL, an LLM (AR_LLM_BASE_URL, AR_LLM_REASONING_MODEL), "
        "AR_WORKERS of at least 1 and the forge settings the gateway needs (it posts the "
        "reviews).",
    )
    add_settings_arguments(parser)
    return parser


def worker_checks(settings: Settings) -> None:
    issues: list[tuple[str, str]] = []
    if settings.database_url is None:
        issues.append(
            (
                "database_url",
                "is required by auto-review worker: with SQLite the gateway's own workers "
                "run the jobs (a second process cannot share its state directory)",
            )
        )
    if settings.workers == 0:
        issues.append(("workers", "is 0, but auto-review worker exists to run jobs"))
    if not (settings.llm_base_url and settings.llm_reasoning_model):
        issues.append(
            (
                "llm_base_url",
                "and AR_LLM_REASONING_MODEL are required by auto-review worker "
                "(it runs the reviews)",
            )
        )
    if issues:
        raise SettingsError.many(issues)


def main(argv: list[str]) -> int:
    return start(build_parser().parse_args(argv), ProcessRole.WORKER, worker_checks)
