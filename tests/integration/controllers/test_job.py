"""The Job and TTL-after-finished controllers against a real API server, with a hollow node.

Hollow containers exit when their pod's annotations say (`timoner.dev/hollow-exit-after`,
`timoner.dev/hollow-exit-code`), so a Job's pods succeed or fail without processes. The
manager here runs the Job controller with a 0.2 s pod failure backoff (upstream: 10 s) so
backoff tests take seconds; one test keeps the real 10 s to see the delay.
"""

from __future__ import annotations

import asyncio

import pytest
from controller_helpers import PODS, condition, controller_of, events_for

from timoner.client import resource_for
from timoner.controllers import (
    Manager,
    new_job_controller,
    new_ttl_after_finished_controller,
)
from timoner.controllers._pods import parse_time

JOBS = resource_for("batch/v1", "Job")
TRACKING = "batch.kubernetes.io/job-tracking"


def job(name, *, exit_after="300ms", exit_code=0, restart="Never", annotations=None, **spec):
    pod_annotations = {"timoner.dev/hollow-exit-after": exit_after, "timoner.dev/hollow-exit-code": str(exit_code)}
    pod_annotations.update(annotations or {})
    template = {"metadata": {"annotations": pod_annotations},
                "spec": {"containers": [{"name": "c", "image": "busybox"}], "restartPolicy": restart,
                         "terminationGracePeriodSeconds": 1}}
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name}, "spec": {"template": template, **spec}}


@pytest.fixture
async def jobs(bare):
    """A hollow node, the scheduler, and a manager with the Job (0.2 s backoff) and TTL controllers."""
    await bare.start_node()
    bare.start_scheduler()
    manager = Manager(bare.client, leader_election=False)
    manager.add(new_job_controller(bare.client, manager.informers, backoff_base=0.2, backoff_max=1.0))
    manager.add(new_ttl_after_finished_controller(bare.client, manager.informers))
    bare.tasks["manager"] = asyncio.create_task(manager.run())
    return bare


async def _job(client, namespace, name):
    return await client.get(JOBS, name, namespace=namespace)


async def _all_pods(client, namespace):
    return (await client.list(PODS, namespace=namespace))["items"]


def _finished(j, kind):
    c = condition(j, kind)
    return c is not None and c["status"] == "True"


async def test_job_runs_completions_with_at_most_parallelism_pods_and_completes(jobs, client, namespace, eventually):
    created = await client.create(JOBS, job("batch", completions=5, parallelism=2), namespace=namespace)
    uid = created["metadata"]["uid"]
    # The API server defaulted the selector and labels from the uid, as upstream's Job strategy does.
    assert created["spec"]["selector"] == {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
    labels = created["spec"]["template"]["metadata"]["labels"]
    assert labels["job-name"] == labels["batch.kubernetes.io/job-name"] == "batch"
    assert labels["controller-uid"] == labels["batch.kubernetes.io/controller-uid"] == uid

    most_active = 0

    async def complete():
        nonlocal most_active
        pods = await _all_pods(client, namespace)
        running = [p for p in pods if p["status"].get("phase") not in ("Succeeded", "Failed")]
        most_active = max(most_active, len(running))
        j = await _job(client, namespace, "batch")
        return _finished(j, "Complete") and j

    j = await eventually(complete, 60, "the Job to complete")
    assert most_active <= 2
    status = j["status"]
    assert status["succeeded"] == 5 and not status.get("failed") and not status.get("active")
    assert status["ready"] == 0 and status["terminating"] == 0
    assert status["uncountedTerminatedPods"] == {}
    assert status["startTime"] <= status["completionTime"]
    assert [c["type"] for c in status["conditions"]] == ["SuccessCriteriaMet", "Complete"]
    assert condition(j, "Complete")["reason"] == "CompletionsReached"
    assert condition(j, "Complete")["lastTransitionTime"] == status["completionTime"]
    pods = await _all_pods(client, namespace)
    assert len(pods) == 5 and all(p["status"]["phase"] == "Succeeded" for p in pods)
    for pod in pods:
        assert TRACKING not in (pod["metadata"].get("finalizers") or [])  # counted, so released
        assert controller_of(pod)["uid"] == uid and controller_of(pod)["kind"] == "Job"
        assert pod["metadata"]["name"].startswith("batch-")

    async def completed_event():
        events = await events_for(client, namespace, "batch")
        return ("Normal", "Completed", "Job completed", "job-controller") in events and events
    events = await eventually(completed_event, 30, "a Completed event")
    assert len([e for e in events if e[1] == "SuccessfulCreate"]) == 5


async def test_pods_carry_the_tracking_finalizer_until_counted(jobs, client, namespace, eventually):
    await client.create(JOBS, job("slow", exit_after="1h"), namespace=namespace)

    async def running():
        pods = await _all_pods(client, namespace)
        return len(pods) == 1 and pods[0]["status"].get("phase") == "Running" and pods[0]
    pod = await eventually(running, 30, "a running pod")
    assert TRACKING in pod["metadata"]["finalizers"]

    async def active():
        s = (await _job(client, namespace, "slow")).get("status") or {}
        return s.get("active") == 1 and s.get("ready") == 1 and s
    await eventually(active, 30, "status.active 1 and ready 1")


async def test_failing_job_stops_at_backoff_limit(jobs, client, namespace, eventually):
    await client.create(JOBS, job("broken", exit_code=3, exit_after="100ms", backoffLimit=2), namespace=namespace)

    async def failed():
        j = await _job(client, namespace, "broken")
        return _finished(j, "Failed") and j
    j = await eventually(failed, 60, "the Job to fail")
    assert j["status"]["failed"] == 3 and not j["status"].get("succeeded")
    assert condition(j, "Failed")["reason"] == "BackoffLimitExceeded"
    assert condition(j, "Failed")["message"] == "Job has reached the specified backoff limit"
    assert condition(j, "FailureTarget")["reason"] == "BackoffLimitExceeded"
    assert not j["status"].get("completionTime")
    pods = await _all_pods(client, namespace)
    assert len(pods) == 3 and all(p["status"]["phase"] == "Failed" for p in pods)

    async def event():
        events = await events_for(client, namespace, "broken")
        return ("Warning", "BackoffLimitExceeded", "Job has reached the specified backoff limit",
                "job-controller") in events
    await eventually(event, 30, "a BackoffLimitExceeded event")
    await asyncio.sleep(1.0)  # nothing more is created once failed
    assert len(await _all_pods(client, namespace)) == 3


async def test_replacements_wait_for_the_failure_backoff(cluster, client, namespace, eventually):
    # The default manager: upstream's 10 s backoff after the first failure.
    await client.create(JOBS, job("flaky", exit_code=1, exit_after="100ms", backoffLimit=1), namespace=namespace)

    async def two_pods():
        pods = await _all_pods(client, namespace)
        return len(pods) == 2 and pods
    pods = await eventually(two_pods, 60, "a replacement pod")
    first, second = sorted(pods, key=lambda p: p["metadata"]["creationTimestamp"])
    finished = first["status"]["containerStatuses"][0]["state"]["terminated"]["finishedAt"]
    gap = parse_time(second["metadata"]["creationTimestamp"]) - parse_time(finished)
    assert gap >= 9, f"replacement after {gap} s"

    async def failed():
        j = await _job(client, namespace, "flaky")
        return _finished(j, "Failed") and j
    await eventually(failed, 60, "the Job to fail")


async def test_active_deadline_fails_the_job_and_deletes_its_pods(jobs, client, namespace, eventually):
    await client.create(JOBS, job("late", exit_after="1h", activeDeadlineSeconds=2, parallelism=2, completions=2),
                        namespace=namespace)

    async def failed():
        j = await _job(client, namespace, "late")
        return _finished(j, "Failed") and j
    j = await eventually(failed, 60, "DeadlineExceeded")
    assert condition(j, "Failed")["reason"] == "DeadlineExceeded"
    assert condition(j, "Failed")["message"] == "Job was active longer than specified deadline"
    assert j["status"]["failed"] == 2 and not j["status"].get("active")

    async def pods_gone():
        return not [p for p in await _all_pods(client, namespace) if p["status"].get("phase") == "Running"]
    await eventually(pods_gone, 30, "the running pods stopped")


async def test_indexed_job_hands_each_pod_its_index(jobs, client, namespace, eventually):
    body = job("idx", completions=3, parallelism=3, completionMode="Indexed")
    body["spec"]["template"]["spec"]["initContainers"] = [
        {"name": "init", "image": "busybox", "env": [{"name": "JOB_COMPLETION_INDEX", "value": "mine"}]}]
    body["spec"]["template"]["metadata"]["annotations"]["timoner.dev/hollow-exit-after"] = "100ms"
    await client.create(JOBS, body, namespace=namespace)

    async def complete():
        j = await _job(client, namespace, "idx")
        return _finished(j, "Complete") and j
    j = await eventually(complete, 60, "the indexed Job to complete")
    assert j["status"]["completedIndexes"] == "0-2" and j["status"]["succeeded"] == 3
    pods = await _all_pods(client, namespace)
    by_index = {p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]: p for p in pods}
    assert sorted(by_index) == ["0", "1", "2"]
    for index, pod in by_index.items():
        assert pod["metadata"]["labels"]["batch.kubernetes.io/job-completion-index"] == index
        assert pod["spec"]["hostname"] == f"idx-{index}"
        assert pod["metadata"]["name"].startswith(f"idx-{index}-")
        env = pod["spec"]["containers"][0]["env"]
        assert env == [{"name": "JOB_COMPLETION_INDEX", "valueFrom": {"fieldRef": {
            "apiVersion": "v1", "fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}}}]
        # A variable the template already sets is left alone.
        assert pod["spec"]["initContainers"][0]["env"] == [{"name": "JOB_COMPLETION_INDEX", "value": "mine"}]


async def test_work_queue_job_completes_when_one_pod_succeeded_and_none_runs(jobs, client, namespace, eventually):
    body = job("queue", parallelism=2)
    body["spec"]["completions"] = None
    created = await client.create(JOBS, body, namespace=namespace)
    assert created["spec"].get("completions") is None and created["spec"]["parallelism"] == 2

    async def complete():
        j = await _job(client, namespace, "queue")
        return _finished(j, "Complete") and j
    j = await eventually(complete, 60, "the work-queue Job to complete")
    assert j["status"]["succeeded"] == 2  # both ran once; no pod was started after the first success
    assert len(await _all_pods(client, namespace)) == 2


async def test_pod_failure_policy_fails_ignores_and_counts(jobs, client, namespace, eventually):
    policy = {"rules": [
        {"action": "FailJob", "onExitCodes": {"containerName": "c", "operator": "In", "values": [42]}},
        {"action": "Ignore", "onExitCodes": {"operator": "In", "values": [7]}},
    ]}
    await client.create(JOBS, job("fatal", exit_code=42, podFailurePolicy=policy), namespace=namespace)
    await client.create(JOBS, job("ignored", exit_code=7, backoffLimit=0, podFailurePolicy=policy,
                                  annotations={"timoner.dev/hollow-exit-after": "200ms"}), namespace=namespace)

    async def failed():
        j = await _job(client, namespace, "fatal")
        return _finished(j, "Failed") and j
    j = await eventually(failed, 60, "FailJob to fail the Job")
    assert condition(j, "Failed")["reason"] == "PodFailurePolicy"
    assert condition(j, "Failed")["message"].startswith("Container c for pod ")
    assert condition(j, "Failed")["message"].endswith("failed with exit code 42 matching FailJob rule at index 0")
    assert j["status"]["failed"] == 1

    # Ignored failures do not count toward backoffLimit 0: the pod is replaced, again and again.
    async def replaced():
        pods = [p for p in await _all_pods(client, namespace) if p["metadata"]["name"].startswith("ignored-")]
        return len(pods) >= 3 and pods
    await eventually(replaced, 60, "ignored failures replaced")
    j = await _job(client, namespace, "ignored")
    assert not _finished(j, "Failed") and not j["status"].get("failed")


async def test_suspend_deletes_active_pods_and_resume_starts_again(jobs, client, namespace, eventually):
    await client.create(JOBS, job("paused", exit_after="1h", parallelism=2, completions=4), namespace=namespace)

    async def running(n):
        pods = [p for p in await _all_pods(client, namespace) if p["status"].get("phase") == "Running"
                and not p["metadata"].get("deletionTimestamp")]
        return len(pods) == n
    await eventually(lambda: running(2), 30, "2 running pods")
    await client.patch(JOBS, "paused", {"spec": {"suspend": True}}, namespace=namespace)

    async def suspended():
        j = await _job(client, namespace, "paused")
        return _finished(j, "Suspended") and not await _all_pods(client, namespace) and j
    j = await eventually(suspended, 30, "the Job suspended and its pods gone")
    assert condition(j, "Suspended")["reason"] == "JobSuspended"
    assert not j["status"].get("failed")  # pods deleted by suspension are not failures
    await client.patch(JOBS, "paused", {"spec": {"suspend": False}}, namespace=namespace)

    async def resumed():
        j = await _job(client, namespace, "paused")
        c = condition(j, "Suspended")
        return c["status"] == "False" and c["reason"] == "JobResumed" and await running(2)
    await eventually(resumed, 30, "resumed with 2 pods")
    reasons = {e[1] for e in await events_for(client, namespace, "paused")}
    assert {"Suspended", "Resumed", "SuccessfulDelete"} <= reasons


async def test_ttl_after_finished_deletes_the_job_and_its_pods(jobs, client, namespace, eventually):
    await client.create(JOBS, job("short", ttlSecondsAfterFinished=1), namespace=namespace)

    async def gone():
        items = (await client.list(JOBS, namespace=namespace))["items"]
        return not items and not await _all_pods(client, namespace)
    await eventually(gone, 60, "the Job and its pods deleted after the TTL")


async def test_deleting_a_job_releases_its_pods(jobs, client, namespace, eventually):
    await client.create(JOBS, job("doomed", exit_after="1h"), namespace=namespace)

    async def one_running():
        pods = await _all_pods(client, namespace)
        return len(pods) == 1 and pods[0]["status"].get("phase") == "Running"
    await eventually(one_running, 30, "a running pod")
    await client.delete(JOBS, "doomed", namespace=namespace, propagation_policy="Background")

    async def gone():
        return not await _all_pods(client, namespace)
    await eventually(gone, 30, "the pod gone although it carried the tracking finalizer")


async def test_events_name_the_pods_created(jobs, client, namespace, eventually):
    await client.create(JOBS, job("named", completions=2, parallelism=2), namespace=namespace)

    async def created():
        events = [e for e in await events_for(client, namespace, "named") if e[1] == "SuccessfulCreate"]
        return len(events) == 2 and events
    events = await eventually(created, 30, "2 SuccessfulCreate events")
    names = {p["metadata"]["name"] for p in await _all_pods(client, namespace)}
    assert {e[2] for e in events} == {f"Created pod: {n}" for n in names}
    assert all(e[3] == "job-controller" for e in events)


async def test_backoff_limit_per_index_fails_indexes_not_the_whole_budget(jobs, client, namespace, eventually):
    await client.create(JOBS, job("per-index", exit_code=1, exit_after="100ms", completionMode="Indexed",
                                  completions=2, parallelism=2, backoffLimitPerIndex=1), namespace=namespace)

    async def failed():
        j = await _job(client, namespace, "per-index")
        return _finished(j, "Failed") and j
    j = await eventually(failed, 60, "the Job to fail on its indexes")
    assert condition(j, "Failed")["reason"] == "FailedIndexes"
    assert j["status"]["failedIndexes"] == "0-1" and j["status"]["failed"] == 4
    assert j["spec"]["backoffLimit"] == 2147483647  # defaulted: the per-index limit governs
    pods = await _all_pods(client, namespace)
    counts = sorted((p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"],
                     p["metadata"]["annotations"]["batch.kubernetes.io/job-index-failure-count"]) for p in pods)
    assert counts == [("0", "0"), ("0", "1"), ("1", "0"), ("1", "1")]
