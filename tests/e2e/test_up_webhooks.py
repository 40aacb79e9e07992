"""Admission webhooks on `timoner up`, driven by the real kubectl.

The webhooks are served by this test process over HTTPS (its own CA, passed as `caBundle`) and
configured with `clientConfig.url`, which the API server dials directly.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

_spec = importlib.util.spec_from_file_location(
    "admission_webhook_server", Path(__file__).parents[1] / "integration" / "admission" / "webhook_server.py")
assert _spec is not None and _spec.loader is not None
webhook_server = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(webhook_server)


@pytest.fixture(scope="module")
def hooks():
    with webhook_server.WebhookServer() as server:
        yield server


def _apply(up, obj: dict) -> None:
    up.kubectl("apply", "-f", "-", input=json.dumps(obj))


def test_kubectl_create_is_mutated_and_refused_by_webhooks(up, ns, hooks):
    hooks.handlers["/label"] = webhook_server.add_label("admitted-by", "e2e-webhook")
    hooks.handlers["/deny"] = webhook_server.deny("secrets named forbidden are not welcome here")
    _apply(up, {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
                "metadata": {"name": f"label-{ns}"},
                "webhooks": [webhook_server.webhook("label.e2e.timoner.dev", hooks.url("/label"), hooks.ca_bundle,
                                                    ns=ns)]})
    _apply(up, {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
                "metadata": {"name": f"deny-{ns}"},
                "webhooks": [webhook_server.webhook("deny.e2e.timoner.dev", hooks.url("/deny"), hooks.ca_bundle,
                                                    ns=ns, resources=("secrets",))]})
    try:
        # Reading them back also waits for the server's watch cache, where admission finds configurations.
        listed = json.loads(up.kubectl("get", "mutatingwebhookconfigurations", "-o", "json").stdout)
        assert f"label-{ns}" in [i["metadata"]["name"] for i in listed["items"]]
        up.kubectl("get", "validatingwebhookconfiguration", f"deny-{ns}")

        up.kubectl("create", "configmap", "app", "-n", ns, "--from-literal=a=b")
        cm = json.loads(up.kubectl("get", "configmap", "app", "-n", ns, "-o", "json").stdout)
        assert cm["metadata"]["labels"] == {"admitted-by": "e2e-webhook"}
        (review,) = [r for r in hooks.received("/label") if r["request"]["namespace"] == ns]
        assert review["request"]["userInfo"]["username"]  # kubectl's user, as authenticated
        assert review["request"]["object"]["data"] == {"a": "b"}

        # `kubectl create secret` words a refusal its own way; `create -f` shows the server's error.
        refused = up.kubectl("create", "secret", "generic", "forbidden", "-n", ns, "--from-literal=x=y",
                             check=False)
        assert refused.returncode != 0
        assert ('admission webhook "deny.e2e.timoner.dev" denied the request: '
                "secrets named forbidden are not welcome here") in refused.stderr
        secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "forbidden", "namespace": ns},
                  "stringData": {"x": "y"}}
        refused = up.kubectl("create", "-f", "-", input=json.dumps(secret), check=False)
        assert refused.returncode != 0
        assert refused.stderr.startswith("Error from server")
        assert ('admission webhook "deny.e2e.timoner.dev" denied the request: '
                "secrets named forbidden are not welcome here") in refused.stderr
        missing = up.kubectl("get", "secret", "forbidden", "-n", ns, check=False)
        assert missing.returncode != 0 and "NotFound" in missing.stderr
    finally:
        up.kubectl("delete", "mutatingwebhookconfiguration", f"label-{ns}", check=False)
        up.kubectl("delete", "validatingwebhookconfiguration", f"deny-{ns}", check=False)
