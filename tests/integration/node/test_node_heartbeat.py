"""The NodeLease design: the Lease is renewed every interval; the status is written only on change or when due."""

from __future__ import annotations

import re
import uuid

from timoner.api.errors import NotFound
from timoner.client import LEASES, resource_for
from timoner.node.status import NODES

MICRO_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
NAMESPACES = resource_for("v1", "Namespace")
PODS = resource_for("v1", "Pod")


async def _lease(client, name):
    try:
        return await client.get(LEASES, name, namespace="kube-node-lease")
    except NotFound:
        return None


async def test_lease_is_created_owned_by_the_node_and_renewed(client, config, start_agent, node_name, eventually):
    await start_agent(config)
    node = await client.get(NODES, node_name)
    lease = await eventually(lambda: _lease(client, node_name), what="lease")

    spec = lease["spec"]
    assert spec["holderIdentity"] == node_name
    assert spec["leaseDurationSeconds"] == 40
    assert MICRO_TIME.match(spec["renewTime"]), spec["renewTime"]
    assert lease["metadata"]["ownerReferences"] == [
        {"apiVersion": "v1", "kind": "Node", "name": node_name, "uid": node["metadata"]["uid"]}]

    first = spec["renewTime"]

    async def renewed():
        current = await _lease(client, node_name)
        return current is not None and current["spec"]["renewTime"] > first

    await eventually(renewed, what="renewTime to advance")


async def test_status_is_not_rewritten_while_nothing_changes(client, config, start_agent, node_name, eventually):
    agent = await start_agent(config)
    node_rv = (await client.get(NODES, node_name))["metadata"]["resourceVersion"]
    lease_rv = (await eventually(lambda: _lease(client, node_name), what="lease"))["metadata"]["resourceVersion"]

    # Many lease renewals and many status comparisons later...
    await eventually(lambda: agent.lease.renewals >= 8 and agent.status.syncs >= 8, what="8 renewals and syncs")

    node = await client.get(NODES, node_name)
    lease = await _lease(client, node_name)
    assert agent.status.writes == 0
    assert node["metadata"]["resourceVersion"] == node_rv  # the Node was not written at all
    assert lease["metadata"]["resourceVersion"] != lease_rv  # while the Lease was


async def test_status_is_rewritten_when_the_report_interval_passes(client, config, start_agent, node_name,
                                                                   eventually):
    agent = await start_agent(config, status_report_interval=1.0)
    before = await client.get(NODES, node_name)
    ready_before = {c["type"]: c for c in before["status"]["conditions"]}["Ready"]

    async def heartbeat_advanced():
        node = await client.get(NODES, node_name)
        ready = {c["type"]: c for c in node["status"]["conditions"]}["Ready"]
        return (node, ready) if ready["lastHeartbeatTime"] > ready_before["lastHeartbeatTime"] else None

    node, ready = await eventually(heartbeat_advanced, what="a status report with a newer heartbeat")
    assert agent.status.writes >= 1
    assert node["metadata"]["resourceVersion"] != before["metadata"]["resourceVersion"]
    assert ready["status"] == "True"
    assert ready["lastTransitionTime"] == ready_before["lastTransitionTime"]  # no flip, no transition


async def test_status_someone_else_changed_is_put_right(client, config, start_agent, node_name, eventually):
    await start_agent(config)
    node = await client.get(NODES, node_name)
    conditions = [dict(c) for c in node["status"]["conditions"]]
    for condition in conditions:
        if condition["type"] == "Ready":
            condition.update(status="Unknown", reason="NodeStatusUnknown", message="Kubelet stopped posting")
    await client.patch(NODES, node_name, {"status": {"conditions": conditions}}, subresource="status")

    async def ready_again():
        current = await client.get(NODES, node_name)
        ready = {c["type"]: c for c in current["status"]["conditions"]}["Ready"]
        return ready if ready["status"] == "True" else None

    ready = await eventually(ready_again, what="Ready=True restored")
    assert ready["reason"] == "KubeletReady"


async def test_pod_informer_sees_only_pods_bound_to_this_node(client, config, start_agent, node_name, eventually):
    agent = await start_agent(config)
    ns = f"p-{uuid.uuid4().hex[:8]}"
    await client.create(NAMESPACES, {"metadata": {"name": ns}})

    def pod(name, node):
        spec = {"containers": [{"name": "c", "image": "busybox"}]}
        if node:
            spec["nodeName"] = node
        return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns}, "spec": spec}

    await client.create(PODS, pod("mine", node_name), namespace=ns)
    await client.create(PODS, pod("elsewhere", "another-node"), namespace=ns)
    await client.create(PODS, pod("unbound", None), namespace=ns)
    await eventually(lambda: agent.pods.lister.get(ns, "mine") is not None, what="bound pod in the cache")
    # A later event proves the informer had the chance to see the others: it still does not hold them.
    await client.create(PODS, pod("mine-2", node_name), namespace=ns)
    await eventually(lambda: agent.pods.lister.get(ns, "mine-2") is not None, what="second bound pod")
    assert sorted(p["metadata"]["name"] for p in agent.pods.lister.list(ns)) == ["mine", "mine-2"]

    await client.delete(PODS, "mine", namespace=ns, grace_period_seconds=0)
    await eventually(lambda: agent.pods.lister.get(ns, "mine") is None, what="deleted pod gone from the cache")
