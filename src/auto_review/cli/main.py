"""The single ``auto-review`` command: dispatches to one module per command group.

Groups are imported lazily so that a fast path such as ``auto-review oci run`` pays only
for the modules it uses.
"""

from __future__ import annotations

import sys

# group name -> (module, one-line help)
GROUPS: dict[str, tuple[str, str]] = {
    "gateway": ("auto_review.cli.gateway", "run the webhook gateway and chat poller service"),
    "worker": ("auto_review.cli.worker", "run review workers on the shared PostgreSQL queue"),
    "review": ("auto_review.cli.review", "one-shot reviews of a PR or a local patch"),
    "ops": ("auto_review.cli.ops", "diagnostics: doctor, status"),
    "secrets": ("auto_review.cli.secrets_cmd", "generate a strong webhook secret and CI token"),
    "webhook": ("auto_review.cli.webhook", "register, list, unregister, test the forge webhook"),
    "auth": ("auto_review.cli.auth", "mint the bot's Forgejo/Gitea token"),
    "config": ("auto_review.cli.config", "validate a repository's .auto_review.yaml"),
    "history": ("auto_review.cli.history", "review history maintenance"),
    "learnings": ("auto_review.cli.learnings", "list and forget stored learnings"),
    "bench": ("auto_review.cli.bench", "replay the labelled review corpus"),
    "oci": ("auto_review.oci.cli", "embedded OCI runtime, runc-style"),
    "version": ("auto_review.cli.version", "the version; --verbose: commit, Python, install"),
}


def usage() -> str:
    lines = ["usage: auto-review <command> [args...]", "", "commands:"]
    lines += [f"  {name:<10} {text}" for name, (_, text) in GROUPS.items()]
    lines += ["", "Run 'auto-review <command> --help' for a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run one command. argv None means this is the process's entry point (the console
    script or ``-m``): then an ``oci`` command ends the process itself (see below)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage())
        return 0 if args else 2
    if args[0] == "--isolation-inner" and getattr(sys, "frozen", False):
        # The single file started as the container's program (isolation/outer/frozen.py).
        from auto_review.isolation.inner.entry import main as inner_main

        return inner_main()
    if args[0] == "--version":
        from auto_review import __version__

        print(f"auto-review {__version__}")
        return 0
    group = GROUPS.get(args[0])
    if group is None:
        print(f"auto-review: unknown command {args[0]!r}\n\n{usage()}", file=sys.stderr)
        return 2
    # __import__, not importlib: one import less on the path of `auto-review oci run`
    module = __import__(group[0], fromlist=["main"])
    code = int(module.main(args[1:]))
    if argv is None and args[0] == "oci":
        module.exit_process(code)  # ends the process at once when nothing is left to run
    return code


if __name__ == "__main__":
    sys.exit(main())
