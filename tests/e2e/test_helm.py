"""Helm 3 and Helm 4 against `timoner up`: a small chart installed, upgraded, rolled back and uninstalled.

The binaries are `.tools/bin/helm3` and `.tools/bin/helm4` (`make tools` fetches them; TIMONER_HELM3 and
TIMONER_HELM4 point elsewhere). Every test runs under both, in a namespace of its own, with helm's home,
cache, config and data directories under the test's tmp_path.

Helm 4 applies server-side by default (server-side apply is served), Helm 3 client-side.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from up_helpers import active_pods, get

from timoner.testing import wait_until

pytestmark = pytest.mark.slow

TOOLS = Path(__file__).resolve().parents[2] / ".tools" / "bin"
HELMS = {name: Path(os.environ.get(f"TIMONER_{name.upper()}", TOOLS / name)) for name in ("helm3", "helm4")}

CHART = {
    "Chart.yaml": """\
apiVersion: v2
name: demo
version: 0.1.0
appVersion: "1.0"
""",
    "values.yaml": """\
replicas: 1
greeting: hello
""",
    "values.schema.json": json.dumps({
        "$schema": "https://json-schema.org/draft-07/schema#",
        "type": "object",
        "required": ["replicas", "greeting"],
        "properties": {"replicas": {"type": "integer", "minimum": 0}, "greeting": {"type": "string"}},
    }),
    "templates/configmap.yaml": """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Release.Name }}-config
data:
  greeting: {{ .Values.greeting | quote }}
""",
    "templates/service.yaml": """\
apiVersion: v1
kind: Service
metadata:
  name: {{ .Release.Name }}
spec:
  selector:
    app: {{ .Release.Name }}
  ports:
  - port: 80
    targetPort: 8080
""",
    "templates/deployment.yaml": """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .Release.Name }}
spec:
  replicas: {{ .Values.replicas }}
  selector:
    matchLabels:
      app: {{ .Release.Name }}
  template:
    metadata:
      labels:
        app: {{ .Release.Name }}
      annotations:
        greeting: {{ .Values.greeting | quote }}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: busybox
        command: ["sleep", "3600"]
        env:
        - name: GREETING
          valueFrom:
            configMapKeyRef:
              name: {{ .Release.Name }}-config
              key: greeting
""",
    # A `kind: List` has kubectl's validation read /openapi/v2 (protobuf) for its items.
    "templates/list.yaml": """\
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: ConfigMap
  metadata:
    name: {{ .Release.Name }}-listed
  data:
    replicas: {{ .Values.replicas | quote }}
""",
}


class Helm:
    """One helm binary run against `up` with its directories under `home`."""

    def __init__(self, name: str, kubeconfig: Path, home: Path) -> None:
        self.name = name
        self.binary = HELMS[name]
        self.kubeconfig = kubeconfig
        env = {k: v for k, v in os.environ.items() if not k.startswith(("KUBECONFIG", "HELM_"))}
        self.env = {**env, "HOME": str(home), "HELM_CACHE_HOME": str(home / "cache"),
                    "HELM_CONFIG_HOME": str(home / "config"), "HELM_DATA_HOME": str(home / "data")}

    def __call__(self, *args: str, check: bool = True, timeout: float = 180) -> subprocess.CompletedProcess:
        proc = subprocess.run([str(self.binary), "--kubeconfig", str(self.kubeconfig), *args], capture_output=True,
                              text=True, timeout=timeout, env=self.env)
        if check and proc.returncode != 0:
            raise AssertionError(f"{self.name} {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return proc

    def json(self, *args: str):
        return json.loads(self(*args, "-o", "json").stdout)


@pytest.fixture(params=sorted(HELMS))
def helm(request, up, tmp_path) -> Helm:
    assert HELMS[request.param].exists(), f"{HELMS[request.param]} is missing: run `make tools` (make test does)"
    return Helm(request.param, up.kubeconfig, tmp_path / "home")


@pytest.fixture
def chart(tmp_path) -> Path:
    root = tmp_path / "demo"
    for name, text in CHART.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def release_secrets(up, ns):
    return get(up.kubeconfig, ns, "secrets", selector="owner=helm,name=demo")["items"]


def pod_greetings(up, ns):
    return sorted(p["metadata"]["annotations"]["greeting"] for p in active_pods(up.kubeconfig, ns, "app=demo"))


def assert_available(up, ns):
    """The Deployment as `helm ... --wait` must leave it: its current template rolled out and available."""
    d = get(up.kubeconfig, ns, "deployment", "demo")
    status = d["status"]
    assert status.get("observedGeneration") == d["metadata"]["generation"], status
    assert status.get("updatedReplicas") == status.get("availableReplicas") == 1, status
    return d


def test_install_upgrade_rollback_uninstall(up, ns, helm, chart):
    out = helm("install", "demo", str(chart), "-n", ns, "--wait", "--timeout", "120s").stdout
    assert "STATUS: deployed" in out
    assert_available(up, ns)
    assert get(up.kubeconfig, ns, "configmap", "demo-config")["data"] == {"greeting": "hello"}
    assert get(up.kubeconfig, ns, "service", "demo")["spec"]["clusterIP"]
    assert get(up.kubeconfig, ns, "configmap", "demo-listed")["data"] == {"replicas": "1"}
    (secret,) = release_secrets(up, ns)
    assert secret["metadata"]["name"] == "sh.helm.release.v1.demo.v1" and secret["type"] == "helm.sh/release.v1"
    assert secret["metadata"]["labels"]["status"] == "deployed"

    (listed,) = helm.json("list", "-n", ns)
    assert (listed["name"], listed["namespace"], listed["status"], str(listed["revision"])) == (
        "demo", ns, "deployed", "1")
    status = helm.json("status", "demo", "-n", ns)
    assert status["info"]["status"] == "deployed" and status["version"] == 1

    helm("upgrade", "demo", str(chart), "-n", ns, "--set", "greeting=bye", "--wait", "--timeout", "120s")
    assert_available(up, ns)
    assert len(get(up.kubeconfig, ns, "rs")["items"]) == 2  # the changed template rolled out a new ReplicaSet
    assert get(up.kubeconfig, ns, "configmap", "demo-config")["data"] == {"greeting": "bye"}
    wait_until(lambda: pod_greetings(up, ns) == ["bye"], 60, "the old pod gone")
    history = helm.json("history", "demo", "-n", ns)
    assert [(h["revision"], h["status"]) for h in history] == [(1, "superseded"), (2, "deployed")]

    helm("rollback", "demo", "1", "-n", ns, "--wait", "--timeout", "120s")
    assert_available(up, ns)
    assert get(up.kubeconfig, ns, "configmap", "demo-config")["data"] == {"greeting": "hello"}
    assert len(get(up.kubeconfig, ns, "rs")["items"]) == 2  # revision 1's ReplicaSet scaled up again
    wait_until(lambda: pod_greetings(up, ns) == ["hello"], 60, "the rolled-back pod alone")
    history = helm.json("history", "demo", "-n", ns)
    assert [(h["revision"], h["status"]) for h in history] == [(1, "superseded"), (2, "superseded"),
                                                               (3, "deployed")]
    assert history[-1]["description"] == "Rollback to 1"
    assert sorted(s["metadata"]["name"] for s in release_secrets(up, ns)) == [
        f"sh.helm.release.v1.demo.v{n}" for n in (1, 2, 3)]

    out = helm("uninstall", "demo", "-n", ns).stdout
    assert 'release "demo" uninstalled' in out
    assert helm.json("list", "-n", ns) == []
    assert release_secrets(up, ns) == []

    def nothing_left():
        kinds = "deployments,replicasets,services,configmaps,pods"
        items = get(up.kubeconfig, ns, kinds)["items"]
        # Every namespace keeps its kube-root-ca.crt ConfigMap.
        return [i for i in items if i["metadata"]["name"] != "kube-root-ca.crt"] == []

    wait_until(nothing_left, 60, "the release's objects and their pods gone")


def test_values_schema_and_template_validate(up, ns, helm, chart):
    bad = helm("install", "demo", str(chart), "-n", ns, "--set", "replicas=-1", check=False)
    assert bad.returncode != 0 and "values don't meet the specifications of the schema" in bad.stderr, bad.stderr
    assert "replicas" in bad.stderr
    assert release_secrets(up, ns) == []

    # --validate renders against the server: its discovery, and existing objects; nothing is written.
    out = helm("template", "demo", str(chart), "-n", ns, "--validate", "--set", "replicas=2").stdout
    manifests = [m for m in out.split("\n---\n") if "kind:" in m]
    assert len(manifests) == 4 and "replicas: 2" in out
    assert get(up.kubeconfig, ns, "deployments")["items"] == [] and release_secrets(up, ns) == []

    # A kind the server does not serve passes a plain render, not one checked against the server.
    (chart / "templates" / "widget.yaml").write_text("apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w\n")
    helm("template", "demo", str(chart), "-n", ns)
    unknown = helm("template", "demo", str(chart), "-n", ns, "--validate", check=False)
    assert unknown.returncode != 0
    assert 'no matches for kind "Widget" in version "example.com/v1"' in unknown.stderr, unknown.stderr
