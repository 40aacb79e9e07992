"""StatefulSets and DaemonSets on `timoner up`, driven by the real kubectl: ordered pods, scaling, rollouts, undo.

One `timoner up` serves the module; each test works in a namespace of its own. Containers are real
processes (busybox `sleep`). `timoner up` has one node; one test adds a second agent for a while.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading

import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes import watch as k8s_watch
from up_helpers import active_pods, get

from timoner.node.pods import pods_with_volumes, remove_pod_volumes
from timoner.testing import kubectl, processes_under, remove_pod_network, wait_until

pytestmark = pytest.mark.slow


def apply(kubeconfig, ns, manifest):
    kubectl(kubeconfig, "apply", "-n", ns, "-f", "-", input=json.dumps(manifest))


def pod_template(name, image="busybox"):
    return {"metadata": {"labels": {"app": name}},
            "spec": {"containers": [{"name": "busybox", "image": image, "command": ["sleep", "3600"]}],
                     "terminationGracePeriodSeconds": 1}}


def stateful_set(name, replicas=3):
    return {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": name},
            "spec": {"replicas": replicas, "serviceName": name, "selector": {"matchLabels": {"app": name}},
                     "template": pod_template(name)}}


def daemon_set(name):
    return {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": name},
            "spec": {"selector": {"matchLabels": {"app": name}}, "template": pod_template(name)}}


def rollout_status(kubeconfig, ns, target, timeout=180):
    return kubectl(kubeconfig, "rollout", "status", target, "-n", ns, f"--timeout={timeout}s",
                   timeout=timeout + 30).stdout


def history_revisions(kubeconfig, ns, target):
    out = kubectl(kubeconfig, "rollout", "history", target, "-n", ns).stdout
    return [line.split()[0] for line in out.splitlines()[2:] if line.strip()]


class PodEvents:
    """A watch on a namespace's pods (the official client) keeping every change in order:
    (type, name, ready, deleting)."""

    def __init__(self, kubeconfig, ns):
        self.api = k8s.CoreV1Api(k8s_config.new_client_from_config(str(kubeconfig)))
        self.ns = ns
        self.events: list[tuple[str, str, bool, bool]] = []
        self.drops: list[str] = []
        self._stopped = threading.Event()
        self._synced = threading.Event()
        self._watch = k8s_watch.Watch()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        rv = None
        while not self._stopped.is_set():
            try:
                if rv is None:
                    rv = self.api.list_namespaced_pod(self.ns).metadata.resource_version
                    self._synced.set()
                for event in self._watch.stream(self.api.list_namespaced_pod, self.ns, resource_version=rv):
                    pod = event["object"]
                    rv = pod.metadata.resource_version
                    ready = any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or ())
                    self.events.append((event["type"], pod.metadata.name, ready,
                                        pod.metadata.deletion_timestamp is not None))
            except Exception as exc:  # a dropped stream resumes from the last version seen
                self.drops.append(repr(exc))

    def first(self, kind, name, *, ready=None, deleting=None):
        for i, (event_type, pod, is_ready, is_deleting) in enumerate(list(self.events)):
            if event_type == kind and pod == name and ready in (None, is_ready) and deleting in (None, is_deleting):
                return i
        return None

    def __enter__(self):
        self._thread.start()
        assert self._synced.wait(30)
        return self

    def __exit__(self, *exc):
        self._stopped.set()
        self._watch.stop()


def test_statefulset_comes_up_in_order_and_scales_down_in_reverse(up, ns):
    with PodEvents(up.kubeconfig, ns) as watch:
        apply(up.kubeconfig, ns, stateful_set("web"))
        out = rollout_status(up.kubeconfig, ns, "statefulset/web")
        assert "partitioned roll out complete: 3 new pods have been updated" in out
        # Each pod is Ready before the next one is created.
        for before, after in (("web-0", "web-1"), ("web-1", "web-2")):
            ready, created = watch.first("MODIFIED", before, ready=True), watch.first("ADDED", after)
            assert ready is not None and created is not None and ready < created, watch.events
        assert [e[1] for e in watch.events if e[0] == "ADDED"] == ["web-0", "web-1", "web-2"]

        table = up.kubectl("get", "statefulset", "web", "-n", ns).stdout
        assert "3/3" in table
        pods = {p["metadata"]["name"]: p for p in active_pods(up.kubeconfig, ns, "app=web")}
        assert sorted(pods) == ["web-0", "web-1", "web-2"]
        assert all(p["spec"]["hostname"] == n and p["spec"]["subdomain"] == "web" for n, p in pods.items())

        up.kubectl("scale", "statefulset/web", "-n", ns, "--replicas=1")
        wait_until(lambda: [p["metadata"]["name"] for p in get(up.kubeconfig, ns, "pods", selector="app=web")["items"]]
                   == ["web-0"], 90, "only web-0 left")
        gone_2, deleting_1 = watch.first("DELETED", "web-2"), watch.first("MODIFIED", "web-1", deleting=True)
        assert gone_2 is not None and deleting_1 is not None and gone_2 < deleting_1, watch.events
    events = up.kubectl("get", "events", "-n", ns, "--field-selector", "involvedObject.name=web").stdout
    assert "create Pod web-0 in StatefulSet web successful" in events
    assert "delete Pod web-2 in StatefulSet web successful" in events


def test_statefulset_rolling_update_history_and_undo(up, ns):
    apply(up.kubeconfig, ns, stateful_set("web", replicas=2))
    rollout_status(up.kubeconfig, ns, "statefulset/web")
    with PodEvents(up.kubeconfig, ns) as watch:
        up.kubectl("set", "image", "statefulset/web", "-n", ns, "busybox=busybox:1.36")
        rollout_status(up.kubeconfig, ns, "statefulset/web")
        wait_until(lambda: all(p["spec"]["containers"][0]["image"] == "busybox:1.36"
                               for p in active_pods(up.kubeconfig, ns, "app=web")), 90, "both pods at 1.36")
        # Reverse ordinal order: web-1 is replaced before web-0 is touched.
        deleting_1, deleting_0 = (watch.first("MODIFIED", "web-1", deleting=True),
                                  watch.first("MODIFIED", "web-0", deleting=True))
        assert deleting_1 is not None and deleting_0 is not None and deleting_1 < deleting_0, watch.events
    sts = get(up.kubeconfig, ns, "statefulset", "web")
    assert sts["status"]["currentRevision"] == sts["status"]["updateRevision"]
    assert history_revisions(up.kubeconfig, ns, "statefulset/web") == ["1", "2"]
    detail = up.kubectl("rollout", "history", "statefulset/web", "-n", ns, "--revision=2").stdout
    assert "busybox:1.36" in detail

    assert "rolled back" in up.kubectl("rollout", "undo", "statefulset/web", "-n", ns).stdout
    rollout_status(up.kubeconfig, ns, "statefulset/web")
    assert get(up.kubeconfig, ns, "statefulset", "web")["spec"]["template"]["spec"]["containers"][0]["image"] == \
        "busybox"
    wait_until(lambda: all(p["spec"]["containers"][0]["image"] == "busybox"
                           for p in active_pods(up.kubeconfig, ns, "app=web")), 90, "both pods back at busybox")
    wait_until(lambda: history_revisions(up.kubeconfig, ns, "statefulset/web") == ["2", "3"], 60,
               "revision 1 renumbered to 3")
    assert len(get(up.kubeconfig, ns, "controllerrevisions")["items"]) == 2  # undo made no new revision


def test_daemonset_runs_on_the_node_rolls_and_undoes(up, ns):
    apply(up.kubeconfig, ns, daemon_set("x"))
    out = rollout_status(up.kubeconfig, ns, "daemonset/x")
    assert 'daemon set "x" successfully rolled out' in out
    nodes = [n["metadata"]["name"] for n in json.loads(up.kubectl("get", "nodes", "-o", "json").stdout)["items"]]
    pods = active_pods(up.kubeconfig, ns, "app=x")
    assert len(pods) == len(nodes) == 1 and pods[0]["spec"]["nodeName"] == nodes[0]
    ds = get(up.kubeconfig, ns, "daemonset", "x")
    assert (ds["status"]["desiredNumberScheduled"], ds["status"]["numberReady"]) == (1, 1)

    up.kubectl("set", "image", "daemonset/x", "-n", ns, "busybox=busybox:1.36")
    rollout_status(up.kubeconfig, ns, "daemonset/x")
    wait_until(lambda: [p["spec"]["containers"][0]["image"] for p in active_pods(up.kubeconfig, ns, "app=x")]
               == ["busybox:1.36"], 90, "the pod at 1.36")
    assert history_revisions(up.kubeconfig, ns, "daemonset/x") == ["1", "2"]

    assert "rolled back" in up.kubectl("rollout", "undo", "daemonset/x", "-n", ns).stdout
    rollout_status(up.kubeconfig, ns, "daemonset/x")
    wait_until(lambda: [p["spec"]["containers"][0]["image"] for p in active_pods(up.kubeconfig, ns, "app=x")]
               == ["busybox"], 90, "the pod back at busybox")
    wait_until(lambda: history_revisions(up.kubeconfig, ns, "daemonset/x") == ["2", "3"], 60,
               "revision 1 renumbered to 3")
    skipped = up.kubectl("rollout", "undo", "daemonset/x", "-n", ns, "--to-revision=3").stdout
    assert "skipped rollback" in skipped


def test_daemonset_follows_a_second_node_joining_and_leaving(up, ns, tmp_path):
    """A second `timoner agent` joins `up`: the DaemonSet runs exactly one pod on each of the two nodes;
    once that node is deleted its pod goes and the DaemonSet is back to one."""
    node = f"second-{ns}"
    bridge = f"{up.slot.bridge}b"  # the second node's pods get a bridge (and pod CIDR) of their own
    agent = subprocess.Popen(
        [sys.executable, "-m", "timoner.cli.main", "agent", "--kubeconfig", str(up.kubeconfig),
         "--node-name", node, "--runtime", "process", "--root-dir", str(tmp_path / "agent"), "--port", "0",
         "--bridge-name", bridge, "--ingress-ports", "off"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: up.kubectl("get", "node", node, check=False).returncode == 0, 60, "the second Node")
        up.kubectl("wait", "--for=condition=Ready", f"node/{node}", "--timeout=60s", timeout=90)
        apply(up.kubeconfig, ns, daemon_set("two"))
        assert 'daemon set "two" successfully rolled out' in rollout_status(up.kubeconfig, ns, "daemonset/two")
        nodes = sorted(n["metadata"]["name"] for n in json.loads(up.kubectl("get", "nodes", "-o", "json").stdout)["items"])
        assert len(nodes) == 2 and node in nodes
        pods = active_pods(up.kubeconfig, ns, "app=two")
        assert sorted(p["spec"]["nodeName"] for p in pods) == nodes
        assert all(p["status"]["phase"] == "Running" for p in pods)
        ds = get(up.kubeconfig, ns, "daemonset", "two")["status"]
        assert (ds["desiredNumberScheduled"], ds["currentNumberScheduled"], ds["numberReady"]) == (2, 2, 2)
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(30)
        # A standalone agent leaves its containers running (a new agent would adopt them): none will.
        for pid in processes_under(tmp_path / "agent"):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        # ... nor its pods' volumes (the service-account token volume is a tmpfs), as `timoner up` on exit.
        for uid in pods_with_volumes(tmp_path / "agent"):
            remove_pod_volumes(tmp_path / "agent" / "pods" / uid)
        remove_pod_network(bridge)
    up.kubectl("delete", "node", node)
    wait_until(lambda: [p["spec"]["nodeName"] for p in active_pods(up.kubeconfig, ns, "app=two")]
               == [n for n in nodes if n != node], 90, "only the first node's pod left")
    wait_until(lambda: get(up.kubeconfig, ns, "daemonset", "two")["status"]["desiredNumberScheduled"] == 1, 60,
               "the DaemonSet down to one desired pod")
