"""Fixtures for the network tests: a module-wide API server for the modules that want one, and the proxy lab.

A test gets a fresh API server of its own by default (the root `server`):
a service proxy sees every Service in the cluster. `module_server` is one
server for a whole module, for modules whose tests read only what they
wrote (the DNS server's names are per namespace, the ingress controller's
Ingresses per class); such a module makes it its `server`.
"""

from __future__ import annotations

import pytest
from proxy_lab import Lab

from timoner.testing import ServerThread


@pytest.fixture(scope="module")
def module_server(tmp_path_factory):
    """One in-process API server (memory storage) for every test of a module."""
    with ServerThread(tmp_path_factory.mktemp("api") / "data", storage="memory") as srv:
        yield srv


@pytest.fixture
def lab():
    """The network of namespaces in `proxy_lab.py`, built for one test and removed after it, whatever happened."""
    lab = Lab()
    try:
        yield lab.build()
    finally:
        lab.close()
