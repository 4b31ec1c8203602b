"""Shared pytest set-up. This folder is on ``sys.path`` (pytest inserts a
conftest's folder), so tests import the helpers in ``toy_models.py``."""

import pytest


@pytest.fixture(autouse=True)
def _seed():
    import torch
    torch.manual_seed(0)


@pytest.fixture
def mask_calls(monkeypatch):
    """N:M masks the sparse layers compute, counted by layer name."""
    from nm_reference import count_mask_computations
    return count_mask_computations(monkeypatch)


@pytest.fixture(scope='module')
def one_thread():
    """One intra-op thread for the module: on a busy 2-core machine whole
    models run much faster so."""
    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
