"""Fixtures shared by the integration tests."""

from __future__ import annotations

import uuid

import pytest

from timoner.client import Client, load_kubeconfig, resource_for
from timoner.testing import ServerThread, http_client
from timoner.testing import eventually as _eventually

NAMESPACES = resource_for("v1", "Namespace")


@pytest.fixture
def eventually():
    """`timoner.testing.eventually`: poll a sync or async check until it is truthy, with a deadline."""
    return _eventually


@pytest.fixture
async def client(server):
    """A Client of the test's own API server (`server`); a folder with a per-module server overrides it."""
    async with Client(load_kubeconfig(server.kubeconfig), user_agent="integration-tests") as c:
        yield c


@pytest.fixture
async def namespace(client):
    """A fresh namespace on the server `client` talks to."""
    name = f"ns-{uuid.uuid4().hex[:8]}"
    await client.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    return name


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    """A module's own in-memory API server, for the tests that speak plain HTTP to it (`c`)."""
    with ServerThread(tmp_path_factory.mktemp("http") / "data", storage="memory") as s:
        yield s


@pytest.fixture
def c(srv):
    """A blocking httpx client of `srv`, authenticated as admin."""
    with http_client(srv) as client:
        yield client


@pytest.fixture
def ns(c):
    """A fresh namespace on `srv`, made through `c`."""
    name = f"s-{uuid.uuid4().hex[:8]}"
    c.post("/api/v1/namespaces", json={"metadata": {"name": name}}).raise_for_status()
    return name
