"""Fixtures for the client tests: one in-process API server per module, a Client, a fresh namespace."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from timoner.client import Client, Resource, load_kubeconfig
from timoner.testing import ServerThread

NAMESPACES = Resource("", "v1", "namespaces", False)


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    with ServerThread(tmp_path_factory.mktemp("client") / "data", storage="memory") as srv:
        yield srv


@pytest.fixture
async def client(api):
    async with Client(load_kubeconfig(api.kubeconfig), user_agent="client-tests") as c:
        yield c


@pytest.fixture
async def ns(client):
    name = f"c-{uuid.uuid4().hex[:8]}"
    await client.create(NAMESPACES, {"metadata": {"name": name}})
    return name


@pytest.fixture
def eventually():
    """Poll `check` (sync) until it is truthy or `timeout` passes; returns its last value."""

    async def wait(check, timeout: float = 10.0, what: str = "condition"):
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            value = check()
            if value:
                return value
            if loop.time() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}")
            await asyncio.sleep(0.02)

    return wait
