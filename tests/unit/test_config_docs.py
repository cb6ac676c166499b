"""docs/CONFIGURATION.md lists every setting the model has, so the doc cannot drift."""

from __future__ import annotations

from pathlib import Path

from auto_review.config import Settings, env_name

DOC = Path(__file__).resolve().parents[2] / "docs" / "CONFIGURATION.md"


def test_every_setting_is_documented() -> None:
    text = DOC.read_text()
    missing = [
        env_name(name) for name in Settings.field_names() if f"`{env_name(name)}`" not in text
    ]
    assert missing == []
