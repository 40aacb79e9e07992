"""Helpers for e2e tests on `timoner up`: JSON reads through the real kubectl, and a pod watch.

`PodWatch` uses the official Python client the way an informer does (list, watch from there, list
and watch again when a stream drops) and keeps the fewest Ready and the most active (not deleting)
pods it ever saw, which is what rollout and drain tests bound.
"""

from __future__ import annotations

import json
import threading

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes import watch as k8s_watch

from timoner.testing import kubectl

__all__ = ["PodWatch", "active_pods", "get"]


def get(kubeconfig, ns, kind, name=None, selector=None):
    """`kubectl get KIND [NAME] -n NS [-l SELECTOR] -o json`, parsed."""
    args = ["get", kind, "-n", ns, "-o", "json"]
    if name:
        args.insert(2, name)
    if selector:
        args += ["-l", selector]
    return json.loads(kubectl(kubeconfig, *args).stdout)


def active_pods(kubeconfig, ns, selector):
    """The pods `selector` selects that are not being deleted."""
    return [p for p in get(kubeconfig, ns, "pods", selector=selector)["items"]
            if not p["metadata"].get("deletionTimestamp")]


class PodWatch:
    """Watches a namespace's pods with the official client; keeps the fewest Ready and most active ever seen.

    Active pods are the ones not being deleted; Ready ones are active pods whose Ready condition is True.
    """

    def __init__(self, kubeconfig, ns):
        self.api = k8s.CoreV1Api(k8s_config.new_client_from_config(str(kubeconfig)))
        self.ns = ns
        self.pods: dict[str, object] = {}
        self.min_ready: int | None = None
        self.max_active = 0
        self.drops: list[str] = []  # watch streams that ended early (resumed)
        self._stopped = threading.Event()
        self._synced = threading.Event()
        self._watch = k8s_watch.Watch()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        # Like an informer: list, watch from there, and on a dropped stream list and watch again.
        while not self._stopped.is_set():
            try:
                listed = self.api.list_namespaced_pod(self.ns)
                self.pods = {pod.metadata.name: pod for pod in listed.items}
                self._sample()
                self._synced.set()
                for event in self._watch.stream(self.api.list_namespaced_pod, self.ns,
                                                resource_version=listed.metadata.resource_version):
                    pod = event["object"]
                    if event["type"] == "DELETED":
                        self.pods.pop(pod.metadata.name, None)
                    else:
                        self.pods[pod.metadata.name] = pod
                    self._sample()
            except Exception as exc:
                # The client's `Watch.stop()` shuts the socket down under a blocked read to end it:
                # the stream then ends without its last chunk, a ProtocolError that is ours, not a drop.
                if not self._stopped.is_set():
                    self.drops.append(repr(exc))

    def _sample(self):
        active = [p for p in self.pods.values() if p.metadata.deletion_timestamp is None]
        ready = [p for p in active
                 if any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or ())]
        self.min_ready = len(ready) if self.min_ready is None else min(self.min_ready, len(ready))
        self.max_active = max(self.max_active, len(active))

    def __enter__(self):
        self._thread.start()
        assert self._synced.wait(30)
        return self

    def __exit__(self, *exc):
        self._stopped.set()
        self._watch.stop()
