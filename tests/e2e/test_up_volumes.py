"""Volumes on `timoner up`, driven by the real kubectl: configMap, secret and downwardAPI files and env in a pod.

`timoner up` runs its containers in their own mount namespaces (this
machine runs the tests as root), so the volumes appear at their mountPaths,
which the host itself lacks and must still lack afterwards.
"""

from __future__ import annotations

import json
import os
import uuid

import pytest

from timoner.testing import TimonerUp, wait_until

pytestmark = pytest.mark.slow


def test_kubectl_sees_volume_files_and_env_from_configmaps_and_secrets(tmp_path):
    assert os.geteuid() == 0, "volume mounts need root (mount namespaces), which this machine's test runs have"
    tag = f"tmn-e2e-{uuid.uuid4().hex[:8]}"
    data_dir = tmp_path / "data"
    with TimonerUp(data_dir) as up:
        up.kubectl("create", "configmap", "app", "--from-literal=greeting=hello", "--from-literal=level=debug")
        up.kubectl("create", "secret", "generic", "creds", "--from-literal=password=s3cr3t")
        container = {
            "name": "c", "image": "busybox",
            "command": ["sh", "-c", f"cat /etc/{tag}/config/greeting; echo; cat /etc/{tag}/secret/password; echo; "
                                    f"cat /etc/{tag}/info/labels; echo; echo GREETING=$GREETING PASSWORD=$PASSWORD "
                                    f"level=$level; trap 'exit 0' TERM; while :; do sleep 0.1; done"],
            "env": [{"name": "GREETING", "valueFrom": {"configMapKeyRef": {"name": "app", "key": "greeting"}}},
                    {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}}],
            "envFrom": [{"configMapRef": {"name": "app"}}],
            "volumeMounts": [{"name": "config", "mountPath": f"/etc/{tag}/config"},
                             {"name": "secret", "mountPath": f"/etc/{tag}/secret"},
                             {"name": "info", "mountPath": f"/etc/{tag}/info"}],
        }
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "vols", "labels": {"app": "demo"}},
               "spec": {"containers": [container], "terminationGracePeriodSeconds": 5, "volumes": [
                   {"name": "config", "configMap": {"name": "app"}},
                   {"name": "secret", "secret": {"secretName": "creds", "defaultMode": 0o400}},
                   {"name": "info", "downwardAPI": {"items": [
                       {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                       {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}}]}}]}}
        waiting = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "waits"},
                   "spec": {"containers": [{"name": "c", "image": "busybox", "command": ["true"]}],
                            "volumes": [{"name": "v", "configMap": {"name": "not-there"}}]}}
        try:
            for manifest in (pod, waiting):
                up.kubectl("apply", "-f", "-", input=json.dumps(manifest))
            wait_until(lambda: up.kubectl("get", "pod", "vols", "-o", "jsonpath={.status.phase}").stdout == "Running",
                       60, "pod vols Running")
            logs = wait_until(lambda: (out := up.kubectl("logs", "vols").stdout).count("\n") >= 4 and out, 30,
                              "the pod's output")
            assert logs == 'hello\ns3cr3t\napp="demo"\nGREETING=hello PASSWORD=s3cr3t level=debug\n'
            execd = up.kubectl("exec", "vols", "--", "sh", "-c",
                               f"cat /etc/{tag}/info/name; echo; ls /etc/{tag}/config; "
                               f"stat -L -c %a /etc/{tag}/secret/password; "
                               f"echo x > /etc/{tag}/config/new || echo read-only")
            assert execd.stdout == "vols\ngreeting\nlevel\n400\nread-only\n", execd.stderr
            assert "Read-only file system" in execd.stderr

            # A pod whose ConfigMap is missing stays ContainerCreating, and says why in its events.
            events = wait_until(lambda: "FailedMount" in (out := up.kubectl(
                "get", "events", "--field-selector", "involvedObject.name=waits", "-o", "json").stdout) and out,
                30, "a FailedMount event")
            messages = {e["message"] for e in json.loads(events)["items"] if e["reason"] == "FailedMount"}
            assert messages == {'MountVolume.SetUp failed for volume "v" : configmap "not-there" not found'}
            listing = up.kubectl("get", "pod", "waits", "--no-headers").stdout.split()
            assert listing[1:3] == ["0/1", "ContainerCreating"], listing
        finally:
            up.kubectl("delete", "pods", "--all", "--wait=true", "--timeout=60s", check=False)
    assert [p for p in (f"/etc/{tag}",) if os.path.lexists(p)] == []
    with open("/proc/self/mountinfo") as f:
        assert [line for line in f if str(tmp_path) in line] == []
