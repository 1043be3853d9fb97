"""One real `findbox serve` process shared by the page, metrics, concurrency and fuzz tests."""

from __future__ import annotations

import pytest

from tests.conftest import ServerProcess, tiny_serve_args


@pytest.fixture(scope="session")
def live_server(tiny_models):
    # torch, not auto: test_ray compares its answers exactly with a Ray detector replica, which runs with
    # another thread count, so auto could time the two backends apart and pick differently there
    proc = ServerProcess(tiny_serve_args(tiny_models, upscaler=False) + ["--max-image-pixels", "4000000",
                                                                         "--detector-backend", "torch"])
    yield proc
    proc.stop()
