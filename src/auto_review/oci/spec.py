"""The bundle's config.json: loading, schema validation and the supported-field check.

Validation against the runtime-spec JSON schema needs ``jsonschema`` (about 100 ms to
import) and even ``json`` pulls in ``re``, so a successful validation is remembered in
``<state root>/.validated/<sha256 of the config bytes>``: the file holds those bytes and
the parsed config in ``marshal`` form, and counts only for exactly those bytes. A hit is
found through ``.validated.index/<crc32>-<length>``, a link to the entry, so no
cryptographic hash (an OpenSSL load) is needed on every run.
The same bytes are never parsed or validated twice; any other bytes go through ``json``
and the schema again. The cache lives in the caller's own 0700 state
root, and an entry is used only when the caller owns it and no one else may write it.

A property the runtime specification does not define is ignored, as the spec requires
(dropped from the config, with a debug line). A property it defines that this runtime does
not implement is refused with a ``SpecError`` naming it: ignoring it could weaken the
container's isolation, so the runtime fails closed.
"""

from __future__ import annotations

import os

from auto_review.oci.errors import SpecError
from auto_review.oci.spec_fields import SPEC_FIELDS

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

SCHEMA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "schema")

# A leaf value True means "any value"; a dict lists the allowed keys of an object; a list
# of one element describes every item of an array.
_HOOK = [{"path": True, "args": True, "env": True, "timeout": True}]
_ID_MAPPINGS = [{"containerID": True, "hostID": True, "size": True}]
_CAP_SETS = {
    name: True for name in ("bounding", "effective", "permitted", "inheritable", "ambient")
}
SUPPORTED_FIELDS: dict[str, Any] = {
    "ociVersion": True,
    "hostname": True,
    "domainname": True,
    "annotations": True,
    "root": {"path": True, "readonly": True},
    "mounts": [{"source": True, "destination": True, "options": True, "type": True}],
    "hooks": {
        phase: _HOOK
        for phase in (
            "prestart",
            "createRuntime",
            "createContainer",
            "startContainer",
            "poststart",
            "poststop",
        )
    },
    "process": {
        "args": True,
        "env": True,
        "cwd": True,
        "terminal": True,
        "user": {"uid": True, "gid": True, "umask": True, "additionalGids": True},
        "capabilities": _CAP_SETS,
        "rlimits": [{"type": True, "soft": True, "hard": True}],
        "noNewPrivileges": True,
        "oomScoreAdj": True,
    },
    "linux": {
        "namespaces": [{"type": True, "path": True}],
        "uidMappings": _ID_MAPPINGS,
        "gidMappings": _ID_MAPPINGS,
        "devices": [
            {
                "type": True,
                "path": True,
                "major": True,
                "minor": True,
                "fileMode": True,
                "uid": True,
                "gid": True,
            }
        ],
        "rootfsPropagation": True,
        "mountLabel": True,  # applied where SELinux is enabled (mounts.mount_label)
        "maskedPaths": True,
        "readonlyPaths": True,
        "sysctl": True,
        "cgroupsPath": True,
        "seccomp": "seccomp",  # keys from seccomp.SUPPORTED_SECCOMP_FIELDS
        "resources": "resources",  # keys from cgroups.SUPPORTED_RESOURCES
    },
}
SUPPORTED_NAMESPACES = ("user", "pid", "network", "mount", "ipc", "uts", "cgroup")
SUPPORTED_MOUNT_TYPES = ("bind", "none", "", "proc", "tmpfs", "sysfs", "devpts", "mqueue",
                         "cgroup")


def _delegated_keys(kind: str, field: str) -> frozenset[str]:
    """Keys another module of this package understands; unknown when it is absent."""
    try:
        if kind == "seccomp":
            from auto_review.oci.seccomp import SUPPORTED_SECCOMP_FIELDS

            return frozenset(SUPPORTED_SECCOMP_FIELDS)
        from auto_review.oci.cgroups import SUPPORTED_RESOURCES

        return frozenset(SUPPORTED_RESOURCES)
    except ImportError as exc:
        raise SpecError(f"unsupported field {field}: this build has no {kind} support") from exc


def _check_tree(value: Any, allowed: Any, field: str) -> None:
    if allowed is True:
        return
    if isinstance(allowed, str):
        keys = _delegated_keys(allowed, field)
        if isinstance(value, dict):
            for key in value:
                if key not in keys:
                    raise SpecError(f"unsupported field {field}.{key}")
        return
    if isinstance(allowed, list):
        if isinstance(value, list):
            for index, item in enumerate(value):
                _check_tree(item, allowed[0], f"{field}[{index}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if key not in allowed:
                raise SpecError(
                    f"unsupported field {field}.{key}" if field else f"unsupported field {key}"
                )
            _check_tree(item, allowed[key], f"{field}.{key}" if field else key)


def drop_unknown_fields(value: Any, known: Any, field: str = "") -> None:
    """Remove, in place, every property the runtime spec does not define (the spec says a
    runtime must ignore them); one debug line names each."""
    if known is True:
        return
    if isinstance(known, list):
        if isinstance(value, list):
            for index, item in enumerate(value):
                drop_unknown_fields(item, known[0], f"{field}[{index}]")
        return
    if not isinstance(value, dict):
        return
    for key in list(value):
        name = f"{field}.{key}" if field else key
        if key in known:
            drop_unknown_fields(value[key], known[key], name)
        else:
            del value[key]
            from auto_review.oci.debug import debug

            debug(f"ignoring unknown field {name}")


def check_supported(config: dict[str, Any]) -> None:
    """Drop the properties the spec does not define, then refuse every field or value the
    spec defines and this runtime does not implement."""
    drop_unknown_fields(config, SPEC_FIELDS)
    for platform in ("solaris", "windows", "vm", "zos", "freebsd"):
        if platform in config:
            raise SpecError(f"unsupported field {platform}")
    _check_tree(config, SUPPORTED_FIELDS, "")
    process = config.get("process")
    if not isinstance(process, dict):
        raise SpecError("missing field process")
    if not process.get("args"):
        raise SpecError("missing field process.args")
    if process.get("terminal"):
        raise SpecError("unsupported field process.terminal=true (no console support)")
    if not os.path.isabs(process.get("cwd", "")):
        raise SpecError("process.cwd must be an absolute path")
    if "root" not in config:
        raise SpecError("missing field root")
    linux = config.get("linux") or {}
    kinds = [ns.get("type") for ns in linux.get("namespaces") or []]
    for index, kind in enumerate(kinds):
        if kind not in SUPPORTED_NAMESPACES:
            raise SpecError(f"unsupported field linux.namespaces[{index}].type={kind}")
        if kinds.count(kind) > 1:
            raise SpecError(f"linux.namespaces: {kind} appears twice")
    for index, entry in enumerate(config.get("mounts") or []):
        _check_mount(entry, index)
    if (linux.get("uidMappings") or linux.get("gidMappings")) and "user" not in kinds:
        raise SpecError("linux.uidMappings needs a user namespace")
    if config.get("hostname") and "uts" not in kinds:
        raise SpecError("hostname needs a uts namespace")
    if config.get("domainname") and "uts" not in kinds:
        raise SpecError("domainname needs a uts namespace")
    for key in linux.get("sysctl") or {}:
        _check_sysctl(key, kinds)


def _check_mount(entry: dict[str, Any], index: int) -> None:
    from auto_review.oci.mounts import parse_options

    kind = entry.get("type", "")
    options = entry.get("options") or []
    if kind not in SUPPORTED_MOUNT_TYPES and "bind" not in options and "rbind" not in options:
        raise SpecError(f"unsupported field mounts[{index}].type={kind}")
    if not os.path.isabs(entry.get("destination", "")):
        raise SpecError(f"mounts[{index}].destination must be an absolute path")
    parsed = parse_options(options, f"mounts[{index}].options")
    if parsed.ignored:
        from auto_review.oci.debug import debug

        debug(f"mounts[{index}] ({entry['destination']}): ignoring data options of a bind "
              f"mount: {','.join(parsed.ignored)}")


def _check_sysctl(key: str, kinds: list[str | None]) -> None:
    """Only namespaced sysctls, and only in a namespace the container owns."""
    ipc_keys = (
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    )
    if key in ipc_keys or key.startswith("fs.mqueue."):
        needed = "ipc"
    elif key.startswith("net."):
        needed = "network"
    elif key in ("kernel.hostname", "kernel.domainname"):
        needed = "uts"
    else:
        raise SpecError(f"linux.sysctl.{key} is not a namespaced sysctl")
    if needed not in kinds:
        raise SpecError(f"linux.sysctl.{key} needs a {needed} namespace")


def _index_path(cache_dir: str, raw: bytes) -> str:
    """Where a hit is looked up: ``<cache dir>.index/<crc32>-<length>``, a link to the
    entry. zlib is built in (no OpenSSL load on every run); the CRC need not be
    collision-proof, as an entry counts only for the exact bytes it holds."""
    import zlib

    return os.path.join(f"{cache_dir}.index", f"{zlib.crc32(raw):08x}-{len(raw)}")


def _entry_name(raw: bytes) -> str:
    """The entry's own name, the SHA-256 of the config bytes (computed on a miss only,
    when the schema validation costs far more)."""
    from hashlib import sha256

    return sha256(raw).hexdigest()


def schema_validator(entry: str = "config-schema.json") -> Any:
    """A Draft 4 validator for one of the shipped schemas, local $refs resolved."""
    import json
    from pathlib import Path

    try:
        from jsonschema import Draft4Validator
        from referencing import Registry, Resource
        from referencing.jsonschema import DRAFT4
    except ImportError as exc:  # fail closed: an unvalidated config is never run
        raise SpecError(f"cannot validate config.json: {exc} (install jsonschema and "
                        "referencing for this interpreter)") from exc
    schema_dir = Path(SCHEMA_DIR)
    registry = Registry().with_resources(
        (path.as_uri(), Resource.from_contents(json.loads(path.read_text()),
                                               default_specification=DRAFT4))
        for path in schema_dir.glob("*.json"))
    return Draft4Validator({"$ref": (schema_dir / entry).as_uri()}, registry=registry)


def validate_against_schema(document: Any, entry: str = "config-schema.json") -> None:
    errors = sorted(schema_validator(entry).iter_errors(document),
                    key=lambda error: list(error.absolute_path))
    if errors:
        first = errors[0]
        where = "/".join(map(str, first.absolute_path)) or "(top)"
        raise SpecError(f"config.json invalid at {where}: {first.message[:200]}")


def _cached(path: str | None, raw: bytes) -> dict[str, Any] | None:
    if path is None:
        return None
    import marshal

    # one open, fstat and read (no buffered file object: this is on every run's path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if info.st_uid != os.geteuid() or info.st_mode & 0o022:
            return None  # only an entry we wrote ourselves counts
        data = os.read(fd, info.st_size + 1)  # entries are replaced whole, never grown
        entry = marshal.loads(data)  # noqa: S302 - our own 0600 entry in our state root
    except (OSError, ValueError, EOFError, TypeError):
        return None  # a short or damaged entry is a miss: the config is validated again
    finally:
        os.close(fd)
    if not (isinstance(entry, tuple) and len(entry) == 2 and entry[0] == raw):
        return None  # other bytes under the same name
    return entry[1] if isinstance(entry[1], dict) else None


def _remember(cache_dir: str, raw: bytes, config: dict[str, Any]) -> None:
    import marshal

    index = _index_path(cache_dir, raw)
    name = _entry_name(raw)
    path = os.path.join(cache_dir, name)
    try:
        os.makedirs(cache_dir, mode=0o700, exist_ok=True)
        os.makedirs(os.path.dirname(index), mode=0o700, exist_ok=True)
        temporary = f"{path}.{os.getpid()}.tmp"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        with open(fd, "wb") as handle:
            handle.write(marshal.dumps((raw, config)))
        os.replace(temporary, path)
        link = f"{index}.{os.getpid()}.tmp"
        os.symlink(os.path.join("..", os.path.basename(cache_dir), name), link)
        os.replace(link, index)
    except OSError:
        pass  # the cache only saves time


def parse_and_validate(raw: bytes, cache_dir: str | None) -> dict[str, Any]:
    """The config's JSON object, schema-validated (or known valid from the cache)."""
    cache_dir = os.fspath(cache_dir) if cache_dir is not None else None
    config = _cached(_index_path(cache_dir, raw) if cache_dir is not None else None, raw)
    if config is not None:
        return config
    import json

    try:
        config = json.loads(raw)
    except ValueError as exc:
        raise SpecError(f"config.json is not valid JSON: {exc}") from exc
    if not isinstance(config, dict):
        raise SpecError("config.json must hold a JSON object")
    validate_against_schema(config)
    if cache_dir is not None:
        _remember(cache_dir, raw, config)
    return config


class Bundle:
    """A loaded, validated bundle: its directory, rootfs and config."""

    __slots__ = ("config", "path", "rootfs")

    def __init__(self, path: str, rootfs: str, config: dict[str, Any]) -> None:
        self.path = path
        self.rootfs = rootfs
        self.config = config


def load_bundle(bundle: str | os.PathLike[str], cache_dir: str | None = None) -> Bundle:
    path = os.path.abspath(bundle)
    config_path = os.path.join(path, "config.json")
    try:
        with open(config_path, "rb") as handle:
            raw = handle.read()
    except OSError as exc:
        raise SpecError(f"cannot read {config_path}: {exc.strerror}") from exc
    config = parse_and_validate(raw, cache_dir)
    check_supported(config)
    root_path = config["root"]["path"]
    rootfs = os.path.normpath(os.path.join(path, root_path))
    if not os.path.isdir(rootfs):
        raise SpecError(f"root.path {rootfs} is not a directory")
    return Bundle(path, rootfs, config)
