"""Services, cluster DNS and the pod network on `timoner up`, driven by the real kubectl.

Each pod has a network namespace of its own on the cluster's bridge (the agent runs as root). Web pods
run a small Python HTTP server that answers with the pod's name; a client pod asks through Service
names, and the test also asks the cluster DNS from the host with dnspython.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import dns.message
import dns.query
import dns.rdatatype
import pytest
from up_helpers import get

from timoner.testing import kubectl, wait_until

pytestmark = pytest.mark.slow

PY = sys.executable

# Answers every GET with the pod's name (its hostname); readiness is `test ! -e /run/web/unready` in an
# emptyDir of the pod's own, so a test can flip it with kubectl exec. (Not at /tmp: a checkout under /tmp
# would have its interpreter hidden by the mount.)
WEB = """
import http.server, socket, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = socket.gethostname().encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("0.0.0.0", int(sys.argv[1])), H).serve_forever()
"""

UDP_ECHO = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", int(sys.argv[1])))
while True:
    data, peer = s.recvfrom(1000); s.sendto(socket.gethostname().encode() + b" " + data, peer)
"""

FETCH = """
import sys, urllib.request
for _ in range(int(sys.argv[2])):
    print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())
"""


def apply(up, ns, *manifests):
    # A stream of JSON objects, as kubectl reads them.
    up.kubectl("apply", "-n", ns, "-f", "-", input="\n".join(json.dumps(m) for m in manifests))


def web_deployment(name, replicas=3, port=8080):
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}}, "spec": {
                         "terminationGracePeriodSeconds": 1,
                         "volumes": [{"name": "state", "emptyDir": {}}],
                         "containers": [{
                             "name": "web", "image": "python", "command": [PY, "-c", WEB, str(port)],
                             "ports": [{"name": "http", "containerPort": port}],
                             "volumeMounts": [{"name": "state", "mountPath": "/run/web"}],
                             "readinessProbe": {"exec": {"command": ["sh", "-c", "test ! -e /run/web/unready"]},
                                                "periodSeconds": 1, "failureThreshold": 1}}]}}}}


def service(name, *, port=80, target="http", selector=None, **spec):
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"selector": selector or {"app": name},
                     "ports": [{"name": "http", "port": port, "targetPort": target}], **spec}}


def client_pod(name="client"):
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"terminationGracePeriodSeconds": 1,
                     "containers": [{"name": "c", "image": "python", "command": ["sleep", "3600"]}]}}


def exec_in(up, ns, pod, *argv, check=True):
    return kubectl(up.kubeconfig, "exec", "-n", ns, pod, "--", *argv, check=check, timeout=60)


def fetch(up, ns, url, times=1):
    return exec_in(up, ns, "client", PY, "-c", FETCH, url, str(times)).stdout.split()


def ready_pods(up, ns, selector):
    pods = get(up.kubeconfig, ns, "pods", selector=selector)["items"]
    return [p for p in pods if not p["metadata"].get("deletionTimestamp") and any(
        c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))]


def dns_ip(up):
    return get(up.kubeconfig, "kube-system", "service", "kube-dns")["spec"]["clusterIP"]


def query(up, name, rdtype, *, tcp=False):
    """Ask the cluster DNS from the host, through the kube-dns ClusterIP."""
    message = dns.message.make_query(name, rdtype)
    ask = dns.query.tcp if tcp else dns.query.udp
    return ask(message, dns_ip(up), timeout=5)


def answers(response, rdtype):
    return sorted(str(r) for rrset in response.answer if rrset.rdtype == rdtype for r in rrset)


@pytest.fixture
def web(up, ns):
    """Deployment `web` (3 ready pods), Service `web` (80 -> named port http), a client pod."""
    apply(up, ns, web_deployment("web"), service("web"), client_pod())
    up.kubectl("rollout", "status", "deployment/web", "-n", ns, "--timeout=120s", timeout=150)
    up.kubectl("wait", "--for=condition=Ready", "pod/client", "-n", ns, "--timeout=60s", timeout=90)
    return sorted(p["metadata"]["name"] for p in ready_pods(up, ns, "app=web"))


def test_a_client_reaches_a_deployment_through_service_names_and_load_spreads(up, ns, web):
    resolv = exec_in(up, ns, "client", "cat", "/etc/resolv.conf").stdout
    assert f"nameserver {dns_ip(up)}" in resolv
    assert f"search {ns}.svc.cluster.local svc.cluster.local cluster.local" in resolv
    assert "options ndots:5" in resolv
    seen = fetch(up, ns, f"http://web.{ns}.svc.cluster.local/", 30) + fetch(up, ns, "http://web/", 30)
    assert set(seen) <= set(web)
    assert set(seen) == set(web), f"60 requests should reach all three pods, got {sorted(set(seen))}"
    # The Service's EndpointSlice lists every ready pod, with the named port resolved.
    slices = get(up.kubeconfig, ns, "endpointslices", selector="kubernetes.io/service-name=web")["items"]
    endpoints = [e for s in slices for e in s["endpoints"]]
    assert sorted(e["targetRef"]["name"] for e in endpoints) == web
    assert [p["port"] for s in slices for p in s["ports"]] == [8080]


def test_a_pod_that_turns_unready_leaves_the_service_and_comes_back(up, ns, web):
    victim = web[0]
    exec_in(up, ns, victim, "touch", "/run/web/unready")
    started = time.monotonic()
    wait_until(lambda: victim not in [p["metadata"]["name"] for p in ready_pods(up, ns, "app=web")], 30,
               f"{victim} unready")
    wait_until(lambda: victim not in fetch(up, ns, "http://web/", 20), 30, f"{victim} out of the Service")
    print(f"unready -> out of the Service in {time.monotonic() - started:.2f} s (incl. the 1 s probe period)")
    assert victim not in fetch(up, ns, "http://web/", 30)
    exec_in(up, ns, victim, "rm", "/run/web/unready")
    wait_until(lambda: victim in fetch(up, ns, "http://web/", 20), 30, f"{victim} back in the Service")


def test_nodeport_answers_from_the_host(up, ns, web):
    apply(up, ns, service("web-np", selector={"app": "web"}, type="NodePort"))
    node_port = get(up.kubeconfig, ns, "service", "web-np")["spec"]["ports"][0]["nodePort"]
    node = json.loads(up.kubectl("get", "nodes", "-o", "json").stdout)["items"][0]
    node_ip = next(a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP")

    def ask(host):
        try:
            return urllib.request.urlopen(f"http://{host}:{node_port}/", timeout=5).read().decode()
        except OSError:
            return None

    for host in ("127.0.0.1", node_ip):
        assert wait_until(lambda h=host: ask(h), 20, f"NodePort {node_port} on {host}") in web


def test_headless_srv_and_externalname_records(up, ns, web):
    apply(up, ns, service("web-headless", selector={"app": "web"}, clusterIP="None"),
          {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "elsewhere"},
           "spec": {"type": "ExternalName", "externalName": "example.invalid"}})
    pod_ips = sorted(p["status"]["podIP"] for p in ready_pods(up, ns, "app=web"))
    headless = f"web-headless.{ns}.svc.cluster.local."
    wait_until(lambda: answers(query(up, headless, "A"), dns.rdatatype.A) == pod_ips, 20, "every pod IP")
    cluster_ip = get(up.kubeconfig, ns, "service", "web")["spec"]["clusterIP"]
    assert answers(query(up, f"web.{ns}.svc.cluster.local.", "A", tcp=True), dns.rdatatype.A) == [cluster_ip]
    srv = answers(query(up, f"_http._tcp.web.{ns}.svc.cluster.local.", "SRV"), dns.rdatatype.SRV)
    assert srv == [f"0 100 80 web.{ns}.svc.cluster.local."]
    cname = query(up, f"elsewhere.{ns}.svc.cluster.local.", "CNAME")
    assert answers(cname, dns.rdatatype.CNAME) == ["example.invalid."]
    # From inside a pod, by the short name, through its resolv.conf.
    resolved = exec_in(up, ns, "client", "getent", "ahostsv4", "web-headless").stdout
    assert sorted({line.split()[0] for line in resolved.splitlines()}) == pod_ips


def test_two_pods_on_the_same_port_and_service_env_vars(up, ns, web):
    # All three web pods listen on 8080 in their own namespaces; none on the host.
    pod_ips = [p["status"]["podIP"] for p in ready_pods(up, ns, "app=web")]
    assert len(set(pod_ips)) == 3
    node_ip = get(up.kubeconfig, ns, "pods", "client")["status"]["hostIP"]
    assert all(ip != node_ip for ip in pod_ips)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", 8080), timeout=2).close()
    for ip in pod_ips:
        assert urllib.request.urlopen(f"http://{ip}:8080/", timeout=5).status == 200
    # A pod created after the Service has its variables; the client (created with it) may not.
    apply(up, ns, client_pod("late"))
    up.kubectl("wait", "--for=condition=Ready", "pod/late", "-n", ns, "--timeout=60s", timeout=90)
    env = dict(line.split("=", 1) for line in exec_in(up, ns, "late", "env").stdout.splitlines() if "=" in line)
    cluster_ip = get(up.kubeconfig, ns, "service", "web")["spec"]["clusterIP"]
    assert env["WEB_SERVICE_HOST"] == cluster_ip and env["WEB_SERVICE_PORT"] == "80"
    assert env["WEB_PORT"] == f"tcp://{cluster_ip}:80"
    assert "KUBERNETES_SERVICE_HOST" in env


def test_a_udp_service_and_deleting_a_service_removes_its_rules(up, ns):
    echo = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "echo"},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "echo"}},
                     "template": {"metadata": {"labels": {"app": "echo"}}, "spec": {
                         "terminationGracePeriodSeconds": 1,
                         "containers": [{"name": "echo", "image": "python", "command": [PY, "-c", UDP_ECHO, "5353"],
                                         "ports": [{"name": "echo", "containerPort": 5353, "protocol": "UDP"}]}]}}}}
    udp = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "echo"},
           "spec": {"selector": {"app": "echo"},
                    "ports": [{"name": "echo", "port": 53, "targetPort": "echo", "protocol": "UDP"}]}}
    apply(up, ns, echo, udp)
    up.kubectl("rollout", "status", "deployment/echo", "-n", ns, "--timeout=120s", timeout=150)
    cluster_ip = get(up.kubeconfig, ns, "service", "echo")["spec"]["clusterIP"]

    def ask():
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(1)
        try:
            s.sendto(b"ping", (cluster_ip, 53))
            return s.recvfrom(1000)[0].decode()
        except OSError:
            return None
        finally:
            s.close()

    reply = wait_until(ask, 20, "a UDP echo through the ClusterIP")
    assert reply.startswith("echo-") and reply.endswith(" ping")

    def rules():
        return subprocess.run(["nft", "list", "table", "ip", f"{up.slot.bridge}-services"], capture_output=True,
                              text=True, check=True).stdout

    assert cluster_ip in rules()
    up.kubectl("delete", "service", "echo", "-n", ns)
    wait_until(lambda: cluster_ip not in rules(), 20, "the Service's rules gone")
    assert ask() is None


def test_an_ingress_routes_two_hosts_to_two_services(up, ns, web):
    apply(up, ns, web_deployment("api", replicas=1), service("api"),
          {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "two"},
           "spec": {"rules": [
               {"host": f"web.{ns}.example.test", "http": {"paths": [{
                   "path": "/", "pathType": "Prefix",
                   "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}},
               {"host": f"api.{ns}.example.test", "http": {"paths": [{
                   "path": "/v1", "pathType": "Exact",
                   "backend": {"service": {"name": "api", "port": {"name": "http"}}}}]}}]}})
    up.kubectl("rollout", "status", "deployment/api", "-n", ns, "--timeout=120s", timeout=150)
    api_pod = ready_pods(up, ns, "app=api")[0]["metadata"]["name"]
    assert get(up.kubeconfig, ns, "ingressclass", "timoner")["spec"]["controller"] == "timoner.dev/ingress-controller"
    http_port = up.slot.ingress_ports[0]

    def ask(host, path="/"):
        request = urllib.request.Request(f"http://127.0.0.1:{http_port}{path}", headers={"Host": host})
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, ""
        except OSError:
            return None

    def routed():
        answers = [ask(f"web.{ns}.example.test") for _ in range(12)]
        return all(a and a[0] == 200 for a in answers) and {a[1] for a in answers}

    assert wait_until(routed, 30, "web through the ingress") <= set(web)
    assert ask(f"api.{ns}.example.test", "/v1") == (200, api_pod)
    assert ask(f"api.{ns}.example.test", "/v1/more")[0] == 404  # Exact
    assert ask("nobody.example.test")[0] == 404  # no rule, no default backend
    node_ip = get(up.kubeconfig, ns, "pods", "client")["status"]["hostIP"]
    wait_until(lambda: get(up.kubeconfig, ns, "ingress", "two")["status"].get("loadBalancer", {}).get("ingress")
               == [{"ip": node_ip}], 30, "the node's address in the Ingress status")
