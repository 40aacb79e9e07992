"""Service environment variables, /etc/resolv.conf and /etc/hosts inside real containers.

A real API server, the agent's pod workers and the process runtime with
namespaces (these tests need root, which this machine's test runs have; they
assert it rather than skip). Each test checks that the host's own
/etc/hosts and /etc/resolv.conf are left as they were, and that nothing is
mounted over them in the host's mount namespace.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import replace
from pathlib import Path

import pytest
from node_helpers import FAST_PODS, start_pod_agent, stop_pod_agent

from timoner.client import EVENTS, resource_for
from timoner.node.agent import Agent
from timoner.node.runtime import ContainerID, ContainerSpec, Mount
from timoner.node.runtimes.process import ProcessRuntime

PODS = resource_for("v1", "Pod")
SERVICES = resource_for("v1", "Service")

LOOP = "trap 'exit 0' TERM; while :; do sleep 0.1; done"
HOST_FILES = (Path("/etc/hosts"), Path("/etc/resolv.conf"))


def snapshot(path: Path) -> tuple[bytes, int, int, int]:
    info = os.stat(path)
    return path.read_bytes(), info.st_ino, info.st_mtime_ns, info.st_mode


def host_mount_points() -> set[str]:
    with open("/proc/self/mountinfo") as f:
        return {line.split()[4] for line in f}


@pytest.fixture
def untouched_etc():
    """Fails the test if the host's /etc/hosts or /etc/resolv.conf changed, or got something mounted over it."""
    before = {path: snapshot(path) for path in HOST_FILES}
    yield
    assert {path: snapshot(path) for path in HOST_FILES} == before
    assert not {str(path) for path in HOST_FILES} & host_mount_points()


@pytest.fixture
def host_resolv(tmp_path):
    """The agent's `resolv_conf`: a host resolver file with a search path, which cluster pods append."""
    path = tmp_path / "host-resolv.conf"
    path.write_text("nameserver 10.255.255.53\nsearch corp.example\noptions ndots:2 timeout:1\n")
    return path


@pytest.fixture
async def dns_agent(client, config, tmp_path):
    """`await dns_agent(**pod_config_changes)`: an Agent on a process runtime with namespaces; every pod is
    deleted and every container stopped when the test ends."""
    assert os.geteuid() == 0, "these tests need root (mount namespaces), which this machine's test runs have"
    started: list[tuple[Agent, asyncio.Task[None], ProcessRuntime]] = []

    async def start(**changes) -> Agent:
        runtime = ProcessRuntime(tmp_path / "process", use_namespaces=True)
        agent, task = await start_pod_agent(client, config, runtime, pod_config=replace(FAST_PODS, **changes))
        started.append((agent, task, runtime))
        agent.runtime_impl = runtime  # type: ignore[attr-defined]
        return agent

    yield start
    for agent, task, runtime in started:
        await stop_pod_agent(client, agent, task=task, runtime=runtime)


def make_pod(name, node, *, restart="Always", command=LOOP, **spec):
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"nodeName": node, "restartPolicy": restart, "terminationGracePeriodSeconds": 2,
                     "containers": [{"name": "c", "image": "busybox", "command": ["sh", "-c", command]}], **spec}}


def service(name, *ports):
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"selector": {"app": name}, "ports": list(ports)}}


async def running_pod(client, namespace, name, eventually, *, restarts=0):
    async def running():
        pod = await client.get(PODS, name, namespace=namespace)
        statuses = pod.get("status", {}).get("containerStatuses") or []
        if statuses and "running" in statuses[0]["state"] and statuses[0]["restartCount"] >= restarts:
            return pod
        return None

    return await eventually(running, timeout=20, what=f"pod {name} running (restarts >= {restarts})")


async def sh(agent, pod, script) -> str:
    """Run `sh -c script` in the pod's container; its stdout (the command must succeed)."""
    cid = ContainerID.parse(pod["status"]["containerStatuses"][0]["containerID"])
    session = await agent.runtime_impl.exec(cid, ("sh", "-c", script))
    output = [item async for item in session.output()]
    code = await asyncio.wait_for(session.wait(), 20)
    text = {n: b"".join(d for s, d in output if s == n).decode() for n in (1, 2)}
    assert code == 0, text[2]
    return text[1]


async def environment(agent, pod) -> dict[str, str]:
    """The environment of the container's main process (PID 1 of its PID namespace), as it started."""
    raw = await sh(agent, pod, "tr '\\0' '\\n' < /proc/1/environ")
    return dict(line.split("=", 1) for line in raw.splitlines() if "=" in line)


async def test_containers_see_the_services_that_existed_when_they_started(
        client, config, node_name, namespace, untouched_etc, dns_agent, eventually):
    agent = await dns_agent()
    foo = await client.create(SERVICES, service("foo", {"name": "http", "port": 80, "targetPort": 8080},
                                                {"name": "dns", "port": 53, "protocol": "UDP"}), namespace=namespace)
    await client.create(SERVICES, {**service("headless", {"port": 80}),
                                   "spec": {"clusterIP": "None", "ports": [{"port": 80}]}}, namespace=namespace)
    # As upstream, a Service the agent has not seen yet is not in the environment: wait until it has.
    await eventually(lambda: agent.services.lister.get(namespace, "foo") is not None, what="the agent sees foo")
    await client.create(PODS, make_pod("env", node_name), namespace=namespace)
    pod = await running_pod(client, namespace, "env", eventually)
    env = await environment(agent, pod)
    ip = foo["spec"]["clusterIP"]
    assert {k: v for k, v in env.items() if k.startswith("FOO_")} == {
        "FOO_SERVICE_HOST": ip, "FOO_SERVICE_PORT": "80", "FOO_SERVICE_PORT_HTTP": "80",
        "FOO_SERVICE_PORT_DNS": "53", "FOO_PORT": f"tcp://{ip}:80",
        "FOO_PORT_80_TCP": f"tcp://{ip}:80", "FOO_PORT_80_TCP_PROTO": "tcp", "FOO_PORT_80_TCP_PORT": "80",
        "FOO_PORT_80_TCP_ADDR": ip, "FOO_PORT_53_UDP": f"udp://{ip}:53", "FOO_PORT_53_UDP_PROTO": "udp",
        "FOO_PORT_53_UDP_PORT": "53", "FOO_PORT_53_UDP_ADDR": ip}
    kubernetes = await client.get(SERVICES, "kubernetes", namespace="default")
    assert env["KUBERNETES_SERVICE_HOST"] == kubernetes["spec"]["clusterIP"]
    assert env["KUBERNETES_SERVICE_PORT"] == "443" and env["KUBERNETES_SERVICE_PORT_HTTPS"] == "443"
    assert not any(k.startswith("HEADLESS_") for k in env)

    # A Service made after the container started is not in its environment...
    await client.create(SERVICES, service("bar", {"port": 9000}), namespace=namespace)
    await eventually(lambda: agent.services.lister.get(namespace, "bar") is not None, what="the agent sees bar")
    assert "BAR_SERVICE_HOST" not in await environment(agent, pod)
    # ...but it is in the next run's, whose environment is made when it starts.
    await sh(agent, pod, "kill -TERM 1")
    pod = await running_pod(client, namespace, "env", eventually, restarts=1)
    env = await environment(agent, pod)
    bar = await client.get(SERVICES, "bar", namespace=namespace)
    assert env["BAR_SERVICE_HOST"] == bar["spec"]["clusterIP"] and env["BAR_PORT"] == f"tcp://{env['BAR_SERVICE_HOST']}:9000"


async def test_enable_service_links_false_keeps_only_the_master_service_and_env_wins(
        client, config, node_name, namespace, untouched_etc, dns_agent, eventually):
    agent = await dns_agent()
    await client.create(SERVICES, service("foo", {"port": 80}), namespace=namespace)
    await eventually(lambda: agent.services.lister.get(namespace, "foo") is not None, what="the agent sees foo")
    body = make_pod("nolinks", node_name, enableServiceLinks=False)
    body["spec"]["containers"][0]["env"] = [{"name": "KUBERNETES_SERVICE_PORT", "value": "mine"},
                                            {"name": "API", "value": "$(KUBERNETES_SERVICE_HOST):$(KUBERNETES_PORT)"}]
    await client.create(PODS, body, namespace=namespace)
    pod = await running_pod(client, namespace, "nolinks", eventually)
    env = await environment(agent, pod)
    kubernetes = await client.get(SERVICES, "kubernetes", namespace="default")
    host = kubernetes["spec"]["clusterIP"]
    assert not any(k.startswith("FOO_") for k in env)
    assert env["KUBERNETES_SERVICE_HOST"] == host and env["KUBERNETES_SERVICE_PORT"] == "mine"
    assert env["API"] == f"{host}:tcp://{host}:443"


async def test_resolv_conf_and_hosts_are_the_pods_own(client, config, node_name, namespace, untouched_etc,
                                                      host_resolv, dns_agent, eventually):
    agent = await dns_agent(cluster_dns=("10.96.0.10",), resolv_conf=host_resolv)
    body = make_pod("web-0", node_name, hostname="front", subdomain="webs",
                    hostAliases=[{"ip": "10.1.2.3", "hostnames": ["foo.remote", "bar.remote"]}])
    await client.create(PODS, body, namespace=namespace)
    pod = await running_pod(client, namespace, "web-0", eventually)
    assert await sh(agent, pod, "cat /etc/resolv.conf") == (
        f"search {namespace}.svc.cluster.local svc.cluster.local cluster.local corp.example\n"
        "nameserver 10.96.0.10\noptions ndots:5\n")
    hosts = await sh(agent, pod, "cat /etc/hosts")
    ip = pod["status"]["podIP"]
    assert hosts.startswith("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n")
    assert f"\n{ip}\tfront.webs.{namespace}.svc.cluster.local\tfront\n" in hosts
    assert await sh(agent, pod, "hostname") == "front\n"  # spec.hostname names the container's host too
    assert hosts.endswith("\n# Entries added by HostAliases.\n10.1.2.3\tfoo.remote\tbar.remote\n")
    # The files are the pod's, where kubelet keeps them, and the container may write to them.
    pod_dir = config.root_dir / "pods" / pod["metadata"]["uid"]
    assert (pod_dir / "etc-hosts").read_text() == hosts
    await sh(agent, pod, "echo '10.9.9.9 extra' >> /etc/hosts")
    assert (pod_dir / "etc-hosts").read_text().endswith("10.9.9.9 extra\n")

    await client.delete(PODS, "web-0", namespace=namespace)
    await eventually(lambda: not (pod_dir / "etc-hosts").exists() and not (pod_dir / "resolv.conf").exists(),
                     timeout=20, what="the pod's hosts and resolv.conf files removed with it")


async def test_without_cluster_dns_pods_fall_back_to_the_hosts_resolver_with_a_warning(
        client, config, node_name, namespace, untouched_etc, host_resolv, dns_agent, eventually):
    agent = await dns_agent(resolv_conf=host_resolv)
    await client.create(PODS, make_pod("plain", node_name), namespace=namespace)
    await client.create(PODS, make_pod("hostnet", node_name, hostNetwork=True,
                                       hostAliases=[{"ip": "10.1.2.4", "hostnames": ["baz"]}]), namespace=namespace)
    plain = await running_pod(client, namespace, "plain", eventually)
    assert await sh(agent, plain, "cat /etc/resolv.conf") == (
        "search corp.example\nnameserver 10.255.255.53\noptions ndots:2 timeout:1\n")

    async def missing_cluster_dns():
        events = (await client.list(EVENTS, namespace=namespace))["items"]
        return [e for e in events if e["reason"] == "MissingClusterDNS" and e["involvedObject"]["name"] == "plain"]

    event = (await eventually(missing_cluster_dns, what="a MissingClusterDNS event"))[0]
    assert event["type"] == "Warning" and event["source"]["component"] == "kubelet"
    assert event["message"] == (
        f'pod: "plain_{namespace}({plain["metadata"]["uid"]})". kubelet does not have ClusterDNS IP configured and '
        'cannot create Pod using "ClusterFirst" policy. Falling back to "Default" policy.')

    # A hostNetwork pod: the node's hosts file and its aliases.
    hostnet = await running_pod(client, namespace, "hostnet", eventually)
    node_hosts = await asyncio.to_thread(Path("/etc/hosts").read_text)
    assert await sh(agent, hostnet, "cat /etc/hosts") == (
        "# Kubernetes-managed hosts file (host network).\n" + node_hosts
        + "\n# Entries added by HostAliases.\n10.1.2.4\tbaz\n")


async def test_a_file_binds_over_a_dangling_symlink_without_touching_the_host(tmp_path):
    """/etc/resolv.conf is often a symlink to a resolver's file that may not exist: mount(2) would follow it."""
    assert os.geteuid() == 0
    link, source = tmp_path / "resolv-link", tmp_path / "mine"
    link.symlink_to(tmp_path / "gone" / "stub-resolv.conf")
    source.write_text("nameserver 10.96.0.10\n")
    runtime = ProcessRuntime(tmp_path / "root", use_namespaces=True)
    spec = ContainerSpec(pod_uid="u", pod_namespace="ns", pod_name="p", name="c", image="busybox",
                         command=("sh", "-c", LOOP), mounts=(Mount(str(source), str(link)),))
    started = await runtime.start(spec)
    try:
        session = await runtime.exec(started.id, ("sh", "-c", f"cat {link}; echo more >> {link}"))
        output = [item async for item in session.output()]
        assert await asyncio.wait_for(session.wait(), 20) == 0
        assert b"".join(d for stream, d in output if stream == 1) == b"nameserver 10.96.0.10\n"
        assert source.read_text() == "nameserver 10.96.0.10\nmore\n"
        assert link.is_symlink() and not (tmp_path / "gone").exists()
    finally:
        await runtime.stop(started.id, timeout=0)
        await runtime.close()
