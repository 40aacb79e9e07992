"""Fixtures of the admission webhook tests: a webhook server per module, configurations per test."""

from __future__ import annotations

import uuid

import pytest
from webhook_server import WebhookServer

ADMISSION = "/apis/admissionregistration.k8s.io/v1"


@pytest.fixture(scope="module")
def hooks():
    """The module's HTTPS webhook server (certificate for 127.0.0.1 and `localhost`)."""
    with WebhookServer() as server:
        yield server


@pytest.fixture
def configure(c):
    """`configure(kind, webhooks)` creates a Mutating/ValidatingWebhookConfiguration; deleted after the test."""
    made: list[tuple[str, str]] = []

    def create(kind: str, webhooks: list[dict]) -> dict:
        plural = f"{kind.lower()}s"
        name = f"cfg-{uuid.uuid4().hex[:8]}"
        r = c.post(f"{ADMISSION}/{plural}", json={
            "apiVersion": "admissionregistration.k8s.io/v1", "kind": kind, "metadata": {"name": name},
            "webhooks": webhooks})
        assert r.status_code == 201, r.text
        made.append((plural, name))
        # A GET waits for the watch cache to have the write, which is where admission reads configurations.
        c.get(f"{ADMISSION}/{plural}/{name}").raise_for_status()
        return r.json()

    yield create
    for plural, name in made:
        c.delete(f"{ADMISSION}/{plural}/{name}")
