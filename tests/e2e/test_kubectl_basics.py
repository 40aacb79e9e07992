"""The real kubectl against an in-process Timoner API server: the everyday commands."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
import uuid

import pytest
import yaml

from timoner.testing import KUBECTL, kubectl

MANIFESTS = """
apiVersion: v1
kind: ConfigMap
metadata:
  name: app-config
  labels: {app: demo, tier: config}
data:
  greeting: hello
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: demo}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: nginx:1.25
        ports:
        - containerPort: 80
---
apiVersion: v1
kind: Service
metadata:
  name: web
  labels: {app: demo}
spec:
  selector: {app: web}
  ports:
  - port: 80
    targetPort: 80
"""


@pytest.fixture
def ns(shared_ns):
    return shared_ns


def k(server, *args, **kw):
    return kubectl(server.kubeconfig, *args, **kw)


def test_apply_multi_document_then_reapply(shared_server, ns):
    out = k(shared_server, "apply", "-n", ns, "-f", "-", input=MANIFESTS).stdout
    assert "configmap/app-config created" in out
    assert "deployment.apps/web created" in out
    assert "service/web created" in out
    again = k(shared_server, "apply", "-n", ns, "-f", "-", input=MANIFESTS).stdout
    assert "configmap/app-config unchanged" in again
    assert "deployment.apps/web unchanged" in again
    assert "service/web unchanged" in again
    changed = MANIFESTS.replace("greeting: hello", "greeting: bonjour").replace("replicas: 2", "replicas: 3")
    third = k(shared_server, "apply", "-n", ns, "-f", "-", input=changed).stdout
    assert "configmap/app-config configured" in third
    assert "deployment.apps/web configured" in third
    assert "service/web unchanged" in third
    cm = json.loads(k(shared_server, "get", "-n", ns, "configmap", "app-config", "-o", "json").stdout)
    assert cm["data"] == {"greeting": "bonjour"}
    dep = json.loads(k(shared_server, "get", "-n", ns, "deployment", "web", "-o", "json").stdout)
    assert dep["spec"]["replicas"] == 3
    assert dep["metadata"]["generation"] == 2
    assert "kubectl.kubernetes.io/last-applied-configuration" in dep["metadata"]["annotations"]
    # Defaults the clients rely on.
    assert dep["spec"]["strategy"]["type"] == "RollingUpdate"
    assert dep["spec"]["revisionHistoryLimit"] == 10
    pod_spec = dep["spec"]["template"]["spec"]
    assert pod_spec["restartPolicy"] == "Always"
    assert pod_spec["containers"][0]["imagePullPolicy"] == "IfNotPresent"
    svc = json.loads(k(shared_server, "get", "-n", ns, "service", "web", "-o", "json").stdout)
    assert svc["spec"]["clusterIP"].startswith("100.65.")
    assert svc["spec"]["ports"][0]["protocol"] == "TCP"


def test_get_output_formats(shared_server, ns):
    k(shared_server, "apply", "-n", ns, "-f", "-", input=MANIFESTS)
    wide = k(shared_server, "get", "-n", ns, "deployments", "-o", "wide").stdout
    header = wide.splitlines()[0].split()
    assert header[:5] == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    assert "IMAGES" in header and "SELECTOR" in header
    assert "nginx:1.25" in wide
    svc = k(shared_server, "get", "-n", ns, "svc", "web").stdout
    assert svc.splitlines()[0].split()[:5] == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)"]
    assert "80/TCP" in svc
    as_yaml = yaml.safe_load(k(shared_server, "get", "-n", ns, "cm", "app-config", "-o", "yaml").stdout)
    assert as_yaml["data"]["greeting"] == "hello"
    names = k(shared_server, "get", "-n", ns, "cm,deploy,svc", "-o", "name").stdout.split()
    assert {"configmap/app-config", "deployment.apps/web", "service/web"} <= set(names)
    jp = k(shared_server, "get", "-n", ns, "deploy", "web", "-o", "jsonpath={.spec.template.spec.containers[0].image}")
    assert jp.stdout == "nginx:1.25"
    cc = k(shared_server, "get", "-n", ns, "cm", "-o", "custom-columns=NAME:.metadata.name,GREETING:.data.greeting")
    assert cc.stdout.splitlines()[1].split() == ["app-config", "hello"]


def test_selectors_all_namespaces_and_chunking(shared_server, ns):
    for i in range(7):
        tier = "front" if i % 2 else "back"
        k(shared_server, "create", "-n", ns, "configmap", f"cm-{i}", f"--from-literal=i={i}")
        k(shared_server, "label", "-n", ns, "configmap", f"cm-{i}", f"tier={tier}")
    front = k(shared_server, "get", "-n", ns, "cm", "-l", "tier=front", "-o", "name").stdout.split()
    assert sorted(front) == [f"configmap/cm-{i}" for i in (1, 3, 5)]
    not_front = k(shared_server, "get", "-n", ns, "cm", "-l", "tier!=front,tier", "-o", "name").stdout.split()
    assert sorted(not_front) == [f"configmap/cm-{i}" for i in (0, 2, 4, 6)]
    in_sel = k(shared_server, "get", "-n", ns, "cm", "-l", "tier in (front,back)", "-o", "name").stdout.split()
    assert len(in_sel) == 7
    by_name = k(shared_server, "get", "-n", ns, "cm", "--field-selector", "metadata.name=cm-3", "-o", "name")
    assert by_name.stdout.split() == ["configmap/cm-3"]
    everywhere = k(shared_server, "get", "cm", "-A", "--field-selector", f"metadata.namespace={ns}").stdout
    assert everywhere.splitlines()[0].split()[:2] == ["NAMESPACE", "NAME"]
    assert sum(1 for line in everywhere.splitlines() if line.startswith(ns)) >= 7
    chunked = k(shared_server, "get", "-n", ns, "cm", "--chunk-size=2", "-o", "name", "-v=6")
    assert len([n for n in chunked.stdout.split() if n.startswith("configmap/cm-")]) == 7
    assert "continue=" in chunked.stderr  # it really paged
    bad = k(shared_server, "get", "-n", ns, "cm", "--field-selector", "data.i=3", check=False)
    assert bad.returncode != 0
    assert "is not a known field selector" in bad.stderr  # upstream's wording for configmaps


def test_get_watch_sees_add_modify_delete(shared_server, ns):
    env = {**os.environ, "KUBECONFIG": str(shared_server.kubeconfig), "HOME": str(shared_server.kubeconfig.parent)}
    k(shared_server, "create", "-n", ns, "configmap", "existing")
    proc = subprocess.Popen([KUBECTL, "get", "-n", ns, "configmaps", "-w", "--output-watch-events"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        # kubectl prints the existing object once it has listed; then it watches.
        deadline = time.time() + 20
        while time.time() < deadline and not any("existing" in line for line in list(lines)):
            time.sleep(0.05)
        k(shared_server, "create", "-n", ns, "configmap", "watched", "--from-literal=a=1")
        k(shared_server, "patch", "-n", ns, "configmap", "watched", "-p", '{"data":{"a":"2"}}')
        k(shared_server, "delete", "-n", ns, "configmap", "watched")
        while time.time() < deadline and not any(line.startswith("DELETED") for line in list(lines)):
            time.sleep(0.05)
    finally:
        proc.kill()
        proc.wait()
    events = [line.split()[0] for line in lines if "watched" in line]
    assert events[0] == "ADDED"
    assert "MODIFIED" in events
    assert events[-1] == "DELETED"


def test_describe(shared_server, ns):
    k(shared_server, "apply", "-n", ns, "-f", "-", input=MANIFESTS)
    out = k(shared_server, "describe", "-n", ns, "deployment", "web").stdout
    assert "Name:" in out and "web" in out
    assert "Replicas:" in out
    assert "nginx:1.25" in out
    out = k(shared_server, "describe", "-n", ns, "configmap", "app-config").stdout
    assert "greeting" in out and "hello" in out


def test_edit_with_kube_editor(shared_server, ns, tmp_path):
    k(shared_server, "create", "-n", ns, "configmap", "editable", "--from-literal=color=red")
    editor = tmp_path / "editor.sh"
    editor.write_text("#!/bin/sh\nsed -i 's/color: red/color: blue/' \"$1\"\n")
    editor.chmod(0o755)
    out = k(shared_server, "edit", "-n", ns, "configmap", "editable", env={"KUBE_EDITOR": str(editor)}).stdout
    assert "edited" in out
    cm = json.loads(k(shared_server, "get", "-n", ns, "cm", "editable", "-o", "json").stdout)
    assert cm["data"]["color"] == "blue"


def test_patch_all_three_types(shared_server, ns):
    k(shared_server, "apply", "-n", ns, "-f", "-", input=MANIFESTS)
    k(shared_server, "patch", "-n", ns, "deployment", "web", "--type=strategic",
      "-p", '{"spec":{"template":{"spec":{"containers":[{"name":"web","image":"nginx:1.26"}]}}}}')
    k(shared_server, "patch", "-n", ns, "deployment", "web", "--type=merge", "-p", '{"metadata":{"labels":{"m":"1"}}}')
    k(shared_server, "patch", "-n", ns, "deployment", "web", "--type=json",
      "-p", '[{"op":"test","path":"/spec/replicas","value":2},{"op":"replace","path":"/spec/replicas","value":4}]')
    dep = json.loads(k(shared_server, "get", "-n", ns, "deploy", "web", "-o", "json").stdout)
    containers = dep["spec"]["template"]["spec"]["containers"]
    assert [(c["name"], c["image"]) for c in containers] == [("web", "nginx:1.26")]
    assert containers[0]["ports"] == [{"containerPort": 80, "protocol": "TCP"}]  # strategic merge kept the port
    assert dep["metadata"]["labels"]["m"] == "1"
    assert dep["spec"]["replicas"] == 4
    failed = k(shared_server, "patch", "-n", ns, "deployment", "web", "--type=json",
               "-p", '[{"op":"test","path":"/spec/replicas","value":99}]', check=False)
    assert failed.returncode != 0
    after = json.loads(k(shared_server, "get", "-n", ns, "deploy", "web", "-o", "json").stdout)
    assert after["metadata"]["resourceVersion"] == dep["metadata"]["resourceVersion"]


def test_label_annotate_scale(shared_server, ns):
    k(shared_server, "apply", "-n", ns, "-f", "-", input=MANIFESTS)
    k(shared_server, "label", "-n", ns, "deployment", "web", "env=prod")
    k(shared_server, "annotate", "-n", ns, "deployment", "web", "owner=team-a")
    out = k(shared_server, "scale", "-n", ns, "deployment", "web", "--replicas=5").stdout
    assert "scaled" in out
    dep = json.loads(k(shared_server, "get", "-n", ns, "deploy", "web", "-o", "json").stdout)
    assert dep["metadata"]["labels"]["env"] == "prod"
    assert dep["metadata"]["annotations"]["owner"] == "team-a"
    assert dep["spec"]["replicas"] == 5
    k(shared_server, "label", "-n", ns, "deployment", "web", "env-")
    dep = json.loads(k(shared_server, "get", "-n", ns, "deploy", "web", "-o", "json").stdout)
    assert "env" not in dep["metadata"]["labels"]


def test_replace_with_stale_resource_version_fails(shared_server, ns):
    k(shared_server, "create", "-n", ns, "configmap", "racy", "--from-literal=v=1")
    stale = json.loads(k(shared_server, "get", "-n", ns, "cm", "racy", "-o", "json").stdout)
    k(shared_server, "patch", "-n", ns, "cm", "racy", "-p", '{"data":{"v":"2"}}')
    stale["data"]["v"] = "3"
    out = k(shared_server, "replace", "-f", "-", input=json.dumps(stale), check=False)
    assert out.returncode != 0
    assert "the object has been modified" in out.stderr
    cm = json.loads(k(shared_server, "get", "-n", ns, "cm", "racy", "-o", "json").stdout)
    assert cm["data"]["v"] == "2"


def test_discovery_commands(shared_server):
    resources = k(shared_server, "api-resources").stdout
    for expected in ("deployments", "statefulsets", "cronjobs", "leases", "endpointslices", "clusterroles",
                     "horizontalpodautoscalers", "poddisruptionbudgets", "selfsubjectaccessreviews"):
        assert expected in resources
    versions = k(shared_server, "api-versions").stdout.split()
    for expected in ("v1", "apps/v1", "batch/v1", "autoscaling/v1", "autoscaling/v2", "rbac.authorization.k8s.io/v1"):
        assert expected in versions
    explain = k(shared_server, "explain", "deployment.spec.strategy").stdout
    assert "rollingUpdate" in explain
    assert k(shared_server, "auth", "can-i", "create", "pods").stdout.strip() == "yes"
    assert "admin" in k(shared_server, "auth", "whoami").stdout


def test_a_list_is_validated_client_side_with_openapi_v2(shared_server, ns):
    # /openapi/v3 has no PATCH operation for v1/List, so kubectl validates its items against /openapi/v2.
    item = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "listed"}, "data": {"a": "1"}}
    bad = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "bad"},
           "spec": {"replicas": "many", "selector": {"matchLabels": {"a": "b"}},
                    "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}}

    def as_list(*items):
        return json.dumps({"apiVersion": "v1", "kind": "List", "items": list(items)})

    rejected = k(shared_server, "create", "-n", ns, "-f", "-", input=as_list(item, bad), check=False)
    assert rejected.returncode != 0
    assert ('invalid type for io.k8s.api.apps.v1.DeploymentSpec.replicas: got "string", expected "integer"'
            in rejected.stderr), rejected.stderr
    assert "configmap/listed created" in k(shared_server, "create", "-n", ns, "-f", "-", input=as_list(item)).stdout
    # A kind the server does not serve is left to the REST mapping, which names it (as upstream).
    widget = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    unknown = k(shared_server, "create", "-n", ns, "-f", "-", input=as_list(widget), check=False)
    assert 'no matches for kind "Widget" in version "example.com/v1"' in unknown.stderr, unknown.stderr


def test_namespace_lifecycle(shared_server):
    name = f"gone-{uuid.uuid4().hex[:6]}"
    k(shared_server, "create", "namespace", name)
    k(shared_server, "apply", "-n", name, "-f", "-", input=MANIFESTS)
    sa = k(shared_server, "get", "-n", name, "serviceaccount", "default", "-o", "name").stdout.strip()
    assert sa == "serviceaccount/default"
    k(shared_server, "delete", "namespace", name, "--wait=true", "--timeout=30s")
    gone = k(shared_server, "get", "namespace", name, check=False)
    assert gone.returncode != 0 and "NotFound" in gone.stderr
    left = k(shared_server, "get", "cm,deploy,svc", "-n", name, "-o", "name", check=False).stdout.split()
    assert left == []
    denied = k(shared_server, "delete", "namespace", "kube-system", check=False)
    assert denied.returncode != 0 and "forbidden" in denied.stderr.lower()


OWNED = """
apiVersion: v1
kind: ConfigMap
metadata:
  name: child-{i}
  ownerReferences:
  - apiVersion: apps/v1
    kind: Deployment
    name: web
    uid: {uid}
    blockOwnerDeletion: true
"""


@pytest.mark.parametrize("cascade", ["background", "foreground", "orphan"])
def test_delete_cascade_and_wait(shared_server, ns, cascade):
    k(shared_server, "apply", "-n", ns, "-f", "-", input=MANIFESTS)
    uid = k(shared_server, "get", "-n", ns, "deploy", "web", "-o", "jsonpath={.metadata.uid}").stdout
    for i in range(3):
        k(shared_server, "apply", "-n", ns, "-f", "-", input=OWNED.format(i=i, uid=uid))
    k(shared_server, "delete", "-n", ns, "deployment", "web", f"--cascade={cascade}", "--wait=true", "--timeout=30s")
    assert k(shared_server, "get", "-n", ns, "deploy", "web", check=False).returncode != 0
    deadline = time.time() + 15
    while time.time() < deadline:
        children = k(shared_server, "get", "-n", ns, "cm", "-o", "json").stdout
        items = [c for c in json.loads(children)["items"] if c["metadata"]["name"].startswith("child-")]
        if cascade == "orphan" or not items:
            break
        time.sleep(0.1)
    if cascade == "orphan":
        assert len(items) == 3 and all("ownerReferences" not in c["metadata"] for c in items)
    else:
        assert items == []
