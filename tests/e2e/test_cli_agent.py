"""`timoner agent` as a user runs it: a Node appears, Ready, and the agent stops on SIGTERM."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import uuid

import pytest

from timoner.testing import ServerThread, kubectl

pytestmark = pytest.mark.slow


def test_agent_command_registers_a_ready_node(tmp_path):
    with ServerThread(tmp_path / "data") as srv:
        proc = subprocess.Popen(
            [sys.executable, "-m", "timoner.cli.main", "agent", "--kubeconfig", str(srv.kubeconfig),
             "--node-name", "cli-node", "--runtime", "hollow", "--root-dir", str(tmp_path / "agent"), "--port", "0",
             "--max-pods", "250"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            deadline = time.time() + 30
            ready = False
            while time.time() < deadline and not ready:
                out = kubectl(srv.kubeconfig, "get", "node", "cli-node", "-o", "json", check=False)
                if out.returncode == 0:
                    conditions = json.loads(out.stdout)["status"].get("conditions", [])
                    ready = any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)
                if not ready:
                    time.sleep(0.2)
            assert ready, proc.stdout.read() if proc.poll() is not None else "agent still running, node not Ready"
            status = json.loads(out.stdout)["status"]
            assert status["capacity"]["pods"] == "250" and status["allocatable"]["pods"] == "250"  # --max-pods
            lease = kubectl(srv.kubeconfig, "get", "lease", "-n", "kube-node-lease", "cli-node", "-o", "json")
            assert json.loads(lease.stdout)["spec"]["holderIdentity"] == "cli-node"
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(20)
        assert proc.returncode == 0


def test_scheduler_command_binds_a_pod_to_the_agents_node(tmp_path):
    with ServerThread(tmp_path / "data") as srv:
        common = [sys.executable, "-m", "timoner.cli.main"]
        agent = subprocess.Popen(common + ["agent", "--kubeconfig", str(srv.kubeconfig), "--node-name", "n1",
                                           "--runtime", "hollow", "--root-dir", str(tmp_path / "agent"), "--port", "0"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        scheduler = subprocess.Popen(common + ["scheduler", "--kubeconfig", str(srv.kubeconfig)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            kubectl(srv.kubeconfig, "run", "p", "--image=busybox", "--restart=Never", "--", "sleep", "1")
            deadline = time.time() + 30
            node = ""
            while time.time() < deadline and not node:
                node = kubectl(srv.kubeconfig, "get", "pod", "p", "-o", "jsonpath={.spec.nodeName}").stdout
                if not node:
                    time.sleep(0.2)
            assert node == "n1"
            reasons: set[str] = set()
            while time.time() < deadline and "Scheduled" not in reasons:
                events = kubectl(srv.kubeconfig, "get", "events", "--field-selector", "involvedObject.name=p",
                                 "-o", "json").stdout
                reasons = {e["reason"] for e in json.loads(events)["items"]}
                if "Scheduled" not in reasons:
                    time.sleep(0.2)
            assert "Scheduled" in reasons
        finally:
            for proc in (scheduler, agent):
                proc.send_signal(signal.SIGTERM)
                proc.wait(20)
        assert scheduler.returncode == 0 and agent.returncode == 0


def test_agent_runs_a_pod_as_a_process_and_deletes_it(tmp_path):
    """scheduler + agent (process runtime): a pod runs as a real process, exits, and is deleted cleanly."""
    marker = f"cli-agent-{uuid.uuid4().hex[:8]}"  # names this test's container among other tests' processes
    with ServerThread(tmp_path / "data") as srv:
        common = [sys.executable, "-m", "timoner.cli.main"]
        # No controller manager gives the node a pod CIDR here: pods share the host's network.
        agent = subprocess.Popen(common + ["agent", "--kubeconfig", str(srv.kubeconfig), "--node-name", "n1",
                                           "--runtime", "process", "--root-dir", str(tmp_path / "agent"), "--port", "0",
                                           "--pod-network", "host"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        scheduler = subprocess.Popen(common + ["scheduler", "--kubeconfig", str(srv.kubeconfig)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            kubectl(srv.kubeconfig, "run", "once", "--image=busybox", "--restart=Never", "--command", "--",
                    "sh", "-c", "echo hello from $(hostname); exit 0")
            kubectl(srv.kubeconfig, "run", "long", "--image=busybox", "--restart=Never", "--command", "--",
                    "sh", "-c", f"trap 'exit 0' TERM; while true; do sleep 0.1; done # {marker}")
            deadline = time.time() + 60
            phases = {}
            while time.time() < deadline and phases != {"once": "Succeeded", "long": "Running"}:
                pods = json.loads(kubectl(srv.kubeconfig, "get", "pods", "-o", "json").stdout)["items"]
                phases = {p["metadata"]["name"]: p["status"].get("phase") for p in pods}
                if phases != {"once": "Succeeded", "long": "Running"}:
                    time.sleep(0.2)
            assert phases == {"once": "Succeeded", "long": "Running"}
            once = json.loads(kubectl(srv.kubeconfig, "get", "pod", "once", "-o", "json").stdout)
            terminated = once["status"]["containerStatuses"][0]["state"]["terminated"]
            assert terminated["exitCode"] == 0 and terminated["reason"] == "Completed"
            assert once["status"]["containerStatuses"][0]["containerID"].startswith("process://")
            fallback = [c for c in once["status"]["conditions"] if c["type"] == "timoner.dev/HostNetworkFallback"]
            assert [(c["status"], c["reason"]) for c in fallback] == [("True", "NoPodNetwork")]
            assert fallback[0]["message"].startswith("--pod-network host: pods share the node's network")
            # kubectl logs and exec go through the API server to the agent's node server.
            logs = kubectl(srv.kubeconfig, "logs", "once").stdout
            assert logs.startswith("hello from ")
            execd = kubectl(srv.kubeconfig, "exec", "long", "--", "sh", "-c", "hostname; echo err >&2; exit 4",
                            check=False)
            assert execd.returncode == 4, execd.stderr
            assert execd.stdout == "long\n"
            assert "err" in execd.stderr
            # A graceful delete: the agent stops the process and completes the deletion.
            kubectl(srv.kubeconfig, "delete", "pod", "long", "--wait=true", "--timeout=60s")
            assert kubectl(srv.kubeconfig, "get", "pod", "long", check=False).returncode != 0
            leftover = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True)
            assert leftover.stdout.strip() == "", subprocess.run(["ps", "-o", "pid,ppid,stat,args", "-p", leftover.stdout.strip().replace("\n", ",")], capture_output=True, text=True).stdout
        finally:
            # Containers outlive their agent by design: have the agent stop them before it goes.
            kubectl(srv.kubeconfig, "delete", "pods", "--all", "--wait=true", "--timeout=30s", check=False)
            for proc in (scheduler, agent):
                proc.send_signal(signal.SIGTERM)
                proc.wait(20)
