"""The real kubectl's server-side apply against an in-process Timoner API server."""

from __future__ import annotations

import json

import pytest

from timoner.testing import kubectl

MANIFEST = """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {{app: web{extra_label}}}
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      containers:
      - name: web
        image: nginx:1.25
        ports:
        - containerPort: 80
"""


def manifest(replicas=2, extra_label=""):
    return MANIFEST.format(replicas=replicas, extra_label=f", {extra_label}" if extra_label else "")


@pytest.fixture
def ns(shared_ns):
    return shared_ns


def k(server, *args, **kw):
    return kubectl(server.kubeconfig, *args, **kw)


def get(server, ns):
    return json.loads(k(server, "get", "deployment", "web", "-n", ns, "-o", "json",
                        "--show-managed-fields").stdout)


def test_server_side_apply_conflicts_force_and_pruning(shared_server, ns):
    out = k(shared_server, "apply", "--server-side", "-n", ns, "-f", "-",
            input=manifest(extra_label="tier: front")).stdout
    assert "deployment.apps/web serverside-applied" in out
    obj = get(shared_server, ns)
    [entry] = obj["metadata"]["managedFields"]
    assert (entry["manager"], entry["operation"]) == ("kubectl", "Apply")

    # A second manager that wants another replica count conflicts, with upstream's message.
    proc = k(shared_server, "apply", "--server-side", "--field-manager=scaler", "-n", ns, "-f", "-",
             input=manifest(replicas=5, extra_label="tier: front"), check=False)
    assert proc.returncode != 0
    assert 'Apply failed with 1 conflict: conflict with "kubectl": .spec.replicas' in proc.stderr
    assert get(shared_server, ns)["spec"]["replicas"] == 2

    # --force-conflicts takes the field over.
    k(shared_server, "apply", "--server-side", "--force-conflicts", "--field-manager=scaler", "-n", ns,
      "-f", "-", input=manifest(replicas=5, extra_label="tier: front"))
    obj = get(shared_server, ns)
    assert obj["spec"]["replicas"] == 5
    assert {e["manager"] for e in obj["metadata"]["managedFields"]} == {"kubectl", "scaler"}

    # Both managers own the label; once both drop it from their manifests it is gone.
    k(shared_server, "apply", "--server-side", "-n", ns, "-f", "-", input=manifest(replicas=5))
    assert get(shared_server, ns)["metadata"]["labels"] == {"app": "web", "tier": "front"}
    k(shared_server, "apply", "--server-side", "--field-manager=scaler", "-n", ns, "-f", "-",
      input=manifest(replicas=5))
    assert get(shared_server, ns)["metadata"]["labels"] == {"app": "web"}


def test_server_side_apply_after_client_side_create_and_dry_run(shared_server, ns):
    k(shared_server, "create", "-n", ns, "-f", "-", input=manifest())
    obj = get(shared_server, ns)
    assert ("kubectl-create", "Update") in {(e["manager"], e["operation"]) for e in obj["metadata"]["managedFields"]}
    proc = k(shared_server, "apply", "--server-side", "-n", ns, "-f", "-", input=manifest(replicas=3),
             check=False)
    assert proc.returncode != 0
    assert 'conflict with "kubectl-create" using apps/v1: .spec.replicas' in proc.stderr
    out = k(shared_server, "apply", "--server-side", "--dry-run=server", "--force-conflicts", "-n", ns, "-f", "-",
            input=manifest(replicas=3)).stdout
    assert "serverside-applied (server dry run)" in out
    assert get(shared_server, ns)["spec"]["replicas"] == 2
    k(shared_server, "scale", "deployment", "web", "-n", ns, "--replicas=4")
    assert get(shared_server, ns)["spec"]["replicas"] == 4
