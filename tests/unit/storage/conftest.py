"""Fixtures for the storage conformance suite: every test runs against every driver."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from timoner.storage import Backend, MemoryBackend, SQLiteBackend


@pytest.fixture(params=["memory", "sqlite"])
async def backend(request: pytest.FixtureRequest, tmp_path) -> AsyncIterator[Backend]:
    if request.param == "memory":
        store: Backend = MemoryBackend()
    else:
        store = await SQLiteBackend.open(tmp_path / "state.db")
    try:
        yield store
    finally:
        await store.close()
