"""Builders for the Service controller tests: Services, and pods on agentless nodes whose status the test writes."""

from __future__ import annotations

import datetime as dt

from controller_helpers import PODS

from timoner.client import resource_for
from timoner.controllers import Request

SERVICES = resource_for("v1", "Service")
ENDPOINTS = resource_for("v1", "Endpoints")
SLICES = resource_for("discovery.k8s.io/v1", "EndpointSlice")
NODES = resource_for("v1", "Node")

SERVICE_NAME = "kubernetes.io/service-name"
MANAGED_BY = "endpointslice.kubernetes.io/managed-by"
TRIGGER_TIME = "endpoints.kubernetes.io/last-change-trigger-time"

WEB = {"app": "web"}


def service(name, *, selector=None, ports=None, labels=None, **spec):
    body = {"ports": ports if ports is not None else [{"name": "http", "port": 80, "targetPort": 8080}]}
    if selector is not None:
        body["selector"] = selector
    body.update(spec)
    meta = {"name": name}
    if labels:
        meta["labels"] = labels
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": body}


async def node(client, name, *, zone=None):
    """A Node no agent runs: nothing changes the pods bound to it but the test."""
    labels = {"kubernetes.io/hostname": name}
    if zone:
        labels["topology.kubernetes.io/zone"] = zone
    return await client.create(NODES, {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name,
                                                                                       "labels": labels}})


def _now():
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def pod(client, namespace, name, ip, *, labels=None, ready=True, node_name="n1", ports=None, hostname=None,
              subdomain=None):
    """A pod bound to `node_name`, Running with `ip`, Ready or not, as a kubelet would report it."""
    spec = {"containers": [{"name": "c", "image": "busybox", "ports": ports or []}], "nodeName": node_name}
    if hostname:
        spec["hostname"] = hostname
    if subdomain:
        spec["subdomain"] = subdomain
    created = await client.create(PODS, {"apiVersion": "v1", "kind": "Pod",
                                         "metadata": {"name": name, "labels": labels or {"app": "web"}},
                                         "spec": spec}, namespace=namespace)
    created["status"] = {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}], "conditions": [
        {"type": "Ready", "status": "True" if ready else "False", "lastTransitionTime": _now()}]}
    return await client.update(PODS, created, subresource="status")


async def set_ready(client, namespace, name, ready):
    current = await client.get(PODS, name, namespace=namespace)
    current["status"]["conditions"] = [
        {"type": "Ready", "status": "True" if ready else "False", "lastTransitionTime": _now()}]
    return await client.update(PODS, current, subresource="status")


async def web_and_peers(client, namespace):
    """Pods a and c Ready and b not, on node n1, behind Services `web` and `peers` (publishNotReadyAddresses)."""
    await node(client, "n1")
    await pod(client, namespace, "a", "10.1.0.1")
    await pod(client, namespace, "b", "10.1.0.2", ready=False)
    await pod(client, namespace, "c", "10.1.0.3")
    await client.create(SERVICES, service("web", selector=WEB), namespace=namespace)
    await client.create(SERVICES, service("peers", selector=WEB, publishNotReadyAddresses=True), namespace=namespace)


def target_ref(p):
    meta = p["metadata"]
    return {"kind": "Pod", "namespace": meta["namespace"], "name": meta["name"], "uid": meta["uid"]}


def spy_on(manager, controller_name):
    """The requests the named controller finished reconciling, recorded as they complete."""
    controller = next(c for c in manager.controllers if c.name == controller_name)
    done: list[Request] = []
    reconcile = controller.reconciler.reconcile

    async def recording(request):
        try:
            return await reconcile(request)
        finally:
            done.append(request)

    controller.reconciler.reconcile = recording
    return done
