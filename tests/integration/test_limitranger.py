"""LimitRanger through the API server: defaults land in created pods, violations are 403 in upstream's words."""

from __future__ import annotations

import pytest


def _limit_range(c, ns: str, *items: dict, name: str = "limits") -> dict:
    r = c.post(f"/api/v1/namespaces/{ns}/limitranges",
               json={"apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": name},
                     "spec": {"limits": list(items)}})
    assert r.status_code == 201, r.text
    return r.json()


def _pod(name: str, *containers: dict, init: tuple[dict, ...] = ()) -> dict:
    spec: dict = {"containers": list(containers) or [{"name": "app", "image": "busybox"}]}
    if init:
        spec["initContainers"] = list(init)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


def test_defaults_and_annotation_in_the_created_pod(c, ns):
    lr = _limit_range(c, ns, {"type": "Container", "default": {"cpu": "500m", "memory": "256Mi"},
                              "defaultRequest": {"cpu": "100m"}})
    # LimitRange defaulting: defaultRequest takes what default has and it lacks
    assert lr["spec"]["limits"][0]["defaultRequest"] == {"cpu": "100m", "memory": "256Mi"}
    r = c.post(f"/api/v1/namespaces/{ns}/pods",
               json=_pod("p", {"name": "app", "image": "busybox", "resources": {"limits": {"memory": "128Mi"}}},
                         init=({"name": "setup", "image": "busybox"},)))
    assert r.status_code == 201, r.text
    pod = c.get(f"/api/v1/namespaces/{ns}/pods/p").json()
    app = pod["spec"]["containers"][0]["resources"]
    # the request defaulted from the container's own limit before admission, as upstream's defaulting does
    assert app == {"limits": {"cpu": "500m", "memory": "128Mi"}, "requests": {"cpu": "100m", "memory": "128Mi"}}
    assert pod["spec"]["initContainers"][0]["resources"] == {
        "limits": {"cpu": "500m", "memory": "256Mi"}, "requests": {"cpu": "100m", "memory": "256Mi"}}
    assert pod["metadata"]["annotations"]["kubernetes.io/limit-ranger"] == (
        "LimitRanger plugin set: cpu request for container app; cpu limit for container app; "
        "cpu, memory request for init container setup; cpu, memory limit for init container setup")
    assert pod["status"]["qosClass"] == "Burstable"


def test_max_violation_is_forbidden_with_upstream_status(c, ns):
    _limit_range(c, ns, {"type": "Container", "max": {"cpu": "1"}})
    r = c.post(f"/api/v1/namespaces/{ns}/pods",
               json=_pod("p", {"name": "app", "image": "busybox", "resources": {"limits": {"cpu": "2"}}}))
    assert r.status_code == 403, r.text
    status = r.json()
    assert status["reason"] == "Forbidden"
    assert status["message"] == 'pods "p" is forbidden: maximum cpu usage per Container is 1, but limit is 2'
    assert status["details"] == {"name": "p", "kind": "pods"}
    assert c.get(f"/api/v1/namespaces/{ns}/pods/p").status_code == 404


def test_the_max_becomes_the_default_so_a_bare_pod_passes(c, ns):
    _limit_range(c, ns, {"type": "Container", "max": {"cpu": "1", "memory": "1Gi"}})
    r = c.post(f"/api/v1/namespaces/{ns}/pods", json=_pod("p"))
    assert r.status_code == 201, r.text
    assert r.json()["spec"]["containers"][0]["resources"]["limits"] == {"cpu": "1", "memory": "1Gi"}


def test_pod_limits_sum_over_containers(c, ns):
    _limit_range(c, ns, {"type": "Pod", "max": {"memory": "1Gi"}})
    containers = [{"name": n, "image": "busybox", "resources": {"limits": {"memory": "768Mi"}}} for n in "ab"]
    r = c.post(f"/api/v1/namespaces/{ns}/pods", json=_pod("p", *containers))
    assert r.status_code == 403
    assert r.json()["message"] == 'pods "p" is forbidden: maximum memory usage per Pod is 1Gi, but limit is 1536Mi'


def test_ratio_and_min(c, ns):
    _limit_range(c, ns, {"type": "Container", "min": {"memory": "64Mi"}, "maxLimitRequestRatio": {"cpu": "4"}})
    resources = {"requests": {"cpu": "100m", "memory": "32Mi"}, "limits": {"cpu": "1", "memory": "32Mi"}}
    r = c.post(f"/api/v1/namespaces/{ns}/pods",
               json=_pod("p", {"name": "app", "image": "busybox", "resources": resources}))
    assert r.status_code == 403
    assert r.json()["message"] == (
        'pods "p" is forbidden: [minimum memory usage per Container is 64Mi, but request is 32Mi, '
        "cpu max limit to request ratio per Container is 4, but provided ratio is 10.000000]")


@pytest.mark.parametrize(("storage", "code"), [("5Gi", 403), ("1Gi", 201)])
def test_claims_are_held_to_persistent_volume_claim_items(c, ns, storage, code):
    _limit_range(c, ns, {"type": "PersistentVolumeClaim", "max": {"storage": "2Gi"}})
    r = c.post(f"/api/v1/namespaces/{ns}/persistentvolumeclaims", json={
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": storage}}}})
    assert r.status_code == code, r.text
    if code == 403:
        assert r.json()["message"] == ('persistentvolumeclaims "data" is forbidden: maximum storage usage per '
                                       "PersistentVolumeClaim is 2Gi, but request is 5Gi")


def test_pod_updates_are_not_rechecked(c, ns):
    r = c.post(f"/api/v1/namespaces/{ns}/pods",
               json=_pod("p", {"name": "app", "image": "busybox", "resources": {"limits": {"cpu": "2"}}}))
    assert r.status_code == 201
    _limit_range(c, ns, {"type": "Container", "max": {"cpu": "1"}})
    r = c.patch(f"/api/v1/namespaces/{ns}/pods/p", json={"metadata": {"labels": {"x": "y"}}},
                headers={"Content-Type": "application/merge-patch+json"})
    assert r.status_code == 200, r.text
    assert "annotations" not in r.json()["metadata"]
