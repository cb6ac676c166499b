"""The outer launcher, on the host: the isolation steps, the OCI bundle and its rootfs,
the seccomp profile, stale-bundle cleanup, external runtimes and the host's kernel probe.
"""
