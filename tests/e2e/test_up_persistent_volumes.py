"""Persistent volumes on `timoner up`, driven by the real kubectl: the default class, a claim, data across pods.

`timoner up` provisions `local-path` volumes in `<data dir>/agent/local-path`
on the node the scheduler picks for the claim's first pod.
"""

from __future__ import annotations

import json
import os
import uuid

import pytest

from timoner.testing import TimonerUp, wait_until

pytestmark = pytest.mark.slow

LOOP = "trap 'exit 0' TERM; while :; do sleep 0.1; done"


def _pod(name, command):
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"terminationGracePeriodSeconds": 2,
                     "containers": [{"name": "c", "image": "busybox", "command": ["sh", "-c", command],
                                     "volumeMounts": [{"name": "data", "mountPath": "/var/lib/tmn-e2e-data"}]}],
                     "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}]}}


def test_kubectl_claim_gets_a_local_path_volume_whose_data_outlives_the_pod(tmp_path):
    assert os.geteuid() == 0, "volume mounts need root (mount namespaces), which this machine's test runs have"
    data_dir = tmp_path / "data"
    ns = f"t-{uuid.uuid4().hex[:8]}"
    with TimonerUp(data_dir) as up:
        try:
            classes = up.kubectl("get", "storageclass").stdout.splitlines()
            assert classes[0].split() == ["NAME", "PROVISIONER", "RECLAIMPOLICY", "VOLUMEBINDINGMODE",
                                          "ALLOWVOLUMEEXPANSION", "AGE"]
            assert classes[1].split()[:6] == ["local-path", "(default)", "rancher.io/local-path", "Delete",
                                              "WaitForFirstConsumer", "false"]

            up.kubectl("create", "namespace", ns)
            claim = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data"},
                     "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "128Mi"}}}}
            up.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(claim))
            pending = up.kubectl("get", "pvc", "data", "-n", ns).stdout.splitlines()[1].split()
            assert pending[:2] == ["data", "Pending"] and "local-path" in pending

            up.kubectl("apply", "-n", ns, "-f", "-",
                       input=json.dumps(_pod("writer", f"date +%s%N > /var/lib/tmn-e2e-data/stamp; {LOOP}")))
            up.kubectl("wait", "-n", ns, "--for=condition=Ready", "pod/writer", "--timeout=120s")
            row = up.kubectl("get", "pvc", "data", "-n", ns).stdout.splitlines()[1].split()
            assert row[:2] == ["data", "Bound"] and row[2].startswith("pvc-") and row[3:6] == ["128Mi", "RWO",
                                                                                                "local-path"]
            pv_row = up.kubectl("get", "pv").stdout.splitlines()[1].split()
            assert pv_row[:6] == [row[2], "128Mi", "RWO", "Delete", "Bound", f"{ns}/data"]
            stamp = up.kubectl("exec", "-n", ns, "writer", "--", "cat", "/var/lib/tmn-e2e-data/stamp").stdout
            assert stamp.strip().isdigit()
            directory = data_dir / "agent" / "local-path" / f"{ns}_data_{row[2]}"
            assert (directory / "stamp").read_text() == stamp
            assert not os.path.exists("/var/lib/tmn-e2e-data")  # the host itself never had it

            up.kubectl("delete", "-n", ns, "pod", "writer", "--wait=true", "--timeout=120s")
            up.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(_pod("reader", LOOP)))
            up.kubectl("wait", "-n", ns, "--for=condition=Ready", "pod/reader", "--timeout=120s")
            assert up.kubectl("exec", "-n", ns, "reader", "--", "cat", "/var/lib/tmn-e2e-data/stamp").stdout == stamp

            up.kubectl("delete", "-n", ns, "pod", "reader", "--wait=true", "--timeout=120s")
            up.kubectl("delete", "-n", ns, "pvc", "data", "--wait=true", "--timeout=60s")
            wait_until(lambda: "No resources found" in up.kubectl("get", "pv").stderr, 60, "the volume deleted")
            assert not directory.exists()
        except BaseException:
            print(up.tail(200))
            raise
