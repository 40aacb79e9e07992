"""CustomResourceDefinitions against an in-process API server, over plain HTTP.

What a CRD serves (at once, in discovery and OpenAPI), its status, custom resources validated, pruned and
defaulted by the schema, the status and scale subresources, printer columns, versions, server-side apply,
and what deleting a CRD does.
"""

from __future__ import annotations

import copy
import time
import uuid

import pytest

from timoner.testing import wait_until as _wait_until


def wait_until(check):
    return _wait_until(check, timeout=10, interval=0.05)

CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io"


def widget_crd(group: str, *, plural: str = "widgets", kind: str = "Widget", scope: str = "Namespaced",
               versions: list[dict] | None = None, singular: str = "") -> dict:
    schema = {
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "required": ["size"],
                "properties": {
                    "size": {"type": "integer", "minimum": 1, "maximum": 10},
                    "color": {"type": "string", "enum": ["red", "green", "blue"], "default": "red"},
                    "replicas": {"type": "integer", "default": 1},
                    "selector": {"type": "string"},
                    "ports": {
                        "type": "array",
                        "x-kubernetes-list-type": "map",
                        "x-kubernetes-list-map-keys": ["name"],
                        "items": {"type": "object", "required": ["name"], "properties": {
                            "name": {"type": "string"}, "port": {"type": "integer"}}},
                    },
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                },
            },
            "status": {
                "type": "object",
                "properties": {"replicas": {"type": "integer"}, "phase": {"type": "string"}},
            },
        },
    }
    version = {
        "name": "v1", "served": True, "storage": True,
        "schema": {"openAPIV3Schema": schema},
        "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.replicas",
                                                 "statusReplicasPath": ".status.replicas",
                                                 "labelSelectorPath": ".spec.selector"}},
        "additionalPrinterColumns": [
            {"name": "Size", "type": "integer", "jsonPath": ".spec.size"},
            {"name": "Color", "type": "string", "jsonPath": ".spec.color"},
            {"name": "Phase", "type": "string", "jsonPath": ".status.phase", "priority": 1},
            {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
        ],
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {"group": group, "scope": scope,
                 "names": {"plural": plural, "singular": singular or kind.lower(), "kind": kind, "shortNames": [plural[:3]]},
                 "versions": versions or [version]},
    }


@pytest.fixture
def group():
    return f"g{uuid.uuid4().hex[:8]}.example.com"


@pytest.fixture
def crd(c, group):
    body = widget_crd(group)
    r = c.post(CRDS, json=body)
    assert r.status_code == 201, r.text
    return r.json()


def widget(name: str, **spec) -> dict:
    return {"kind": "Widget", "metadata": {"name": name}, "spec": {"size": 3, **spec}}


def test_a_crd_is_served_at_once_and_established(c, group, ns):
    r = c.post(CRDS, json=widget_crd(group))
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["spec"]["names"]["listKind"] == "WidgetList"
    # served at once: the very next requests find the resource
    r = c.get(f"/apis/{group}/v1/namespaces/{ns}/widgets")
    assert r.status_code == 200, r.text
    assert r.json()["kind"] == "WidgetList" and r.json()["items"] == []
    found = c.get(f"/apis/{group}/v1").json()
    names = {res["name"]: res for res in found["resources"]}
    assert set(names) == {"widgets", "widgets/status", "widgets/scale"}
    assert names["widgets"]["shortNames"] == ["wid"] and names["widgets"]["kind"] == "Widget"
    assert names["widgets/scale"]["group"] == "autoscaling" and names["widgets/scale"]["kind"] == "Scale"
    groups = c.get("/apis").json()["groups"]
    assert any(g["name"] == group and g["preferredVersion"]["version"] == "v1" for g in groups)
    aggregated = c.get("/apis", headers={
        "accept": "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"}).json()
    assert any(item["metadata"]["name"] == group for item in aggregated["items"])

    def established():
        status = c.get(f"{CRDS}/widgets.{group}").json().get("status") or {}
        conditions = {x["type"]: x for x in status.get("conditions") or []}
        return status if conditions.get("Established", {}).get("status") == "True" else None

    status = wait_until(established)
    conditions = {x["type"]: x for x in status["conditions"]}
    assert conditions["NamesAccepted"]["reason"] == "NoConflicts"
    assert conditions["Established"]["reason"] == "InitialNamesAccepted"
    assert status["acceptedNames"]["kind"] == "Widget" and status["acceptedNames"]["listKind"] == "WidgetList"
    assert status["storedVersions"] == ["v1"]


def test_openapi_v3_describes_the_custom_kind_with_a_new_hash(c, group):
    before = c.get("/openapi/v3").json()["paths"]
    assert f"apis/{group}/v1" not in before
    c.post(CRDS, json=widget_crd(group)).raise_for_status()
    after = c.get("/openapi/v3").json()["paths"]
    url = after[f"apis/{group}/v1"]["serverRelativeURL"]
    doc = c.get(url).json()
    name = ".".join([*reversed(group.split(".")), "v1", "Widget"])
    schema = doc["components"]["schemas"][name]
    assert schema["x-kubernetes-group-version-kind"] == [{"group": group, "version": "v1", "kind": "Widget"}]
    assert schema["properties"]["spec"]["properties"]["size"]["type"] == "integer"
    assert schema["properties"]["metadata"]["allOf"][0]["$ref"].endswith("ObjectMeta")
    assert name + "List" in doc["components"]["schemas"]
    assert f"/apis/{group}/v1/namespaces/{{namespace}}/widgets/{{name}}/scale" in doc["paths"]


def test_custom_resources_are_validated_pruned_and_defaulted(c, crd, group, ns):
    base = f"/apis/{group}/v1/namespaces/{ns}/widgets"
    body = widget("w1")
    body["spec"]["bogus"] = 1
    body["status"] = {"phase": "set-by-client"}
    r = c.post(base, json=body)
    assert r.status_code == 201, r.text
    obj = r.json()
    assert obj["apiVersion"] == f"{group}/v1" and obj["kind"] == "Widget"
    assert "bogus" not in obj["spec"], "unknown fields are pruned"
    assert 'unknown field \\"spec.bogus\\"' in r.headers.get("warning", "")
    assert obj["spec"]["color"] == "red" and obj["spec"]["replicas"] == 1, "defaults appear"
    assert "status" not in obj, "create cannot set status with a status subresource"
    assert obj["metadata"]["generation"] == 1

    strict = c.post(f"{base}?fieldValidation=Strict", json={**widget("w2"), "spec": {"size": 2, "bogus": 1}})
    assert strict.status_code == 400
    assert 'unknown field "spec.bogus"' in strict.json()["message"]
    assert c.get(f"{base}/w2").status_code == 404, "nothing half-written stays behind"

    bad = c.post(base, json={"kind": "Widget", "metadata": {"name": "w3"},
                             "spec": {"size": 20, "color": "pink"}})
    assert bad.status_code == 422, bad.text
    status = bad.json()
    assert status["reason"] == "Invalid" and status["details"]["kind"] == "Widget"
    assert status["details"]["group"] == group
    fields = {cause["field"]: cause for cause in status["details"]["causes"]}
    assert "spec.size" in fields and "spec.color" in fields
    assert fields["spec.color"]["reason"] == "FieldValueNotSupported"
    missing = c.post(base, json={"kind": "Widget", "metadata": {"name": "w4"}, "spec": {}})
    assert missing.status_code == 422
    assert any(cause["field"] == "spec.size" and cause["reason"] == "FieldValueRequired"
               for cause in missing.json()["details"]["causes"])
    wrong_type = c.post(base, json={"kind": "Widget", "metadata": {"name": "w5"}, "spec": {"size": "big"}})
    assert wrong_type.status_code == 422
    assert c.get(base).json()["items"][0]["metadata"]["name"] == "w1"
    assert len(c.get(base).json()["items"]) == 1


def test_status_subresource_and_generation(c, crd, group, ns):
    base = f"/apis/{group}/v1/namespaces/{ns}/widgets"
    obj = c.post(base, json=widget("w")).json()
    obj["status"] = {"phase": "Ready", "replicas": 2}
    r = c.put(f"{base}/w/status", json=obj)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == {"phase": "Ready", "replicas": 2}
    assert r.json()["metadata"]["generation"] == 1, "a status write does not bump generation"
    # the main resource ignores status; a spec change bumps generation
    current = r.json()
    current["status"] = {"phase": "Hacked"}
    current["spec"]["size"] = 4
    r = c.put(f"{base}/w", json=current)
    assert r.status_code == 200, r.text
    assert r.json()["status"]["phase"] == "Ready"
    assert r.json()["metadata"]["generation"] == 2
    r = c.patch(f"{base}/w/status", json={"status": {"phase": "Done"}},
                headers={"content-type": "application/merge-patch+json"})
    assert r.status_code == 200 and r.json()["status"]["phase"] == "Done"
    assert r.json()["spec"]["size"] == 4


def test_scale_subresource(c, crd, group, ns):
    base = f"/apis/{group}/v1/namespaces/{ns}/widgets"
    c.post(base, json=widget("w", replicas=2, selector="app=w")).raise_for_status()
    scale = c.get(f"{base}/w/scale").json()
    assert scale["kind"] == "Scale" and scale["apiVersion"] == "autoscaling/v1"
    assert scale["spec"]["replicas"] == 2 and scale["status"]["selector"] == "app=w"
    scale["spec"]["replicas"] = 5
    r = c.put(f"{base}/w/scale", json=scale)
    assert r.status_code == 200, r.text
    assert c.get(f"{base}/w").json()["spec"]["replicas"] == 5
    r = c.patch(f"{base}/w/scale", json={"spec": {"replicas": 7}},
                headers={"content-type": "application/merge-patch+json"})
    assert r.status_code == 200 and r.json()["spec"]["replicas"] == 7
    assert c.get(f"{base}/w").json()["spec"]["replicas"] == 7


def test_printer_columns_in_the_table(c, crd, group, ns):
    base = f"/apis/{group}/v1/namespaces/{ns}/widgets"
    c.post(base, json=widget("w", color="blue")).raise_for_status()
    table = c.get(base, headers={"accept": TABLE}).json()
    columns = [(col["name"], col["type"], col["priority"]) for col in table["columnDefinitions"]]
    assert columns == [("Name", "string", 0), ("Size", "integer", 0), ("Color", "string", 0),
                       ("Phase", "string", 1), ("Age", "date", 0)]
    cells = table["rows"][0]["cells"]
    assert cells[:4] == ["w", 3, "blue", None]
    assert cells[4].endswith("s"), "date columns print as an age"


def test_strategic_merge_patch_is_refused_with_415(c, crd, group, ns):
    base = f"/apis/{group}/v1/namespaces/{ns}/widgets"
    c.post(base, json=widget("w")).raise_for_status()
    r = c.patch(f"{base}/w", json={"spec": {"size": 4}},
                headers={"content-type": "application/strategic-merge-patch+json"})
    assert r.status_code == 415
    assert r.json()["reason"] == "UnsupportedMediaType"
    assert "application/merge-patch+json" in r.json()["message"]
    r = c.patch(f"{base}/w", json=[{"op": "replace", "path": "/spec/size", "value": 5}],
                headers={"content-type": "application/json-patch+json"})
    assert r.status_code == 200 and r.json()["spec"]["size"] == 5


def test_versions_share_storage_with_conversion_none(c, group, ns):
    crd = widget_crd(group)
    v1 = crd["spec"]["versions"][0]
    beta = {**copy.deepcopy(v1), "name": "v1beta1", "storage": False, "deprecated": True}
    crd["spec"]["versions"] = [beta, v1]
    c.post(CRDS, json=crd).raise_for_status()
    r = c.post(f"/apis/{group}/v1beta1/namespaces/{ns}/widgets", json={**widget("w"), "apiVersion": f"{group}/v1beta1"})
    assert r.status_code == 201, r.text
    assert r.json()["apiVersion"] == f"{group}/v1beta1"
    assert "deprecated" in r.headers.get("warning", "")
    got = c.get(f"/apis/{group}/v1/namespaces/{ns}/widgets/w").json()
    assert got["apiVersion"] == f"{group}/v1" and got["spec"]["size"] == 3
    listed = c.get(f"/apis/{group}/v1beta1/namespaces/{ns}/widgets").json()
    assert listed["items"][0]["apiVersion"] == f"{group}/v1beta1"
    versions = [v["version"] for v in c.get(f"/apis/{group}").json()["versions"]]
    assert versions == ["v1", "v1beta1"]


def test_cluster_scoped_custom_resources(c, group):
    c.post(CRDS, json=widget_crd(group, plural="gizmos", kind="Gizmo", scope="Cluster")).raise_for_status()
    name = f"gz-{uuid.uuid4().hex[:6]}"
    r = c.post(f"/apis/{group}/v1/gizmos", json={"kind": "Gizmo", "metadata": {"name": name},
                                                  "spec": {"size": 1}})
    assert r.status_code == 201, r.text
    assert "namespace" not in r.json()["metadata"]
    assert c.get(f"/apis/{group}/v1/gizmos/{name}").status_code == 200


def test_a_name_already_taken_is_not_accepted(c, crd, group):
    other = widget_crd(group, plural="gadgets", kind="Widget", singular="gadget")  # the kind is taken
    r = c.post(CRDS, json=other)
    assert r.status_code == 201, r.text

    def names_refused():
        status = c.get(f"{CRDS}/gadgets.{group}").json().get("status") or {}
        conditions = {x["type"]: x for x in status.get("conditions") or []}
        return conditions if conditions.get("NamesAccepted", {}).get("status") == "False" else None

    conditions = wait_until(names_refused)
    assert conditions["NamesAccepted"]["reason"] == "KindConflict"
    assert conditions["Established"]["status"] == "False"
    assert c.get(f"/apis/{group}/v1/gadgets").status_code == 404


def test_invalid_crds_are_refused_with_causes(c, group):
    bad = widget_crd(group)
    bad["metadata"]["name"] = f"wrong.{group}"
    bad["spec"]["versions"][0]["storage"] = False
    r = c.post(CRDS, json=bad)
    assert r.status_code == 422, r.text
    fields = {cause["field"] for cause in r.json()["details"]["causes"]}
    assert "metadata.name" in fields
    assert "spec.versions" in fields
    assert c.get(f"{CRDS}/wrong.{group}").status_code == 404


def test_server_side_apply_on_custom_resources(c, crd, group, ns):
    url = f"/apis/{group}/v1/namespaces/{ns}/widgets/w"
    apply = {"content-type": "application/apply-patch+yaml"}
    first = {"apiVersion": f"{group}/v1", "kind": "Widget", "metadata": {"name": "w"},
             "spec": {"size": 2, "ports": [{"name": "http", "port": 80}]}}
    r = c.patch(f"{url}?fieldManager=alice", json=first, headers=apply)
    assert r.status_code == 201, r.text
    second = {"apiVersion": f"{group}/v1", "kind": "Widget", "metadata": {"name": "w"},
              "spec": {"size": 2, "ports": [{"name": "https", "port": 443}]}}
    r = c.patch(f"{url}?fieldManager=bob", json=second, headers=apply)
    assert r.status_code == 200, r.text
    ports = {p["name"]: p["port"] for p in r.json()["spec"]["ports"]}
    assert ports == {"http": 80, "https": 443}, "list-type map items merge by key"
    clash = {**second, "spec": {**second["spec"], "size": 9}}
    r = c.patch(f"{url}?fieldManager=bob", json=clash, headers=apply)
    assert r.status_code == 409, r.text
    assert r.json()["reason"] == "Conflict"
    assert any(cause["field"] == ".spec.size" for cause in r.json()["details"]["causes"])
    r = c.patch(f"{url}?fieldManager=bob&force=true", json=clash, headers=apply)
    assert r.status_code == 200 and r.json()["spec"]["size"] == 9
    managers = {m["manager"] for m in r.json()["metadata"]["managedFields"]}
    assert managers == {"alice", "bob"}
    # alice stops applying her port: it goes
    r = c.patch(f"{url}?fieldManager=alice", json={**first, "spec": {}}, headers=apply)
    assert r.status_code == 200, r.text
    assert [p["name"] for p in r.json()["spec"]["ports"]] == ["https"]


def test_deleting_a_crd_deletes_its_resources(c, crd, group, ns):
    base = f"/apis/{group}/v1/namespaces/{ns}/widgets"
    c.post(base, json=widget("a")).raise_for_status()
    held = widget("b")
    held["metadata"]["finalizers"] = ["example.com/hold"]
    c.post(base, json=held).raise_for_status()
    r = c.delete(f"{CRDS}/widgets.{group}")
    assert r.status_code == 200, r.text  # held by the cleanup finalizer (upstream's 200, not 202)
    assert r.json()["metadata"]["finalizers"] == ["customresourcecleanup.apiextensions.k8s.io"]

    def terminating():
        status = c.get(f"{CRDS}/widgets.{group}").json().get("status") or {}
        conditions = {x["type"]: x for x in status.get("conditions") or []}
        return conditions.get("Terminating")

    condition = wait_until(terminating)
    assert condition["status"] == "True"
    wait_until(lambda: c.get(f"{base}/a").status_code == 404)
    r = c.post(base, json=widget("c"))
    assert r.status_code == 405, r.text
    assert "terminating" in r.json()["message"]
    # the CRD waits for the held resource
    time.sleep(0.5)
    assert c.get(f"{CRDS}/widgets.{group}").status_code == 200
    assert c.get(f"{base}/b").json()["metadata"].get("deletionTimestamp")
    c.patch(f"{base}/b", json={"metadata": {"finalizers": None}},
            headers={"content-type": "application/merge-patch+json"}).raise_for_status()
    wait_until(lambda: c.get(f"{CRDS}/widgets.{group}").status_code == 404)
    assert c.get(base).status_code == 404


def test_owned_objects_are_collected_with_their_custom_owner(c, crd, group, ns):
    base = f"/apis/{group}/v1/namespaces/{ns}/widgets"
    owner = c.post(base, json=widget("w")).json()
    c.post(f"/api/v1/namespaces/{ns}/configmaps", json={"metadata": {"name": "child", "ownerReferences": [{
        "apiVersion": f"{group}/v1", "kind": "Widget", "name": "w", "uid": owner["metadata"]["uid"]}]}}
           ).raise_for_status()
    c.delete(f"{base}/w").raise_for_status()
    wait_until(lambda: c.get(f"/api/v1/namespaces/{ns}/configmaps/child").status_code == 404)


def test_watch_sees_custom_resources(c, crd, group, ns):
    base = f"/apis/{group}/v1/namespaces/{ns}/widgets"
    rv = c.get(base).json()["metadata"]["resourceVersion"]
    c.post(base, json=widget("w")).raise_for_status()
    with c.stream("GET", f"{base}?watch=true&resourceVersion={rv}&timeoutSeconds=2") as r:
        line = next(r.iter_lines())
    assert '"type":"ADDED"' in line and '"name":"w"' in line


def test_selectable_fields_allow_field_selectors(c, group, ns):
    crd = widget_crd(group)
    crd["spec"]["versions"][0]["selectableFields"] = [{"jsonPath": ".spec.color"}]
    c.post(CRDS, json=crd).raise_for_status()
    base = f"/apis/{group}/v1/namespaces/{ns}/widgets"
    c.post(base, json=widget("r", color="red")).raise_for_status()
    c.post(base, json=widget("b", color="blue")).raise_for_status()
    items = c.get(base, params={"fieldSelector": "spec.color=blue"}).json()["items"]
    assert [i["metadata"]["name"] for i in items] == ["b"]
    r = c.get(base, params={"fieldSelector": "spec.size=3"})
    assert r.status_code == 400 and "field label not supported: spec.size" in r.json()["message"]


def test_custom_resources_survive_a_restart(tmp_path):
    from timoner.testing import ServerThread, http_client

    group = f"g{uuid.uuid4().hex[:8]}.example.com"
    with ServerThread(tmp_path / "data", storage="sqlite") as srv, http_client(srv) as client:
        client.post(CRDS, json=widget_crd(group)).raise_for_status()
        client.post(f"/apis/{group}/v1/namespaces/default/widgets", json=widget("w")).raise_for_status()
    with ServerThread(tmp_path / "data", storage="sqlite") as srv, http_client(srv) as client:
        got = client.get(f"/apis/{group}/v1/namespaces/default/widgets/w")
        assert got.status_code == 200, got.text
        assert got.json()["spec"]["color"] == "red"
        assert any(g["name"] == group for g in client.get("/apis").json()["groups"])


def test_cel_rules_are_compiled_with_the_crd_and_enforced(c, group, ns):
    crd = widget_crd(group)
    spec_schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    spec_schema["x-kubernetes-validations"] = [{"rule": "self.size <= self.replicas +", "message": "broken"}]
    r = c.post(CRDS, json=crd)
    assert r.status_code == 422, r.text
    [cause] = r.json()["details"]["causes"]
    assert cause["field"] == "spec.versions[0].schema.openAPIV3Schema.properties[spec].x-kubernetes-validations[0].rule"
    assert "compilation failed" in cause["message"]
    spec_schema["x-kubernetes-validations"] = [
        {"rule": "self.size <= self.replicas * 5", "message": "size must not exceed five times replicas"},
        {"rule": "!has(oldSelf.color) || self.color == oldSelf.color", "message": "color is immutable"}]
    c.post(CRDS, json=crd).raise_for_status()
    base = f"/apis/{group}/v1/namespaces/{ns}/widgets"
    r = c.post(base, json=widget("w", size=8, replicas=1))
    assert r.status_code == 422, r.text
    assert r.json()["details"]["causes"] == [{"reason": "FieldValueInvalid", "field": "spec", "message":
                                              'Invalid value: "object": size must not exceed five times replicas'}]
    c.post(base, json=widget("w", size=8, replicas=2)).raise_for_status()
    r = c.patch(f"{base}/w", json={"spec": {"color": "blue"}},
                headers={"content-type": "application/merge-patch+json"})
    assert r.status_code == 422 and "color is immutable" in r.text
    assert c.get(f"{base}/w").json()["spec"]["color"] == "red"
