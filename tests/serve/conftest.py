"""One real `findbox serve` process shared by the page, metrics, concurrency and fuzz tests."""

from __future__ import annotations

import pytest

from tests.conftest import ServerProcess, tiny_serve_args


@pytest.fixture(scope="session")
def live_server(tiny_models):
    proc = ServerProcess(tiny_serve_args(tiny_models, upscaler=False) + ["--max-image-pixels", "4000000"])
    yield proc
    proc.stop()
