"""Builders and queries shared by the controller integration tests."""

from __future__ import annotations

from timoner.client import resource_for

PODS = resource_for("v1", "Pod")
DEPLOYMENTS = resource_for("apps/v1", "Deployment")
REPLICA_SETS = resource_for("apps/v1", "ReplicaSet")
RCS = resource_for("v1", "ReplicationController")
EVENTS = resource_for("v1", "Event")


def deployment(name, *, replicas=3, image="busybox", labels=None, **spec):
    labels = labels or {"app": name}
    template = {"metadata": {"labels": dict(labels)},
                "spec": {"containers": [{"name": "c", "image": image}], "terminationGracePeriodSeconds": 1}}
    body = {"replicas": replicas, "selector": {"matchLabels": dict(labels)}, "template": template}
    body.update(spec)
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name}, "spec": body}


def replica_set(name, *, replicas=3, labels=None, **spec):
    labels = labels or {"app": name}
    template = {"metadata": {"labels": dict(labels)},
                "spec": {"containers": [{"name": "c", "image": "busybox"}], "terminationGracePeriodSeconds": 1}}
    body = {"replicas": replicas, "selector": {"matchLabels": dict(labels)}, "template": template}
    body.update(spec)
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": name}, "spec": body}


def condition(obj, kind):
    return next((c for c in (obj.get("status") or {}).get("conditions") or () if c["type"] == kind), None)


def controller_of(obj):
    return next((r for r in obj["metadata"].get("ownerReferences") or () if r.get("controller")), None)


def is_ready(pod):
    c = condition(pod, "Ready")
    return c is not None and c["status"] == "True"


async def pods_of(client, namespace, *, active=True, selector=None):
    items = (await client.list(PODS, namespace=namespace, label_selector=selector))["items"]
    if active:
        items = [p for p in items if not p["metadata"].get("deletionTimestamp")
                 and p["status"].get("phase") not in ("Succeeded", "Failed")]
    return items


async def events_for(client, namespace, name):
    items = (await client.list(EVENTS, namespace=namespace, field_selector=f"involvedObject.name={name}"))["items"]
    return [(e["type"], e["reason"], e["message"], e.get("source", {}).get("component")) for e in items]


async def rollout_complete(client, namespace, name):
    """The Deployment as `kubectl rollout status` would see it succeed, else None."""
    d = await client.get(DEPLOYMENTS, name, namespace=namespace)
    s, want = d.get("status") or {}, d["spec"]["replicas"]
    progressing = condition(d, "Progressing") or {}
    done = (s.get("observedGeneration", 0) >= d["metadata"]["generation"]
            and s.get("updatedReplicas", 0) == s.get("replicas", 0) == s.get("availableReplicas", 0) == want
            and progressing.get("reason") == "NewReplicaSetAvailable")
    return d if done else None


async def sets_of(client, namespace, name):
    """The ReplicaSets a Deployment controls, by revision."""
    d = await client.get(DEPLOYMENTS, name, namespace=namespace)
    items = (await client.list(REPLICA_SETS, namespace=namespace))["items"]
    owned = [rs for rs in items if (controller_of(rs) or {}).get("uid") == d["metadata"]["uid"]]
    return sorted(owned, key=lambda rs: int(rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"]))
