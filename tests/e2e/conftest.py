"""Shared e2e fixtures: a `timoner up` per test module, and a namespace per test.

Each module that asks for `up` gets a cluster of its own (module scope), so a module that
cordons its node or kills a component does not disturb the others.
"""

from __future__ import annotations

import uuid

import pytest

from timoner.testing import TimonerUp


@pytest.fixture(scope="module")
def up(tmp_path_factory):
    with TimonerUp(tmp_path_factory.mktemp("up") / "data") as cluster:
        yield cluster


@pytest.fixture
def ns(up):
    """A namespace of the test's own on `up`, deleted (without waiting) afterwards."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    up.kubectl("create", "namespace", name)
    yield name
    up.kubectl("delete", "namespace", name, "--wait=false", check=False)
