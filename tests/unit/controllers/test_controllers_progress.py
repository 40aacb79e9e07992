"""The Progressing condition of a rollout, and when a stalled one is looked at again."""

from __future__ import annotations

from timoner.controllers import _deployment_util as du
from timoner.controllers._progress import rollout_status, stuck_recheck

T0 = 1_000_000.0


def deployment(*, status=None, deadline=10, replicas=2):
    return {"metadata": {"name": "web", "generation": 2},
            "spec": {"replicas": replicas, "progressDeadlineSeconds": deadline,
                     "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}},
            "status": status or {}}


def rs(name, replicas, ready, available, conditions=None):
    return {"metadata": {"name": name}, "spec": {"replicas": replicas},
            "status": {"replicas": replicas, "readyReplicas": ready, "availableReplicas": available,
                       **({"conditions": conditions} if conditions else {})}}


def progressing(status):
    return du.get_condition(status, "Progressing")


def started(at):
    return {"observedGeneration": 2, "replicas": 2, "availableReplicas": 2,
            "conditions": [du.new_condition("Progressing", "True", "NewReplicaSetCreated", "", now=at)]}


def test_progress_refreshes_last_update_time_but_not_the_transition():
    d = deployment(status=started(T0))
    new, old = rs("web-new", 1, 0, 0), rs("web-old", 2, 2, 2)
    status = rollout_status(d, [old, new], new, now=T0 + 5)  # one more updated replica than before
    c = progressing(status)
    assert (c["reason"], c["message"]) == ("ReplicaSetUpdated", 'ReplicaSet "web-new" is progressing.')
    assert c["lastUpdateTime"] == du.new_condition("x", "", "", "", now=T0 + 5)["lastUpdateTime"]
    assert c["lastTransitionTime"] == progressing(d["status"])["lastTransitionTime"]


def test_no_progress_past_the_deadline_times_out():
    status = {**started(T0), "updatedReplicas": 1, "replicas": 3, "readyReplicas": 2}
    d = deployment(status=status)
    new, old = rs("web-new", 1, 0, 0), rs("web-old", 2, 2, 2)
    assert progressing(rollout_status(d, [old, new], new, now=T0 + 10))["reason"] == "NewReplicaSetCreated"
    c = progressing(rollout_status(d, [old, new], new, now=T0 + 11))
    assert (c["status"], c["reason"], c["message"]) == (
        "False", "ProgressDeadlineExceeded", 'ReplicaSet "web-new" has timed out progressing.')
    assert stuck_recheck(d, status, now=T0 + 3) == 8  # 7 s left, looked at a second after
    assert stuck_recheck(d, status, now=T0 + 9.5) == 0


def test_a_complete_rollout_is_reported_and_not_rechecked():
    d = deployment(status={**started(T0), "updatedReplicas": 1, "replicas": 3})
    new = rs("web-new", 2, 2, 2)
    status = rollout_status(d, [rs("web-old", 0, 0, 0), new], new, now=T0 + 1)
    c = progressing(status)
    assert (c["status"], c["reason"]) == ("True", "NewReplicaSetAvailable")
    assert stuck_recheck(d, status, now=T0 + 1) is None


def test_replica_failures_are_copied_up_and_cleared():
    failure = {"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate", "message": "quota",
               "lastTransitionTime": "2024-01-01T00:00:00Z"}
    d = deployment(status=started(T0))
    new = rs("web-new", 2, 0, 0, conditions=[failure])
    status = rollout_status(d, [new], new, now=T0)
    c = du.get_condition(status, "ReplicaFailure")
    assert (c["reason"], c["message"]) == ("FailedCreate", "quota")
    d["status"] = status
    assert du.get_condition(rollout_status(d, [rs("web-new", 2, 0, 0)], None, now=T0), "ReplicaFailure") is None


def test_without_a_deadline_there_is_no_progressing_condition():
    d = deployment(status=started(T0), deadline=2**31 - 1)
    status = rollout_status(d, [rs("web-new", 2, 2, 2)], None, now=T0)
    assert progressing(status) is None and stuck_recheck(d, status, now=T0) is None
