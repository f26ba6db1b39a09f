"""The API's interactive reference at `/docs`: Swagger UI from the installed
`swagger-ui-bundle` package, so the page works with no internet access (no CDN)."""

from __future__ import annotations

from typing import Final

import swagger_ui_bundle
from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

__all__ = ["ASSETS", "install_swagger_ui"]

ASSETS: Final = "/docs/assets"


def install_swagger_ui(app: FastAPI) -> None:
    """Serve `/docs` (the page) and `/docs/assets/…` (its scripts and styles) on `app`."""
    app.mount(ASSETS, StaticFiles(directory=swagger_ui_bundle.swagger_ui_path), name="swagger")

    @app.get("/docs", include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title}: API reference",
            swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS}/favicon-32x32.png",
        )
