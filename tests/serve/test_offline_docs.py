"""/docs (Swagger UI) and /redoc render in Chromium with every request off the server refused:
their JavaScript and CSS come from files installed with findbox, not from a CDN."""

from __future__ import annotations

from urllib.parse import urlparse

import pytest

from tests.serve.test_page import browser  # noqa: F401  (fixture: Debian's chromium through playwright)


@pytest.mark.parametrize("path, rendered", [("/docs", ".swagger-ui .opblock-summary-path"),
                                            ("/redoc", "[role=menuitem], .menu-content li")])
def test_docs_render_with_the_network_blocked(browser, live_server, path, rendered):  # noqa: F811
    server = urlparse(live_server.url).netloc
    context = browser.new_context()
    blocked: list[str] = []

    def only_the_server(route):
        if urlparse(route.request.url).netloc == server:
            route.continue_()
        else:
            blocked.append((route.request.resource_type, route.request.url))
            route.abort("internetdisconnected")

    context.route("**/*", only_the_server)
    page = context.new_page()
    page.set_default_timeout(60_000)
    try:
        page.goto(live_server.url + path)
        page.wait_for_selector(rendered)  # the UI drew the API's operations
        assert "/identify" in page.content()
        # ReDoc's sidebar footer shows Redocly's logo from their CDN: decoration, refused and not needed
        assert [b for b in blocked if b[0] != "image"] == [], blocked
    finally:
        context.close()
