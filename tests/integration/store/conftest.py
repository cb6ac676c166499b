"""Fixtures for the store's integration tests."""

from tests.support.postgres import postgres_server

__all__ = ["postgres_server"]
