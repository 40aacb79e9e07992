"""Fixtures for the client tests: one in-process API server per module, a Client, a fresh namespace."""

from __future__ import annotations

import uuid

import pytest

from timoner.api.errors import NotFound
from timoner.client import Client, Resource, load_kubeconfig
from timoner.testing import ServerThread, eventually

NAMESPACES = Resource("", "v1", "namespaces", False)
CONFIGMAPS = Resource("", "v1", "configmaps", True)


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
    # As upstream's e2e framework: a namespace is ready once its kube-root-ca.crt ConfigMap is published.
    await eventually(lambda: _has_root_ca(client, name), what=f"kube-root-ca.crt in {name}")
    return name


async def _has_root_ca(client, namespace: str) -> bool:
    try:
        await client.get(CONFIGMAPS, "kube-root-ca.crt", namespace=namespace)
    except NotFound:
        return False
    return True
