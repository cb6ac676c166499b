"""Every property the runtime specification defines, as the shipped schema describes it.

``SPEC_FIELDS`` mirrors ``schema/config-schema.json`` (with ``$ref``s, ``allOf`` and
``anyOf`` resolved): a dict lists an object's properties, a one-item list describes every
element of an array, True is any value (a scalar, a free-form map, or another platform's
section). ``spec.check_supported`` uses it to tell a property the runtime does not know,
which the spec says to ignore, from a known one it cannot honour, which it refuses.
A unit test derives the tree from the schema again and requires it to equal this one.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

SPEC_FIELDS: dict[str, Any] = {
    "annotations": True,
    "domainname": True,
    "freebsd": True,
    "hooks": {
        "createContainer": [{"args": [True], "env": [True], "path": True, "timeout": True}],
        "createRuntime": [{"args": [True], "env": [True], "path": True, "timeout": True}],
        "poststart": [{"args": [True], "env": [True], "path": True, "timeout": True}],
        "poststop": [{"args": [True], "env": [True], "path": True, "timeout": True}],
        "prestart": [{"args": [True], "env": [True], "path": True, "timeout": True}],
        "startContainer": [{"args": [True], "env": [True], "path": True, "timeout": True}],
    },
    "hostname": True,
    "linux": {
        "cgroupsPath": True,
        "devices": [
            {
                "fileMode": True,
                "gid": True,
                "major": True,
                "minor": True,
                "path": True,
                "type": True,
                "uid": True,
            }
        ],
        "gidMappings": [{"containerID": True, "hostID": True, "size": True}],
        "intelRdt": {
            "closID": True,
            "enableMonitoring": True,
            "l3CacheSchema": True,
            "memBwSchema": True,
            "schemata": [True],
        },
        "maskedPaths": [True],
        "memoryPolicy": {"flags": [True], "mode": True, "nodes": True},
        "mountLabel": True,
        "namespaces": [{"path": True, "type": True}],
        "netDevices": True,
        "personality": {"domain": True, "flags": [True]},
        "readonlyPaths": [True],
        "resources": {
            "blockIO": {
                "leafWeight": True,
                "throttleReadBpsDevice": [{"major": True, "minor": True, "rate": True}],
                "throttleReadIOPSDevice": [{"major": True, "minor": True, "rate": True}],
                "throttleWriteBpsDevice": [{"major": True, "minor": True, "rate": True}],
                "throttleWriteIOPSDevice": [{"major": True, "minor": True, "rate": True}],
                "weight": True,
                "weightDevice": [
                    {"leafWeight": True, "major": True, "minor": True, "weight": True}
                ],
            },
            "cpu": {
                "burst": True,
                "cpus": True,
                "idle": True,
                "mems": True,
                "period": True,
                "quota": True,
                "realtimePeriod": True,
                "realtimeRuntime": True,
                "shares": True,
            },
            "devices": [
                {"access": True, "allow": True, "major": True, "minor": True, "type": True}
            ],
            "hugepageLimits": [{"limit": True, "pageSize": True}],
            "memory": {
                "checkBeforeUpdate": True,
                "disableOOMKiller": True,
                "kernel": True,
                "kernelTCP": True,
                "limit": True,
                "reservation": True,
                "swap": True,
                "swappiness": True,
                "useHierarchy": True,
            },
            "network": {"classID": True, "priorities": [{"name": True, "priority": True}]},
            "pids": {"limit": True},
            "rdma": True,
            "unified": True,
        },
        "rootfsPropagation": True,
        "seccomp": {
            "architectures": [True],
            "defaultAction": True,
            "defaultErrnoRet": True,
            "flags": [True],
            "listenerMetadata": True,
            "listenerPath": True,
            "syscalls": [
                {
                    "action": True,
                    "args": [{"index": True, "op": True, "value": True, "valueTwo": True}],
                    "errnoRet": True,
                    "names": [True],
                }
            ],
        },
        "sysctl": True,
        "timeOffsets": {
            "boottime": {"nanosecs": True, "secs": True},
            "monotonic": {"nanosecs": True, "secs": True},
        },
        "uidMappings": [{"containerID": True, "hostID": True, "size": True}],
    },
    "mounts": [
        {
            "destination": True,
            "gidMappings": [{"containerID": True, "hostID": True, "size": True}],
            "options": [True],
            "source": True,
            "type": True,
            "uidMappings": [{"containerID": True, "hostID": True, "size": True}],
        }
    ],
    "ociVersion": True,
    "process": {
        "apparmorProfile": True,
        "args": [True],
        "capabilities": {
            "ambient": [True],
            "bounding": [True],
            "effective": [True],
            "inheritable": [True],
            "permitted": [True],
        },
        "commandLine": True,
        "consoleSize": {"height": True, "width": True},
        "cwd": True,
        "env": [True],
        "execCPUAffinity": {"final": True, "initial": True},
        "ioPriority": {"class": True, "priority": True},
        "noNewPrivileges": True,
        "oomScoreAdj": True,
        "rlimits": [{"hard": True, "soft": True, "type": True}],
        "scheduler": {
            "deadline": True,
            "flags": [True],
            "nice": True,
            "period": True,
            "policy": True,
            "priority": True,
            "runtime": True,
        },
        "selinuxLabel": True,
        "terminal": True,
        "user": {
            "additionalGids": [True],
            "gid": True,
            "uid": True,
            "umask": True,
            "username": True,
        },
    },
    "root": {"path": True, "readonly": True},
    "solaris": True,
    "vm": True,
    "windows": True,
    "zos": True,
}
