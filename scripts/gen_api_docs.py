#!/usr/bin/env python3
"""Write the route and schema reference of docs/api.md from the app's OpenAPI document.

Usage: `.venv/bin/python scripts/gen_api_docs.py` (rewrites the section between the
markers); `--check` exits 1 when docs/api.md is stale, changing nothing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from xavyo_siem.api.app import create_app
from xavyo_siem.api.reference import render_reference, replace_reference
from xavyo_siem.crypto import KeyRing, new_key_text
from xavyo_siem.settings import Settings
from xavyo_siem.store import make_engine

DOC = Path(__file__).resolve().parent.parent / "docs" / "api.md"


def current_reference() -> str:
    """The reference of the app as the code defines it (no store is opened)."""
    engine = make_engine("sqlite://")
    app = create_app(Settings(), engine, keyring=KeyRing.parse(new_key_text()))
    return render_reference(app.openapi())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/api.md is stale")
    args = parser.parse_args()
    text = DOC.read_text()
    updated = replace_reference(text, current_reference())
    if args.check:
        if updated != text:
            print("docs/api.md is stale: run scripts/gen_api_docs.py", file=sys.stderr)
            return 1
        return 0
    DOC.write_text(updated)
    return 0


if __name__ == "__main__":
    sys.exit(main())
