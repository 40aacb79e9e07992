"""kubectl exec, attach, run -i and port-forward, and the Python client's stream() and portforward(),
against `timoner up` running real processes.

Everything goes the way it goes in a real cluster: kubectl to the API server,
which relays the upgrade to the node agent (presenting its client
certificate, which the agent checks against the cluster CA), which speaks
WebSocket or SPDY to kubectl and runs the command or dials the pod's port.
kubectl 1.32 uses WebSockets by default; `KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false`
and `KUBECTL_PORT_FORWARD_WEBSOCKETS=false` make it use SPDY, its fallback.
"""

from __future__ import annotations

import json
import os
import re
import select
import socket
import subprocess
import time
import urllib.request
import uuid

import pytest
from kubernetes import client, config
from kubernetes.stream import portforward, stream

from timoner.testing import KUBECTL, TimonerUp, kubectl, wait_until

pytestmark = pytest.mark.slow

LOOP = 'trap "exit 0" TERM; while true; do sleep 0.1; done'
SPDY_EXEC = {"KUBECTL_REMOTE_COMMAND_WEBSOCKETS": "false"}
SPDY_PORT_FORWARD = {"KUBECTL_PORT_FORWARD_WEBSOCKETS": "false"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def kubeconfig(tmp_path_factory):
    """`timoner up` (API server, controllers, scheduler, node agent on the process runtime, pod network)."""
    with TimonerUp(tmp_path_factory.mktemp("streaming") / "data") as up:  # stopping it stops the containers
        yield up.kubeconfig


def _run_pod(kubeconfig, *args: str) -> str:
    name = f"p-{uuid.uuid4().hex[:6]}"
    kubectl(kubeconfig, "run", name, "--restart=Never", *args)
    kubectl(kubeconfig, "wait", "--for=condition=Ready", f"pod/{name}", "--timeout=60s", timeout=90)
    return name


def _apply_pod(kubeconfig, container: dict) -> str:
    name = f"p-{uuid.uuid4().hex[:6]}"
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
           "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox", **container}]}}
    kubectl(kubeconfig, "apply", "-f", "-", input=json.dumps(pod))
    kubectl(kubeconfig, "wait", "--for=condition=Ready", f"pod/{name}", "--timeout=60s", timeout=90)
    return name


@pytest.fixture(scope="module")
def shell_pod(kubeconfig):
    return _run_pod(kubeconfig, "--image=busybox", "--command", "--", "sh", "-c", LOOP)


@pytest.fixture(scope="module")
def web_pod(kubeconfig):
    """A pod serving HTTP on its own loopback (its network namespace's), which port-forward reaches."""
    port = _free_port()  # free on the host too, so that the check below means something
    name = _run_pod(kubeconfig, "--image=python", "--command", "--",
                    "python3", "-m", "http.server", str(port), "--bind", "127.0.0.1")
    probe = f"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=1).close()"
    # Ready means started; the server may still be binding.
    wait_until(lambda: kubectl(kubeconfig, "exec", name, "--", "python3", "-c", probe, check=False).returncode == 0,
               30, "the pod's HTTP server listening")
    with pytest.raises(OSError):  # on the pod's loopback, not the host's
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    return name, port


@pytest.mark.parametrize("env", [{}, SPDY_EXEC], ids=["websocket", "spdy"])
def test_kubectl_exec(kubeconfig, shell_pod, env):
    done = kubectl(kubeconfig, "exec", shell_pod, "--", "sh", "-c", "echo out; echo err >&2", env=env)
    assert done.stdout == "out\n" and done.stderr == "err\n"
    failed = kubectl(kubeconfig, "exec", shell_pod, "--", "sh", "-c", "exit 3", env=env, check=False)
    assert failed.returncode == 3, failed.stderr
    assert "command terminated with exit code 3" in failed.stderr
    piped = kubectl(kubeconfig, "exec", "-i", shell_pod, "--", "sh", "-c", "cat; echo end", env=env,
                    input="line 1\nline 2\n")
    assert piped.stdout == "line 1\nline 2\nend\n"


def _in_terminal(kubeconfig, command: str, *, env: dict | None = None, until: bytes | None = None,
                 timeout: float = 60) -> tuple[int, bytes]:
    """Run a shell command line under `script` (a pseudo-terminal, 77x22), for kubectl -t.

    With `until`, "hello" and Enter are typed every second until that appears: like a user at a
    prompt, since keys typed before kubectl puts the terminal in raw mode may be lost.
    """
    proc = subprocess.Popen(["script", "-qec", f"stty cols 77 rows 22; {command}", "/dev/null"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            env={**os.environ, "KUBECONFIG": str(kubeconfig), "HOME": str(kubeconfig.parent),
                                 **(env or {})})
    out, typed, deadline = b"", 0.0, time.time() + timeout
    try:
        while time.time() < deadline:
            if until is not None and until not in out and time.time() - typed > 1:
                proc.stdin.write(b"hello\r")
                proc.stdin.flush()
                typed = time.time()
            ready, _, _ = select.select([proc.stdout], [], [], 0.2)
            if ready:
                chunk = os.read(proc.stdout.fileno(), 65536)
                if not chunk:
                    break
                out += chunk
        return proc.wait(timeout=20), out
    finally:
        proc.kill()


@pytest.mark.parametrize("env", [{}, SPDY_EXEC], ids=["websocket", "spdy"])
def test_kubectl_exec_with_a_tty_gets_the_terminal_size(kubeconfig, shell_pod, env):
    code, out = _in_terminal(kubeconfig, f"kubectl exec -it {shell_pod} -- sh -c 'stty size; tty; exit 6'", env=env)
    assert code == 6, out
    assert b"22 77\r\n/dev/pts/" in out  # kubectl's terminal size, through the resize channel


def test_kubectl_run_it_attaches_to_a_tty_container(kubeconfig):
    # kubectl sends the terminal size and the keys typed on separate streams, so the container may read
    # the keys before its terminal is resized (as upstream): it waits for the size, then prints it.
    name = f"t-{uuid.uuid4().hex[:6]}"
    code, out = _in_terminal(kubeconfig, f"kubectl run -it --rm --restart=Never --image=busybox --command {name} "
                                         "-- sh -c 'read x; while [ \"$(stty size)\" = \"0 0\" ]; do sleep 0.1; done; "
                                         "stty size; echo got:$x; exit 3'", until=b"got:")
    assert code == 3, out
    assert b"22 77\r\ngot:hello\r\n" in out
    assert kubectl(kubeconfig, "get", "pod", name, check=False).returncode != 0


def test_kubectl_exec_uses_websocket_v5_by_default(kubeconfig, shell_pod):
    traced = kubectl(kubeconfig, "exec", "-v=4", shell_pod, "--", "true")
    assert "The subprotocol is v5.channel.k8s.io" in traced.stderr


@pytest.mark.parametrize("env", [{}, SPDY_PORT_FORWARD], ids=["websocket", "spdy"])
def test_kubectl_port_forward(kubeconfig, web_pod, env):
    name, port = web_pod
    local = _free_port()
    proc = subprocess.Popen([KUBECTL, "port-forward", "-v=6", f"pod/{name}", f"{local}:{port}"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "KUBECONFIG": str(kubeconfig), "HOME": str(kubeconfig.parent), **env})
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 30)
        assert ready, "kubectl port-forward printed nothing"
        assert proc.stdout.readline().startswith(f"Forwarding from 127.0.0.1:{local} -> {port}")
        for _ in range(3):  # one kubectl session, several connections
            with urllib.request.urlopen(f"http://127.0.0.1:{local}/", timeout=20) as response:
                assert response.status == 200
                assert b"Directory listing" in response.read()
    finally:
        proc.terminate()
        _, trace = proc.communicate(timeout=20)
    tunnel = "negotiated protocol: portforward.k8s.io" in trace
    assert tunnel == (not env), trace  # WebSocket (SPDY tunnelled) by default, plain SPDY when told


def test_kubectl_run_i_rm_delivers_stdin_and_the_exit_code(kubeconfig):
    name = f"r-{uuid.uuid4().hex[:6]}"
    done = kubectl(kubeconfig, "run", name, "-i", "--rm", "--restart=Never", "--image=busybox", "--command",
                   "--", "sh", "-c", "read x; echo got $x; exit 5", input="hello\n", check=False, timeout=120)
    assert done.returncode == 5, (done.stdout, done.stderr)
    assert "got hello" in done.stdout
    assert kubectl(kubeconfig, "get", "pod", name, check=False).returncode != 0  # --rm deleted it


@pytest.mark.parametrize("env", [{}, SPDY_EXEC], ids=["websocket", "spdy"])
def test_kubectl_attach_with_stdin(kubeconfig, env):
    script = "echo ready; while read l; do echo out:$l; echo err:$l >&2; done; echo bye"
    name = _apply_pod(kubeconfig, {"command": ["sh", "-c", script], "stdin": True, "stdinOnce": True})
    done = kubectl(kubeconfig, "attach", "-i", name, input="a\nb\n", env=env, timeout=60)
    # stdinOnce: the end of kubectl's stdin closes the container's; the attach lasts until it exits.
    assert done.stdout == "out:a\nout:b\nbye\n"
    assert "err:a\nerr:b\n" in done.stderr


def test_kubectl_attach_follows_live_output(kubeconfig):
    name = _apply_pod(kubeconfig, {"command": ["sh", "-c", 'trap "exit 0" TERM; i=0; while true; do '
                                               'i=$((i+1)); echo tick $i; sleep 0.1; done']})
    proc = subprocess.Popen([KUBECTL, "attach", name], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env={**os.environ, "KUBECONFIG": str(kubeconfig), "HOME": str(kubeconfig.parent)})
    try:
        ticks = []
        deadline = time.time() + 30
        while len(ticks) < 3 and time.time() < deadline:
            ready, _, _ = select.select([proc.stdout], [], [], 1)
            if ready:
                ticks.append(proc.stdout.readline())
        assert len(ticks) == 3 and all(re.fullmatch(r"tick \d+\n", t) for t in ticks), ticks
        first, last = (int(t.split()[1]) for t in (ticks[0], ticks[-1]))
        assert last == first + 2  # consecutive lines of the live stream
    finally:
        proc.terminate()
        proc.wait(20)


@pytest.fixture(scope="module")
def core(kubeconfig):
    cfg = client.Configuration()
    config.load_kube_config(config_file=str(kubeconfig), client_configuration=cfg)
    with client.ApiClient(cfg) as api:
        yield client.CoreV1Api(api)


def test_python_client_exec(core, shell_pod):
    out = stream(core.connect_get_namespaced_pod_exec, shell_pod, "default", command=["sh", "-c", "echo hi"],
                 stderr=True, stdin=False, stdout=True, tty=False)
    assert out == "hi\n"
    ws = stream(core.connect_get_namespaced_pod_exec, shell_pod, "default", command=["sh", "-c", "cat; exit 7"],
                stderr=True, stdin=True, stdout=True, tty=False, _preload_content=False)
    assert ws.subprotocol == "v5.channel.k8s.io"
    ws.write_stdin("to cat\n")
    ws.close_channel(0)  # v5: the end of stdin
    ws.run_forever(timeout=30)
    code = ws.returncode
    assert (ws.read_all(), code) == ("to cat\n", 7)


def test_python_client_exec_over_v4_and_with_a_tty(core, shell_pod):
    ws = stream(core.connect_get_namespaced_pod_exec, shell_pod, "default", command=["sh", "-c", "head -c 3; exit 2"],
                stderr=True, stdin=True, stdout=True, tty=False, _preload_content=False,
                _headers={"sec-websocket-protocol": "v4.channel.k8s.io"})
    assert ws.subprotocol == "v4.channel.k8s.io"
    ws.write_stdin("abcdef")  # v4 cannot close stdin: the command stops reading by itself
    ws.run_forever(timeout=30)
    code = ws.returncode
    assert (ws.read_all(), code) == ("abc", 2)

    ws = stream(core.connect_get_namespaced_pod_exec, shell_pod, "default",
                command=["sh", "-c", "read go; stty size"], stderr=False, stdin=True, stdout=True, tty=True,
                _preload_content=False)
    ws.write_channel(4, json.dumps({"Width": 91, "Height": 33}))
    ws.write_stdin("go\n")
    ws.run_forever(timeout=30)
    code = ws.returncode
    assert "33 91" in ws.read_all() and code == 0


def test_python_client_port_forward(core, web_pod):
    name, port = web_pod
    forward = portforward(core.connect_get_namespaced_pod_portforward, name, "default", ports=str(port))
    sock = forward.socket(port)
    sock.setblocking(True)
    sock.settimeout(20)
    sock.sendall(b"GET / HTTP/1.0\r\nHost: pod\r\n\r\n")
    response = b""
    while chunk := sock.recv(65536):
        response += chunk
    sock.close()
    assert response.startswith(b"HTTP/1.0 200 OK") and b"Directory listing" in response
    assert forward.error(port) is None
