"""/metrics says which build answers (`findbox --version` of the server)."""

from __future__ import annotations

import platform

import httpx

from findbox import __version__


def test_metrics_carry_the_build(live_server):
    text = httpx.get(live_server.url + "/metrics", timeout=30).text
    assert f'findbox_build_info{{python="{platform.python_version()}",version="{__version__}"}} 1.0' in text
