"""Helm 3 and Helm 4 against `timoner up`: a full chart installed, upgraded, rolled back and uninstalled.

The chart is `charts/website`: a CRD under `crds/` and a custom resource of it, a `values.schema.json`, a
library-chart dependency (`charts/common`, `file://../common`: `helm dependency update` resolves it, then
`helm dependency build` fetches it again from the Chart.lock, offline), a pre-install hook Job and a
post-upgrade hook ConfigMap. Each test copies both charts under its tmp_path.

The binaries are `.tools/bin/helm3` and `.tools/bin/helm4` (`make tools` fetches them; TIMONER_HELM3 and
TIMONER_HELM4 point elsewhere). Every test runs under both, in a namespace of its own, with a release name
of its own (release Secrets are looked for in every namespace), with helm's home, cache, config and data
directories under the test's tmp_path.

Helm 4 applies server-side by default (server-side apply is served), Helm 3 client-side; Helm 3's `--atomic`
is Helm 4's `--rollback-on-failure`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import yaml
from up_helpers import active_pods, get

from timoner.testing import wait_until

pytestmark = pytest.mark.slow

TOOLS = Path(__file__).resolve().parents[2] / ".tools" / "bin"
HELMS = {name: Path(os.environ.get(f"TIMONER_{name.upper()}", TOOLS / name)) for name in ("helm3", "helm4")}
ATOMIC = {"helm3": "--atomic", "helm4": "--rollback-on-failure"}
CHARTS = Path(__file__).resolve().parent / "charts"
CRD = "widgets.example.timoner.dev"


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
def chart(tmp_path, helm) -> Path:
    """`charts/website` and the library chart it depends on, copied, with the dependency fetched (offline)."""
    shutil.copytree(CHARTS, tmp_path / "charts")
    root = tmp_path / "charts" / "website"
    helm("dependency", "update", str(root))  # resolves Chart.yaml's dependencies, writes Chart.lock
    shutil.rmtree(root / "charts")
    helm("dependency", "build", str(root))  # fetches what Chart.lock names
    assert [p.name for p in (root / "charts").iterdir()] == ["common-0.1.0.tgz"]
    rows = [line.split() for line in helm("dependency", "list", str(root)).stdout.splitlines()[1:] if line]
    assert rows == [["common", "0.1.0", "file://../common", "ok"]], rows
    return root


@pytest.fixture
def release(ns) -> str:
    return f"web-{ns.removeprefix('t-')}"


def release_secrets(up, ns, release):
    """The release's Secrets, wherever they are: all of them must be in its namespace."""
    items = json.loads(up.kubectl("get", "secrets", "-A", "-l", f"owner=helm,name={release}",
                                  "-o", "json").stdout)["items"]
    assert {s["metadata"]["namespace"] for s in items} <= {ns}, [s["metadata"] for s in items]
    return sorted(s["metadata"]["name"] for s in items)


def configmap_data(up, ns, name):
    return get(up.kubeconfig, ns, "configmap", name)["data"]


def pod_greetings(up, ns, release):
    pods = active_pods(up.kubeconfig, ns, f"app.kubernetes.io/instance={release}")
    return sorted(p["metadata"]["annotations"]["greeting"] for p in pods)


def assert_available(up, ns, release):
    """The Deployment as `helm ... --wait` leaves it: its current template rolled out and available.

    Helm 4 waits for exactly that (kstatus). Helm 3 waits for the ReplicaSet of the current template to have
    its pods ready, which it may see before the Deployment's status says so (a rollback finds revision 1's
    ReplicaSet ready at once): so this waits a little for the Deployment's status.
    """
    def available(d):
        status = d["status"]
        return status.get("observedGeneration") == d["metadata"]["generation"] and (
            status.get("updatedReplicas") == status.get("availableReplicas") == status.get("replicas") == 1)

    return settle(lambda: get(up.kubeconfig, ns, "deployment", release), available, 10, "the rollout available")


def settle(read, done, timeout, what):
    """`read()` again until `done` with what it read; that, or an AssertionError that shows the last read."""
    last = []

    def check():
        last[:] = [read()]
        return done(last[0])

    try:
        wait_until(check, timeout, what)
    except AssertionError as error:
        raise AssertionError(f"{error}: {last[0]!r}") from None
    return last[0]


def history(helm, ns, release):
    return [(h["revision"], h["status"]) for h in helm.json("history", release, "-n", ns)]


def hooks_run(helm, ns, release):
    """The hooks of the release's current revision: name -> (events, last run)."""
    status = helm.json("status", release, "-n", ns)
    return {h["name"].removeprefix(release): (h["events"], h["last_run"]) for h in status["hooks"]}


def manifests(rendered: str) -> list[dict]:
    return [m for m in yaml.safe_load_all(rendered) if m]


def crd_established(up) -> bool:
    crd = json.loads(up.kubectl("get", "crd", CRD, "-o", "json").stdout)
    conditions = {c["type"]: c["status"] for c in crd.get("status", {}).get("conditions", [])}
    return conditions.get("NamesAccepted") == conditions.get("Established") == "True"


def test_install_upgrade_rollback_uninstall(up, ns, helm, chart, release):
    # Helm installs what crds/ holds before anything else (and leaves an existing CRD alone): start without.
    up.kubectl("delete", "crd", CRD, "--ignore-not-found", "--wait", "--timeout=60s")

    out = helm("install", release, str(chart), "-n", ns, "--wait", "--timeout", "120s").stdout
    assert "STATUS: deployed" in out
    d = assert_available(up, ns, release)
    assert crd_established(up)
    assert get(up.kubeconfig, ns, "widgets", release)["spec"] == {"size": 3, "color": "blue"}
    # The CRD's printer columns, as kubectl prints a custom resource.
    header, row = up.kubectl("get", "widgets", "-n", ns).stdout.splitlines()
    assert header.split() == ["NAME", "SIZE", "COLOR", "AGE"] and row.split()[:3] == [release, "3", "blue"]
    assert configmap_data(up, ns, f"{release}-config") == {"greeting": "hello"}
    assert get(up.kubeconfig, ns, "service", release)["spec"]["clusterIP"]
    assert configmap_data(up, ns, f"{release}-listed") == {"replicas": "1"}
    # The labels come from the library chart's named template.
    assert d["metadata"]["labels"] == {
        "app.kubernetes.io/name": "website", "app.kubernetes.io/instance": release,
        "app.kubernetes.io/managed-by": "Helm", "helm.sh/chart": "website-0.1.0"}

    # The pre-install Job ran (its pod sleeps 2 s) and succeeded before the release's objects were created;
    # then helm deleted it (hook-succeeded). The post-upgrade hook did not run.
    hooks = hooks_run(helm, ns, release)
    assert set(hooks) == {"-pre-install", "-upgraded"}
    events, run = hooks["-pre-install"]
    assert events == ["pre-install"] and run["phase"] == "Succeeded", run
    completed = datetime.fromisoformat(run["completed_at"])
    assert completed - datetime.fromisoformat(run["started_at"]) >= timedelta(seconds=2), run
    created = datetime.fromisoformat(d["metadata"]["creationTimestamp"])  # in whole seconds
    assert created >= completed.replace(microsecond=0), (created, run)
    assert hooks["-upgraded"][0] == ["post-upgrade"] and hooks["-upgraded"][1]["phase"] == "", hooks
    assert get(up.kubeconfig, ns, "jobs")["items"] == []
    assert "helm.sh/hook: pre-install" in helm("get", "hooks", release, "-n", ns).stdout
    assert release_secrets(up, ns, release) == [f"sh.helm.release.v1.{release}.v1"]
    secret = get(up.kubeconfig, ns, "secret", f"sh.helm.release.v1.{release}.v1")
    assert secret["type"] == "helm.sh/release.v1" and secret["metadata"]["labels"]["status"] == "deployed"

    (listed,) = helm.json("list", "-n", ns)
    assert (listed["name"], listed["namespace"], listed["status"], str(listed["revision"])) == (
        release, ns, "deployed", "1")
    status = helm.json("status", release, "-n", ns)
    assert status["info"]["status"] == "deployed" and status["version"] == 1
    if helm.name == "helm3":  # Helm 4 dropped --show-resources: server-side Tables, the Widget's by its columns
        out = helm("status", release, "-n", ns, "--show-resources").stdout
        widgets = out.split("==> v1/Widget\n")[1].splitlines()
        assert widgets[0].split() == ["NAME", "SIZE", "COLOR", "AGE"] and widgets[1].split()[:3] == [
            release, "3", "blue"], out
        assert "==> v1/Deployment\n" in out and "==> v1/Pod(related)\n" in out, out

    # A controller's status (the status subresource) survives helm's upgrade of the spec.
    up.kubectl("patch", "widget", release, "-n", ns, "--subresource=status", "--type=merge",
               "-p", '{"status": {"phase": "Ready"}}')
    helm("upgrade", release, str(chart), "-n", ns, "--set", "greeting=bye", "--set", "widget.size=5",
         "--wait", "--timeout", "120s")
    assert_available(up, ns, release)
    assert len(get(up.kubeconfig, ns, "rs")["items"]) == 2  # the changed template rolled out a new ReplicaSet
    assert configmap_data(up, ns, f"{release}-config") == {"greeting": "bye"}
    widget = get(up.kubeconfig, ns, "widgets", release)
    assert (widget["spec"], widget["status"]) == ({"size": 5, "color": "blue"}, {"phase": "Ready"})
    # The post-upgrade hook ran, once the upgrade was done; pre-install did not run again.
    assert configmap_data(up, ns, f"{release}-upgraded") == {"revision": "2", "greeting": "bye"}
    hooks = hooks_run(helm, ns, release)
    assert hooks["-upgraded"][1]["phase"] == "Succeeded" and hooks["-pre-install"][1]["phase"] == "", hooks
    assert get(up.kubeconfig, ns, "jobs")["items"] == []
    wait_until(lambda: pod_greetings(up, ns, release) == ["bye"], 60, "the old pod gone")
    assert history(helm, ns, release) == [(1, "superseded"), (2, "deployed")]

    helm("rollback", release, "1", "-n", ns, "--wait", "--timeout", "120s")
    assert_available(up, ns, release)
    assert configmap_data(up, ns, f"{release}-config") == {"greeting": "hello"}
    assert get(up.kubeconfig, ns, "widgets", release)["spec"] == {"size": 3, "color": "blue"}
    assert len(get(up.kubeconfig, ns, "rs")["items"]) == 2  # revision 1's ReplicaSet scaled up again
    wait_until(lambda: pod_greetings(up, ns, release) == ["hello"], 60, "the rolled-back pod alone")
    # A rollback runs rollback hooks only: the post-upgrade ConfigMap is still revision 2's.
    assert configmap_data(up, ns, f"{release}-upgraded") == {"revision": "2", "greeting": "bye"}
    assert history(helm, ns, release) == [(1, "superseded"), (2, "superseded"), (3, "deployed")]
    assert helm.json("history", release, "-n", ns)[-1]["description"] == "Rollback to 1"
    assert release_secrets(up, ns, release) == [f"sh.helm.release.v1.{release}.v{n}" for n in (1, 2, 3)]

    out = helm("uninstall", release, "-n", ns).stdout
    assert f'release "{release}" uninstalled' in out
    assert helm.json("list", "-n", ns) == []
    assert release_secrets(up, ns, release) == []

    def left():
        items = get(up.kubeconfig, ns, "deployments,replicasets,services,configmaps,pods,jobs,widgets")["items"]
        return sorted(f"{i['kind']}/{i['metadata']['name']}" for i in items)

    # Every namespace keeps its kube-root-ca.crt ConfigMap; a hook is not part of the release.
    expected = ["ConfigMap/kube-root-ca.crt", f"ConfigMap/{release}-upgraded"]
    settle(left, expected.__eq__, 60, "the release's objects and their pods gone")
    assert crd_established(up)  # helm never deletes the CRDs it installed from crds/


def test_atomic_upgrade_rolls_back(up, ns, helm, chart, release):
    """An upgrade whose pods never get ready fails at --timeout and is rolled back to the last good one."""
    helm("install", release, str(chart), "-n", ns, "--wait", "--timeout", "120s")
    before = assert_available(up, ns, release)

    bad = helm("upgrade", release, str(chart), "-n", ns, ATOMIC[helm.name], "--timeout", "8s",
               "--set", "ready=false", "--set", "greeting=bye", "--set", "widget.size=7", check=False)
    assert bad.returncode != 0, bad.stdout
    assert f"release {release} failed, and has been rolled back" in bad.stderr, bad.stderr

    assert history(helm, ns, release) == [(1, "superseded"), (2, "failed"), (3, "deployed")]
    failed, rolled_back = helm.json("history", release, "-n", ns)[1:]
    assert failed["description"].startswith(f'Upgrade "{release}" failed'), failed
    assert rolled_back["description"] == "Rollback to 1"
    d = assert_available(up, ns, release)
    assert d["spec"]["template"] == before["spec"]["template"]
    assert d["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["exec"]["command"] == ["true"]
    # The upgrade had rolled out a new ReplicaSet, whose pod never got ready; the rollback scaled it to 0.
    replicas = sorted(r["spec"]["replicas"] for r in get(up.kubeconfig, ns, "rs")["items"])
    assert replicas == [0, 1], replicas
    assert configmap_data(up, ns, f"{release}-config") == {"greeting": "hello"}
    assert get(up.kubeconfig, ns, "widgets", release)["spec"] == {"size": 3, "color": "blue"}
    wait_until(lambda: pod_greetings(up, ns, release) == ["hello"], 60, "the never-ready pod gone")
    # The upgrade failed before its post-upgrade hook.
    names = [c["metadata"]["name"] for c in get(up.kubeconfig, ns, "configmaps")["items"]]
    assert f"{release}-upgraded" not in names, names
    assert release_secrets(up, ns, release) == [f"sh.helm.release.v1.{release}.v{n}" for n in (1, 2, 3)]


def test_values_schema_and_template_validate(up, ns, helm, chart, release):
    up.kubectl("apply", "-f", str(chart / "crds" / "widgets.yaml"))
    up.kubectl("wait", "--for=condition=established", f"crd/{CRD}", "--timeout=60s")

    bad = helm("install", release, str(chart), "-n", ns, "--set", "replicas=-1",
               "--set", "widget.color=purple", check=False)
    assert bad.returncode != 0, bad.stdout
    assert "values don't meet the specifications of the schema" in bad.stderr, bad.stderr
    assert all(word in bad.stderr for word in ("replicas", "widget", "color", "red")), bad.stderr
    assert release_secrets(up, ns, release) == []

    # --validate renders against the server: its discovery (the Widget kind the CRD serves), and existing
    # objects; nothing is written. Hooks are rendered too; the CRD only with --include-crds.
    out = helm("template", release, str(chart), "-n", ns, "--validate", "--set", "replicas=2").stdout
    kinds = sorted(m["kind"] for m in manifests(out))
    assert kinds == ["ConfigMap", "ConfigMap", "Deployment", "Job", "List", "Service", "Widget"], kinds
    assert "replicas: 2" in out
    # (With --validate too, helm would refuse the CRD kubectl created: it is not the release's to adopt.)
    out = helm("template", release, str(chart), "-n", ns, "--include-crds").stdout
    crds = [m["metadata"]["name"] for m in manifests(out) if m["kind"] == "CustomResourceDefinition"]
    assert crds == [CRD]
    assert get(up.kubeconfig, ns, "deployments,widgets,jobs")["items"] == []
    assert release_secrets(up, ns, release) == []

    # A kind the server does not serve passes a plain render, not one checked against the server.
    gadget = "apiVersion: example.com/v1\nkind: Gadget\nmetadata:\n  name: g\n"
    (chart / "templates" / "gadget.yaml").write_text(gadget)
    helm("template", release, str(chart), "-n", ns)
    unknown = helm("template", release, str(chart), "-n", ns, "--validate", check=False)
    assert unknown.returncode != 0
    assert 'no matches for kind "Gadget" in version "example.com/v1"' in unknown.stderr, unknown.stderr
