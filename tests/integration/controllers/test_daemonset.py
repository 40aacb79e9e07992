"""The DaemonSet controller against a real API server: a pod per node (hollow or agentless), bound by the scheduler."""

from __future__ import annotations

from controller_helpers import PODS, controller_of, events_for, is_ready, pods_of

from timoner.client import resource_for

DAEMON_SETS = resource_for("apps/v1", "DaemonSet")
REVISIONS = resource_for("apps/v1", "ControllerRevision")
NODES = resource_for("v1", "Node")

DEFAULT_TOLERATIONS = [
    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/disk-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/memory-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/pid-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"},
]


def daemon_set(name, *, labels=None, node_selector=None, **spec):
    labels = labels or {"app": name}
    pod_spec = {"containers": [{"name": "c", "image": "busybox"}], "terminationGracePeriodSeconds": 1}
    if node_selector:
        pod_spec["nodeSelector"] = node_selector
    body = {"selector": {"matchLabels": dict(labels)},
            "template": {"metadata": {"labels": dict(labels)}, "spec": pod_spec}}
    body.update(spec)
    return {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": name}, "spec": body}


async def fake_node(client, name, *, labels=None, taints=None):
    """A Node with no agent behind it: the scheduler places pods there and they stay Pending."""
    node = {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **(labels or {})}},
            "spec": {"taints": taints} if taints else {}}
    await client.create(NODES, node)
    # A patch, as a kubelet writes it: node IPAM may have patched the new Node's podCIDR meanwhile.
    status = {"capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
              "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"}}
    return await client.patch(NODES, name, {"status": status}, subresource="status")


async def _ds(client, namespace, name):
    return await client.get(DAEMON_SETS, name, namespace=namespace)


async def status_is(client, namespace, name, **want):
    ds = await _ds(client, namespace, name)
    status = ds.get("status") or {}
    return all(status.get(k, 0) == v for k, v in want.items()) and ds


async def rolled_out(client, namespace, name, desired):
    """What `kubectl rollout status daemonset/NAME` waits for."""
    ds = await _ds(client, namespace, name)
    s = ds.get("status") or {}
    done = (s.get("observedGeneration", 0) >= ds["metadata"]["generation"]
            and s.get("desiredNumberScheduled") == desired
            and s.get("updatedNumberScheduled", 0) == desired and s.get("numberAvailable", 0) == desired)
    return ds if done else None


async def finish_deletions(client, namespace):
    """What a kubelet does for a terminating pod once its containers stopped (fake nodes have none)."""
    for pod in (await client.list(PODS, namespace=namespace))["items"]:
        if pod["metadata"].get("deletionTimestamp"):
            await client.delete(PODS, pod["metadata"]["name"], namespace=namespace, grace_period_seconds=0)


def node_of(pod):
    return pod["spec"].get("nodeName")


async def pods_by_node(client, namespace):
    out = {}
    for pod in await pods_of(client, namespace):
        out.setdefault(node_of(pod) or "", []).append(pod)  # "": not bound yet
    return out


async def test_one_ready_pod_per_node_placed_by_node_affinity(cluster, client, namespace, eventually):
    await cluster.start_node("node-2")
    await cluster.start_node("node-3")
    await client.create(DAEMON_SETS, daemon_set("agent"), namespace=namespace)
    ds = await eventually(lambda: rolled_out(client, namespace, "agent", 3), 60, "3 daemon pods available")
    status = ds["status"]
    assert (status["desiredNumberScheduled"], status["currentNumberScheduled"], status["numberReady"],
            status["numberMisscheduled"], status["observedGeneration"]) == (3, 3, 3, 0, 1)
    assert "numberUnavailable" not in status

    by_node = await pods_by_node(client, namespace)
    assert sorted(by_node) == ["node-1", "node-2", "node-3"] and all(len(p) == 1 for p in by_node.values())
    revisions = (await client.list(REVISIONS, namespace=namespace))["items"]
    assert len(revisions) == 1 and revisions[0]["revision"] == 1
    hash_ = revisions[0]["metadata"]["labels"]["controller-revision-hash"]
    assert revisions[0]["metadata"]["name"] == f"agent-{hash_}"
    for node, (pod,) in by_node.items():
        assert is_ready(pod) and pod["metadata"]["name"].startswith("agent-")
        assert pod["metadata"]["labels"] == {"app": "agent", "controller-revision-hash": hash_}
        assert controller_of(pod)["uid"] == ds["metadata"]["uid"]
        terms = pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        assert terms == {"nodeSelectorTerms": [
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}]}
        for toleration in DEFAULT_TOLERATIONS:
            assert toleration in pod["spec"]["tolerations"]

    async def created_events():
        events = [e for e in await events_for(client, namespace, "agent") if e[1] == "SuccessfulCreate"]
        return len(events) == 3 and events
    events = await eventually(created_events, 30, "3 SuccessfulCreate events")
    assert all(e[3] == "daemonset-controller" and e[2].startswith("Created pod: agent-") for e in events)


async def test_nodes_coming_and_going_and_their_labels_and_taints(bare, client, namespace, eventually):
    bare.start_scheduler()
    await bare.start_manager()
    await fake_node(client, "a", labels={"role": "edge"})
    await fake_node(client, "b", labels={"role": "edge"})
    await fake_node(client, "c")
    await client.create(DAEMON_SETS, daemon_set("edge", node_selector={"role": "edge"}), namespace=namespace)

    async def on_nodes(*names):
        by_node = await pods_by_node(client, namespace)
        return sorted(by_node) == sorted(names) and all(len(p) == 1 for p in by_node.values())
    await eventually(lambda: on_nodes("a", "b"), 30, "pods on a and b (bound by the scheduler)")
    await eventually(lambda: status_is(client, namespace, "edge", desiredNumberScheduled=2,
                                       currentNumberScheduled=2, numberReady=0, numberUnavailable=2), 30, "status")

    # A label makes c eligible; a new node appears; a node loses its label.
    await client.patch(NODES, "c", {"metadata": {"labels": {"role": "edge"}}})
    await fake_node(client, "d", labels={"role": "edge"})
    await client.patch(NODES, "a", {"metadata": {"labels": {"role": None}}})
    await eventually(lambda: on_nodes("b", "c", "d"), 30, "pods on b, c and d")
    await finish_deletions(client, namespace)

    # A NoSchedule taint keeps new pods off but lets the running one stay; NoExecute evicts it.
    await client.patch(NODES, "b", {"spec": {"taints": [{"key": "dedicated", "value": "x", "effect": "NoSchedule"}]}})
    await eventually(lambda: status_is(client, namespace, "edge", desiredNumberScheduled=2,
                                       numberMisscheduled=1), 30, "b no longer desired, its pod kept")
    assert await on_nodes("b", "c", "d")
    await client.patch(NODES, "b", {"spec": {"taints": [{"key": "dedicated", "value": "x", "effect": "NoExecute"}]}})
    await eventually(lambda: on_nodes("c", "d"), 30, "the pod on b deleted")
    await finish_deletions(client, namespace)

    # Taints every daemon pod tolerates do not matter.
    await client.patch(NODES, "c", {"spec": {"unschedulable": True, "taints": [
        {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"},
        {"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"}]}})
    await client.delete(NODES, "d")
    await eventually(lambda: status_is(client, namespace, "edge", desiredNumberScheduled=1,
                                       currentNumberScheduled=1, numberMisscheduled=0), 30, "only c desired")


async def test_failed_pod_is_replaced_with_an_event(bare, client, namespace, eventually):
    bare.start_scheduler()
    await bare.start_manager()
    await fake_node(client, "a")
    await client.create(DAEMON_SETS, daemon_set("agent"), namespace=namespace)

    async def bound():
        pods = await pods_of(client, namespace)
        return len(pods) == 1 and node_of(pods[0]) == "a" and pods[0]
    pod = await eventually(bound, 30, "a pod bound to a")
    pod["status"]["phase"] = "Failed"
    await client.update(PODS, pod, subresource="status")

    async def replaced():
        pods = await pods_of(client, namespace, active=False)
        return len(pods) == 1 and pods[0]["metadata"]["uid"] != pod["metadata"]["uid"] and pods[0]
    await eventually(replaced, 30, "a new pod")
    message = f"Found failed daemon pod {namespace}/{pod['metadata']['name']} on node a, will try to kill it"

    async def event():
        return ("Warning", "FailedDaemonPod", message, "daemonset-controller") in await events_for(
            client, namespace, "agent")
    await eventually(event, 30, "FailedDaemonPod event")


async def _rolled_to(client, namespace, name, desired, old_hashes):
    ds = await rolled_out(client, namespace, name, desired)
    if ds is None:
        return None
    pods = await pods_of(client, namespace)
    hashes = {p["metadata"]["labels"]["controller-revision-hash"] for p in pods}
    return len(pods) == desired and not hashes & set(old_hashes) and ds


async def test_rolling_update_history_and_rollback(cluster, client, namespace, eventually):
    await cluster.start_node("node-2")
    await cluster.start_node("node-3")
    await client.create(DAEMON_SETS, daemon_set("agent"), namespace=namespace)
    await eventually(lambda: rolled_out(client, namespace, "agent", 3), 60, "3 daemon pods available")
    first = (await client.list(REVISIONS, namespace=namespace))["items"][0]
    hash1 = first["metadata"]["labels"]["controller-revision-hash"]

    await client.patch(DAEMON_SETS, "agent", {"spec": {"template": {"metadata": {"labels": {"v": "2"}}}}},
                       namespace=namespace)
    await eventually(lambda: _rolled_to(client, namespace, "agent", 3, [hash1]), 90, "all pods at v2")
    revisions = {r["metadata"]["name"]: r for r in (await client.list(REVISIONS, namespace=namespace))["items"]}
    assert sorted(r["revision"] for r in revisions.values()) == [1, 2]
    second = next(r for r in revisions.values() if r["revision"] == 2)
    hash2 = second["metadata"]["labels"]["controller-revision-hash"]
    assert all(p["metadata"]["labels"]["v"] == "2" for p in await pods_of(client, namespace))

    # `kubectl rollout undo`: revision 1's data as a strategic merge patch.
    await client.patch(DAEMON_SETS, "agent", first["data"], namespace=namespace, patch_type="strategic")
    await eventually(lambda: _rolled_to(client, namespace, "agent", 3, [hash2]), 90, "all pods back at v1")

    async def renumbered():
        numbers = {r["metadata"]["name"]: r["revision"]
                   for r in (await client.list(REVISIONS, namespace=namespace))["items"]}
        return numbers == {first["metadata"]["name"]: 3, second["metadata"]["name"]: 2}
    await eventually(renumbered, 30, "revision 1 renumbered to 3")
    assert all("v" not in p["metadata"]["labels"] for p in await pods_of(client, namespace))


async def test_surge_starts_the_new_pod_before_the_old_one_goes(cluster, client, namespace, eventually):
    await client.create(DAEMON_SETS, daemon_set("agent", updateStrategy={
        "type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}), namespace=namespace)
    await eventually(lambda: rolled_out(client, namespace, "agent", 1), 60, "1 daemon pod available")
    old = (await pods_of(client, namespace))[0]
    await client.patch(DAEMON_SETS, "agent", {"spec": {"template": {"metadata": {"labels": {"v": "2"}}}}},
                       namespace=namespace)

    async def both_ready():
        pods = await pods_of(client, namespace, active=False)
        return len(pods) == 2 and all(is_ready(p) for p in pods)
    await eventually(both_ready, 60, "old and new pod both ready on the node")

    async def old_gone():
        pods = await pods_of(client, namespace, active=False)
        return [p["metadata"]["uid"] for p in pods] != [old["metadata"]["uid"]] and len(pods) == 1 and pods
    (new,) = await eventually(old_gone, 60, "the old pod deleted once the new one is available")
    assert new["metadata"]["labels"]["v"] == "2"


async def test_on_delete_replaces_only_deleted_pods(cluster, client, namespace, eventually):
    await client.create(DAEMON_SETS, daemon_set("agent", updateStrategy={"type": "OnDelete"}), namespace=namespace)
    await eventually(lambda: status_is(client, namespace, "agent", numberAvailable=1, updatedNumberScheduled=1), 60,
                     "1 daemon pod available")
    old = (await pods_of(client, namespace))[0]
    await client.patch(DAEMON_SETS, "agent", {"spec": {"template": {"metadata": {"labels": {"v": "2"}}}}},
                       namespace=namespace)
    ds = await _ds(client, namespace, "agent")
    await eventually(lambda: status_is(client, namespace, "agent", observedGeneration=ds["metadata"]["generation"],
                                       numberAvailable=1), 30, "the new template observed")
    pods = await pods_of(client, namespace)
    assert [p["metadata"]["uid"] for p in pods] == [old["metadata"]["uid"]]
    assert (await _ds(client, namespace, "agent"))["status"].get("updatedNumberScheduled", 0) == 0

    await client.delete(PODS, old["metadata"]["name"], namespace=namespace)

    async def replaced():
        pods = await pods_of(client, namespace)
        return len(pods) == 1 and pods[0]["metadata"]["labels"].get("v") == "2" and pods
    await eventually(replaced, 60, "the deleted pod replaced at v2")
