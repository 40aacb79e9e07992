"""PodDisruptionBudgets against a real API server: the disruption controller's status and `pods/eviction`.

The `cluster` fixture runs the whole manager, the scheduler and a hollow node, so the pods a Deployment
makes become Ready at once and the budgets are computed as they would be on a real cluster.
"""

from __future__ import annotations

import asyncio

import pytest
from controller_helpers import DEPLOYMENTS, PODS, condition, deployment, events_for, is_ready, pods_of

from timoner.api.errors import APIError, TooManyRequests
from timoner.client import resource_for
from timoner.controllers import Manager as ControllerManager
from timoner.controllers import new_stale_pod_disruption_controller

PDBS = resource_for("policy/v1", "PodDisruptionBudget")
CONFIGMAPS = resource_for("v1", "ConfigMap")
VIOLATION = "Cannot evict pod as it would violate the pod's disruption budget."


def pdb(name, *, labels=None, selector=None, **spec):
    body = {"selector": selector if selector is not None else {"matchLabels": dict(labels or {"app": name})}}
    body.update(spec)
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": name}, "spec": body}


def eviction(name, **delete_options):
    body = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": name}}
    if delete_options:
        body["deleteOptions"] = delete_options
    return body


async def evict(client, namespace, name, *, dry_run=False, **delete_options):
    path = PODS.path(namespace=namespace, name=name, subresource="eviction")
    params = {"dryRun": "All"} if dry_run else None
    return await client.request("POST", path, params=params, body=eviction(name, **delete_options))


async def status_is(client, namespace, name, **want):
    obj = await client.get(PDBS, name, namespace=namespace)
    status = obj.get("status") or {}
    return all(status.get(k) == v for k, v in want.items()) and obj


async def ready_deployment(client, namespace, name, eventually, replicas=3, **spec):
    await client.create(DEPLOYMENTS, deployment(name, replicas=replicas, **spec), namespace=namespace)

    async def ready():
        pods = await pods_of(client, namespace, selector=f"app={name}")
        return len(pods) == replicas and all(is_ready(p) for p in pods) and pods
    return await eventually(ready, 60, f"{replicas} ready pods of {name}")


async def test_min_available_int_budget_reports_healthy_pods_and_allowed_disruptions(
        cluster, client, namespace, eventually):
    await ready_deployment(client, namespace, "web", eventually)
    await client.create(PDBS, pdb("web", minAvailable=2), namespace=namespace)

    obj = await eventually(lambda: status_is(client, namespace, "web", currentHealthy=3, desiredHealthy=2,
                                             disruptionsAllowed=1, expectedPods=3, observedGeneration=1),
                           30, "the budget's status")
    allowed = condition(obj, "DisruptionAllowed")
    assert allowed["status"] == "True" and allowed["reason"] == "SufficientPods"
    assert allowed["observedGeneration"] == 1 and allowed["lastTransitionTime"]
    assert "disruptedPods" not in obj["status"]

    # A new spec is observed: the generation moves, and 3 of 3 leaves nothing to disrupt.
    await client.patch(PDBS, "web", {"spec": {"minAvailable": 3}}, namespace=namespace)
    obj = await eventually(lambda: status_is(client, namespace, "web", desiredHealthy=3, disruptionsAllowed=0,
                                             observedGeneration=2), 30, "the new spec observed")
    allowed = condition(obj, "DisruptionAllowed")
    assert (allowed["status"], allowed["reason"]) == ("False", "InsufficientPods")


@pytest.mark.parametrize(("spec", "desired", "allowed"), [
    ({"minAvailable": "50%"}, 2, 1),     # 50% of 3 rounds up to 2
    ({"maxUnavailable": "50%"}, 1, 2),   # 50% of 3 rounds up to 2 unavailable
    ({"maxUnavailable": 1}, 2, 1),
    ({"minAvailable": "100%"}, 3, 0),
])
async def test_percentages_and_max_unavailable_scale_the_deployments_replicas(
        cluster, client, namespace, eventually, spec, desired, allowed):
    await ready_deployment(client, namespace, "web", eventually)
    await client.create(PDBS, pdb("web", **spec), namespace=namespace)
    await eventually(lambda: status_is(client, namespace, "web", expectedPods=3, currentHealthy=3,
                                       desiredHealthy=desired, disruptionsAllowed=allowed), 30, "the status")


async def test_expected_pods_come_from_the_controllers_scale_not_from_the_pods_found(
        cluster, client, namespace, eventually):
    # No node has this label: the pods stay Pending, yet the Deployment still expects 4 of them.
    stuck = deployment("stuck", replicas=4)
    stuck["spec"]["template"]["spec"]["nodeSelector"] = {"disk": "none"}
    await client.create(DEPLOYMENTS, stuck, namespace=namespace)
    await client.create(PDBS, pdb("stuck", maxUnavailable="25%"), namespace=namespace)
    obj = await eventually(lambda: status_is(client, namespace, "stuck", expectedPods=4, currentHealthy=0,
                                             desiredHealthy=3, disruptionsAllowed=0), 60, "the status")
    assert condition(obj, "DisruptionAllowed")["reason"] == "InsufficientPods"


async def test_a_budget_with_an_unscalable_controller_fails_safe(cluster, client, namespace, eventually):
    owner = await client.create(CONFIGMAPS, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}},
                                namespace=namespace)
    ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": "cm", "uid": owner["metadata"]["uid"], "controller": True}
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "odd", "labels": {"app": "odd"}, "ownerReferences": [ref]},
           "spec": {"containers": [{"name": "c", "image": "busybox"}]}}
    await client.create(PODS, pod, namespace=namespace)
    await client.create(PDBS, pdb("odd", maxUnavailable=1), namespace=namespace)

    async def failed():
        obj = await client.get(PDBS, "odd", namespace=namespace)
        c = condition(obj, "DisruptionAllowed")
        return c is not None and c["reason"] == "SyncFailed" and obj
    obj = await eventually(failed, 30, "a SyncFailed condition")
    c = condition(obj, "DisruptionAllowed")
    assert c["status"] == "False" and c["message"] == "configmaps does not implement the scale subresource"
    assert obj["status"]["disruptionsAllowed"] == 0
    events = await eventually(lambda: events_for(client, namespace, "odd"), 30, "events")
    assert any(e[:2] == ("Warning", "CalculateExpectedPodCountFailed") for e in events), events


async def test_unmanaged_pods_count_for_an_integer_budget_and_are_reported_for_a_percentage(
        cluster, client, namespace, eventually):
    for name in ("solo-1", "solo-2"):
        await client.create(PODS, {"apiVersion": "v1", "kind": "Pod",
                                   "metadata": {"name": name, "labels": {"app": "solo"}},
                                   "spec": {"containers": [{"name": "c", "image": "busybox"}]}}, namespace=namespace)
    await client.create(PDBS, pdb("solo", minAvailable=1), namespace=namespace)
    await eventually(lambda: status_is(client, namespace, "solo", expectedPods=2, currentHealthy=2,
                                       desiredHealthy=1, disruptionsAllowed=1), 30, "the integer budget")
    await client.create(PDBS, pdb("solo-pct", labels={"app": "solo"}, minAvailable="50%"), namespace=namespace)
    await eventually(lambda: status_is(client, namespace, "solo-pct", expectedPods=0, disruptionsAllowed=0),
                     30, "the percentage budget")

    async def warned():
        return any(e[1] == "UnmanagedPods" for e in await events_for(client, namespace, "solo-pct"))
    await eventually(warned, 30, "an UnmanagedPods warning")


async def _bare_pod(client, namespace, name, *, ready=True, phase="Running", labels=None):
    """A pod as a kubelet would report it, bound to a node no agent runs: its state stays what we wrote."""
    await client.create(PODS, {"apiVersion": "v1", "kind": "Pod",
                               "metadata": {"name": name, "labels": labels or {"app": "web"}},
                               "spec": {"containers": [{"name": "c", "image": "busybox"}], "nodeName": "n1"}},
                        namespace=namespace)
    pod = await client.get(PODS, name, namespace=namespace)
    pod["status"] = {"phase": phase, "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}
    return await client.update(PODS, pod, subresource="status")


async def _budget_with_status(client, namespace, name, *, spec=None, **status):
    """A budget whose status we write ourselves (no disruption controller runs in these tests)."""
    budget = await client.create(PDBS, pdb(name, labels={"app": "web"}, **(spec or {"minAvailable": 2})),
                                 namespace=namespace)
    budget["status"] = {"currentHealthy": 0, "desiredHealthy": 0, "disruptionsAllowed": 0, "expectedPods": 0,
                        "observedGeneration": 1, **status}
    return await client.update(PDBS, budget, subresource="status")


async def test_eviction_spends_the_budget_records_the_pod_then_refuses_with_429(bare, client, namespace):
    for name in ("p1", "p2", "p3"):
        await _bare_pod(client, namespace, name)
    await _budget_with_status(client, namespace, "web", currentHealthy=3, desiredHealthy=2, disruptionsAllowed=1,
                              expectedPods=3)

    answer = await evict(client, namespace, "p1")
    assert answer == {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}
    evicted = await client.get(PODS, "p1", namespace=namespace)
    assert evicted["metadata"].get("deletionTimestamp")
    target = condition(evicted, "DisruptionTarget")
    assert (target["status"], target["reason"], target["message"]) == (
        "True", "EvictionByEvictionAPI", "Eviction API: evicting")
    status = (await client.get(PDBS, "web", namespace=namespace))["status"]
    assert status["disruptionsAllowed"] == 0 and list(status["disruptedPods"]) == ["p1"]
    allowed = condition({"status": status}, "DisruptionAllowed")
    assert (allowed["status"], allowed["reason"]) == ("False", "InsufficientPods")

    # The budget is spent: the next eviction is refused with the cause kubectl drain prints.
    with pytest.raises(TooManyRequests) as refused:
        await evict(client, namespace, "p2")
    assert refused.value.code == 429 and str(refused.value) == VIOLATION
    assert [(c.reason, c.message) for c in refused.value.causes] == [
        ("DisruptionBudget", "The disruption budget web needs 2 healthy pods and has 3 currently")]
    assert refused.value.retry_after is None
    assert not (await client.get(PODS, "p2", namespace=namespace))["metadata"].get("deletionTimestamp")


async def test_a_budget_not_yet_observed_is_still_being_processed(bare, client, namespace):
    await _bare_pod(client, namespace, "p1")
    await _budget_with_status(client, namespace, "web", currentHealthy=3, desiredHealthy=2, disruptionsAllowed=1)
    await client.patch(PDBS, "web", {"spec": {"minAvailable": 1}}, namespace=namespace)  # generation 2
    with pytest.raises(TooManyRequests) as refused:
        await evict(client, namespace, "p1")
    assert refused.value.retry_after == 10
    assert [c.message for c in refused.value.causes] == [
        "The disruption budget web is still being processed by the server."]


@pytest.mark.parametrize(("policy", "status", "evicted"), [
    (None, {"currentHealthy": 3, "desiredHealthy": 2, "disruptionsAllowed": 1}, True),   # the budget is met
    (None, {"currentHealthy": 2, "desiredHealthy": 2, "disruptionsAllowed": 0}, True),
    (None, {"currentHealthy": 1, "desiredHealthy": 2, "disruptionsAllowed": 0}, False),  # not met: guarded
    ("IfHealthyBudget", {"currentHealthy": 1, "desiredHealthy": 2, "disruptionsAllowed": 0}, False),
    ("AlwaysAllow", {"currentHealthy": 1, "desiredHealthy": 2, "disruptionsAllowed": 0}, True),
])
async def test_an_unready_pod_is_evicted_without_spending_the_budget_when_allowed(
        bare, client, namespace, policy, status, evicted):
    await _bare_pod(client, namespace, "sick", ready=False)
    spec = {"minAvailable": 2, **({"unhealthyPodEvictionPolicy": policy} if policy else {})}
    before = (await _budget_with_status(client, namespace, "web", spec=spec, **status))["status"]
    if evicted:
        await evict(client, namespace, "sick")
        assert (await client.get(PODS, "sick", namespace=namespace))["metadata"].get("deletionTimestamp")
        assert (await client.get(PDBS, "web", namespace=namespace))["status"] == before  # nothing spent
    else:
        with pytest.raises(TooManyRequests):
            await evict(client, namespace, "sick")
        assert not (await client.get(PODS, "sick", namespace=namespace))["metadata"].get("deletionTimestamp")


async def test_eviction_against_a_live_budget_until_the_controller_gives_the_disruption_back(
        cluster, client, namespace, eventually):
    # Pods without a controller, so no replacement appears behind our back.
    for name in ("p1", "p2", "p3"):
        await client.create(PODS, {"apiVersion": "v1", "kind": "Pod",
                                   "metadata": {"name": name, "labels": {"app": "web"}},
                                   "spec": {"containers": [{"name": "c", "image": "busybox"}],
                                            "terminationGracePeriodSeconds": 1}}, namespace=namespace)
    await client.create(PDBS, pdb("web", minAvailable=2), namespace=namespace)
    await eventually(lambda: status_is(client, namespace, "web", currentHealthy=3, disruptionsAllowed=1), 60,
                     "1 disruption allowed")
    await evict(client, namespace, "p1")
    await eventually(lambda: status_is(client, namespace, "web", currentHealthy=2, disruptionsAllowed=0), 60,
                     "the evicted pod no longer healthy")
    with pytest.raises(TooManyRequests) as refused:
        await evict(client, namespace, "p2")
    assert [c.message for c in refused.value.causes] == [
        "The disruption budget web needs 2 healthy pods and has 2 currently"]
    await eventually(lambda: _gone(client, namespace, "p1"), 60, "the evicted pod gone")
    obj = await eventually(lambda: status_is(client, namespace, "web", currentHealthy=2, disruptionsAllowed=0), 60,
                           "the evicted pod forgotten")
    assert "disruptedPods" not in obj["status"]

    # A new healthy pod gives the budget a disruption back.
    await client.create(PODS, {"apiVersion": "v1", "kind": "Pod",
                               "metadata": {"name": "p4", "labels": {"app": "web"}},
                               "spec": {"containers": [{"name": "c", "image": "busybox"}]}}, namespace=namespace)
    await eventually(lambda: status_is(client, namespace, "web", currentHealthy=3, disruptionsAllowed=1), 60,
                     "the budget restored")
    await evict(client, namespace, "p2")
    assert (await client.get(PODS, "p2", namespace=namespace))["metadata"].get("deletionTimestamp")


async def test_dry_run_eviction_checks_everything_and_changes_nothing(bare, client, namespace):
    await _bare_pod(client, namespace, "p1")
    before = await _budget_with_status(client, namespace, "web", currentHealthy=3, desiredHealthy=2,
                                       disruptionsAllowed=1)
    pod_before = await client.get(PODS, "p1", namespace=namespace)

    assert (await evict(client, namespace, "p1", dry_run=True))["status"] == "Success"
    assert (await evict(client, namespace, "p1", dryRun=["All"]))["status"] == "Success"  # in DeleteOptions
    pod_after = await client.get(PODS, "p1", namespace=namespace)
    assert pod_after["metadata"]["resourceVersion"] == pod_before["metadata"]["resourceVersion"]
    assert not pod_after["metadata"].get("deletionTimestamp")
    after = await client.get(PDBS, "web", namespace=namespace)
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]

    # A dry run is still refused when the real thing would be.
    exhausted = {**after, "status": {**after["status"], "disruptionsAllowed": 0}}
    await client.update(PDBS, exhausted, subresource="status")
    with pytest.raises(TooManyRequests):
        await evict(client, namespace, "p1", dry_run=True)


async def test_eviction_of_a_pod_with_two_budgets_is_a_500(bare, client, namespace):
    await _bare_pod(client, namespace, "p1")
    await client.create(PDBS, pdb("one", labels={"app": "web"}, maxUnavailable=1), namespace=namespace)
    await client.create(PDBS, pdb("two", labels={"app": "web"}, maxUnavailable=1), namespace=namespace)
    with pytest.raises(APIError) as failed:
        await evict(client, namespace, "p1")
    assert failed.value.code == 500
    assert str(failed.value) == ("This pod has more than one PodDisruptionBudget, which the eviction subresource "
                                 "does not support.")


@pytest.mark.parametrize("phase", ["Pending", "Succeeded", "Failed"])
async def test_pending_and_finished_pods_are_evicted_whatever_the_budget(bare, client, namespace, phase):
    await _bare_pod(client, namespace, "p1", phase=phase, ready=False)
    await _budget_with_status(client, namespace, "web", spec={"minAvailable": "100%"})
    await evict(client, namespace, "p1")
    if phase == "Pending":  # bound to a node, so it waits there for its grace period
        assert (await client.get(PODS, "p1", namespace=namespace))["metadata"].get("deletionTimestamp")
    else:  # finished pods go at once
        assert await _gone(client, namespace, "p1")


async def test_an_eviction_must_name_its_pod(bare, client, namespace):
    await _bare_pod(client, namespace, "p1")
    path = PODS.path(namespace=namespace, name="p1", subresource="eviction")
    with pytest.raises(APIError) as failed:
        await client.request("POST", path, body=eviction("p2"))
    assert failed.value.code == 400
    assert str(failed.value) == "name in URL does not match name in Eviction object"


async def test_a_stale_disruption_target_condition_is_set_back_to_false(bare, client, namespace, eventually):
    manager = ControllerManager(client, leader_election=False)
    manager.add(new_stale_pod_disruption_controller(client, manager.informers, timeout=1.0))
    bare.tasks["stale"] = asyncio.create_task(manager.run())
    await client.create(PODS, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                               "spec": {"containers": [{"name": "c", "image": "busybox"}]}}, namespace=namespace)
    pod = await client.get(PODS, "p", namespace=namespace)
    pod["status"]["conditions"] = [{"type": "DisruptionTarget", "status": "True", "reason": "EvictionByEvictionAPI",
                                    "message": "Eviction API: evicting"}]
    await client.update(PODS, pod, subresource="status")

    async def cleared():
        c = condition(await client.get(PODS, "p", namespace=namespace), "DisruptionTarget")
        return c is not None and c["status"] == "False" and c
    c = await eventually(cleared, 30, "the condition set back to False")
    assert "reason" not in c or not c["reason"]


async def _gone(client, namespace, name):
    try:
        await client.get(PODS, name, namespace=namespace)
    except APIError as exc:
        return exc.code == 404
    return False
