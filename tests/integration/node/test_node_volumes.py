"""Pod volumes end to end: a real API server, the agent's pod workers, and the process runtime running real processes.

This machine runs the tests as root, so containers get their own mount
namespaces and the volumes are bound at their mountPaths (the cases assert
root rather than skip without it); one test runs the runtime without
namespaces to check the documented fallback. Every mountPath used here is
one the host lacks, and each test checks that the host still lacks it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import uuid
from pathlib import Path

import pytest
from node_helpers import start_pod_agent, stop_pod_agent

from timoner.api.errors import NotFound
from timoner.client import EVENTS, resource_for
from timoner.node.agent import Agent
from timoner.node.pods import PodWorkerConfig
from timoner.node.runtime import ContainerID, ContainerSpec, Mount, State
from timoner.node.runtimes.process import ContainerStartError, ProcessRuntime

PODS = resource_for("v1", "Pod")
CONFIGMAPS = resource_for("v1", "ConfigMap")
SECRETS = resource_for("v1", "Secret")

FAST = PodWorkerConfig(backoff_base=0.2, backoff_cap=1.0, retry_interval=0.2, volume_sync_interval=0.3)
LOOP = "trap 'exit 0' TERM; while :; do sleep 0.1; done"


def host_mounts_under(directory: Path) -> list[str]:
    prefix = os.path.realpath(directory) + "/"
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if line.split()[4].startswith(prefix)]


@pytest.fixture
def tag():
    """A name no host path has: the mountPaths of a test live under `/etc/<tag>`, `/<tag>` and so on."""
    return f"tmn-vol-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def untouched_host(tag):
    """Fails the test if anything named after `tag` appeared on the host's filesystem."""
    places = [Path("/etc") / tag, Path("/") / tag, Path("/var") / tag, Path("/opt") / tag]
    assert not any(p.exists() for p in places)
    yield
    assert [str(p) for p in places if os.path.lexists(p)] == []


@pytest.fixture
async def process_agent(client, config, tmp_path):
    """`await process_agent(use_namespaces=True)`: an Agent on a real process runtime; every pod is deleted,
    every container stopped and every volume mount gone when the test ends."""
    assert os.geteuid() == 0, "these tests need root (mount namespaces), which this machine's test runs have"
    started: list[tuple[Agent, asyncio.Task[None], ProcessRuntime]] = []

    async def start(*, use_namespaces: bool = True) -> Agent:
        runtime = ProcessRuntime(tmp_path / "process", use_namespaces=use_namespaces)
        agent, task = await start_pod_agent(client, config, runtime, pod_config=FAST)
        started.append((agent, task, runtime))
        agent.runtime_impl = runtime  # type: ignore[attr-defined]
        return agent

    yield start
    for agent, task, runtime in started:
        await stop_pod_agent(client, agent, task=task, runtime=runtime)
    assert host_mounts_under(tmp_path) == []


def make_pod(name, node, *, volumes, mounts, command=LOOP, labels=None, working_dir=None, restart="Always"):
    container = {"name": "c", "image": "busybox", "command": ["sh", "-c", command], "volumeMounts": mounts,
                 "resources": {"limits": {"memory": "64Mi", "cpu": "500m"}}}
    if working_dir:
        container["workingDir"] = working_dir
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": labels or {}, "annotations": {"team": 'a "quoted" one'}},
            "spec": {"nodeName": node, "restartPolicy": restart, "terminationGracePeriodSeconds": 2,
                     "containers": [container], "volumes": volumes}}


def configmap(name, data, binary=None):
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}
    if binary:
        body["binaryData"] = {k: base64.b64encode(v).decode() for k, v in binary.items()}
    return body


def secret(name, data):
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name},
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}


async def running_pod(client, namespace, name, eventually):
    async def running():
        pod = await client.get(PODS, name, namespace=namespace)
        statuses = pod.get("status", {}).get("containerStatuses") or []
        return pod if statuses and "running" in statuses[0]["state"] else None

    return await eventually(running, timeout=20, what=f"pod {name} running")


async def sh(agent, pod, script) -> tuple[int, str, str]:
    """Run `sh -c script` in the pod's container through the runtime's exec; (exit code, stdout, stderr)."""
    cid = ContainerID.parse(pod["status"]["containerStatuses"][0]["containerID"])
    session = await agent.runtime_impl.exec(cid, ("sh", "-c", script))
    output = [item async for item in session.output()]
    code = await asyncio.wait_for(session.wait(), 20)
    text = {n: b"".join(d for s, d in output if s == n).decode() for n in (1, 2)}
    return code, text[1], text[2]


async def test_every_kind_of_volume_shows_up_inside_the_container(client, config, node_name, namespace, tmp_path, tag,
                                                                 untouched_host, process_agent, eventually):
    agent = await process_agent()
    await client.create(CONFIGMAPS, configmap("app", {"app.conf": "port=80\n", "mode": "fast"},
                                              binary={"blob": b"\x00\x01"}), namespace=namespace)
    await client.create(SECRETS, secret("creds", {"user": "admin", "pass": "s3cr3t"}), namespace=namespace)
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "from-host").write_text("host file\n")
    created = tmp_path / "made-by-kubelet"
    volumes = [
        {"name": "cfg", "configMap": {"name": "app"}},
        {"name": "cfg-items", "configMap": {"name": "app", "defaultMode": 0o640,
                                            "items": [{"key": "app.conf", "path": "conf/app.conf"},
                                                      {"key": "mode", "path": "mode.txt", "mode": 0o600}]}},
        {"name": "sec", "secret": {"secretName": "creds", "defaultMode": 0o400}},
        {"name": "info", "downwardAPI": {"items": [
            {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
            {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
            {"path": "annotations", "fieldRef": {"fieldPath": "metadata.annotations"}},
            {"path": "mem", "resourceFieldRef": {"containerName": "c", "resource": "limits.memory",
                                                 "divisor": "1Mi"}}]}},
        {"name": "all", "projected": {"sources": [
            {"configMap": {"name": "app", "items": [{"key": "mode", "path": "cm-mode"}]}},
            {"secret": {"name": "creds", "items": [{"key": "user", "path": "secret-user"}]}},
            {"downwardAPI": {"items": [{"path": "ns", "fieldRef": {"fieldPath": "metadata.namespace"}}]}},
            {"configMap": {"name": "absent", "optional": True}}]}},
        {"name": "scratch", "emptyDir": {}},
        {"name": "mem", "emptyDir": {"medium": "Memory", "sizeLimit": "8Mi"}},
        {"name": "host", "hostPath": {"path": str(shared), "type": "Directory"}},
        {"name": "host-new", "hostPath": {"path": str(created), "type": "DirectoryOrCreate"}},
    ]
    mounts = [
        {"name": "cfg", "mountPath": f"/etc/{tag}/cfg"},
        {"name": "cfg-items", "mountPath": f"/{tag}/items"},
        {"name": "cfg", "mountPath": f"/etc/{tag}/single.conf", "subPath": "app.conf"},
        {"name": "sec", "mountPath": f"/var/{tag}/secret"},
        {"name": "info", "mountPath": f"/etc/{tag}/podinfo"},
        {"name": "all", "mountPath": f"/opt/{tag}/all"},
        {"name": "scratch", "mountPath": f"/{tag}/scratch"},
        {"name": "scratch", "mountPath": f"/{tag}/scratch-sub", "subPath": "nested/dir"},
        {"name": "mem", "mountPath": f"/{tag}/mem"},
        {"name": "host", "mountPath": f"/{tag}/host-ro", "readOnly": True},
        {"name": "host", "mountPath": f"/{tag}/host-rw"},
        {"name": "host-new", "mountPath": f"/{tag}/host-new"},
    ]
    pod = make_pod("vols", node_name, volumes=volumes, mounts=mounts, labels={"app": "web", "tier": "front"},
                   working_dir=f"/{tag}/scratch")
    await client.create(PODS, pod, namespace=namespace)
    pod = await running_pod(client, namespace, "vols", eventually)

    async def out(script):
        code, stdout, stderr = await sh(agent, pod, script)
        assert code == 0, stderr
        return stdout

    assert await out(f"cat /etc/{tag}/cfg/app.conf /etc/{tag}/cfg/mode; echo; od -An -tx1 /etc/{tag}/cfg/blob") == \
        "port=80\nfast\n 00 01\n"
    # configMap layout as upstream: per-key symlinks into ..data.
    assert await out(f"readlink /etc/{tag}/cfg/mode; ls -A /etc/{tag}/cfg | grep -c '^\\.\\.'") == "..data/mode\n2\n"
    assert await out(f"cat /{tag}/items/conf/app.conf /{tag}/items/mode.txt; ls /{tag}/items") == \
        "port=80\nfastconf\nmode.txt\n"
    assert await out(f"stat -L -c %a /{tag}/items/conf/app.conf /{tag}/items/mode.txt") == "640\n600\n"
    assert await out(f"cat /etc/{tag}/single.conf") == "port=80\n"
    assert await out(f"cat /var/{tag}/secret/user; echo; stat -L -c %a /var/{tag}/secret/pass") == "admin\n400\n"
    assert await out(f"stat -f -c %T /var/{tag}/secret /{tag}/mem") == "tmpfs\ntmpfs\n"
    assert await out(f"df -k /{tag}/mem | tail -1 | awk '{{print $2}}'") == "8192\n"
    assert await out(f"cat /etc/{tag}/podinfo/name; echo; cat /etc/{tag}/podinfo/labels; echo; "
                     f"cat /etc/{tag}/podinfo/annotations; echo; cat /etc/{tag}/podinfo/mem") == \
        'vols\napp="web"\ntier="front"\nteam="a \\"quoted\\" one"\n64'
    assert await out(f"cd /opt/{tag}/all && ls && cat cm-mode secret-user ns") == \
        f"cm-mode\nns\nsecret-user\nfastadmin{namespace}"
    # emptyDir: read-write, shared with its subPath mount, and the working directory.
    assert await out(f"pwd; echo hi > /{tag}/scratch/note; echo deep > /{tag}/scratch-sub/x; "
                     f"cat /{tag}/scratch/nested/dir/x") == f"/{tag}/scratch\ndeep\n"
    assert await out(f"cat /{tag}/host-ro/from-host; echo new > /{tag}/host-rw/from-pod; ls /{tag}/host-new") == \
        "host file\n"
    assert (shared / "from-pod").read_text() == "new\n"
    assert created.is_dir()

    # Read-only mounts refuse writes: readOnly hostPath, and configMap/secret/downwardAPI/projected always.
    for target in (f"/{tag}/host-ro/x", f"/etc/{tag}/cfg/x", f"/var/{tag}/secret/x", f"/etc/{tag}/podinfo/x",
                   f"/opt/{tag}/all/x", f"/etc/{tag}/single.conf"):
        code, _, stderr = await sh(agent, pod, f"echo x > {target}")
        assert code != 0 and "Read-only file system" in stderr, (target, stderr)
    assert not (shared / "x").exists()

    # The volumes are where the kubelet keeps them, on this node.
    volumes_dir = config.root_dir / "pods" / pod["metadata"]["uid"] / "volumes"
    assert sorted(os.listdir(volumes_dir)) == ["kubernetes.io~configmap", "kubernetes.io~downward-api",
                                               "kubernetes.io~empty-dir", "kubernetes.io~projected",
                                               "kubernetes.io~secret"]
    assert (volumes_dir / "kubernetes.io~empty-dir" / "scratch" / "note").read_text() == "hi\n"


async def test_configmap_secret_and_downward_api_updates_reach_the_running_container(
        client, config, node_name, namespace, tag, untouched_host, process_agent, eventually):
    agent = await process_agent()
    await client.create(CONFIGMAPS, configmap("live", {"color": "red", "gone": "soon"}), namespace=namespace)
    await client.create(SECRETS, secret("pw", {"pw": "one"}), namespace=namespace)
    volumes = [{"name": "cfg", "configMap": {"name": "live"}}, {"name": "sec", "secret": {"secretName": "pw"}},
               {"name": "info", "downwardAPI": {"items": [{"path": "labels",
                                                          "fieldRef": {"fieldPath": "metadata.labels"}}]}}]
    mounts = [{"name": "cfg", "mountPath": f"/etc/{tag}/cfg"}, {"name": "sec", "mountPath": f"/etc/{tag}/sec"},
              {"name": "info", "mountPath": f"/etc/{tag}/info"},
              {"name": "cfg", "mountPath": f"/etc/{tag}/color", "subPath": "color"}]
    await client.create(PODS, make_pod("live", node_name, volumes=volumes, mounts=mounts, labels={"v": "1"}),
                        namespace=namespace)
    pod = await running_pod(client, namespace, "live", eventually)
    assert (await sh(agent, pod, f"cat /etc/{tag}/cfg/color /etc/{tag}/sec/pw /etc/{tag}/info/labels"))[1] == \
        'redonev="1"'

    current = await client.get(CONFIGMAPS, "live", namespace=namespace)
    current["data"] = {"color": "blue", "added": "yes"}
    await client.update(CONFIGMAPS, current, namespace=namespace)
    await client.patch(SECRETS, "pw", {"data": {"pw": base64.b64encode(b"two").decode()}}, namespace=namespace)
    await client.patch(PODS, "live", {"metadata": {"labels": {"v": "2"}}}, namespace=namespace)

    async def updated():
        code, stdout, _ = await sh(agent, pod, f"cat /etc/{tag}/cfg/color /etc/{tag}/cfg/added /etc/{tag}/sec/pw "
                                               f"/etc/{tag}/info/labels; ls /etc/{tag}/cfg")
        return stdout if code == 0 and stdout == 'blueyestwov="2"added\ncolor\n' else None

    await eventually(updated, timeout=15, what="the new contents inside the container")
    # As upstream, a subPath mount is a snapshot: it does not follow updates.
    assert (await sh(agent, pod, f"cat /etc/{tag}/color"))[1] == "red"


async def test_a_missing_configmap_keeps_the_pod_creating_with_failed_mount_events(
        client, config, node_name, namespace, tag, untouched_host, process_agent, eventually):
    agent = await process_agent()
    volumes = [{"name": "cfg", "configMap": {"name": "later"}},
               {"name": "maybe", "secret": {"secretName": "never", "optional": True}},
               {"name": "host", "hostPath": {"path": f"/{tag}-missing", "type": "Directory"}}]
    mounts = [{"name": "cfg", "mountPath": f"/etc/{tag}/cfg"}, {"name": "maybe", "mountPath": f"/etc/{tag}/maybe"}]
    await client.create(PODS, make_pod("waits", node_name, volumes=volumes, mounts=mounts), namespace=namespace)

    async def failed_mounts():
        events = (await client.list(EVENTS, namespace=namespace))["items"]
        found = {e["message"]: e for e in events
                 if e["involvedObject"]["name"] == "waits" and e["reason"] == "FailedMount"}
        return found if len(found) == 2 and all(e["count"] >= 2 for e in found.values()) else None

    events = await eventually(failed_mounts, timeout=15, what="FailedMount events, repeated")
    assert set(events) == {'MountVolume.SetUp failed for volume "cfg" : configmap "later" not found',
                           f'MountVolume.SetUp failed for volume "host" : hostPath type check failed: '
                           f'/{tag}-missing is not a directory'}
    event = next(iter(events.values()))
    assert (event["type"], event["source"]["component"], event["source"]["host"]) == ("Warning", "kubelet", node_name)
    pod = await client.get(PODS, "waits", namespace=namespace)
    assert pod["status"]["phase"] == "Pending"
    assert pod["status"]["containerStatuses"][0]["state"] == {"waiting": {"reason": "ContainerCreating"}}
    assert await agent.runtime_impl.recover() == []  # nothing was started

    # Once every volume can be set up, the pod starts; the optional secret is an empty volume.
    await client.create(CONFIGMAPS, configmap("later", {"k": "v"}), namespace=namespace)
    current = await client.get(PODS, "waits", namespace=namespace)
    assert current["spec"]["volumes"][2]["hostPath"]["path"] == f"/{tag}-missing"
    os.mkdir(f"/{tag}-missing")
    try:
        pod = await running_pod(client, namespace, "waits", eventually)
        assert (await sh(agent, pod, f"cat /etc/{tag}/cfg/k; ls -A /etc/{tag}/maybe | grep -v '^\\.\\.'"))[1] == "v"
    finally:
        os.rmdir(f"/{tag}-missing")


async def test_volumes_are_unmounted_and_removed_when_the_pod_is_deleted(
        client, config, node_name, namespace, tmp_path, tag, untouched_host, process_agent, eventually):
    await process_agent()
    await client.create(SECRETS, secret("s", {"k": "v"}), namespace=namespace)
    volumes = [{"name": "mem", "emptyDir": {"medium": "Memory"}}, {"name": "sec", "secret": {"secretName": "s"}},
               {"name": "disk", "emptyDir": {}}]
    mounts = [{"name": v["name"], "mountPath": f"/{tag}/{v['name']}"} for v in volumes]
    await client.create(PODS, make_pod("gone", node_name, volumes=volumes, mounts=mounts), namespace=namespace)
    pod = await running_pod(client, namespace, "gone", eventually)
    pod_dir = config.root_dir / "pods" / pod["metadata"]["uid"]
    # Memory-backed: the Memory emptyDir, the secret and (as upstream) the projected service-account token volume.
    token = next(v["name"] for v in pod["spec"]["volumes"] if v["name"].startswith("kube-api-access-"))
    assert sorted(Path(p).name for p in host_mounts_under(pod_dir)) == sorted(["mem", "sec", token])

    await client.delete(PODS, "gone", namespace=namespace)

    async def deleted():
        try:
            await client.get(PODS, "gone", namespace=namespace)
        except NotFound:
            return True
        return False

    await eventually(deleted, timeout=20, what="the pod deleted")
    await eventually(lambda: not pod_dir.exists(), what="the pod's volume directory removed")
    assert host_mounts_under(tmp_path) == []


async def test_a_finished_pod_has_its_volumes_torn_down(client, config, node_name, namespace, tag, untouched_host,
                                                       process_agent, eventually):
    await process_agent()
    volumes = [{"name": "mem", "emptyDir": {"medium": "Memory"}}]
    mounts = [{"name": "mem", "mountPath": f"/{tag}/mem"}]
    await client.create(PODS, make_pod("job", node_name, volumes=volumes, mounts=mounts, restart="Never",
                                       command=f"echo done > /{tag}/mem/x"), namespace=namespace)

    async def succeeded():
        pod = await client.get(PODS, "job", namespace=namespace)
        return pod if pod["status"].get("phase") == "Succeeded" else None

    pod = await eventually(succeeded, timeout=20, what="the pod Succeeded")
    volumes_dir = config.root_dir / "pods" / pod["metadata"]["uid"] / "volumes"
    await eventually(lambda: not volumes_dir.exists(), what="the finished pod's volumes removed")
    assert host_mounts_under(config.root_dir) == []


async def test_without_namespaces_the_volumes_host_paths_are_in_the_environment(
        client, config, node_name, namespace, tag, untouched_host, process_agent, eventually):
    agent = await process_agent(use_namespaces=False)
    await client.create(CONFIGMAPS, configmap("plain", {"k": "v"}), namespace=namespace)
    volumes = [{"name": "cfg", "configMap": {"name": "plain"}}]
    mounts = [{"name": "cfg", "mountPath": f"/etc/{tag}/cfg"}]
    await client.create(PODS, make_pod("plain", node_name, volumes=volumes, mounts=mounts), namespace=namespace)
    pod = await running_pod(client, namespace, "plain", eventually)
    variable = "TIMONER_MOUNT_ETC_" + tag.upper().replace("-", "_") + "_CFG"
    code, stdout, _ = await sh(agent, pod, f'cat "${variable}/k"; test -e /etc/{tag}/cfg || echo absent')
    assert (code, stdout) == (0, "vabsent\n")


# -- the runtime alone ----------------------------------------------------------------------------------


async def test_runtime_mounts_nest_keep_the_host_untouched_and_survive_recovery(tmp_path, tag, untouched_host):
    source, inner = tmp_path / "outer", tmp_path / "inner"
    source.mkdir()
    inner.mkdir()
    (inner / "file").write_text("inner\n")
    runtime = ProcessRuntime(tmp_path / "root", use_namespaces=True)
    mounts = (Mount(str(inner), f"/{tag}/data/sub", read_only=True),  # deeper first: the runtime sorts them
              Mount(str(source), f"/{tag}/data"),
              Mount(str(inner / "file"), f"/etc/{tag}/one-file", sub_path="file"))
    spec = ContainerSpec(pod_uid="u", pod_namespace="ns", pod_name="p", name="c", image="busybox",
                         command=("sh", "-c", LOOP), mounts=mounts)
    started = await runtime.start(spec)
    try:
        session = await runtime.exec(started.id, ("sh", "-c", f"cat /{tag}/data/sub/file /etc/{tag}/one-file; "
                                                              f"touch /{tag}/data/sub/x || echo ro; ls /"))
        output = [item async for item in session.output()]
        assert await asyncio.wait_for(session.wait(), 20) == 0
        lines = b"".join(d for stream, d in output if stream == 1).decode().splitlines()
        assert lines[:3] == ["inner", "inner", "ro"]
        assert tag in lines and "etc" in lines and "proc" in lines  # a root of its own, listing the host's too
        assert os.listdir(source) == []  # the mount point `sub` was made in the container's namespace only
        await runtime.close()
        again = ProcessRuntime(tmp_path / "root", use_namespaces=True)
        recovered = {s.id: s for s in await again.recover()}
        assert recovered[started.id].spec.mounts == mounts and recovered[started.id].state is State.RUNNING
        stopped = await asyncio.wait_for(again.stop(started.id, timeout=2), 20)
        assert stopped.state is State.TERMINATED
        await again.close()
    finally:
        with contextlib.suppress(Exception):
            await runtime.stop(started.id, timeout=0)


async def test_a_mount_that_cannot_be_made_fails_the_start(tmp_path, tag, untouched_host):
    runtime = ProcessRuntime(tmp_path / "root", use_namespaces=True)
    (tmp_path / "file").write_text("x")
    spec = ContainerSpec(pod_uid="u", pod_namespace="ns", pod_name="p", name="c", image="busybox",
                         command=("true",), mounts=(Mount(str(tmp_path / "file"), f"/etc/{tag}/f"),
                                                    Mount(str(tmp_path), f"/etc/{tag}/f/d")))
    with pytest.raises(ContainerStartError, match=f"/etc/{tag}/f is not a directory"):
        await runtime.start(spec)
    directory_on_file = ContainerSpec(pod_uid="u", pod_namespace="ns", pod_name="p", name="c", image="busybox",
                                      command=("true",), mounts=(Mount(str(tmp_path), str(tmp_path / "file")),))
    with pytest.raises(ContainerStartError, match=f"mount {tmp_path} at {tmp_path}/file: Not a directory"):
        await runtime.start(directory_on_file)
    missing = ContainerSpec(pod_uid="u", pod_namespace="ns", pod_name="p", name="c", image="busybox",
                            command=("true",), mounts=(Mount(str(tmp_path / "nope"), f"/{tag}/x"),))
    with pytest.raises(ContainerStartError, match=f"volume source {tmp_path}/nope: No such file or directory"):
        await runtime.start(missing)
    await runtime.close()
