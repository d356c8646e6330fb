"""pytest fixtures shared by the tests (the helper classes they return live in tests/helpers.py)."""

from __future__ import annotations

import pytest

from tests.helpers import CountingArgmax, TorchTopK


@pytest.fixture
def argmax_solver() -> CountingArgmax:
    return CountingArgmax()


@pytest.fixture
def topk_solver() -> TorchTopK:
    return TorchTopK(2)
