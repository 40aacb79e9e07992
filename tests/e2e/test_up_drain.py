"""`kubectl drain` on `timoner up`: cordon, evictions through `pods/eviction`, PodDisruptionBudgets respected.

The module runs its own `timoner up`: draining cordons the only node, which would starve every other
test's pods. Each test leaves the node uncordoned. Containers are real processes (busybox `sleep`).
"""

from __future__ import annotations

import json

import pytest
from up_helpers import PodWatch

from timoner.testing import kubectl, wait_until

pytestmark = pytest.mark.slow

VIOLATION = "Cannot evict pod as it would violate the pod's disruption budget."


@pytest.fixture
def node(up):
    def registered():
        items = json.loads(up.kubectl("get", "nodes", "-o", "json").stdout)["items"]
        return items[0]["metadata"]["name"] if items else None
    name = wait_until(registered, 60, "the node registered")
    yield name
    up.kubectl("uncordon", name, check=False)


def deploy(up, ns, name, replicas):
    out = up.kubectl("create", "deployment", name, "-n", ns, "--image=busybox", f"--replicas={replicas}",
                     "--dry-run=client", "-o", "json", "--", "sleep", "3600").stdout
    manifest = json.loads(out)
    manifest["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = 1
    up.kubectl("apply", "-f", "-", input=json.dumps(manifest))
    up.kubectl("rollout", "status", f"deployment/{name}", "-n", ns, "--timeout=120s", timeout=150)


def pods(up, ns, selector):
    return json.loads(up.kubectl("get", "pods", "-n", ns, "-l", selector, "-o", "json").stdout)["items"]


def ready(pod):
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions") or ())


def pdb_status(up, ns, name):
    return json.loads(up.kubectl("get", "pdb", name, "-n", ns, "-o", "json").stdout).get("status") or {}


def test_drain_evicts_within_the_budget_and_blocks_on_it(up, ns, node):
    deploy(up, ns, "web", 3)
    up.kubectl("create", "pdb", "web", "-n", ns, "--selector=app=web", "--min-available=2")
    wait_until(lambda: pdb_status(up, ns, "web").get("disruptionsAllowed") == 1, 60, "one disruption allowed")
    table = up.kubectl("get", "pdb", "-n", ns).stdout.splitlines()
    assert table[0].split() == ["NAME", "MIN", "AVAILABLE", "MAX", "UNAVAILABLE", "ALLOWED", "DISRUPTIONS", "AGE"]
    assert table[1].split()[:4] == ["web", "2", "N/A", "1"]
    before = {p["metadata"]["name"] for p in pods(up, ns, "app=web")}

    with PodWatch(up.kubeconfig, ns) as watch:
        # One pod may go; its replacement cannot be scheduled on the cordoned node, so the other two
        # evictions are refused (429) until drain's own timeout gives up.
        drain = kubectl(up.kubeconfig, "drain", node, "--ignore-daemonsets", "--delete-emptydir-data",
                        "--timeout=25s", check=False, timeout=120)
        status = pdb_status(up, ns, "web")
    out = drain.stdout + drain.stderr
    assert drain.returncode != 0, out
    assert f"node/{node} cordoned" in out
    assert VIOLATION in out, out
    assert "global timeout reached" in out, out
    evicted = [name for name in before if f"pod/{name} evicted" in out]
    assert len(evicted) == 1, out
    assert watch.min_ready is not None and watch.min_ready >= 2, (watch.min_ready, watch.drops)
    assert status["currentHealthy"] == 2 and status["disruptionsAllowed"] == 0, status
    assert json.loads(up.kubectl("get", "node", node, "-o", "json").stdout)["spec"].get("unschedulable") is True

    now = pods(up, ns, "app=web")
    assert evicted[0] not in {p["metadata"]["name"] for p in now}
    pending = [p for p in now if not p["spec"].get("nodeName")]
    assert len(pending) == 1 and pending[0]["status"]["phase"] == "Pending", now

    # Uncordoned, the replacement is scheduled and becomes Ready; the budget allows one disruption again.
    up.kubectl("uncordon", node)
    wait_until(lambda: sum(ready(p) for p in pods(up, ns, "app=web")) == 3, 120, "3 ready pods again")
    wait_until(lambda: pdb_status(up, ns, "web").get("disruptionsAllowed") == 1, 60, "the budget restored")


def test_drain_of_unguarded_pods_completes(up, ns, node):
    deploy(up, ns, "free", 2)
    before = {p["metadata"]["name"] for p in pods(up, ns, "app=free")}
    drain = kubectl(up.kubeconfig, "drain", node, "--ignore-daemonsets", "--delete-emptydir-data",
                    "--timeout=120s", check=False, timeout=180)
    out = drain.stdout + drain.stderr
    assert drain.returncode == 0, out
    assert f"node/{node} drained" in out
    for name in before:
        assert f"pod/{name} evicted" in out, out
    remaining = pods(up, ns, "app=free")
    assert not before & {p["metadata"]["name"] for p in remaining}
    assert all(not p["spec"].get("nodeName") for p in remaining if not p["metadata"].get("deletionTimestamp"))
    up.kubectl("uncordon", node)
    up.kubectl("rollout", "status", "deployment/free", "-n", ns, "--timeout=120s", timeout=150)
