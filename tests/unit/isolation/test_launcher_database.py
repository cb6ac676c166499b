"""The database settings the launcher hands the inner process: the password from
AR_DATABASE_PASSWORD_FILE (a host path) put into the URL, percent-encoded, and the CA file
at the path the bundle binds it to; nothing without AR_DATABASE_URL."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from auto_review.config import Settings
from auto_review.core.database_url import parse_database_url
from auto_review.core.secrets import Secret
from auto_review.isolation.outer.bundle import DATABASE_CA_FILE_INSIDE, ca_file_bind
from auto_review.isolation.outer.launcher import inner_database_settings


def test_password_file_and_ca_file_as_the_container_sees_them(tmp_path: Path) -> None:
    password = "p@ss:/w?rd#1 %"
    (tmp_path / "password").write_text(password + "\n")
    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    settings = Settings(  # type: ignore[arg-type]
        state_dir=tmp_path,
        database_url=Secret("postgresql://app@db.internal:6543/reviews"),
        database_password_file=tmp_path / "password",
        database_ca_file=tmp_path / "ca.pem",
    )
    values = inner_database_settings(settings)
    assert values["database_password_file"] is None
    assert values["database_ca_file"] == DATABASE_CA_FILE_INSIDE
    assert quote(password, safe="") in values["database_url"]
    url = parse_database_url(values["database_url"])
    assert (url.host, url.port, url.dbname, url.user) == ("db.internal", 6543, "reviews", "app")
    assert url.password is not None and url.password.reveal() == password
    bind = ca_file_bind(tmp_path / "ca.pem", DATABASE_CA_FILE_INSIDE)
    assert bind.destination == DATABASE_CA_FILE_INSIDE


def test_nothing_without_a_database(tmp_path: Path) -> None:
    assert inner_database_settings(Settings(state_dir=tmp_path)) == {}  # type: ignore[arg-type]
