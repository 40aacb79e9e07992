"""The scheduler against a real in-process API server: binding, failures, events, retries, resources."""

from __future__ import annotations

from timoner.client import resource_for

PODS = resource_for("v1", "Pod")
NODES = resource_for("v1", "Node")
EVENTS = resource_for("v1", "Event")
NS = "default"
CONTROL_PLANE = "node-role.kubernetes.io/control-plane"


def node(name, *, cpu="4", memory="8Gi", pods="110", labels=None, taints=None, unschedulable=False):
    return {
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **(labels or {})}},
        "spec": {"taints": taints or [], "unschedulable": unschedulable},
        "status": {"allocatable": {"cpu": cpu, "memory": memory, "pods": pods},
                   "capacity": {"cpu": cpu, "memory": memory, "pods": pods}},
    }


def pod(name, *, cpu=None, node_selector=None, tolerations=None, affinity=None, scheduler_name=None):
    container = {"name": "c", "image": "busybox"}
    if cpu:
        container["resources"] = {"requests": {"cpu": cpu}}
    spec = {"containers": [container]}
    if node_selector:
        spec["nodeSelector"] = node_selector
    if tolerations:
        spec["tolerations"] = tolerations
    if affinity:
        spec["affinity"] = affinity
    if scheduler_name:
        spec["schedulerName"] = scheduler_name
    return {"metadata": {"name": name, "namespace": NS}, "spec": spec}


def condition(p, kind="PodScheduled"):
    return next((c for c in (p.get("status") or {}).get("conditions") or [] if c["type"] == kind), None)


async def bound_node(client, name):
    p = await client.get(PODS, name, namespace=NS)
    return p["spec"].get("nodeName")


async def test_pods_land_on_the_nodes_their_constraints_allow(client, start_scheduler, eventually):
    await client.create(NODES, node("control", taints=[{"key": CONTROL_PLANE, "effect": "NoSchedule"}]))
    await client.create(NODES, node("cordoned", unschedulable=True))
    await client.create(NODES, node("gpu", labels={"accelerator": "nvidia"}))
    await client.create(NODES, node("worker", labels={"zone": "b"}))
    await start_scheduler()
    await client.create(PODS, pod("wants-gpu", node_selector={"accelerator": "nvidia"}))
    await client.create(PODS, pod("wants-zone-b", affinity={"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]}]}}}))
    await client.create(PODS, pod("tolerates-control-plane", tolerations=[
        {"key": CONTROL_PLANE, "operator": "Exists", "effect": "NoSchedule"}],
        affinity={"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["control", "cordoned"]}]}]}}}))
    expected = {"wants-gpu": "gpu", "wants-zone-b": "worker", "tolerates-control-plane": "control"}

    async def placements():
        got = {name: await bound_node(client, name) for name in expected}
        return got if all(got.values()) else None

    assert await eventually(placements, what="all pods bound") == expected
    for name in expected:
        p = await client.get(PODS, name, namespace=NS)
        assert condition(p)["status"] == "True"

    async def scheduled_events():
        items = (await client.list(EVENTS, namespace=NS, field_selector="reason=Scheduled"))["items"]
        return items if len(items) == len(expected) else None

    events = await eventually(scheduled_events, what="Scheduled events")
    messages = sorted(e["message"] for e in events)
    assert messages == sorted(f"Successfully assigned {NS}/{name} to {target}" for name, target in expected.items())
    assert all(e["type"] == "Normal" and e["source"]["component"] == "default-scheduler" for e in events)


async def test_an_unschedulable_pod_is_explained_then_placed_when_a_node_fits(client, start_scheduler, eventually):
    await client.create(NODES, node("small", cpu="1"))
    await client.create(NODES, node("control-1", taints=[{"key": CONTROL_PLANE, "effect": "NoSchedule"}]))
    await client.create(NODES, node("control-2", taints=[{"key": CONTROL_PLANE, "effect": "NoSchedule"}]))
    await start_scheduler()
    created = await client.create(PODS, pod("big", cpu="2"))
    message = (f"0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had untolerated taint {{{CONTROL_PLANE}: }}. "
               "preemption: 0/3 nodes are available: 1 No preemption victims found for incoming pod, "
               "2 Preemption is not helpful for scheduling.")

    async def unschedulable_condition():
        c = condition(await client.get(PODS, "big", namespace=NS))
        return c if c and c["status"] == "False" else None

    c = await eventually(unschedulable_condition, what="PodScheduled=False")
    assert (c["reason"], c["message"]) == ("Unschedulable", message)

    async def failed_events():
        return (await client.list(EVENTS, namespace=NS, field_selector="reason=FailedScheduling"))["items"]

    event = (await eventually(failed_events, what="FailedScheduling event"))[0]
    assert event["type"] == "Warning"
    assert event["message"] == message
    assert event["source"]["component"] == "default-scheduler"
    assert event["reportingComponent"] == "default-scheduler"
    assert event["involvedObject"]["kind"] == "Pod"
    assert event["involvedObject"]["name"] == "big"
    assert event["involvedObject"]["uid"] == created["metadata"]["uid"]
    assert await bound_node(client, "big") is None

    await client.create(NODES, node("large", cpu="8"))

    async def placed():
        return await bound_node(client, "big")

    assert await eventually(placed, what="pod bound after a fitting node appears") == "large"
    assert condition(await client.get(PODS, "big", namespace=NS))["status"] == "True"


async def test_a_burst_does_not_overcommit_a_node(client, start_scheduler, eventually):
    await client.create(NODES, node("one-cpu", cpu="1"))
    for i in range(3):
        await client.create(PODS, pod(f"p{i}", cpu="400m"))
    # All three are queued at once when the scheduler starts: only assumed pods keep the third off.
    await start_scheduler()

    async def settled():
        pods = (await client.list(PODS, namespace=NS))["items"]
        bound = [p for p in pods if p["spec"].get("nodeName")]
        waiting = [p for p in pods if (condition(p) or {}).get("status") == "False"]
        return (bound, waiting) if len(bound) + len(waiting) == 3 else None

    bound, waiting = await eventually(settled, what="two bound and one unschedulable")
    assert {p["spec"]["nodeName"] for p in bound} == {"one-cpu"}
    assert len(bound) == 2
    assert condition(waiting[0])["message"].startswith("0/1 nodes are available: 1 Insufficient cpu.")

    # Deleting a placed pod gives its cpu back, and the waiting one takes it.
    await client.delete(PODS, bound[0]["metadata"]["name"], namespace=NS, grace_period_seconds=0)
    pending = waiting[0]["metadata"]["name"]

    async def placed():
        return await bound_node(client, pending)

    assert await eventually(placed, what="the waiting pod bound after a delete") == "one-cpu"


async def test_only_pods_for_this_scheduler_are_placed(client, start_scheduler, eventually):
    await client.create(NODES, node("n1"))
    await client.create(PODS, pod("theirs", scheduler_name="other-scheduler"))
    await client.create(PODS, pod("default"))
    await client.create(PODS, pod("custom", scheduler_name="my-scheduler"))
    await start_scheduler(scheduler_name="my-scheduler")

    async def custom_bound():
        return await bound_node(client, "custom")

    assert await eventually(custom_bound, what="the custom-scheduler pod bound") == "n1"
    # All three came in the scheduler's first list, so the other two were seen and left alone.
    assert await bound_node(client, "theirs") is None
    assert await bound_node(client, "default") is None
