"""`auto-review review`: one-shot reviews without the gateway.

  auto-review review diff FILE.patch [--config FILE] [--tree DIR] [--json]
      Review a local unified diff with the LLM of the AR_LLM_* settings; no forge needed.
      ``--config`` applies a .auto_review.yaml (floor, ignore rules, guidelines); ``--tree``
      lends a checkout of the patched code to context building and verification.

  auto-review review once --repo [forgejo:|github:]OWNER/NAME --pr N [--dry-run] [--full] [--json]
      Review one pull request now, through the same pipeline the gateway runs: post the
      review and the commit status and record the history, or with ``--dry-run`` only
      print what would be posted. ``--full`` ignores the last reviewed commit.

Both print the findings kept (and why the others were dropped), the stage timings and the
tokens used; ``--json`` prints one JSON object instead. Printed model text is redacted of
every configured secret and stripped of terminal control characters.

Exit status: 0 reviewed (or skipped) with no finding kept; 1 reviewed with findings kept;
2 bad usage, settings, config file or patch; 3 the review failed (forge or LLM unavailable,
refused, or an answer that stayed invalid).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import ssl
import sys
from pathlib import Path
from typing import Any

from auto_review.cli.parsing import ArgumentParser
from auto_review.cli.settings_args import (
    LLM_COMMAND_SETTINGS,
    REVIEW_ONCE_SETTINGS,
    add_settings_arguments,
    print_settings_error,
    settings_from_namespace,
)
from auto_review.config import Settings, SettingsError
from auto_review.core.logs import configure_logging
from auto_review.review.diff.paths import display_path, scrub_surrogates
from auto_review.wiring.clients import forge_hosts, language_model
from auto_review.wiring.redaction import install_secrets, redact
from auto_review.wiring.tls import TrustError, client_tls_context

EXIT_CLEAN = 0
EXIT_FINDINGS = 1
EXIT_USAGE = 2
EXIT_FAILED = 3

_CONTROL = re.compile("[\u0000-\u0008\u000b-\u001f\u007f-\u009f]")
_REPO = re.compile(r"^(?:(?P<host>forgejo|github):)?(?P<owner>[^/:]+)/(?P<name>[^/:]+)$")


class UsageError(Exception):
    """Bad arguments or settings: one line, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="auto-review review",
        description="One-shot reviews of a local patch or of a pull request.",
        epilog="Exit status: 0 no finding, 1 findings, 2 usage/settings/input error, "
        "3 the review failed.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="{diff,once}")

    diff = commands.add_parser("diff", help="review a local unified diff (no forge)")
    diff.add_argument("patch", type=Path, metavar="FILE.patch")
    diff.add_argument(
        "--config", type=Path, metavar="FILE", help="a .auto_review.yaml to apply [default: none]"
    )
    diff.add_argument(
        "--tree",
        type=Path,
        metavar="DIR",
        help="a checkout of the patched code, for context [default: none]",
    )
    diff.add_argument("--json", action="store_true", help="print one JSON object [default: text]")
    add_settings_arguments(diff, LLM_COMMAND_SETTINGS)

    once = commands.add_parser("once", help="review one pull request now")
    once.add_argument(
        "--repo",
        required=True,
        metavar="[HOST:]OWNER/NAME",
        help="the repository; HOST is forgejo (the default) or github (required)",
    )
    once.add_argument(
        "--pr", required=True, type=int, metavar="N", help="the pull request number (required)"
    )
    once.add_argument(
        "--dry-run", action="store_true", help="post nothing, print the plan [default: off]"
    )
    once.add_argument(
        "--full", action="store_true", help="ignore the last reviewed commit [default: off]"
    )
    once.add_argument("--json", action="store_true", help="print one JSON object [default: text]")
    add_settings_arguments(once, REVIEW_ONCE_SETTINGS)
    return parser


def main(argv: list[str]) -> int:
    namespace = build_parser().parse_args(argv)
    try:
        settings = settings_from_namespace(namespace)
        if not (settings.llm_base_url and settings.llm_reasoning_model):
            raise UsageError(
                "the review needs an LLM: set AR_LLM_BASE_URL and AR_LLM_REASONING_MODEL"
            )
        configure_logging("text", settings.log_level, install_secrets(settings.secret_values()))
        try:
            tls = client_tls_context(settings.ca_file)
        except TrustError as exc:
            raise UsageError(str(exc)) from None
        if namespace.command == "diff":
            return asyncio.run(review_diff(namespace, settings, tls))
        return asyncio.run(review_once(namespace, settings, tls))
    except SettingsError as exc:
        print_settings_error(f"auto-review review {namespace.command}", exc)
        return EXIT_USAGE
    except UsageError as exc:
        print(f"auto-review review {namespace.command}: {redact(str(exc))}", file=sys.stderr)
        return EXIT_USAGE


# ---- review diff --------------------------------------------------------------------------


async def review_diff(
    namespace: argparse.Namespace, settings: Settings, tls: ssl.SSLContext
) -> int:
    from auto_review.llm.api import LlmError
    from auto_review.review.diff.model import DiffParseError
    from auto_review.review.pipeline import review_patch
    from auto_review.review.policy.repo_config import (
        DEFAULT_REPO_CONFIG,
        RepoConfigError,
        parse_repo_config,
    )
    from auto_review.review.workspace.confined import ConfinedTree, ConfinementError

    patch = _read(namespace.patch, "patch")
    _require_a_diff(namespace.patch, patch)
    config = DEFAULT_REPO_CONFIG
    if namespace.config is not None:
        try:
            config = parse_repo_config(_read(namespace.config, "config"))
        except RepoConfigError as exc:
            raise UsageError(f"{namespace.config}: {exc}") from None
    tree = None
    if namespace.tree is not None:
        try:
            tree = ConfinedTree(namespace.tree)
        except (OSError, ConfinementError) as exc:
            raise UsageError(f"--tree {namespace.tree}: not a directory ({exc})") from None
    async with language_model(settings, tls=tls) as llm:
        try:
            report = await review_patch(
                patch,
                llm=llm,
                repo_config=config,
                tree=tree,
                budget_tokens=settings.llm_context_tokens,
                title=namespace.patch.name,
            )
        except DiffParseError as exc:
            raise UsageError(f"{namespace.patch}: not a unified diff ({exc})") from None
        except LlmError as exc:
            return _failed(str(exc))
    _print_report(report, namespace.json, heading=f"review of {namespace.patch}")
    return EXIT_FINDINGS if report.kept else EXIT_CLEAN


def _require_a_diff(path: Path, patch: bytes) -> None:
    """Empty input, text or random bytes hold no file diff: a usage error, not a clean
    review ("nothing to review" would read as a patch without findings)."""
    from auto_review.review.diff.model import DiffParseError, parse_diff

    try:
        files = parse_diff(patch).files
    except DiffParseError as exc:
        raise UsageError(f"{path}: not a unified diff ({exc})") from None
    if not files:
        what = (
            "is empty"
            if not patch.strip()
            else "holds no file diff (no ---/+++ or diff --git header)"
        )
        raise UsageError(f"{path}: not a unified diff: it {what}")


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read the {what} {path}: {exc.strerror}") from None


# ---- review once --------------------------------------------------------------------------


async def review_once(
    namespace: argparse.Namespace, settings: Settings, tls: ssl.SSLContext
) -> int:
    from auto_review.hosts.base import HostError
    from auto_review.llm.api import LlmError
    from auto_review.review.pipeline import PipelineFailed, review_pull_request
    from auto_review.wiring.runner import build_runner

    repo = parse_repo(namespace.repo)
    if namespace.pr <= 0:
        raise UsageError("--pr must be a positive number")
    hosts = forge_hosts(settings, tls=tls)
    if repo.host not in hosts:
        raise UsageError(f"no {repo.host} forge is configured (AR_FORGEJO_* or AR_GITHUB_*)")
    runner = build_runner(settings, hosts, tls=tls)
    assert runner is not None  # the LLM settings were checked in main()
    try:
        report = await review_pull_request(
            runner.deps,
            repo,
            namespace.pr,
            expected_head=None,
            full=namespace.full,
            dry_run=namespace.dry_run,
        )
    except PipelineFailed as exc:
        return _failed(str(exc))
    except (HostError, LlmError) as exc:
        return _failed(f"{type(exc).__name__}: {exc}")
    finally:
        await runner.aclose()
        for host in hosts.values():
            close = getattr(host, "aclose", None)
            if close is not None:
                await close()
    heading = f"review of {repo.host}:{repo.full_name}#{namespace.pr}"
    _print_report(report, namespace.json, heading=heading, dry_run=namespace.dry_run)
    return EXIT_FINDINGS if report.kept else EXIT_CLEAN


def parse_repo(text: str) -> Any:
    from auto_review.core.refs import HostKind, PayloadError, RepoRef

    match = _REPO.match(text)
    if match is None:
        raise UsageError("--repo must be [forgejo:|github:]OWNER/NAME")
    try:
        return RepoRef(HostKind(match["host"] or "forgejo"), match["owner"], match["name"])
    except PayloadError as exc:
        raise UsageError(f"--repo: {exc}") from None


def _failed(reason: str) -> int:
    print(f"auto-review review: the review failed: {_clean(reason)}", file=sys.stderr)
    return EXIT_FAILED


# ---- output -------------------------------------------------------------------------------


def _clean(text: str) -> str:
    """Redacted, and no terminal control sequence from model or repository text."""
    return _CONTROL.sub("", redact(scrub_surrogates(text)))


def _shown_path(path: str) -> str:
    """A file name as the review shows it: git's C-style quoting for names that are not
    UTF-8 or hold control characters (so it prints, and stays one line)."""
    return _clean(display_path(path))


def report_json(report: Any, *, dry_run: bool = False) -> dict[str, Any]:
    planned = report.planned
    draft = planned.draft if planned is not None else None
    return {
        "skipped_reason": report.skipped_reason,
        "head_sha": report.head_sha,
        "summary": _clean(report.summary),
        "kept": [_finding_json(f) for f in report.kept],
        "dropped": [{**_finding_json(d.finding), "reason": str(d.reason)} for d in report.dropped],
        "notes": [_clean(n) for n in report.notes],
        "incremental_since": report.incremental_since,
        "stage_seconds": {k: round(v, 4) for k, v in report.stage_seconds.items()},
        "usage": {
            str(tier): {"prompt": u.prompt_tokens, "completion": u.completion_tokens}
            for tier, u in report.usage.items()
        },
        "dry_run": dry_run,
        "review": None
        if draft is None
        else {
            "commit_sha": draft.commit_sha,
            "body": _clean(draft.body),
            "comments": [
                {
                    "path": _shown_path(c.path),
                    "line": c.line,
                    "side": str(c.side),
                    "body": _clean(c.body),
                }
                for c in draft.comments
            ],
        },
        "status": None
        if planned is None
        else {
            "state": str(planned.status.state),
            "description": _clean(planned.status.description),
        },
    }


def _finding_json(finding: Any) -> dict[str, Any]:
    return {
        "path": _shown_path(finding.path),
        "start_line": finding.start_line,
        "end_line": finding.end_line,
        "severity": str(finding.severity),
        "category": finding.category,
        "title": _clean(finding.title),
        "body": _clean(finding.body),
    }


def _print_report(report: Any, as_json: bool, *, heading: str, dry_run: bool = False) -> None:
    if as_json:
        print(json.dumps(report_json(report, dry_run=dry_run), indent=2))
        return
    lines = [heading + (f" at {report.head_sha[:12]}" if report.head_sha else "")]
    if report.skipped_reason is not None:
        lines.append(f"skipped: {_clean(report.skipped_reason)}")
    else:
        lines += ["", _clean(report.summary), ""]
        lines.append(f"findings kept: {len(report.kept)}")
        for finding in report.kept:
            lines.append(
                f"  {str(finding.severity).upper():8} {finding.category:15} "
                f"{_shown_path(finding.path)}:{finding.end_line}  {_clean(finding.title)}"
            )
            lines += [f"      {line}" for line in _clean(finding.body).splitlines()]
        if report.dropped:
            lines.append(f"findings dropped: {len(report.dropped)}")
            for dropped in report.dropped:
                f = dropped.finding
                where = f"{_shown_path(f.path)}:{f.start_line}"
                lines.append(f"  {dropped.reason!s:16} {where}  {_clean(f.title)}")
    planned = report.planned
    if dry_run and planned is not None:
        lines += ["", "would post (dry run):"]
        if planned.draft is None:
            lines.append("  no review (nothing new to comment on)")
        else:
            lines.append(
                f"  review on {planned.draft.commit_sha[:12]} with "
                f"{len(planned.draft.comments)} inline comment(s):"
            )
            lines += [f"    | {line}" for line in _clean(planned.draft.body).splitlines()]
            for comment in planned.draft.comments:
                lines.append(f"  comment on {_shown_path(comment.path)}:{comment.line}:")
                lines += [f"    | {line}" for line in _clean(comment.body).splitlines()]
        lines.append(f"  status: {planned.status.state} ({_clean(planned.status.description)})")
    timings = ", ".join(f"{k} {v:.2f}s" for k, v in report.stage_seconds.items())
    tokens = ", ".join(
        f"{tier} {u.prompt_tokens}+{u.completion_tokens}" for tier, u in report.usage.items()
    )
    lines += ["", f"stages: {timings or 'none'}", f"tokens: {tokens or 'none'}"]
    print("\n".join(lines))
