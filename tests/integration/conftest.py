"""Fixtures shared by the integration tests."""

from __future__ import annotations

import uuid

import pytest

from timoner.api.errors import NotFound
from timoner.client import Client, load_kubeconfig, resource_for
from timoner.testing import ServerThread, http_client, wait_until
from timoner.testing import eventually as _eventually

NAMESPACES = resource_for("v1", "Namespace")
CONFIGMAPS = resource_for("v1", "ConfigMap")
ROOT_CA_CONFIGMAP = "kube-root-ca.crt"  # every namespace has it (the API server's root CA publisher)


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
    """A fresh namespace on the server `client` talks to, once it has its `kube-root-ca.crt` ConfigMap
    (as upstream's e2e framework waits for it): what a namespace holds from the start is there."""
    name = f"ns-{uuid.uuid4().hex[:8]}"
    await client.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    await _eventually(lambda: _has_root_ca(client, name), what=f"kube-root-ca.crt in {name}")
    return name


async def _has_root_ca(client, namespace: str) -> bool:
    try:
        await client.get(CONFIGMAPS, ROOT_CA_CONFIGMAP, namespace=namespace)
    except NotFound:
        return False
    return True


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
    wait_until(lambda: c.get(f"/api/v1/namespaces/{name}/configmaps/{ROOT_CA_CONFIGMAP}").status_code == 200,
               timeout=10, what=f"kube-root-ca.crt in {name}", interval=0.02)
    return name
