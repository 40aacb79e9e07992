"""Service accounts on `timoner up`, driven by the real kubectl: `kubectl create token`, `kubectl auth whoami`
with the token, and the `kube-api-access-*` volume every pod gets (token, CA and namespace files)."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest
import yaml

from timoner.testing import kubectl, wait_until

pytestmark = pytest.mark.slow

SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


@pytest.fixture(scope="module")
def anonymous(up, tmp_path_factory) -> Path:
    """A kubeconfig of the cluster `up` with no credentials of its own: what `--token` is used with."""
    admin = yaml.safe_load(up.kubeconfig.read_text())
    path = tmp_path_factory.mktemp("anon") / "kubeconfig"
    config = {"apiVersion": "v1", "kind": "Config", "clusters": admin["clusters"],
              "users": [{"name": "nobody", "user": {}}],
              "contexts": [{"name": "c", "context": {"cluster": admin["clusters"][0]["name"], "user": "nobody"}}],
              "current-context": "c"}
    path.write_text(yaml.safe_dump(config))
    return path


def whoami(anonymous: Path, token: str, *, check: bool = True):
    return kubectl(anonymous, "auth", "whoami", "--token", token, "-o", "json", check=check)


def claims_of(token: str) -> dict:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def test_kubectl_create_token_then_whoami(up, ns, anonymous):
    wait_until(lambda: up.kubectl("get", "serviceaccount", "default", "-n", ns, check=False).returncode == 0, 30,
               "the default ServiceAccount")
    token = up.kubectl("create", "token", "default", "-n", ns, "--duration", "20m").stdout.strip()
    claims = claims_of(token)
    assert claims["exp"] - claims["iat"] == 1200
    info = json.loads(whoami(anonymous, token).stdout)["status"]["userInfo"]
    assert info["username"] == f"system:serviceaccount:{ns}:default"
    assert info["groups"] == ["system:serviceaccounts", f"system:serviceaccounts:{ns}", "system:authenticated"]
    uid = up.kubectl("get", "serviceaccount", "default", "-n", ns, "-o", "jsonpath={.metadata.uid}").stdout
    assert info["uid"] == uid

    other = up.kubectl("create", "token", "default", "-n", ns, "--audience", "vault").stdout.strip()
    refused = whoami(anonymous, other, check=False)
    assert refused.returncode != 0 and "Unauthorized" in refused.stderr

    short = up.kubectl("create", "token", "default", "-n", ns, "--duration", "5m", check=False)
    assert short.returncode != 0
    assert "spec.expirationSeconds: Invalid value: 300: may not specify a duration less than 10 minutes" in short.stderr


def test_a_token_bound_to_a_pod_dies_with_it(up, ns, anonymous):
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "holder"},
           "spec": {"nodeName": "nowhere", "containers": [{"name": "c", "image": "busybox"}]}}
    up.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(pod))
    token = up.kubectl("create", "token", "default", "-n", ns, "--bound-object-kind", "Pod",
                       "--bound-object-name", "holder").stdout.strip()
    info = json.loads(whoami(anonymous, token).stdout)["status"]["userInfo"]
    assert info["extra"]["authentication.kubernetes.io/pod-name"] == ["holder"]
    up.kubectl("delete", "pod", "holder", "-n", ns, "--grace-period=0", "--force", "--wait=true")
    refused = whoami(anonymous, token, check=False)
    assert refused.returncode != 0 and "Unauthorized" in refused.stderr


def test_a_pods_container_reads_its_service_account_files(up, ns, anonymous):
    assert os.geteuid() == 0, "volume mounts need root (mount namespaces), which this machine's test runs have"
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "reader"},
           "spec": {"terminationGracePeriodSeconds": 2, "containers": [{
               "name": "c", "image": "busybox",
               "command": ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.1; done"]}]}}
    up.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(pod))
    spec = json.loads(up.kubectl("get", "pod", "reader", "-n", ns, "-o", "json").stdout)["spec"]
    assert spec["serviceAccountName"] == "default"
    volume = next(v for v in spec["volumes"] if v["name"].startswith("kube-api-access-"))
    assert spec["containers"][0]["volumeMounts"] == [{"name": volume["name"], "mountPath": SA_DIR, "readOnly": True}]
    wait_until(lambda: up.kubectl("get", "pod", "reader", "-n", ns, "-o",
                                  "jsonpath={.status.phase}").stdout == "Running", 60, "pod reader Running")

    def read(name: str) -> str:
        return up.kubectl("exec", "-n", ns, "reader", "--", "cat", f"{SA_DIR}/{name}").stdout

    assert read("namespace") == ns
    ca = base64.b64decode(yaml.safe_load(up.kubeconfig.read_text())["clusters"][0]["cluster"][
        "certificate-authority-data"]).decode()
    assert read("ca.crt") == ca
    token = read("token")
    assert token.count(".") == 2
    claims = claims_of(token)
    assert claims["kubernetes.io"]["pod"]["name"] == "reader"
    assert claims["kubernetes.io"]["node"]["name"]  # the pod is bound: its node is in the token
    info = json.loads(whoami(anonymous, token).stdout)["status"]["userInfo"]
    assert info["username"] == f"system:serviceaccount:{ns}:default"
    assert info["extra"]["authentication.kubernetes.io/pod-name"] == ["reader"]
    # The pod's own token also opens exec (an upgrade the API server authenticates before relaying it).
    execd = kubectl(anonymous, "exec", "-n", ns, "reader", "--token", token, "--", "cat", f"{SA_DIR}/namespace")
    assert execd.stdout == ns
    refused = kubectl(anonymous, "exec", "-n", ns, "reader", "--token", token[:-4] + "AAAA", "--", "true",
                      check=False)
    assert refused.returncode != 0 and "Unauthorized" in refused.stderr
    assert not Path(SA_DIR).exists()  # mounted in the container's mount namespace only, never on the host
