"""StatefulSet rules, pure parts: ordinals, identity, storage, versioned pods, status, claim retention."""

from __future__ import annotations

import pytest

from timoner.controllers import _stateful_util as su


def sts(replicas=3, *, start=None, claims=(), partition=None, strategy="RollingUpdate", when_deleted="Retain",
        when_scaled="Retain", image="busybox", current_replicas=0, max_unavailable=None):
    spec = {"replicas": replicas, "serviceName": "web", "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}, "annotations": {"a": "b"}},
                         "spec": {"containers": [{"name": "c", "image": image}],
                                  "volumes": [{"name": "cfg", "configMap": {"name": "cfg"}},
                                              {"name": "data", "emptyDir": {}}]}},
            "updateStrategy": {"type": strategy},
            "persistentVolumeClaimRetentionPolicy": {"whenDeleted": when_deleted, "whenScaled": when_scaled}}
    if start is not None:
        spec["ordinals"] = {"start": start}
    if partition is not None or max_unavailable is not None:
        spec["updateStrategy"]["rollingUpdate"] = {"partition": partition or 0}
        if max_unavailable is not None:
            spec["updateStrategy"]["rollingUpdate"]["maxUnavailable"] = max_unavailable
    if claims:
        spec["volumeClaimTemplates"] = [{"metadata": {"name": name, "labels": {"tier": "db"}},
                                         "spec": {"resources": {"requests": {"storage": "1Gi"}}},
                                         "status": {"phase": "Pending"}} for name in claims]
    return {"apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "web", "namespace": "ns", "uid": "uid-web"}, "spec": spec,
            "status": {"currentReplicas": current_replicas}}


def pod(name, *, phase="Running", ready=True, deleting=False, revision="r1", uid=None):
    meta = {"name": name, "namespace": "ns", "uid": uid or f"uid-{name}",
            "labels": {"controller-revision-hash": revision}}
    if deleting:
        meta["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    conditions = [{"type": "Ready", "status": "True" if ready else "False",
                   "lastTransitionTime": "2024-01-01T00:00:00Z"}]
    return {"metadata": meta, "spec": {}, "status": {"phase": phase, "conditions": conditions}}


@pytest.mark.parametrize("name,expected", [
    ("web-0", ("web", 0)), ("web-12", ("web", 12)), ("my-db-3", ("my-db", 3)), ("web", ("", -1)),
    ("web-x", ("", -1)), ("web-99999999999", ("web", -1)),
])
def test_parent_and_ordinal_come_from_the_name(name, expected):
    assert su.parent_and_ordinal({"metadata": {"name": name}}) == expected


@pytest.mark.parametrize("name,start,replicas,in_range", [
    ("web-0", None, 3, True), ("web-2", None, 3, True), ("web-3", None, 3, False),
    ("web-4", 5, 2, False), ("web-5", 5, 2, True), ("web-6", 5, 2, True), ("web-7", 5, 2, False),
    ("web-0", None, 0, False),
])
def test_ordinal_range_honours_ordinals_start(name, start, replicas, in_range):
    assert su.in_ordinal_range({"metadata": {"name": name}}, sts(replicas, start=start)) is in_range


def test_new_pod_has_identity_storage_template_and_owner():
    p = su.new_stateful_pod(sts(claims=("data", "logs")), 1)
    assert p["metadata"]["name"] == "web-1" and p["metadata"]["namespace"] == "ns"
    assert p["metadata"]["labels"] == {"app": "web", su.POD_NAME_LABEL: "web-1", su.POD_INDEX_LABEL: "1"}
    assert p["metadata"]["annotations"] == {"a": "b"}
    assert p["spec"]["hostname"] == "web-1" and p["spec"]["subdomain"] == "web"
    assert p["metadata"]["ownerReferences"][0]["uid"] == "uid-web"
    assert p["metadata"]["ownerReferences"][0]["controller"] is True
    # Claim volumes first, in template order; a template volume of the same name is replaced.
    assert p["spec"]["volumes"] == [{"name": "data", "persistentVolumeClaim": {"claimName": "data-web-1"}},
                                    {"name": "logs", "persistentVolumeClaim": {"claimName": "logs-web-1"}},
                                    {"name": "cfg", "configMap": {"name": "cfg"}}]
    assert "status" not in p and not su.is_created(p)
    assert su.identity_matches(sts(), p) and su.storage_matches(sts(claims=("data", "logs")), p)


def test_identity_and_storage_mismatches_are_detected_and_fixed():
    s = sts(claims=("data",))
    p = su.new_stateful_pod(s, 0)
    del p["metadata"]["labels"][su.POD_INDEX_LABEL]
    p["spec"]["volumes"] = [{"name": "data", "emptyDir": {}}]
    assert not su.identity_matches(s, p) and not su.storage_matches(s, p)
    su.update_identity(s, p)
    su.update_storage(s, p)
    assert su.identity_matches(s, p) and su.storage_matches(s, p)
    other = sts()
    other["metadata"]["name"] = "db"
    assert not su.identity_matches(other, p) and not su.is_member(other, p) and su.is_member(s, p)


def test_claims_carry_template_and_selector_labels():
    claims = su.claims_for(sts(claims=("data",)), 2)
    assert list(claims) == ["data"]
    claim = claims["data"]
    assert claim["metadata"] == {"name": "data-web-2", "namespace": "ns", "labels": {"tier": "db", "app": "web"}}
    assert claim["kind"] == "PersistentVolumeClaim" and "status" not in claim


@pytest.mark.parametrize("strategy,partition,current_replicas,ordinal,expected", [
    ("RollingUpdate", 2, 0, 0, "current"), ("RollingUpdate", 2, 0, 1, "current"),
    ("RollingUpdate", 2, 0, 2, "update"), ("RollingUpdate", 0, 0, 0, "update"),
    ("RollingUpdate", None, 2, 1, "current"),  # no rollingUpdate: the current replicas stay current
    ("RollingUpdate", None, 2, 2, "update"),
    ("OnDelete", None, 3, 0, "update"),  # OnDelete: a recreated pod is at the update revision
])
def test_versioned_pods_follow_the_partition(strategy, partition, current_replicas, ordinal, expected):
    current = sts(partition=partition, strategy=strategy, current_replicas=current_replicas, image="old")
    update = sts(partition=partition, strategy=strategy, current_replicas=current_replicas, image="new")
    p = su.new_versioned_pod(current, update, "r1", "r2", ordinal)
    want_rev, want_image = ("r1", "old") if expected == "current" else ("r2", "new")
    assert p["metadata"]["labels"]["controller-revision-hash"] == want_rev
    assert p["spec"]["containers"][0]["image"] == want_image


def test_status_counts_and_rolling_update_completion():
    pods = [pod("web-0", revision="r2"), pod("web-1", revision="r1", ready=False),
            pod("web-2", revision="r1", deleting=True), su.new_stateful_pod(sts(), 3)]
    counts = su.compute_status(pods, 0, "r1", "r2", now=1e10)
    assert counts == {"replicas": 3, "readyReplicas": 2, "availableReplicas": 2, "currentReplicas": 1,
                      "updatedReplicas": 1}
    status = {"replicas": 3, "readyReplicas": 3, "updatedReplicas": 3, "currentReplicas": 0,
              "currentRevision": "r1", "updateRevision": "r2"}
    su.complete_rolling_update(sts(3), status)
    assert (status["currentReplicas"], status["currentRevision"]) == (3, "r2")
    unfinished = {**status, "readyReplicas": 2, "currentReplicas": 0, "currentRevision": "r1"}
    su.complete_rolling_update(sts(3), unfinished)
    assert unfinished["currentRevision"] == "r1"
    on_delete = {**status, "currentReplicas": 0, "currentRevision": "r1"}
    su.complete_rolling_update(sts(3, strategy="OnDelete"), on_delete)
    assert on_delete["currentRevision"] == "r1"


def test_min_ready_seconds_hold_back_availability():
    p = pod("web-0")  # ready since 2024-01-01T00:00:00Z
    ready_at = 1704067200.0
    assert su.compute_status([p], 10, "r1", "r1", now=ready_at + 5)["availableReplicas"] == 0
    assert su.compute_status([p], 10, "r1", "r1", now=ready_at + 11)["availableReplicas"] == 1


def test_inconsistent_status():
    s = sts()
    s["status"] = {"replicas": 3, "readyReplicas": 3, "observedGeneration": 2, "currentRevision": "a",
                   "updateRevision": "a", "collisionCount": 0}
    same = {"replicas": 3, "readyReplicas": 3, "availableReplicas": 0, "observedGeneration": 2,
            "currentRevision": "a", "updateRevision": "a", "collisionCount": 0}
    assert not su.inconsistent_status(s, same)
    for change in ({"readyReplicas": 2}, {"observedGeneration": 3}, {"updateRevision": "b"}, {"collisionCount": 1}):
        assert su.inconsistent_status(s, {**same, **change})


@pytest.mark.parametrize("value,replicas,expected", [
    (None, 5, None), (2, 5, 2), ("40%", 5, 2), ("10%", 5, 1), ("100%", 3, 3), (0, 3, 1),
])
def test_max_unavailable_rounds_down_to_at_least_one(value, replicas, expected):
    s = sts(replicas, max_unavailable=value) if value is not None else sts(replicas)
    assert su.max_unavailable(s) == expected


# -- claim retention ------------------------------------------------------------------------------

SET_REF = {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web", "uid": "uid-web", "controller": True,
           "blockOwnerDeletion": True}


def pod_ref(name, uid=None):
    return {"apiVersion": "v1", "kind": "Pod", "name": name, "uid": uid or f"uid-{name}", "controller": True,
            "blockOwnerDeletion": True}


def claim(*refs):
    meta = {"name": "data-web-1", "namespace": "ns"}
    if refs:
        meta["ownerReferences"] = list(refs)
    return {"metadata": meta}


@pytest.mark.parametrize("when_deleted,when_scaled,replicas,expected", [
    ("Retain", "Retain", 3, []),
    ("Delete", "Retain", 3, [SET_REF]),
    ("Delete", "Retain", 1, [SET_REF]),  # scaled down but whenScaled Retain: still the set's
    ("Retain", "Delete", 3, []),
    ("Retain", "Delete", 1, [pod_ref("web-1")]),  # condemned: goes with its pod
    ("Delete", "Delete", 3, [SET_REF]),
    ("Delete", "Delete", 1, [pod_ref("web-1")]),
])
def test_claim_owner_refs_follow_the_retention_policy(when_deleted, when_scaled, replicas, expected):
    s = sts(replicas, when_deleted=when_deleted, when_scaled=when_scaled)
    p = pod("web-1")
    refs = su.claim_owner_refs(claim(), s, p)
    assert refs == expected
    assert su.is_claim_owner_up_to_date(claim(*refs), s, p)
    if refs:
        assert not su.is_claim_owner_up_to_date(claim(), s, p)
    # Switching policy back to Retain/Retain removes our references, keeping foreign ones.
    foreign = {"apiVersion": "v1", "kind": "ConfigMap", "name": "x", "uid": "uid-x"}
    keep = sts(replicas)
    assert su.claim_owner_refs(claim(*refs, foreign), keep, p) == [foreign]


def test_non_controller_references_of_ours_are_rewritten():
    s = sts(3, when_deleted="Delete")
    plain = {k: v for k, v in SET_REF.items() if k not in ("controller", "blockOwnerDeletion")}
    assert not su.is_claim_owner_up_to_date(claim(plain), s, pod("web-1"))
    assert su.claim_owner_refs(claim(plain), s, pod("web-1")) == [SET_REF]


def test_another_controller_or_a_stale_reference_leaves_the_claim_alone():
    s = sts(3, when_deleted="Delete")
    other = {"apiVersion": "example.com/v1", "kind": "Backup", "name": "b", "uid": "uid-b", "controller": True}
    assert su.is_claim_owner_up_to_date(claim(other), s, pod("web-1"))
    assert su.claim_owner_refs(claim(other, SET_REF), s, pod("web-1")) == [other]
    stale = {**SET_REF, "uid": "uid-of-an-earlier-web"}
    assert su.is_claim_owner_up_to_date(claim(stale), s, pod("web-1"))


def test_a_claim_owned_by_an_earlier_pod_of_the_name_is_stale():
    earlier = claim(pod_ref("web-1", "uid-earlier"))
    assert su.claim_is_stale(earlier, su.new_stateful_pod(sts(), 1))  # not created yet: no uid
    assert su.claim_is_stale(earlier, pod("web-1"))
    assert not su.claim_is_stale(claim(pod_ref("web-1")), pod("web-1"))
    assert not su.claim_is_stale(claim(SET_REF), pod("web-1"))
