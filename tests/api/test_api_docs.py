"""docs/api.md carries the reference of the API as the code defines it."""

from __future__ import annotations

from pathlib import Path

from xavyo_siem.api import create_app
from xavyo_siem.api.reference import render_reference, replace_reference
from xavyo_siem.settings import Settings
from xavyo_siem.store import make_engine

from conftest import KEYS

DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"


def test_the_generated_reference_in_docs_api_md_is_current() -> None:
    """Regenerating the reference from the OpenAPI document changes nothing in docs/api.md
    (run `scripts/gen_api_docs.py` after changing a route or schema)."""
    app = create_app(Settings(), make_engine("sqlite://"), keyring=KEYS)
    text = DOC.read_text()
    assert replace_reference(text, render_reference(app.openapi())) == text
