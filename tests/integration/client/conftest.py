"""Fixtures for the client tests: one in-process API server per module, a Client, a fresh namespace."""

from __future__ import annotations

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
