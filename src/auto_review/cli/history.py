"""`auto-review history`: maintenance of the review history in the state directory.

``history reset-pr --repo [host:]OWNER/NAME --pr N``  forget one pull request's history: its
    next review is a full one (findings already on the PR are still recognised by the
    hidden markers in the bot's comments, so none is posted twice).
``history purge --older-than-days D``  forget the pull requests not reviewed for D days.
``history jobs [--state STATE] [--limit N]``  the newest jobs of the queue with their state
    (queued, waiting-retry, running, done, failed), attempts and last error.
``history retry JOB``  put a failed job, or one waiting for its next attempt, back in the
    queue now, with a fresh retry horizon.

``--repo`` without a host means Forgejo/Gitea (as in ``AR_POLL_REPOS``). The history is in
the PostgreSQL database of ``AR_DATABASE_URL`` when it is set (environment or
``--env-file``), else ``review.sqlite3`` in ``AR_STATE_DIR`` (or ``--state-dir``); these
commands may run while the gateway runs (SQLite WAL; PostgreSQL). The queue commands
(``jobs``, ``retry``) read the same database's job queue, else ``state.sqlite3``. A state
directory that does not exist is an error (a wrong ``AR_STATE_DIR`` most likely); one
without a review database yet has nothing to forget.
Exit status: 0 done, 1 no such job (or it is running or done), 2 bad usage or settings,
or no such state directory.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from auto_review.cli.parsing import ArgumentParser
from auto_review.cli.settings_args import add_settings_arguments, settings_from_namespace
from auto_review.config import Settings, SettingsError
from auto_review.store.base import JOB_STATES, JobStatus, ReviewHistoryStore, StoreError
from auto_review.store.review_rules import make_repo_key
from auto_review.store.sqlite_intake import STATE_FILE_NAME, SqliteIntakeStore
from auto_review.store.sqlite_review import REVIEW_FILE_NAME, ReviewStore
from auto_review.wiring.redaction import install_secrets, redact
from auto_review.wiring.stores import open_intake_store, open_review_store, uses_postgres

if TYPE_CHECKING:  # psycopg is imported only when AR_DATABASE_URL is set
    from auto_review.store.pg_intake import PostgresIntakeStore

EXIT_OK = 0
EXIT_NOT_FOUND = 1
EXIT_USAGE = 2
SECONDS_PER_DAY = 86400
Handler = Callable[[argparse.Namespace], int]


class CommandError(Exception):
    """A one-line problem for stderr; the command exits with EXIT_USAGE."""


def add_state_arguments(parser: argparse.ArgumentParser) -> None:
    """``--state-dir`` (and ``--env-file``): the only settings these commands read."""
    add_settings_arguments(parser, ["state_dir"])


def repo_key_argument(value: str) -> str:
    """``[host:]OWNER/NAME`` -> the store's ``host|owner/name`` key (argparse type)."""
    host, _, full_name = value.rpartition(":")
    owner, slash, name = full_name.partition("/")
    if not slash:
        raise argparse.ArgumentTypeError("must be [forgejo:|github:]OWNER/NAME")
    try:
        return make_repo_key(host or "forgejo", owner, name)
    except ValueError:
        raise argparse.ArgumentTypeError("must be [forgejo:|github:]OWNER/NAME") from None


def settings_of(namespace: argparse.Namespace) -> Settings:
    try:
        settings = settings_from_namespace(namespace)
    except SettingsError as exc:
        raise CommandError("\n".join(exc.problems)) from None
    install_secrets(settings.secret_values())
    return settings


def state_dir_of(namespace: argparse.Namespace) -> Path:
    return settings_of(namespace).state_dir


def open_existing_store(namespace: argparse.Namespace) -> ReviewHistoryStore | None:
    """The review store the settings select: the PostgreSQL database of AR_DATABASE_URL,
    else the state directory's; None when the state directory has none yet (nothing to
    show or forget, and no reason to create it)."""
    settings = settings_of(namespace)
    if uses_postgres(settings):
        try:
            return open_review_store(settings)
        except StoreError as exc:
            raise CommandError(redact(str(exc))) from None
    state_dir = settings.state_dir
    if not state_dir.is_dir():
        # Most likely a wrong AR_STATE_DIR or --state-dir: "forgot 0 reviews" would hide it.
        raise CommandError(
            f"state directory {state_dir} does not exist (check AR_STATE_DIR or --state-dir); "
            "nothing was changed"
        )
    path = state_dir / REVIEW_FILE_NAME
    if not path.exists():
        return None
    try:
        return ReviewStore.open(path)
    except StoreError as exc:
        raise CommandError(redact(str(exc))) from None


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="auto-review history", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    reset = commands.add_parser("reset-pr", help="forget one pull request's review history")
    reset.add_argument(
        "--repo",
        required=True,
        type=repo_key_argument,
        metavar="[HOST:]OWNER/NAME",
        help="the repository; HOST is forgejo (the default) or github (required)",
    )
    reset.add_argument(
        "--pr", required=True, type=_positive_int, metavar="N", help="the pull request (required)"
    )
    add_state_arguments(reset)
    purge = commands.add_parser("purge", help="forget pull requests not reviewed for D days")
    purge.add_argument(
        "--older-than-days",
        required=True,
        type=_days,
        metavar="D",
        help="forget pull requests not reviewed for D days (required)",
    )
    add_state_arguments(purge)
    jobs = commands.add_parser("jobs", help="list the queue's newest jobs and their state")
    jobs.add_argument(
        "--state",
        choices=[*JOB_STATES, "waiting"],
        help="only jobs in this state; waiting is waiting-retry [default: every state]",
    )
    jobs.add_argument(
        "--limit", type=_positive_int, default=50, metavar="N", help="at most N jobs [default: 50]"
    )
    add_state_arguments(jobs)
    retry = commands.add_parser(
        "retry", help="requeue a failed job, or run a waiting one now (fresh retry horizon)"
    )
    retry.add_argument("job", type=_positive_int, metavar="JOB", help="the job id (required)")
    add_state_arguments(retry)
    return parser


def open_existing_queue(
    namespace: argparse.Namespace,
) -> SqliteIntakeStore | PostgresIntakeStore | None:
    """The job queue the settings select: the PostgreSQL database of AR_DATABASE_URL, else
    the state directory's; None when the state directory has none yet."""
    settings = settings_of(namespace)
    if uses_postgres(settings):
        try:
            # No housekeeping here either: pruning is the gateways' job, at their retention.
            return open_intake_store(settings, housekeeping=False)
        except StoreError as exc:
            raise CommandError(redact(str(exc))) from None
    state_dir = settings.state_dir
    if not state_dir.is_dir():
        raise CommandError(
            f"state directory {state_dir} does not exist (check AR_STATE_DIR or --state-dir); "
            "nothing was changed"
        )
    if not (state_dir / STATE_FILE_NAME).exists():
        return None
    # No housekeeping here: deleting by age is the gateway's job, with its configured
    # retention (a command must not prune with a different one).
    return SqliteIntakeStore.open(state_dir, housekeeping=False)


def list_jobs(namespace: argparse.Namespace) -> int:
    queue = open_existing_queue(namespace)
    if queue is None:
        print(f"no job queue in {state_dir_of(namespace)} yet")
        return EXIT_OK
    state = "waiting-retry" if namespace.state == "waiting" else namespace.state
    try:
        listed = queue.list_jobs(state, namespace.limit)
    finally:
        queue.close()
    if not listed:
        print("no jobs" + (f" in state {state}" if state else ""))
    now = time.time()
    for job in listed:
        when = ""
        if job.state == "waiting-retry":
            when = f" next attempt in {max(0.0, job.not_before - now):.0f}s"
        detail = " ".join(redact(job.detail).split())[:200]
        print(
            f"{job.id:>7}  {job.state:13}  {job.kind:13}  {job.repo}#{job.pr_number}"
            f"  {job.head_sha[:12] or '-':12}  attempts {job.attempts}{when}"
            + (f"  {detail}" if detail else "")
        )
    return EXIT_OK


def retry_job(namespace: argparse.Namespace) -> int:
    queue = open_existing_queue(namespace)
    if queue is None:
        print(f"no job queue in {state_dir_of(namespace)} yet", file=sys.stderr)
        return EXIT_NOT_FOUND
    try:
        before = queue.requeue_job(namespace.job)
    finally:
        queue.close()
    if before is None:
        print(f"no job {namespace.job}", file=sys.stderr)
        return EXIT_NOT_FOUND
    if before in (JobStatus.RUNNING, JobStatus.DONE):
        print(f"job {namespace.job} is {before}: left as it is", file=sys.stderr)
        return EXIT_NOT_FOUND
    print(f"job {namespace.job} ({before}) is queued again; a worker takes it next")
    return EXIT_OK


def no_history(namespace: argparse.Namespace) -> int:
    print(f"no review history in {state_dir_of(namespace)} yet; nothing to forget")
    return EXIT_OK


def reset_pr(namespace: argparse.Namespace) -> int:
    store = open_existing_store(namespace)
    if store is None:
        return no_history(namespace)
    try:
        removed = store.reset_pr(namespace.repo, namespace.pr)
    finally:
        store.close()
    print(
        f"forgot {removed} review{'s' if removed != 1 else ''} of {namespace.repo} "
        f"PR {namespace.pr}; its next review is a full review"
    )
    return EXIT_OK


def purge(namespace: argparse.Namespace) -> int:
    store = open_existing_store(namespace)
    if store is None:
        return no_history(namespace)
    days = namespace.older_than_days
    try:
        result = store.purge(days * SECONDS_PER_DAY)
    finally:
        store.close()
    prs, reviews = result.pull_requests, result.reviews
    print(
        f"forgot the history of {prs} pull request{'s' if prs != 1 else ''} "
        f"({reviews} review{'s' if reviews != 1 else ''}) not reviewed for {days:g} days"
    )
    return EXIT_OK


def main(argv: list[str]) -> int:
    namespace = build_parser().parse_args(argv)
    handlers: dict[str, Handler] = {
        "reset-pr": reset_pr,
        "purge": purge,
        "jobs": list_jobs,
        "retry": retry_job,
    }
    handler = handlers[namespace.command]
    return guarded("history", handler, namespace)


def guarded(group: str, handler: Handler, namespace: argparse.Namespace) -> int:
    """Run a handler; a CommandError or StoreError is one redacted line and exit 2."""
    try:
        return handler(namespace)
    except (CommandError, StoreError) as exc:
        for line in str(exc).splitlines():
            print(f"auto-review {group} {namespace.command}: {redact(line)}", file=sys.stderr)
        return EXIT_USAGE


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError("must be a positive integer") from None
    if not 1 <= number <= 2**31 - 1:
        raise argparse.ArgumentTypeError("must be a positive integer")
    return number


def _days(value: str) -> float:
    try:
        days = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError("must be a number of days (0 or more)") from None
    if not 0 <= days <= 100_000:
        raise argparse.ArgumentTypeError("must be a number of days (0 or more)")
    return days
