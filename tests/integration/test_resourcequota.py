"""ResourceQuota admission through the API server; the tests write quota status themselves, as the controller would."""

from __future__ import annotations

MERGE = {"Content-Type": "application/merge-patch+json"}


def _quota(c, ns: str, hard: dict, *, used: dict | None = None, name: str = "q", **spec) -> None:
    r = c.post(f"/api/v1/namespaces/{ns}/resourcequotas",
               json={"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": name},
                     "spec": {"hard": hard, **spec}})
    assert r.status_code == 201, r.text
    if used is not None:
        r = c.patch(f"/api/v1/namespaces/{ns}/resourcequotas/{name}/status",
                    json={"status": {"hard": hard, "used": used}}, headers=MERGE)
        assert r.status_code == 200, r.text


def _used(c, ns: str, name: str = "q") -> dict:
    return c.get(f"/api/v1/namespaces/{ns}/resourcequotas/{name}").json()["status"]["used"]


def _pod(name: str, resources: dict | None = None) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": [{"name": "app", "image": "busybox", "resources": resources or {}}]}}


def test_pods_over_quota_are_forbidden_with_upstream_status(c, ns):
    _quota(c, ns, {"pods": "2"}, used={"pods": "0"})
    for name in ("a", "b"):
        assert c.post(f"/api/v1/namespaces/{ns}/pods", json=_pod(name)).status_code == 201
    assert _used(c, ns) == {"pods": "2"}
    r = c.post(f"/api/v1/namespaces/{ns}/pods", json=_pod("c"))
    assert r.status_code == 403
    status = r.json()
    assert status["reason"] == "Forbidden"
    assert status["message"] == 'pods "c" is forbidden: exceeded quota: q, requested: pods=1, used: pods=2, limited: pods=2'
    assert status["details"] == {"name": "c", "kind": "pods"}
    assert c.get(f"/api/v1/namespaces/{ns}/pods/c").status_code == 404


def test_generated_names_appear_in_the_refusal(c, ns):
    _quota(c, ns, {"pods": "0"}, used={"pods": "0"})
    pod = _pod("")
    pod["metadata"] = {"generateName": "web-"}
    r = c.post(f"/api/v1/namespaces/{ns}/pods", json=pod)
    assert r.status_code == 403
    assert r.json()["message"].startswith('pods "web-')
    assert r.json()["message"].endswith('" is forbidden: exceeded quota: q, requested: pods=1, used: pods=0, '
                                        "limited: pods=0")


def test_dry_run_is_checked_but_not_charged(c, ns):
    _quota(c, ns, {"pods": "1"}, used={"pods": "0"})
    assert c.post(f"/api/v1/namespaces/{ns}/pods?dryRun=All", json=_pod("a")).status_code == 201
    assert _used(c, ns) == {"pods": "0"}
    _quota(c, ns, {"pods": "0"}, used={"pods": "0"}, name="none")
    assert c.post(f"/api/v1/namespaces/{ns}/pods?dryRun=All", json=_pod("a")).status_code == 403


def test_count_configmaps_and_secrets(c, ns):
    _quota(c, ns, {"count/configmaps": "10", "secrets": "1"}, used={"count/configmaps": "1", "secrets": "0"})
    assert c.post(f"/api/v1/namespaces/{ns}/configmaps",
                  json={"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}}).status_code == 201
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s1"}}
    assert c.post(f"/api/v1/namespaces/{ns}/secrets", json=secret).status_code == 201
    assert _used(c, ns) == {"count/configmaps": "2", "secrets": "1"}
    secret["metadata"]["name"] = "s2"
    r = c.post(f"/api/v1/namespaces/{ns}/secrets", json=secret)
    assert r.status_code == 403
    assert r.json()["message"] == ('secrets "s2" is forbidden: exceeded quota: q, requested: secrets=1, '
                                   "used: secrets=1, limited: secrets=1")
    # updates of counted objects charge nothing
    r = c.patch(f"/api/v1/namespaces/{ns}/configmaps/cm", json={"data": {"k": "v"}}, headers=MERGE)
    assert r.status_code == 200
    assert _used(c, ns) == {"count/configmaps": "2", "secrets": "1"}


def test_compute_quota_needs_requests_and_limit_ranger_defaults_supply_them(c, ns):
    _quota(c, ns, {"requests.cpu": "1", "limits.memory": "1Gi"}, used={"requests.cpu": "0", "limits.memory": "0"})
    r = c.post(f"/api/v1/namespaces/{ns}/pods", json=_pod("bare"))
    assert r.status_code == 403
    assert r.json()["message"] == ('pods "bare" is forbidden: failed quota: q: '
                                   "must specify limits.memory for: app; requests.cpu for: app")
    r = c.post(f"/api/v1/namespaces/{ns}/limitranges", json={
        "apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": "defaults"},
        "spec": {"limits": [{"type": "Container", "default": {"cpu": "400m", "memory": "512Mi"},
                             "defaultRequest": {"cpu": "400m", "memory": "256Mi"}}]}})
    assert r.status_code == 201
    # LimitRanger mutates before ResourceQuota validates, as in upstream's plugin order
    assert c.post(f"/api/v1/namespaces/{ns}/pods", json=_pod("a")).status_code == 201
    assert c.post(f"/api/v1/namespaces/{ns}/pods", json=_pod("b")).status_code == 201
    assert _used(c, ns) == {"limits.memory": "1Gi", "requests.cpu": "800m"}
    r = c.post(f"/api/v1/namespaces/{ns}/pods", json=_pod("c"))
    assert r.status_code == 403
    assert r.json()["message"] == ('pods "c" is forbidden: exceeded quota: q, requested: '
                                   "limits.memory=512Mi,requests.cpu=400m, used: limits.memory=1Gi,requests.cpu=800m, "
                                   "limited: limits.memory=1Gi,requests.cpu=1")


def test_a_quota_the_controller_has_not_counted_refuses(c, ns):
    _quota(c, ns, {"pods": "5", "services": "2"}, used={"pods": "0"})
    r = c.post(f"/api/v1/namespaces/{ns}/services", json={
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "spec": {"ports": [{"port": 80}]}})
    assert r.status_code == 403
    assert r.json()["message"] == 'services "s" is forbidden: status unknown for quota: q, resources: services'


def test_claim_resize_is_charged_the_difference(c, ns):
    _quota(c, ns, {"requests.storage": "3Gi"}, used={"requests.storage": "0"})
    r = c.post(f"/api/v1/namespaces/{ns}/persistentvolumeclaims", json={
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "",
                 "resources": {"requests": {"storage": "1Gi"}}}})
    assert r.status_code == 201, r.text
    assert _used(c, ns) == {"requests.storage": "1Gi"}
    r = c.patch(f"/api/v1/namespaces/{ns}/persistentvolumeclaims/data",
                json={"spec": {"resources": {"requests": {"storage": "2Gi"}}}}, headers=MERGE)
    assert r.status_code == 200, r.text
    assert _used(c, ns) == {"requests.storage": "2Gi"}
    r = c.patch(f"/api/v1/namespaces/{ns}/persistentvolumeclaims/data",
                json={"spec": {"resources": {"requests": {"storage": "5Gi"}}}}, headers=MERGE)
    assert r.status_code == 403, r.text
    assert r.json()["message"] == ('persistentvolumeclaims "data" is forbidden: exceeded quota: q, requested: '
                                   "requests.storage=3Gi, used: requests.storage=2Gi, limited: requests.storage=3Gi")
    assert _used(c, ns) == {"requests.storage": "2Gi"}


def test_other_namespaces_are_not_affected(c, ns):
    _quota(c, ns, {"pods": "0"}, used={"pods": "0"})
    other = ns + "-x"
    assert c.post("/api/v1/namespaces", json={"metadata": {"name": other}}).status_code == 201
    assert c.post(f"/api/v1/namespaces/{other}/pods", json=_pod("a")).status_code == 201
