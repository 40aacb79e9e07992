"""Server-side apply and managedFields over HTTP against an in-process server."""

from __future__ import annotations

import json

import yaml

APPLY = {"Content-Type": "application/apply-patch+yaml"}


def deployment(name="web", replicas=1, image="nginx", labels=None):
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, **({"labels": labels} if labels else {})},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "c", "image": image}]}}},
    }


def apply(c, ns, body, manager="alice", *, force=None, yaml_body=True, name="web", extra=""):
    params = f"?fieldManager={manager}" if manager else "?"
    if force is not None:
        params += f"&force={'true' if force else 'false'}"
    data = yaml.safe_dump(body) if yaml_body else json.dumps(body)
    return c.patch(f"/apis/apps/v1/namespaces/{ns}/deployments/{name}{params}{extra}", content=data, headers=APPLY)


def managers(obj):
    return {(e["manager"], e["operation"]) for e in obj["metadata"].get("managedFields", [])}


def test_apply_creates_then_updates_and_drops_omitted_fields(c, ns):
    r = apply(c, ns, deployment(labels={"a": "1", "b": "2"}))
    assert r.status_code == 201, r.text
    obj = r.json()
    [entry] = obj["metadata"]["managedFields"]
    assert entry["manager"] == "alice" and entry["operation"] == "Apply" and entry["apiVersion"] == "apps/v1"
    assert entry["fieldsType"] == "FieldsV1" and entry["time"]
    assert entry["fieldsV1"]["f:metadata"] == {"f:labels": {"f:a": {}, "f:b": {}}}
    # Defaults are applied and owned by nobody.
    assert obj["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] == "Always"
    r = apply(c, ns, deployment(labels={"a": "1"}), yaml_body=False)
    assert r.status_code == 200, r.text
    assert r.json()["metadata"]["labels"] == {"a": "1"}


def test_conflict_is_409_with_causes_and_force_takes_over(c, ns):
    assert apply(c, ns, deployment(replicas=1)).status_code == 201
    r = apply(c, ns, deployment(replicas=3), "bob")
    assert r.status_code == 409, r.text
    status = r.json()
    assert status["reason"] == "Conflict"
    assert status["message"] == 'Apply failed with 1 conflict: conflict with "alice": .spec.replicas'
    assert status["details"]["causes"] == [
        {"reason": "FieldManagerConflict", "message": 'conflict with "alice"', "field": ".spec.replicas"}]
    assert c.get(f"/apis/apps/v1/namespaces/{ns}/deployments/web").json()["spec"]["replicas"] == 1
    r = apply(c, ns, deployment(replicas=3), "bob", force=True)
    assert r.status_code == 200, r.text
    assert r.json()["spec"]["replicas"] == 3
    assert managers(r.json()) == {("alice", "Apply"), ("bob", "Apply")}


def test_update_records_manager_from_user_agent_and_conflicts_apply(c, ns):
    r = c.post(f"/apis/apps/v1/namespaces/{ns}/deployments", json=deployment(),
               headers={"User-Agent": "kubectl/v1.32.0 (linux/amd64) kubernetes/abc"})
    assert r.status_code == 201, r.text
    [entry] = r.json()["metadata"]["managedFields"]
    assert (entry["manager"], entry["operation"], entry["apiVersion"]) == ("kubectl", "Update", "apps/v1")
    assert "f:replicas" in entry["fieldsV1"]["f:spec"]
    r = apply(c, ns, deployment(replicas=4))
    assert r.status_code == 409
    assert r.json()["message"] == ('Apply failed with 1 conflict: conflict with "kubectl" using apps/v1: '
                                   ".spec.replicas")
    # A merge patch with an explicit manager takes the field.
    r = c.patch(f"/apis/apps/v1/namespaces/{ns}/deployments/web?fieldManager=scaler",
                json={"spec": {"replicas": 2}}, headers={"Content-Type": "application/merge-patch+json"})
    assert r.status_code == 200, r.text
    assert ("scaler", "Update") in managers(r.json())


def test_managed_fields_reset_by_empty_list_and_kept_when_omitted(c, ns):
    assert apply(c, ns, deployment()).status_code == 201
    path = f"/apis/apps/v1/namespaces/{ns}/deployments/web"
    current = c.get(path).json()
    del current["metadata"]["managedFields"]
    r = c.put(path + "?fieldManager=editor", json=current)
    assert r.status_code == 200 and managers(r.json()) == {("alice", "Apply")}
    r = c.patch(path, json={"metadata": {"managedFields": []}},
                headers={"Content-Type": "application/merge-patch+json"})
    assert r.status_code == 200, r.text
    assert "managedFields" not in r.json()["metadata"]


def test_apply_input_errors(c, ns):
    r = apply(c, ns, deployment(), manager="")
    assert r.status_code == 422 and r.json()["reason"] == "Invalid"
    assert r.json()["details"]["causes"][0]["field"] == "fieldManager"
    r = c.patch(f"/apis/apps/v1/namespaces/{ns}/deployments/web?force=true", json={},
                headers={"Content-Type": "application/merge-patch+json"})
    assert r.status_code == 422
    r = apply(c, ns, deployment(name="other"))
    assert r.status_code == 400 and "does not match the name" in r.json()["message"]
    body = deployment()
    body["metadata"]["managedFields"] = [{"manager": "x"}]
    assert apply(c, ns, body).status_code == 400
    r = c.patch(f"/apis/apps/v1/namespaces/{ns}/deployments/web?fieldManager=a", content="a: [",
                headers=APPLY)
    assert r.status_code == 400
    bad = deployment()
    bad["spec"]["template"]["spec"]["containers"] = [{"image": "x"}]
    assert apply(c, ns, bad).status_code in (400, 422)
    assert c.get(f"/apis/apps/v1/namespaces/{ns}/deployments/web").status_code == 404
    r = c.patch(f"/apis/apps/v1/namespaces/{ns}/deployments/web", content="{}",
                headers={"Content-Type": "application/x-unknown"})
    assert r.status_code == 415


def test_dry_run_apply_writes_nothing(c, ns):
    r = apply(c, ns, deployment(), extra="&dryRun=All")
    assert r.status_code == 201, r.text
    assert c.get(f"/apis/apps/v1/namespaces/{ns}/deployments/web").status_code == 404


def test_apply_configmap_in_core_group(c, ns):
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}, "data": {"a": "1", "b": "2"}}
    path = f"/api/v1/namespaces/{ns}/configmaps/cm?fieldManager=m"
    assert c.patch(path, content=yaml.safe_dump(body), headers=APPLY).status_code == 201
    body["data"] = {"a": "1"}
    r = c.patch(path, content=yaml.safe_dump(body), headers=APPLY)
    assert r.status_code == 200 and r.json()["data"] == {"a": "1"}


def test_status_writes_are_owned_with_their_subresource(c, ns):
    assert apply(c, ns, deployment()).status_code == 201
    path = f"/apis/apps/v1/namespaces/{ns}/deployments/web"
    current = c.get(path).json()
    current["status"] = {"replicas": 1, "observedGeneration": 1}
    r = c.put(path + "/status?fieldManager=ctrl", json=current)
    assert r.status_code == 200, r.text
    [entry] = [e for e in r.json()["metadata"]["managedFields"] if e["manager"] == "ctrl"]
    assert entry["subresource"] == "status" and entry["operation"] == "Update"
    assert set(entry["fieldsV1"]) == {"f:status"}
    # Status sent to the main resource is reset by the strategy, and owned by nobody.
    r = apply(c, ns, {**deployment(), "status": {"replicas": 7}})
    assert r.status_code == 200, r.text
    alice = [e for e in r.json()["metadata"]["managedFields"] if e["manager"] == "alice"][0]
    assert "f:status" not in alice["fieldsV1"]
    assert r.json()["status"]["replicas"] == 1


def test_undecodable_managed_fields_in_a_body_keep_the_live_ones(c, ns):
    assert apply(c, ns, deployment()).status_code == 201
    path = f"/apis/apps/v1/namespaces/{ns}/deployments/web"
    current = c.get(path).json()
    current["metadata"]["managedFields"] = [{"manager": "x", "operation": "Bogus", "fieldsType": "FieldsV1"}]
    current["spec"]["replicas"] = 3
    r = c.put(path + "?fieldManager=editor", json=current)
    assert r.status_code == 200, r.text
    assert managers(r.json()) == {("alice", "Apply"), ("editor", "Update")}


def test_scale_writes_are_owned_by_the_scale_subresource_and_apply_to_scale_is_415(c, ns):
    assert apply(c, ns, deployment(replicas=1)).status_code == 201
    path = f"/apis/apps/v1/namespaces/{ns}/deployments/web/scale"
    r = c.patch(path + "?fieldManager=hpa", json={"spec": {"replicas": 4}},
                headers={"Content-Type": "application/merge-patch+json"})
    assert r.status_code == 200, r.text
    obj = c.get(f"/apis/apps/v1/namespaces/{ns}/deployments/web").json()
    hpa = [e for e in obj["metadata"]["managedFields"] if e["manager"] == "hpa"]
    assert [(e["operation"], e["subresource"], e["fieldsV1"]) for e in hpa] == [
        ("Update", "scale", {"f:spec": {"f:replicas": {}}})]
    alice = [e for e in obj["metadata"]["managedFields"] if e["manager"] == "alice"][0]
    assert "f:replicas" not in alice["fieldsV1"]["f:spec"]
    r = c.patch(path + "?fieldManager=a", content="spec: {replicas: 2}", headers=APPLY)
    assert r.status_code == 415
    # Conflicts name the subresource, as upstream prints them.
    r = apply(c, ns, deployment(replicas=2))
    assert r.status_code == 409
    assert r.json()["message"] == ('Apply failed with 1 conflict: conflict with "hpa" with subresource "scale" '
                                   "using apps/v1: .spec.replicas")
