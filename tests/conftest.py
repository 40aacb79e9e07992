"""Shared fixtures: a real API server in-process (memory storage unless a test asks for SQLite)."""

from __future__ import annotations

import uuid

import pytest

from timoner.testing import ServerThread, kubectl


@pytest.fixture
def server(tmp_path):
    with ServerThread(tmp_path / "data", storage="memory") as srv:
        yield srv


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory):
    """One server for a module's read-mostly tests (each test uses its own namespace)."""
    with ServerThread(tmp_path_factory.mktemp("shared") / "data", storage="sqlite") as srv:
        yield srv


@pytest.fixture
def shared_ns(shared_server):
    """A namespace of the test's own on `shared_server`, made with kubectl."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    kubectl(shared_server.kubeconfig, "create", "namespace", name)
    return name
