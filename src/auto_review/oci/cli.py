"""runc-style command line: ``auto-review oci [--root DIR] COMMAND ...``.

Commands: create, start, run, state, kill, delete, list, spec. Parsed by hand: argparse
costs milliseconds on a path whose whole budget is a few tens of them. Every error is one
line on stderr and exit status 1; ``run`` in the foreground exits with the container's
status (128+signal when it was killed).
"""

from __future__ import annotations

import os
import sys

from auto_review.oci.errors import OciError

USAGE = """usage: auto-review oci [--root DIR] [--debug] COMMAND [OPTIONS] [ARGS]
  create [--bundle DIR] [--pid-file F] [--preserve-fds N] ID
  start ID
  run [--bundle DIR] [--pid-file F] [--preserve-fds N] [--detach] ID
  state ID
  kill ID [SIGNAL]
  delete [--force] ID
  list [--format table|json] [--quiet]
  spec [--rootless] [--bundle DIR]"""

# option -> (destination, takes a value)
_OPTIONS = {
    "--bundle": ("bundle", True), "-b": ("bundle", True),
    "--pid-file": ("pid_file", True),
    "--preserve-fds": ("preserve_fds", True),
    "--detach": ("detach", False), "-d": ("detach", False),
    "--force": ("force", False), "-f": ("force", False),
    "--format": ("format", True),
    "--quiet": ("quiet", False), "-q": ("quiet", False),
    "--rootless": ("rootless", False),
    "--root": ("root", True),
    "--debug": ("debug", False),
}
_GLOBAL = frozenset({"root", "debug"})
_ALLOWED = {
    "create": {"bundle", "pid_file", "preserve_fds"},
    "run": {"bundle", "pid_file", "preserve_fds", "detach"},
    "start": set(), "state": set(), "kill": set(),
    "delete": {"force"},
    "list": {"format", "quiet"},
    "spec": {"rootless", "bundle"},
}
_POSITIONALS = {"create": (1, 1), "run": (1, 1), "start": (1, 1), "state": (1, 1),
                "kill": (1, 2), "delete": (1, 1), "list": (0, 0), "spec": (0, 0)}


_HELP = {
    "create": "create the container and leave it waiting for start",
    "start": "run the created container's program",
    "run": "create and start; in the foreground, wait and exit with its status",
    "state": "print the container's state as JSON",
    "kill": "send a signal (default TERM; a name with or without SIG, or a number)",
    "delete": "remove a stopped container (--force: kill it first, in any state)",
    "list": "list the containers under the state root",
    "spec": "write a default config.json into the bundle (never overwrites)",
}
_HELP_WORDS = ("-h", "--help")


class UsageError(OciError):
    pass


class HelpRequested(Exception):
    """-h/--help was given: print the usage of this command (or of all) and exit 0."""

    def __init__(self, command: str) -> None:
        super().__init__(command)
        self.command = command


def command_usage(command: str) -> str:
    """The usage text of one command: its line of USAGE and what it does."""
    line = next(entry.strip() for entry in USAGE.splitlines()[1:]
                if entry.split()[0] == command)
    return (f"usage: auto-review oci [--root DIR] [--debug] {line}\n\n"
            f"{_HELP[command]}")


def _parse(argv: list[str]) -> tuple[str, dict[str, object], list[str]]:
    options: dict[str, object] = {}
    positionals: list[str] = []
    command = ""
    index = 0
    while index < len(argv):
        word = argv[index]
        index += 1
        name, has_inline, inline = word.partition("=")
        if word in _HELP_WORDS:
            raise HelpRequested(command)
        if word.startswith("-") and word != "-":
            if name not in _OPTIONS:
                raise UsageError(f"unknown option {name}")
            destination, takes_value = _OPTIONS[name]
            if destination in _GLOBAL and command:
                raise UsageError(f"{name} is a global option: put it before the command")
            if destination not in _GLOBAL and (not command or destination not in _ALLOWED[command]):
                raise UsageError(f"option {name} is not valid for {command or 'oci'}")
            if takes_value:
                if has_inline:
                    options[destination] = inline
                elif index < len(argv):
                    options[destination] = argv[index]
                    index += 1
                else:
                    raise UsageError(f"option {name} needs a value")
            else:
                options[destination] = True
        elif not command:
            if word not in _ALLOWED:
                raise UsageError(f"unknown command {word!r}")
            command = word
        else:
            positionals.append(word)
    if not command:
        raise UsageError("no command given")
    low, high = _POSITIONALS[command]
    if not low <= len(positionals) <= high:
        raise UsageError(f"{command}: wrong number of arguments")
    return command, options, positionals


def _preserve_fds(options: dict[str, object]) -> int:
    text = str(options.get("preserve_fds", "0"))
    if not text.isdigit():
        raise UsageError("--preserve-fds needs a non-negative integer")
    return int(text)


def _print_list(states: list[dict[str, object]], output_format: str, quiet: bool) -> None:
    if quiet:
        for state in states:
            print(state["id"])
    elif output_format == "json":
        import json

        print(json.dumps(states))
    elif output_format == "table":
        rows = [("ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER")]
        rows += [(str(s["id"]), str(s["pid"]), str(s["status"]), str(s["bundle"]),
                  str(s.get("created", "")), str(s.get("owner", ""))) for s in states]
        widths = [max(len(row[column]) for row in rows) for column in range(6)]
        for row in rows:
            print("   ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
                  .rstrip())
    else:
        raise UsageError("--format must be table or json")


def _dispatch(command: str, options: dict[str, object], args: list[str]) -> int:
    from auto_review.oci import api

    if options.get("debug"):
        from auto_review.oci.debug import enable_on_stderr

        enable_on_stderr()
    root = options.get("root")
    root_path = str(root) if root is not None else None
    bundle = str(options.get("bundle", "."))
    pid_file = options.get("pid_file")
    if command == "run":
        return api.run(args[0], bundle, root=root_path,
                       pid_file=str(pid_file) if pid_file else None,
                       preserve_fds=_preserve_fds(options), detach=bool(options.get("detach")))
    if command == "create":
        api.create(args[0], bundle, root=root_path,
                   pid_file=str(pid_file) if pid_file else None,
                   preserve_fds=_preserve_fds(options))
    elif command == "start":
        api.start(args[0], root=root_path)
    elif command == "state":
        import json

        print(json.dumps(api.state(args[0], root=root_path), indent=2))
    elif command == "kill":
        api.kill(args[0], args[1] if len(args) > 1 else "TERM", root=root_path)
    elif command == "delete":
        api.delete(args[0], root=root_path, force=bool(options.get("force")))
    elif command == "list":
        _print_list(api.list_containers(root=root_path), str(options.get("format", "table")),
                    bool(options.get("quiet")))
    elif command == "spec":
        target = os.path.join(str(options.get("bundle", ".")), "config.json")
        if os.path.exists(target):
            raise OciError(f"{target} exists: remove it first")
        import json

        with open(target, "x") as handle:
            json.dump(api.default_spec(rootless=bool(options.get("rootless"))), handle,
                      indent=2)
            handle.write("\n")
    return 0


def main(argv: list[str]) -> int:
    if not argv or argv[0] == "help":
        print(USAGE)
        return 0 if argv else 1
    try:
        command, options, args = _parse(argv)
        return _dispatch(command, options, args)
    except HelpRequested as request:
        print(command_usage(request.command) if request.command else USAGE)
        return 0
    except OciError as exc:
        print(f"auto-review oci: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"auto-review oci: {exc.strerror or exc}"
              + (f": {exc.filename}" if exc.filename else ""), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def exit_process(code: int) -> None:
    """End the process with code. The interpreter's final garbage collection walks every
    object the interpreter's start-up made (about 9 ms with a `site` that imports much, as
    pyenv's here); the runtime leaves nothing that needs collecting, so every object is
    frozen first (gc.freeze: collections ignore them) and the exit stays the normal one:
    atexit handlers run, stdio is flushed, profilers and tracers write their results."""
    import gc

    gc.freeze()
    sys.exit(code)
