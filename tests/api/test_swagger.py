"""The API's interactive reference works offline: `/docs` loads Swagger UI from the installed
package, never from a CDN, and is served in production only when the operator allows it."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine

from xavyo_siem.api import create_app
from xavyo_siem.settings import Settings

from conftest import KEYS


async def get(settings: Settings, engine: Engine, tmp_path: Path, path: str) -> httpx.Response:
    app = create_app(settings, engine, keyring=KEYS, export_dir=tmp_path / "exports")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
        return await client.get(path)


async def test_the_docs_page_loads_every_asset_from_the_api_itself(
    engine: Engine, tmp_path: Path
) -> None:
    """Every script, style and icon of `/docs` is a local path that the API serves; the page
    names no other host."""
    settings = Settings(env="development")
    page = await get(settings, engine, tmp_path, "/docs")
    assert page.status_code == 200
    assets = re.findall(r"""(?:src|href)=["']([^"']+)["']""", page.text)
    assert assets
    assert "http://" not in page.text.replace("http://api.test", "")
    assert "https://" not in page.text
    for asset in assets:
        assert asset.startswith("/docs/assets/"), asset
        served = await get(settings, engine, tmp_path, asset)
        assert served.status_code == 200, asset
        assert served.content  # the file itself, not an empty answer
    assert "url: '/openapi.json'" in page.text or '"/openapi.json"' in page.text


@pytest.mark.parametrize(
    ("env", "switch", "expected"),
    [
        ("production", None, 404),
        ("production", True, 200),
        ("development", None, 200),
        ("development", False, 404),
    ],
)
async def test_the_docs_are_off_in_production_unless_the_setting_turns_them_on(
    engine: Engine, tmp_path: Path, env: str, switch: bool | None, expected: int
) -> None:
    """XAVYO_SIEM_API_DOCS decides; unset, only development serves `/docs`."""
    settings = Settings(env=env, api_docs=switch)  # type: ignore[arg-type]
    assert (await get(settings, engine, tmp_path, "/docs")).status_code == expected


def test_the_setting_reads_on_and_off_and_refuses_anything_else() -> None:
    """`XAVYO_SIEM_API_DOCS=on|off` is read; another value is an error naming the setting."""
    assert Settings.from_env({"XAVYO_SIEM_API_DOCS": "on"}).serve_api_docs is True
    assert (
        Settings.from_env(
            {"XAVYO_SIEM_API_DOCS": "off", "XAVYO_SIEM_ENV": "development"}
        ).serve_api_docs
        is False
    )
    with pytest.raises(ValueError, match="XAVYO_SIEM_API_DOCS"):
        Settings.from_env({"XAVYO_SIEM_API_DOCS": "maybe"})
