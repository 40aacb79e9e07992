"""`timoner up --proxy-mode userspace`: the fallback data plane serves Services without nftables rules.

ClusterIPs are addresses on the interface `<bridge>-svc` where the agent's forwarders listen; NodePorts
listen on the node's addresses and 127.0.0.1. Cluster DNS goes through it too (kube-dns's ClusterIP).
"""

from __future__ import annotations

import json
import subprocess
import urllib.request

import pytest
from test_up_services import client_pod, exec_in, fetch, service, web_deployment
from up_helpers import get

from timoner.testing import TimonerUp, wait_until

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def up(tmp_path_factory):
    with TimonerUp(tmp_path_factory.mktemp("userspace") / "data", extra=("--proxy-mode", "userspace")) as cluster:
        yield cluster


def test_services_dns_and_nodeports_through_the_userspace_proxy(up, ns):
    manifests = [web_deployment("web", replicas=2), service("web", type="NodePort"), client_pod()]
    up.kubectl("apply", "-n", ns, "-f", "-", input="\n".join(json.dumps(m) for m in manifests))
    up.kubectl("rollout", "status", "deployment/web", "-n", ns, "--timeout=120s", timeout=150)
    up.kubectl("wait", "--for=condition=Ready", "pod/client", "-n", ns, "--timeout=60s", timeout=90)
    web = sorted(p["metadata"]["name"] for p in get(up.kubeconfig, ns, "pods", selector="app=web")["items"])
    svc = get(up.kubeconfig, ns, "service", "web")["spec"]
    # No nftables table for Services: the ClusterIPs are local addresses on the userspace interface.
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, check=True).stdout
    assert f"{up.slot.bridge}-services" not in tables
    addresses = subprocess.run(["ip", "-4", "-o", "addr", "show", "dev", f"{up.slot.bridge}-svc"],
                               capture_output=True, text=True, check=True).stdout
    assert f"{svc['clusterIP']}/32" in addresses
    seen = wait_until(lambda: set(fetch(up, ns, "http://web/", 20)) == set(web) or None, 30,
                      "both pods through the name and the ClusterIP")
    assert seen
    node_port = svc["ports"][0]["nodePort"]
    body = urllib.request.urlopen(f"http://127.0.0.1:{node_port}/", timeout=5).read().decode()
    assert body in web
    resolv = exec_in(up, ns, "client", "cat", "/etc/resolv.conf").stdout
    assert f"nameserver {get(up.kubeconfig, 'kube-system', 'service', 'kube-dns')['spec']['clusterIP']}" in resolv
