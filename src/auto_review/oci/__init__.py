"""Embedded OCI runtime.

This package depends on nothing else in ``auto_review``: it can be audited, tested and
benchmarked on its own, and the launcher uses it through its public API.
"""
