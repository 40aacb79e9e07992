"""Fixtures shared by the apiserver unit tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from timoner.apiserver.objects import validate_object
from timoner.apiserver.store import Store, _decode
from timoner.apiserver.watchcache import WatchCache
from timoner.storage import MemoryBackend


@pytest.fixture
async def store() -> AsyncIterator[Store]:
    """A real Store over an in-memory backend, with the API server's validator."""
    backend = MemoryBackend()
    cache = WatchCache(backend, decode=_decode)
    await cache.start()
    try:
        yield Store(backend, cache, validate=validate_object)
    finally:
        await cache.stop()
        await backend.close()
