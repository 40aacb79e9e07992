"""Jobs and CronJobs on `timoner up`, driven by the real kubectl: parallelism, backoff limit, indexes, cron.

One `timoner up` serves the module; each test works in a namespace of its own. Containers are real
processes (busybox `sh`), so what runs here is what a user sees on a laptop.
"""

from __future__ import annotations

import json
import threading
import time

import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes import watch as k8s_watch

from timoner.testing import wait_until

pytestmark = pytest.mark.slow


def apply_job(up, ns, name, script, **spec):
    """`kubectl create job NAME --image=busybox -- sh -c SCRIPT`, with `spec` extras, applied."""
    manifest = json.loads(up.kubectl("create", "job", name, "-n", ns, "--image=busybox", "--dry-run=client",
                                     "-o", "json", "--", "sh", "-c", script).stdout)
    manifest["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = 1
    manifest["spec"].update(spec)
    up.kubectl("apply", "-f", "-", input=json.dumps(manifest))


def get(up, ns, *what):
    return json.loads(up.kubectl("get", *what, "-n", ns, "-o", "json").stdout)


def wait_for(up, ns, condition, job, timeout=120):
    return up.kubectl("wait", f"--for=condition={condition}", f"job/{job}", "-n", ns, f"--timeout={timeout}s",
                      timeout=timeout + 30)


class ActivePods:
    """Watches a namespace's pods with the official client and keeps the most ever active at once."""

    def __init__(self, kubeconfig, ns):
        self.api = k8s.CoreV1Api(k8s_config.new_client_from_config(str(kubeconfig)))
        self.ns = ns
        self.active: dict[str, bool] = {}
        self.most = 0
        self.error: Exception | None = None  # the watch broke while the test still relied on it
        self.stopped = False
        self.watch = k8s_watch.Watch()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            for event in self.watch.stream(self.api.list_namespaced_pod, self.ns, timeout_seconds=300):
                pod = event["object"]
                done = pod.status.phase in ("Succeeded", "Failed") or pod.metadata.deletion_timestamp is not None
                self.active[pod.metadata.name] = event["type"] != "DELETED" and not done
                self.most = max(self.most, sum(self.active.values()))
        except Exception as exc:  # the server going away at teardown ends the stream abruptly
            if not self.stopped:
                self.error = exc

    def stop(self):
        self.stopped = True
        self.watch.stop()


def test_job_completes_five_with_at_most_two_pods_at_once(up, ns):
    watcher = ActivePods(up.kubeconfig, ns)
    try:
        apply_job(up, ns, "five", "sleep 1", completions=5, parallelism=2)
        out = wait_for(up, ns, "complete", "five")
    finally:
        watcher.stop()
    assert "job.batch/five condition met" in out.stdout
    job = get(up, ns, "job", "five")
    assert job["status"]["succeeded"] == 5 and not job["status"].get("failed")
    assert watcher.error is None, watcher.error
    assert 1 <= watcher.most <= 2, watcher.most
    pods = get(up, ns, "pods", "-l", "batch.kubernetes.io/job-name=five")["items"]
    assert len(pods) == 5 and all(p["status"]["phase"] == "Succeeded" for p in pods)
    columns = up.kubectl("get", "job", "five", "-n", ns, "--no-headers").stdout.split()
    assert columns[:3] == ["five", "Complete", "5/5"], columns


def test_failing_job_stops_at_its_backoff_limit(up, ns):
    apply_job(up, ns, "broken", "echo trying; exit 1", backoffLimit=1)
    wait_for(up, ns, "failed", "broken", timeout=150)
    job = get(up, ns, "job", "broken")
    failed = next(c for c in job["status"]["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "BackoffLimitExceeded" and job["status"]["failed"] == 2
    pods = get(up, ns, "pods", "-l", "job-name=broken")["items"]
    assert len(pods) == 2 and all(p["status"]["phase"] == "Failed" for p in pods)
    events = up.kubectl("get", "events", "-n", ns, "--field-selector", "involvedObject.name=broken").stdout
    assert "BackoffLimitExceeded" in events


def test_indexed_job_hands_each_pod_its_index(up, ns):
    apply_job(up, ns, "idx", "echo index=$JOB_COMPLETION_INDEX host=$(hostname)", completions=3, parallelism=3,
              completionMode="Indexed")
    wait_for(up, ns, "complete", "idx")
    assert get(up, ns, "job", "idx")["status"]["completedIndexes"] == "0-2"
    pods = get(up, ns, "pods", "-l", "job-name=idx")["items"]
    assert len(pods) == 3
    for pod in pods:
        index = pod["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]
        logs = up.kubectl("logs", "-n", ns, pod["metadata"]["name"]).stdout.strip()
        assert logs.startswith(f"index={index} "), logs
        assert pod["spec"]["hostname"] == f"idx-{index}"


def test_create_job_from_cronjob_runs_to_completion(up, ns):
    up.kubectl("create", "cronjob", "nightly", "-n", ns, "--image=busybox", "--schedule=0 3 1 1 *",
               "--", "sh", "-c", "echo from-cron")
    up.kubectl("create", "job", "manual", "-n", ns, "--from=cronjob/nightly")
    wait_for(up, ns, "complete", "manual")
    pod = get(up, ns, "pods", "-l", "job-name=manual")["items"][0]
    assert up.kubectl("logs", "-n", ns, pod["metadata"]["name"]).stdout.strip() == "from-cron"
    # A Job that kubectl made is not one the CronJob scheduled: its status lists no active Job.
    assert not (get(up, ns, "cronjob", "nightly").get("status") or {}).get("active")


def test_every_minute_cronjob_creates_a_job_that_completes(up, ns):
    up.kubectl("create", "cronjob", "tick", "-n", ns, "--image=busybox", "--schedule=* * * * *",
               "--", "sh", "-c", "echo tick")
    started = time.time()

    def job_name():
        items = get(up, ns, "jobs")["items"]
        return items and items[0]["metadata"]["name"]
    name = wait_until(job_name, 90, "a Job from the CronJob")
    minute = int(name.rsplit("-", 1)[1])
    assert started - 60 <= minute * 60 <= time.time()
    wait_for(up, ns, "complete", name)

    def seen_complete():
        status = get(up, ns, "cronjob", "tick").get("status") or {}
        return status.get("lastSuccessfulTime") and status
    status = wait_until(seen_complete, 60, "the CronJob to record the success")
    assert status["lastScheduleTime"].endswith(":00Z")
