"""/docs (Swagger UI) and /redoc render in Chromium with every request off the server refused:
their JavaScript and CSS come from files installed with findbox, not from a CDN, and the page does
not even attempt a request to another host (ReDoc's bundle asks Redocly's CDN for a logo)."""

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
    off_server: list = []  # every request the page made to another host, however it ended

    def only_the_server(route):
        if urlparse(route.request.url).netloc == server:
            route.continue_()
        else:
            blocked.append((route.request.resource_type, route.request.url))
            route.abort("internetdisconnected")

    context.route("**/*", only_the_server)
    page = context.new_page()
    page.on("request", lambda r: urlparse(r.url).scheme in ("http", "https")
            and urlparse(r.url).netloc != server and off_server.append(r))
    page.set_default_timeout(60_000)
    try:
        page.goto(live_server.url + path)
        page.wait_for_selector(rendered)  # the UI drew the API's operations
        assert "/identify" in page.content()
        if path == "/redoc":
            page.wait_for_selector("text=API docs by Redocly")  # the footer whose logo came from a CDN
            page.wait_for_timeout(500)
        # nothing reached the network layer (the route sees every request that would be sent) ...
        assert blocked == [], blocked
        # ... because the page's Content-Security-Policy stopped any other host in the browser itself
        assert [(r.url, r.failure) for r in off_server if r.failure != "csp"] == []
    finally:
        context.close()
