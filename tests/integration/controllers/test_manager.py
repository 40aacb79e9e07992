"""The controller manager: shared informers, leader election on its Lease, takeover when the leader dies."""

from __future__ import annotations

from controller_helpers import DEPLOYMENTS, deployment, rollout_complete

from timoner.client import LEASES

FAST_LEASE = {"leader_election": True, "lease_duration": 2.0, "renew_deadline": 1.5, "retry_period": 0.5}


async def _holder(client):
    lease = await client.get(LEASES, "timoner-controller-manager", namespace="kube-system")
    return lease["spec"]


async def test_controllers_share_one_informer_per_resource(bare):
    manager = await bare.start_manager()
    resources = [i.resource for i in manager.informers]
    assert len(resources) == len(set(resources))  # one informer per resource, however many controllers read it
    assert {"deployments", "pods", "replicasets", "replicationcontrollers", "poddisruptionbudgets", "nodes",
            "statefulsets"} <= {r.plural for r in resources}
    names = [c.name for c in manager.controllers]
    assert len(names) == len(set(names))
    assert names[:3] == ["replicaset-controller", "replication-controller", "deployment-controller"]
    assert {"disruption-controller", "disruption-stale-pod-controller", "pod-garbage-collector"} <= set(names)
    assert {"job-controller", "cronjob-controller", "ttl-after-finished-controller"} <= set(names)
    assert {"endpoint-controller", "endpoint-slice-controller", "node-ipam-controller"} <= set(names)
    assert {"services", "endpoints", "endpointslices"} <= {r.plural for r in resources}


async def test_only_the_leader_acts_and_a_successor_takes_over_when_it_dies(bare, client, namespace, eventually):
    await bare.start_node()
    bare.start_scheduler()
    first = await bare.start_manager("first", identity="first", **FAST_LEASE)
    await eventually(first.leading.is_set, 20, "the first manager leading")
    second = await bare.start_manager("second", identity="second", **FAST_LEASE)

    await client.create(DEPLOYMENTS, deployment("one", replicas=2), namespace=namespace)
    await eventually(lambda: rollout_complete(client, namespace, "one"), 30, "a rollout by the leader")
    assert (await _holder(client))["holderIdentity"] == "first"
    assert not second.leading.is_set()
    assert sum(c.reconciles for c in second.controllers) == 0

    # The leader dies without a word: its Lease must expire before the other one takes over.
    first.elector.release_on_cancel = False
    await bare.stop("first")
    await client.create(DEPLOYMENTS, deployment("two", replicas=2), namespace=namespace)
    await eventually(lambda: rollout_complete(client, namespace, "two"), 30, "a rollout by the successor")
    spec = await _holder(client)
    assert spec["holderIdentity"] == "second" and spec["leaseTransitions"] >= 1
    assert second.leading.is_set()


async def test_a_leader_that_stops_hands_over_at_once(bare, client, eventually):
    first = await bare.start_manager("first", identity="first", **{**FAST_LEASE, "lease_duration": 30.0,
                                                                      "renew_deadline": 20.0})
    await eventually(first.leading.is_set, 20, "the first manager leading")
    second = await bare.start_manager("second", identity="second", **{**FAST_LEASE, "lease_duration": 30.0,
                                                                        "renew_deadline": 20.0})
    await bare.stop("first")  # released on the way out: no need to wait out 30 s
    await eventually(second.leading.is_set, 10, "the second manager leading")
    assert (await _holder(client))["holderIdentity"] == "second"
