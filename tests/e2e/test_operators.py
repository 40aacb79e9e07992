"""The example Website operator (examples/website-operator) against `timoner up`, in three flavours.

kopf (with its peering resources served as CRDs, not `--standalone`), lightkube and the official client's
DynamicClient each run as a subprocess on the cluster's kubeconfig and take a Website through its whole
life with the real kubectl: created (children with ownerReferences, status, printer columns, the page
served through the Service), updated (content and replicas), deleted (the finalizer's cleanup, then
garbage collection of the children).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from up_helpers import get

from timoner.testing import wait_until

pytestmark = pytest.mark.slow

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "website-operator"
GROUP = "example.timoner.dev"
CRDS = ["websites.example.timoner.dev", "kopfpeerings.kopf.dev", "clusterkopfpeerings.kopf.dev"]


@pytest.fixture(scope="module")
def crds(up):
    up.kubectl("apply", "-f", str(EXAMPLE / "crd.yaml"), "-f", str(EXAMPLE / "peering.yaml"))
    up.kubectl("wait", "--for", "condition=Established", *(f"crd/{name}" for name in CRDS), "--timeout=30s",
               timeout=40)
    return up


class Operator:
    """An operator subprocess (its output in a file); stopped with SIGTERM at the end."""

    def __init__(self, up, argv: list[str], log: Path) -> None:
        self.log = log
        env = {**os.environ, "KUBECONFIG": str(up.kubeconfig), "WEBSITE_SERVER_PYTHON": sys.executable,
               "PYTHONUNBUFFERED": "1"}
        with open(log, "w") as out:
            self.proc = subprocess.Popen(argv, cwd=EXAMPLE, env=env, stdout=out, stderr=subprocess.STDOUT)

    def output(self) -> str:
        return self.log.read_text()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


# Each flavour: its command line, the finalizer it keeps on Websites, how the test deletes the Website.
FLAVOURS = {
    # kopf: namespaced, peering through the KopfPeering `website` (created by the test), never standalone.
    "kopf": ([sys.executable, "-m", "kopf", "run", "--namespace", "{ns}", "--peering", "website",
              "operator_kopf.py"], f"{GROUP}/kopf-cleanup", "background"),
    "lightkube": ([sys.executable, "operator_lightkube.py", "--namespace", "{ns}"],
                  f"{GROUP}/lightkube-cleanup", "background"),
    # Foreground: the children (blockOwnerDeletion) are gone before the Website is.
    "dynamic": ([sys.executable, "operator_dynamic.py", "--namespace", "{ns}"], f"{GROUP}/dynamic-cleanup",
                "foreground"),
}


def website(name, content, replicas, port=8080):
    return {"apiVersion": f"{GROUP}/v1", "kind": "Website", "metadata": {"name": name},
            "spec": {"content": content, "replicas": replicas, "port": port}}


def apply(up, ns, obj):
    up.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(obj))


def maybe_get(up, ns, kind, name):
    proc = up.kubectl("get", kind, name, "-n", ns, "-o", "json", check=False)
    if proc.returncode != 0:
        assert "NotFound" in proc.stderr, proc.stderr
        return None
    return json.loads(proc.stdout)


def fetch(url):
    try:
        return urllib.request.urlopen(url, timeout=3).read().decode()
    except OSError:
        return None


@pytest.mark.parametrize("flavour", list(FLAVOURS))
def test_operator_create_update_delete(crds, ns, tmp_path, flavour):
    up = crds
    argv, finalizer, cascade = FLAVOURS[flavour]
    if flavour == "kopf":
        apply(up, ns, {"apiVersion": "kopf.dev/v1", "kind": "KopfPeering", "metadata": {"name": "website"}})
    operator = Operator(up, [a.format(ns=ns) for a in argv], tmp_path / "operator.log")
    try:
        cycle(up, ns, operator, flavour, finalizer, cascade)
    except BaseException:
        print(f"--- {flavour} operator output ---\n{operator.output()[-20000:]}")
        print(f"--- timoner up ---\n{up.tail(60)}")
        raise
    finally:
        operator.stop()


def cycle(up, ns, operator, flavour, finalizer, cascade):
    started = time.monotonic()

    def step(what):
        print(f"{time.monotonic() - started:6.2f} s  {what}")

    def ready(generation=None, replicas=None, name="hello"):
        def check():
            assert operator.proc.poll() is None, f"the operator exited ({operator.proc.returncode})"
            w = get(up.kubeconfig, ns, "websites", name)
            status = w.get("status") or {}
            if status.get("observedGeneration") != (generation or w["metadata"]["generation"]):
                return None
            if status.get("phase") == "Ready" and status.get("readyReplicas") == replicas:
                return w
            return None
        return check

    # Created: the operator takes it, and reports it Ready once both servers are. A second Website, with
    # no server, shares the namespace's index with it.
    apply(up, ns, website("hello", "<h1>hello</h1>", 2))
    apply(up, ns, website("empty", "nothing", 0, port=8081))
    w = wait_until(ready(replicas=2), 60, "the Website Ready with 2 replicas")
    wait_until(ready(replicas=0, name="empty"), 30, "the Website without replicas Ready")
    uid = w["metadata"]["uid"]
    assert finalizer in w["metadata"]["finalizers"]
    [condition] = w["status"]["conditions"]
    assert (condition["type"], condition["status"]) == ("Ready", "True")
    assert (condition["reason"], condition["message"]) == ("AllReplicasReady", "2/2 replicas ready")
    assert (w["status"]["configMap"], w["status"]["deployment"], w["status"]["service"]) == (
        "hello-content", "hello", "hello")
    children = {kind: get(up.kubeconfig, ns, kind, name) for kind, name in
                (("configmap", "hello-content"), ("deployment", "hello"), ("service", "hello"))}
    for kind, child in children.items():
        [ref] = child["metadata"]["ownerReferences"]
        assert (ref["apiVersion"], ref["kind"], ref["name"], ref["uid"], ref["controller"]) == (
            f"{GROUP}/v1", "Website", "hello", uid, True), kind
        assert child["metadata"]["labels"][f"{GROUP}/website"] == "hello"
    assert children["configmap"]["data"] == {"index.html": "<h1>hello</h1>"}
    assert children["deployment"]["status"]["readyReplicas"] == 2
    assert children["service"]["spec"]["ports"][0]["port"] == 8080
    index = get(up.kubeconfig, ns, "configmap", "website-index")
    assert index["data"] == {"hello": f"http://hello.{ns}.svc:8080/", "empty": f"http://empty.{ns}.svc:8081/"}
    step("created: Ready")

    # The printer columns of the CRD, as kubectl shows them.
    table = up.kubectl("get", "websites", "-n", ns).stdout.splitlines()
    assert table[0].split() == ["NAME", "REPLICAS", "READY", "PHASE", "AGE"], table
    rows = [row.split()[:4] for row in table[1:]]
    assert rows == [["empty", "0", "0", "Ready"], ["hello", "2", "2", "Ready"]], table
    assert up.kubectl("get", "ws", "hello", "-n", ns, "-o", "name").stdout.strip() == f"website.{GROUP}/hello"

    # The page, through the Service's cluster IP from the host.
    cluster_ip = children["service"]["spec"]["clusterIP"]
    assert wait_until(lambda: fetch(f"http://{cluster_ip}:8080/"), 30, "the page") == "<h1>hello</h1>"

    if flavour == "kopf":
        # kopf's own bookkeeping: the last handled spec, and its presence in the peering object.
        last = json.loads(w["metadata"]["annotations"]["kopf.zalando.org/last-handled-configuration"])
        assert last["spec"] == {"content": "<h1>hello</h1>", "replicas": 2, "port": 8080}
        peering = get(up.kubeconfig, ns, "kopfpeerings", "website")
        assert peering.get("status"), "kopf did not record itself in its KopfPeering"
    step("page served")

    # Updated: new content and fewer replicas reach the children and the page; the status follows.
    up.kubectl("patch", "website", "hello", "-n", ns, "--type=merge",
               "-p", json.dumps({"spec": {"content": "<h1>again</h1>", "replicas": 1}}))
    generation = get(up.kubeconfig, ns, "websites", "hello")["metadata"]["generation"]
    assert generation == w["metadata"]["generation"] + 1
    wait_until(ready(generation, replicas=1), 60, "the updated Website Ready with 1 replica")
    assert get(up.kubeconfig, ns, "configmap", "hello-content")["data"] == {"index.html": "<h1>again</h1>"}
    assert get(up.kubeconfig, ns, "deployment", "hello")["spec"]["replicas"] == 1
    wait_until(lambda: fetch(f"http://{cluster_ip}:8080/") == "<h1>again</h1>", 60, "the new page")
    step("updated: new page served")

    # Deleted: the finalizer unlists it, then the Website goes, and its children after it.
    up.kubectl("delete", "website", "hello", "-n", ns, f"--cascade={cascade}", "--timeout=60s", timeout=70)
    assert maybe_get(up, ns, "websites", "hello") is None
    assert get(up.kubeconfig, ns, "configmap", "website-index")["data"] == {
        "empty": f"http://empty.{ns}.svc:8081/"}
    owned = (("configmap", "hello-content"), ("deployment", "hello"), ("service", "hello"))
    if cascade == "foreground":
        assert [c for c in owned if maybe_get(up, ns, *c) is not None] == []
    for kind, name in owned:
        wait_until(lambda k=kind, n=name: maybe_get(up, ns, k, n) is None, 30, f"{kind} {name} collected")
    step("deleted, children collected")
    if flavour == "kopf":
        # The delete handler's core/v1 Event (kopf posts events in the background).
        def unlisted():
            return [e for e in get(up.kubeconfig, ns, "events")["items"]
                    if e["reason"] == "Unlisted" and e["involvedObject"]["uid"] == uid]
        [event] = wait_until(unlisted, 10, "the Unlisted event")
        assert event["involvedObject"]["kind"] == "Website"
        assert event["message"] == "removed hello from ConfigMap website-index"
    assert get(up.kubeconfig, ns, "websites", "empty")["status"]["phase"] == "Ready"
    output = operator.output()
    assert "website hello unlisted" in output
    # No handler or reconcile failed on the way (a failure logs its traceback before it is retried).
    assert "Traceback" not in output
    assert operator.proc.poll() is None
    assert operator.stop() == 0
