"""`/docs` (Swagger UI) and `/redoc` served from files installed with findbox, never from a CDN.

FastAPI's own pages load their JavaScript and CSS from a CDN, so offline they are blank. The
fastapi-offline package ships Swagger UI's and ReDoc's built files (MIT, as are Swagger UI and
ReDoc); only its static folder is used here, mounted at STATIC_URL. Both pages are sent with a
Content-Security-Policy allowing only the server itself (plus inline code, data: and blob: URLs,
which these bundles use), so the browser does not even attempt a request elsewhere: ReDoc's
sidebar otherwise fetches Redocly's logo from their CDN, unconditionally, from inside its bundle.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

STATIC_URL = "/static/docs"
# 'self' is the server; inline styles and scripts, data: images and blob: workers are what Swagger UI
# and ReDoc build at run time. Anything on another host is refused by the browser before it is sent.
SAME_ORIGIN_ONLY = "default-src 'self' 'unsafe-inline' data: blob:"


def _same_origin_only(response: HTMLResponse) -> HTMLResponse:
    response.headers["Content-Security-Policy"] = SAME_ORIGIN_ONLY
    return response


def docs_files() -> Path:
    """The folder holding swagger-ui-bundle.js, swagger-ui.css, redoc.standalone.js and favicon.png."""
    import fastapi_offline

    return Path(fastapi_offline.__file__).parent / "static"


def add_docs_routes(app: FastAPI) -> None:
    """/docs and /redoc on `app` (made with docs_url=None, redoc_url=None), their files from `docs_files()`."""
    app.mount(STATIC_URL, StaticFiles(directory=docs_files()), name="docs-static")
    oauth2_redirect = app.swagger_ui_oauth2_redirect_url or "/docs/oauth2-redirect"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return _same_origin_only(get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}", title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=oauth2_redirect,
            swagger_js_url=f"{root}{STATIC_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{STATIC_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{STATIC_URL}/favicon.png"))

    @app.get(oauth2_redirect, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return _same_origin_only(get_redoc_html(
            openapi_url=f"{root}{app.openapi_url}", title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{STATIC_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{STATIC_URL}/favicon.png", with_google_fonts=False))
