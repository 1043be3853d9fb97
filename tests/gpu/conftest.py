"""The CUDA path, checked the first time a GPU is at hand: `make test-gpu`.

Every test here carries the `gpu` marker and is collected everywhere, but skips (with the
reason) unless torch sees a CUDA device, so a CPU run reports them as skipped, not failed.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

GPU_DIR = Path(__file__).parent
NO_CUDA = "needs CUDA: torch.cuda.is_available() is False here; run `make test-gpu` on a host with an NVIDIA GPU"


def pytest_collection_modifyitems(config, items):
    # this hook sees the whole session's items: touch only this folder's
    if torch.cuda.is_available():
        return
    for item in items:
        if GPU_DIR in Path(item.path).parents and item.get_closest_marker("gpu"):
            item.add_marker(pytest.mark.skip(reason=NO_CUDA))
