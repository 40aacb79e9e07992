"""A small network made of namespaces for the service proxy tests: a node, two pods, a client, an uplink.

```
 [client 100.64.3.2] --veth-- [node  veth-client 100.64.3.1 (the node's address)  --veth-- [wan 100.64.4.2]
                                     veth-wan 100.64.4.1, default route via the wan
                                     br0 100.64.1.1/24]
                                      |                  |
                             [pod-a 100.64.1.2]  [pod-b 100.64.1.3]
```

Every namespace is named `<prefix>-<role>` with a prefix unique to the test, and `close()` kills the
processes the lab started and deletes the namespaces, whatever happened. The node's default route
leads to a namespace that forwards nothing (what the rules let through to a cluster IP vanishes
there), as a real node's leads to its uplink: traffic to cluster IPs needs a route before the rules
can see it. Pod ports of the bridge are in hairpin mode, as the CNI bridge plugin's `hairpinMode`
makes them. The node's sysctls are written by `write_sysctls` run inside the namespace
(/proc/sys/net is the writer's namespace's).

`serve(pod)` starts an echo server in a pod: TCP port 8080 answers `<pod> <peer-ip>` and closes,
UDP port 5353 answers each datagram the same way. `probe(ns, proto, ip, port, count)` connects
`count` times from a namespace and returns what each attempt got: the answer, "refused",
"timeout" or "error <errno>", with the time it took.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from dataclasses import dataclass, field

NODE_IP = "100.64.3.1"
GATEWAY = "100.64.1.1"
POD_IPS = {"pod-a": "100.64.1.2", "pod-b": "100.64.1.3"}
CLIENT_IP = "100.64.3.2"
TCP_PORT = 8080
UDP_PORT = 5353

ECHO_SERVER = r"""
import socket, sys, threading
name = sys.argv[1]
tcp = socket.socket()
tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
tcp.bind(("0.0.0.0", int(sys.argv[2])))
tcp.listen(128)
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
udp.bind(("0.0.0.0", int(sys.argv[3])))
def serve_udp():
    while True:
        data, peer = udp.recvfrom(2048)
        udp.sendto(f"{name} {peer[0]}".encode(), peer)
threading.Thread(target=serve_udp, daemon=True).start()
print("ready", flush=True)
while True:
    conn, peer = tcp.accept()
    try:
        conn.sendall(f"{name} {peer[0]}".encode())
    except OSError:
        pass
    conn.close()
"""

PROBE = r"""
import json, socket, sys, time
proto, ip, port, count, timeout = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
out = []
for _ in range(count):
    started = time.monotonic()
    try:
        if proto == "tcp":
            with socket.create_connection((ip, port), timeout=timeout) as s:
                data = b""
                while chunk := s.recv(2048):
                    data += chunk
        else:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.settimeout(timeout)
                s.connect((ip, port))
                s.send(b"hello")
                data = s.recv(2048)
        result = data.decode()
    except ConnectionRefusedError:
        result = "refused"
    except (TimeoutError, socket.timeout):
        result = "timeout"
    except OSError as exc:
        result = f"error {exc.errno}"
    out.append([result, round(time.monotonic() - started, 3)])
print(json.dumps(out))
"""

SYSCTLS = "from timoner.network.nftables import SYSCTLS, write_sysctls; write_sysctls(SYSCTLS)"


@dataclass
class Lab:
    prefix: str = field(default_factory=lambda: f"tpx-{uuid.uuid4().hex[:8]}")
    namespaces: list[str] = field(default_factory=list)
    processes: list[subprocess.Popen] = field(default_factory=list)

    def ns(self, role: str) -> str:
        return f"{self.prefix}-{role}"

    @property
    def node(self) -> str:
        return self.ns("node")

    def nft(self) -> tuple[str, ...]:
        """The command that runs nft inside the node's namespace."""
        return ("ip", "netns", "exec", self.node, "nft")

    # -- building ----------------------------------------------------------------------

    def build(self) -> Lab:
        node = self._add("node")
        self.ip(node, "link", "add", "br0", "type", "bridge")
        self.ip(node, "addr", "add", f"{GATEWAY}/24", "dev", "br0")
        self.ip(node, "link", "set", "br0", "up")
        for role, address in POD_IPS.items():
            pod = self._add(role)
            veth = f"veth-{role}"
            self.ip(node, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", pod)
            self.ip(node, "link", "set", veth, "master", "br0", "up")
            # As the CNI bridge plugin's hairpinMode: a pod's packet DNATed back to that pod leaves
            # the bridge by the port it came in by (br_netfilter bridges it, it is not routed).
            self.ip(node, "link", "set", veth, "type", "bridge_slave", "hairpin", "on")
            self.ip(pod, "addr", "add", f"{address}/24", "dev", "eth0")
            self.ip(pod, "link", "set", "eth0", "up")
            self.ip(pod, "route", "add", "default", "via", GATEWAY)
        client = self._add("client")
        self.ip(node, "link", "add", "veth-client", "type", "veth", "peer", "name", "eth0", "netns", client)
        self.ip(node, "addr", "add", f"{NODE_IP}/24", "dev", "veth-client")
        self.ip(node, "link", "set", "veth-client", "up")
        self.ip(client, "addr", "add", f"{CLIENT_IP}/24", "dev", "eth0")
        self.ip(client, "link", "set", "eth0", "up")
        self.ip(client, "route", "add", "default", "via", NODE_IP)
        wan = self._add("wan")
        self.ip(node, "link", "add", "veth-wan", "type", "veth", "peer", "name", "eth0", "netns", wan)
        self.ip(node, "addr", "add", "100.64.4.1/24", "dev", "veth-wan")
        self.ip(node, "link", "set", "veth-wan", "up")
        self.ip(wan, "addr", "add", "100.64.4.2/24", "dev", "eth0")
        self.ip(wan, "link", "set", "eth0", "up")
        self.ip(node, "route", "add", "default", "via", "100.64.4.2")
        self.exec(node, sys.executable, "-c", SYSCTLS)
        return self

    def _add(self, role: str) -> str:
        name = self.ns(role)
        _run("ip", "netns", "add", name)
        self.namespaces.append(name)
        self.ip(name, "link", "set", "lo", "up")
        return name

    def ip(self, ns: str, *args: str) -> None:
        _run("ip", "-n", ns, *args)

    def exec(self, ns: str, *cmd: str, timeout: float = 30) -> str:
        return _run("ip", "netns", "exec", ns, *cmd, timeout=timeout)

    def close(self) -> None:
        for proc in self.processes:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        for name in reversed(self.namespaces):
            subprocess.run(["ip", "netns", "del", name], capture_output=True)

    # -- traffic -----------------------------------------------------------------------

    def serve(self, role: str) -> None:
        proc = subprocess.Popen(["ip", "netns", "exec", self.ns(role), sys.executable, "-I", "-S", "-c",
                                 ECHO_SERVER, role, str(TCP_PORT), str(UDP_PORT)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.processes.append(proc)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip() == "ready", f"echo server in {role} did not start: {line!r} {proc.stderr.read()}"

    def probe(self, role: str, proto: str, ip: str, port: int, count: int = 1,
              timeout: float = 2.0) -> list[tuple[str, float]]:
        """What `count` connections (or datagrams) from namespace `role` got: answer or error, seconds."""
        out = self.exec(self.ns(role), sys.executable, "-I", "-S", "-c", PROBE, proto, ip, str(port), str(count),
                        str(timeout), timeout=count * timeout + 30)
        return [(result, seconds) for result, seconds in json.loads(out)]

    def answers(self, role: str, proto: str, ip: str, port: int, count: int = 1) -> list[str]:
        return [result for result, _ in self.probe(role, proto, ip, port, count)]

    def probe_async(self, role: str, proto: str, ip: str, port: int, count: int,
                    timeout: float = 2.0) -> subprocess.Popen:
        """`probe` in the background; read the JSON from its stdout."""
        proc = subprocess.Popen(["ip", "netns", "exec", self.ns(role), sys.executable, "-I", "-S", "-c", PROBE,
                                 proto, ip, str(port), str(count), str(timeout)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.processes.append(proc)
        return proc

    def ruleset(self, table: str) -> str:
        """`nft list table ip <table>` in the node, or "" when there is no such table."""
        proc = subprocess.run([*self.nft(), "list", "table", "ip", table], capture_output=True, text=True)
        return proc.stdout if proc.returncode == 0 else ""


def _run(*cmd: str, timeout: float = 30) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout
