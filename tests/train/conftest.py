"""Fixtures shared by the trainer tests."""

import pytest
import torch


@pytest.fixture
def one_thread():
    """Tiny matrices: on a shared 2-core machine two intra-op threads made each step ~40x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
