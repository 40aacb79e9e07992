"""Fixtures shared by the integration tests."""

from __future__ import annotations

import pytest

from timoner.testing import eventually as _eventually


@pytest.fixture
def eventually():
    """`timoner.testing.eventually`: poll a sync or async check until it is truthy, with a deadline."""
    return _eventually
