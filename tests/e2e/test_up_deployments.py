"""Deployments on `timoner up`, driven by the real kubectl: rollouts, history and undo, pause, deadlines, deletion.

One `timoner up` serves the module; each test works in a namespace of its own. Containers are real
processes (busybox `sleep`), so rollouts here are what a user sees on a laptop.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest
from up_helpers import PodWatch, active_pods, get

from timoner.testing import TimonerUp, kubectl, wait_until

pytestmark = pytest.mark.slow

REVISION = "deployment.kubernetes.io/revision"


def create(kubeconfig, ns, name, *command, replicas=2, grace=1, **spec):
    """`kubectl create deployment NAME --image=busybox -- COMMAND`, with a short grace period and `spec` extras."""
    out = kubectl(kubeconfig, "create", "deployment", name, "-n", ns, "--image=busybox", f"--replicas={replicas}",
                  "--dry-run=client", "-o", "json", "--", *command).stdout
    manifest = json.loads(out)
    manifest["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = grace
    manifest["spec"].update(spec)
    kubectl(kubeconfig, "apply", "-f", "-", input=json.dumps(manifest))


def rollout_status(kubeconfig, ns, name, timeout=120):
    return kubectl(kubeconfig, "rollout", "status", f"deployment/{name}", "-n", ns, f"--timeout={timeout}s",
                   timeout=timeout + 30)


def test_create_rollout_status_and_scale(up, ns):
    create(up.kubeconfig, ns, "web", "sleep", "3600", replicas=2)
    out = rollout_status(up.kubeconfig, ns, "web")
    assert 'deployment "web" successfully rolled out' in out.stdout
    table = up.kubectl("get", "deployment", "web", "-n", ns).stdout
    assert "2/2" in table
    (rs,) = get(up.kubeconfig, ns, "rs")["items"]
    pod_hash = rs["metadata"]["labels"]["pod-template-hash"]
    pods = active_pods(up.kubeconfig, ns, "app=web")
    assert len(pods) == 2 and all(p["metadata"]["name"].startswith(f"web-{pod_hash}-") for p in pods)
    assert all(p["spec"]["containers"][0]["command"] == ["sleep", "3600"] for p in pods)

    up.kubectl("scale", "deployment/web", "-n", ns, "--replicas=4")
    rollout_status(up.kubeconfig, ns, "web")
    assert len(active_pods(up.kubeconfig, ns, "app=web")) == 4
    up.kubectl("scale", "deployment/web", "-n", ns, "--replicas=1")
    wait_until(lambda: len(active_pods(up.kubeconfig, ns, "app=web")) == 1, 60, "scaled down to 1")
    d = get(up.kubeconfig, ns, "deployment", "web")
    wait_until(lambda: get(up.kubeconfig, ns, "deployment", "web")["status"].get("replicas") == 1, 60,
               "status replicas 1")
    events = up.kubectl("get", "events", "-n", ns, "--field-selector", "involvedObject.name=web").stdout
    assert f"Scaled up replica set web-{pod_hash} from 0 to 2" in events
    assert f"Scaled down replica set web-{pod_hash} from 4 to 1" in events
    assert d["metadata"]["annotations"][REVISION] == "1"


def test_set_image_and_set_env_roll_without_dropping_availability(up, ns):
    strategy = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 1}}
    create(up.kubeconfig, ns, "web", "sleep", "3600", replicas=4, strategy=strategy)
    rollout_status(up.kubeconfig, ns, "web")
    with PodWatch(up.kubeconfig, ns) as watch:
        up.kubectl("set", "image", "deployment/web", "-n", ns, "busybox=busybox:1.36")
        rollout_status(up.kubeconfig, ns, "web")
        up.kubectl("set", "env", "deployment/web", "-n", ns, "GREETING=hello")
        rollout_status(up.kubeconfig, ns, "web")
        wait_until(lambda: len(active_pods(up.kubeconfig, ns, "app=web")) == 4, 60, "4 pods")
    assert not watch.drops, (watch.drops, up.tail())  # a dropped watch would have missed some states
    assert watch.min_ready >= 3, watch.min_ready  # replicas - maxUnavailable
    assert watch.max_active <= 5, watch.max_active  # replicas + maxSurge
    pods = active_pods(up.kubeconfig, ns, "app=web")
    container = pods[0]["spec"]["containers"][0]
    assert container["image"] == "busybox:1.36" and container["env"] == [{"name": "GREETING", "value": "hello"}]
    assert len({p["metadata"]["labels"]["pod-template-hash"] for p in pods}) == 1
    assert get(up.kubeconfig, ns, "deployment", "web")["metadata"]["annotations"][REVISION] == "3"


def test_rollout_history_and_undo_restore_earlier_templates(up, ns):
    create(up.kubeconfig, ns, "web", "sleep", "3600", replicas=1)
    rollout_status(up.kubeconfig, ns, "web")
    for image in ("busybox:1.36", "busybox:1.37"):
        up.kubectl("set", "image", "deployment/web", "-n", ns, f"busybox={image}")
        rollout_status(up.kubeconfig, ns, "web")
    history = up.kubectl("rollout", "history", "deployment/web", "-n", ns).stdout
    assert [line.split()[0] for line in history.splitlines()[2:] if line.strip()] == ["1", "2", "3"]
    second = up.kubectl("rollout", "history", "deployment/web", "-n", ns, "--revision=2").stdout
    assert "Image:\tbusybox:1.36" in second

    def image():
        return get(up.kubeconfig, ns, "deployment", "web")["spec"]["template"]["spec"]["containers"][0]["image"]

    assert "rolled back" in up.kubectl("rollout", "undo", "deployment/web", "-n", ns).stdout
    rollout_status(up.kubeconfig, ns, "web")
    assert image() == "busybox:1.36"
    assert active_pods(up.kubeconfig, ns, "app=web")[0]["spec"]["containers"][0]["image"] == "busybox:1.36"
    up.kubectl("rollout", "undo", "deployment/web", "-n", ns, "--to-revision=1")
    rollout_status(up.kubeconfig, ns, "web")
    assert image() == "busybox"
    history = up.kubectl("rollout", "history", "deployment/web", "-n", ns).stdout
    assert [line.split()[0] for line in history.splitlines()[2:] if line.strip()] == ["3", "4", "5"]
    assert len(get(up.kubeconfig, ns, "rs")["items"]) == 3  # undo reuses ReplicaSets, it makes none


def test_pause_and_resume(up, ns):
    create(up.kubeconfig, ns, "web", "sleep", "3600", replicas=2)
    rollout_status(up.kubeconfig, ns, "web")
    up.kubectl("rollout", "pause", "deployment/web", "-n", ns)
    up.kubectl("set", "image", "deployment/web", "-n", ns, "busybox=busybox:1.36")

    def paused_and_observed():
        d = get(up.kubeconfig, ns, "deployment", "web")
        progressing = {c["type"]: c for c in d["status"]["conditions"]}["Progressing"]
        return d["status"].get("observedGeneration") == d["metadata"]["generation"] and \
            progressing["reason"] == "DeploymentPaused"
    wait_until(paused_and_observed, 60, "the paused Deployment observed")
    assert len(get(up.kubeconfig, ns, "rs")["items"]) == 1  # nothing rolls while paused
    up.kubectl("rollout", "resume", "deployment/web", "-n", ns)
    rollout_status(up.kubeconfig, ns, "web")
    sets = {rs["spec"]["template"]["spec"]["containers"][0]["image"]: rs["spec"]["replicas"]
            for rs in get(up.kubeconfig, ns, "rs")["items"]}
    assert sets == {"busybox": 0, "busybox:1.36": 2}


def test_rollout_restart_replaces_every_pod(up, ns):
    create(up.kubeconfig, ns, "web", "sleep", "3600", replicas=2)
    rollout_status(up.kubeconfig, ns, "web")
    before = {p["metadata"]["name"] for p in active_pods(up.kubeconfig, ns, "app=web")}
    up.kubectl("rollout", "restart", "deployment/web", "-n", ns)
    rollout_status(up.kubeconfig, ns, "web")
    wait_until(lambda: len(active_pods(up.kubeconfig, ns, "app=web")) == 2, 60, "2 pods")
    pods = active_pods(up.kubeconfig, ns, "app=web")
    assert not before & {p["metadata"]["name"] for p in pods}
    assert "kubectl.kubernetes.io/restartedAt" in pods[0]["metadata"]["annotations"]


def test_a_failing_command_exceeds_the_progress_deadline(up, ns):
    # Ready only for the instant before it exits: never available for minReadySeconds.
    create(up.kubeconfig, ns, "bad", "sh", "-c", "exit 1", replicas=1, minReadySeconds=1,
           progressDeadlineSeconds=3)
    out = kubectl(up.kubeconfig, "rollout", "status", "deployment/bad", "-n", ns, "--timeout=120s", check=False,
                  timeout=150)
    assert out.returncode == 1 and 'deployment "bad" exceeded its progress deadline' in out.stderr
    d = get(up.kubeconfig, ns, "deployment", "bad")
    progressing = {c["type"]: c for c in d["status"]["conditions"]}["Progressing"]
    assert (progressing["status"], progressing["reason"]) == ("False", "ProgressDeadlineExceeded")
    assert "has timed out progressing" in progressing["message"]


def test_delete_cascades_unless_orphaned(up, ns):
    create(up.kubeconfig, ns, "gone", "sleep", "3600", replicas=2)
    create(up.kubeconfig, ns, "kept", "sleep", "3600", replicas=2)
    rollout_status(up.kubeconfig, ns, "gone")
    rollout_status(up.kubeconfig, ns, "kept")
    up.kubectl("delete", "deployment", "gone", "-n", ns)
    wait_until(lambda: not get(up.kubeconfig, ns, "rs", selector="app=gone")["items"]
               and not get(up.kubeconfig, ns, "pods", selector="app=gone")["items"], 90, "ReplicaSet and pods gone")

    up.kubectl("delete", "deployment", "kept", "-n", ns, "--cascade=orphan")
    wait_until(lambda: up.kubectl("get", "deployment", "kept", "-n", ns, check=False).returncode != 0, 60,
               "the Deployment deleted")
    (rs,) = get(up.kubeconfig, ns, "rs", selector="app=kept")["items"]
    assert not rs["metadata"].get("ownerReferences")
    pods = active_pods(up.kubeconfig, ns, "app=kept")
    assert len(pods) == 2 and all(p["metadata"]["ownerReferences"][0]["name"] == rs["metadata"]["name"] for p in pods)


def test_a_killed_controller_manager_started_again_finishes_the_rollout(tmp_path):
    """Every part its own process; the controller manager is SIGKILLed mid-rollout (its Lease not released),
    and a new one takes over when the Lease expires and completes the rollout."""
    with TimonerUp(tmp_path / "data", command="server") as server:
        common = [sys.executable, "-m", "timoner.cli.main"]
        kubeconfig = str(server.kubeconfig)

        def start(*args):
            return subprocess.Popen(common + list(args), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        parts = [start("agent", "--kubeconfig", kubeconfig, "--node-name", "n1", "--runtime", "hollow",
                       "--root-dir", str(tmp_path / "agent"), "--port", "0"),
                 start("scheduler", "--kubeconfig", kubeconfig)]
        controllers = start("controllers", "--kubeconfig", kubeconfig)
        try:
            strategy = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
            create(server.kubeconfig, "default", "web", "sleep", "3600", replicas=4, strategy=strategy,
                   minReadySeconds=2)
            rollout_status(server.kubeconfig, "default", "web")
            kubectl(server.kubeconfig, "set", "image", "deployment/web", "busybox=busybox:1.36")

            def midway():
                sets = get(server.kubeconfig, "default", "rs")["items"]
                new = [rs for rs in sets if rs["metadata"]["annotations"].get(REVISION) == "2"]
                return new and 0 < (new[0]["status"].get("availableReplicas") or 0) < 4
            wait_until(midway, 60, "the rollout half way", interval=0.1)
            controllers.send_signal(signal.SIGKILL)
            controllers.wait(10)
            lease = json.loads(kubectl(server.kubeconfig, "get", "lease", "-n", "kube-system",
                                       "timoner-controller-manager", "-o", "json").stdout)
            assert lease["spec"]["holderIdentity"]  # not released: the successor waits for it to expire
            controllers = start("controllers", "--kubeconfig", kubeconfig)
            rollout_status(server.kubeconfig, "default", "web")
            sets = {rs["metadata"]["annotations"][REVISION]: rs["spec"]["replicas"]
                    for rs in get(server.kubeconfig, "default", "rs")["items"]}
            assert sets == {"1": 0, "2": 4}
            lease = json.loads(kubectl(server.kubeconfig, "get", "lease", "-n", "kube-system",
                                       "timoner-controller-manager", "-o", "json").stdout)
            assert lease["spec"]["leaseTransitions"] >= 1
        finally:
            for proc in [*parts, controllers]:
                proc.send_signal(signal.SIGTERM)
            for proc in [*parts, controllers]:
                proc.wait(30)
