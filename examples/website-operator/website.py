"""What a Website becomes, shared by the three operators: its children, its status, its index entry.

A Website `NAME` (example.timoner.dev/v1) is reconciled into
  - ConfigMap `NAME-content`: `index.html` = spec.content;
  - Deployment `NAME`: spec.replicas web servers (`python -m http.server`) serving that ConfigMap, mounted
    as a volume; the pod template carries a hash of the content, so that a new content rolls the pods;
  - Service `NAME`: spec.port to the servers' named port `http`;
and listed in the namespace's ConfigMap `website-index` (one key per Website: its URL). The index is not
owned by any Website (it lists them all), so garbage collection does not tidy it: each operator takes a
Website's entry out under a finalizer, before the Website goes.

Everything here is plain dictionaries; the operators add ownerReferences and talk to the API server.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import logging
import os
import signal
import sys
import threading
import time

GROUP = "example.timoner.dev"
VERSION = "v1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "Website"
PLURAL = "websites"
# Every child carries it (value: the Website's name): how the operators find and watch them.
LABEL = f"{GROUP}/website"
CONTENT_HASH = f"{GROUP}/content-hash"
INDEX = "website-index"
# The servers' interpreter. On `timoner up` a container's command runs on the host (the image is only a
# label), so the tests pass their own; on another cluster the image's `python3` is the one.
SERVER_PYTHON = os.environ.get("WEBSITE_SERVER_PYTHON", "python3")
SERVER_IMAGE = "python:3.12-slim"


def names(website: dict) -> dict[str, str]:
    name = website["metadata"]["name"]
    return {"configMap": f"{name}-content", "deployment": name, "service": name}


def owner_reference(website: dict) -> dict:
    """The controller ownerReference a child of `website` carries (what `kopf.adopt` writes too)."""
    meta = website["metadata"]
    return {"apiVersion": API_VERSION, "kind": KIND, "name": meta["name"], "uid": meta["uid"],
            "controller": True, "blockOwnerDeletion": True}


def children(website: dict) -> list[dict]:
    """The ConfigMap, Deployment and Service of `website` (namespaced, labelled, without owner)."""
    meta, spec = website["metadata"], website.get("spec", {})
    name, namespace = meta["name"], meta["namespace"]
    port = int(spec.get("port", 8080))
    replicas = int(spec.get("replicas", 1))
    content = spec.get("content", "")
    labels = {LABEL: name}
    pod_labels = {"app.kubernetes.io/name": "website", "app.kubernetes.io/instance": name}
    named = names(website)

    def metadata(child_name: str) -> dict:
        return {"name": child_name, "namespace": namespace, "labels": dict(labels)}

    configmap = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata(named["configMap"]),
                 "data": {"index.html": content}}
    server = {
        "name": "web", "image": SERVER_IMAGE,
        "command": [SERVER_PYTHON, "-m", "http.server", str(port), "--directory", "/srv/www"],
        "ports": [{"name": "http", "containerPort": port}],
        "volumeMounts": [{"name": "content", "mountPath": "/srv/www", "readOnly": True}],
        "readinessProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 1},
    }
    content_hash = hashlib.sha256(content.encode()).hexdigest()[:16]
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": metadata(named["deployment"]),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": pod_labels},
            "template": {
                "metadata": {"labels": {**pod_labels, **labels},
                             "annotations": {CONTENT_HASH: content_hash}},
                "spec": {"terminationGracePeriodSeconds": 1, "containers": [server],
                         "volumes": [{"name": "content", "configMap": {"name": named["configMap"]}}]}}}}
    service = {"apiVersion": "v1", "kind": "Service", "metadata": metadata(named["service"]),
               "spec": {"selector": pod_labels,
                        "ports": [{"name": "http", "port": port, "targetPort": "http"}]}}
    return [configmap, deployment, service]


def index_config_map(key: str, value: str) -> dict:
    """The index ConfigMap as it is first created, with one entry."""
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": INDEX, "labels": {"app.kubernetes.io/managed-by": "website-operator"}},
            "data": {key: value}}


def index_entry(website: dict) -> tuple[str, str]:
    """The Website's key in the `website-index` ConfigMap and its value (the Service's URL)."""
    meta = website["metadata"]
    port = int(website.get("spec", {}).get("port", 8080))
    return meta["name"], f"http://{names(website)['service']}.{meta['namespace']}.svc:{port}/"


def status(website: dict, ready_replicas: int | None, deleting: bool = False) -> dict:
    """The status `website` should have once its Deployment reports `ready_replicas` ready pods.

    Phase Ready once every wanted replica is ready, Pending before, Deleting under deletion; one
    condition `Ready` whose lastTransitionTime moves only when its status does.
    """
    wanted = int(website.get("spec", {}).get("replicas", 1))
    ready = ready_replicas or 0
    is_ready = ready >= wanted and not deleting
    phase = "Deleting" if deleting else ("Ready" if is_ready else "Pending")
    reason = "Deleting" if deleting else ("AllReplicasReady" if is_ready else "ReplicasNotReady")
    condition = {"type": "Ready", "status": "True" if is_ready else "False", "reason": reason,
                 "message": f"{ready}/{wanted} replicas ready"}
    conditions = (website.get("status") or {}).get("conditions") or []
    previous = next((c for c in conditions if c.get("type") == "Ready"), None)
    if previous and previous.get("status") == condition["status"] and previous.get("lastTransitionTime"):
        condition["lastTransitionTime"] = previous["lastTransitionTime"]
    else:
        condition["lastTransitionTime"] = now()
    return {"phase": phase, "observedGeneration": website["metadata"].get("generation", 1),
            "readyReplicas": ready, **names(website), "conditions": [condition]}


def status_changed(website: dict, wanted: dict) -> bool:
    """Whether writing `wanted` would change `website`'s status (lastTransitionTime aside)."""
    def strip(s: dict) -> dict:
        return {**s, "conditions": [{k: v for k, v in c.items() if k != "lastTransitionTime"}
                                    for c in s.get("conditions") or []]}
    return strip(website.get("status") or {}) != strip(wanted)


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def drifted(actual, desired) -> bool:
    """Whether `actual` lacks something of `desired`: a field missing or different (lists item by item).

    Fields the server or other controllers add (defaults, status, annotations) do not count.
    """
    if isinstance(desired, dict):
        return not isinstance(actual, dict) or any(drifted(actual.get(k), v) for k, v in desired.items())
    if isinstance(desired, list):
        return (not isinstance(actual, list) or len(actual) != len(desired)
                or any(drifted(a, d) for a, d in zip(actual, desired, strict=True)))
    return actual != desired


class WorkQueue:
    """Website names to reconcile, each at most once in the queue; one worker takes them in turn.

    What the operators without a framework (lightkube, DynamicClient) use between their watches and
    their reconcile loop; `add(name, delay)` is a retry after a failure.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._names: list[str] = []

    def add(self, name: str, delay: float = 0.0) -> None:
        if delay:
            timer = threading.Timer(delay, self.add, (name,))
            timer.daemon = True
            timer.start()
            return
        with self._cond:
            if name not in self._names:
                self._names.append(name)
                self._cond.notify()

    def get(self) -> str:
        with self._cond:
            self._cond.wait_for(lambda: self._names)
            return self._names.pop(0)


def run_worker(queue: WorkQueue, reconcile, logger, is_conflict) -> None:
    """Reconcile names from `queue` forever.

    A conflict (409: the object changed since it was read) is retried at once, from a fresh read; any
    other failure is logged with its traceback and retried a second later.
    """
    while True:
        name = queue.get()
        try:
            reconcile(name)
        except Exception as exc:
            if is_conflict(exc):
                logger.info("conflict reconciling %s (%s); again", name, exc.__class__.__name__)
                queue.add(name)
                continue
            logger.exception("reconciling %s failed; retrying", name)
            queue.add(name, delay=1.0)


def main(operator, description: str, *, quiet: tuple[str, ...] = ()) -> None:
    """Command line of the hand-written operators: `--namespace NS`, then `operator(NS).run()` for ever.

    `quiet` names loggers that would log every request. A failed run is logged and started afresh.
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--namespace", required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    for name in quiet:
        logging.getLogger(name).setLevel(logging.WARNING)
    log = logging.getLogger("website-operator")
    log.info("watching Websites in %s", args.namespace)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # stop at once; the watches are daemon threads
    while True:
        try:
            operator(args.namespace).run()
        except Exception:
            log.exception("operator failed; starting again")
            time.sleep(1)
