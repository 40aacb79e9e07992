"""Pod workers end to end: a real in-process API server, the agent on the hollow runtime, pods bound by nodeName."""

from __future__ import annotations

import asyncio
import base64

from timoner.api.errors import NotFound
from timoner.client import resource_for
from timoner.node.runtime import ContainerSpec, ContainerState, State
from timoner.node.runtimes.hollow import EXIT_AFTER, EXIT_CODE, IGNORE_SIGTERM, START_ERROR, HollowRuntime
from timoner.testing import kubectl

PODS = resource_for("v1", "Pod")
CONFIGMAPS = resource_for("v1", "ConfigMap")
SECRETS = resource_for("v1", "Secret")


def make_pod(name, node, *, containers=None, init=None, annotations=None, restart="Always", **spec):
    body = {"nodeName": node, "restartPolicy": restart,
            "containers": containers or [{"name": "c", "image": "busybox"}], **spec}
    if init:
        body["initContainers"] = init
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "annotations": annotations or {}}, "spec": body}


async def get_pod(client, namespace, name):
    try:
        return await client.get(PODS, name, namespace=namespace)
    except NotFound:
        return None


def cstatus(pod, name="c", *, init=False):
    key = "initContainerStatuses" if init else "containerStatuses"
    for status in (pod or {}).get("status", {}).get(key) or ():
        if status["name"] == name:
            return status
    return None


def conditions(pod):
    return {c["type"]: c for c in pod["status"].get("conditions") or ()}


async def specs_of(runtime, pod):
    uid = pod["metadata"]["uid"]
    return [s for s in await runtime.recover() if s.spec.pod_uid == uid]


class RemovalsSeen(HollowRuntime):
    """A hollow runtime that keeps, for each pod the agent had it remove, that pod's containers as they were."""

    def __init__(self) -> None:
        super().__init__()
        self.removed: dict[str, list[ContainerState]] = {}

    async def remove_pod(self, pod_uid: str) -> None:
        states = [s for s in await self.recover() if s.spec.pod_uid == pod_uid]
        await super().remove_pod(pod_uid)
        self.removed[pod_uid] = states


async def test_pod_runs_and_kubectl_shows_it_running(api, client, config, node_name, namespace, run_agent,
                                                   eventually):
    await run_agent(config, HollowRuntime())
    await client.create(PODS, make_pod("web", node_name), namespace=namespace)

    async def running():
        pod = await get_pod(client, namespace, "web")
        return pod if pod["status"].get("phase") == "Running" and cstatus(pod) and cstatus(pod)["ready"] else None

    pod = await eventually(running, what="pod Running and ready")
    conds = conditions(pod)
    for kind in ("PodScheduled", "Initialized", "ContainersReady", "Ready"):
        assert conds[kind]["status"] == "True", conds
        assert conds[kind]["lastTransitionTime"]
    status = cstatus(pod)
    assert status["containerID"].startswith("hollow://")
    assert status["state"]["running"]["startedAt"]
    assert status["restartCount"] == 0 and status["started"] is True and status["imageID"] == ""
    assert pod["status"]["hostIP"] == "127.0.0.1" and pod["status"]["podIP"] == "127.0.0.1"
    assert pod["status"]["podIPs"] == [{"ip": "127.0.0.1"}] and pod["status"]["startTime"]
    assert pod["status"]["qosClass"] == "BestEffort"
    out = await asyncio.to_thread(kubectl, api.kubeconfig, "get", "pods", "-n", namespace, "--no-headers")
    fields = out.stdout.split()
    assert fields[:4] == ["web", "1/1", "Running", "0"], out.stdout


async def test_completed_container_with_never_succeeds(api, client, config, node_name, namespace, run_agent,
                                                      eventually):
    await run_agent(config, HollowRuntime())
    await client.create(PODS, make_pod("job", node_name, restart="Never", annotations={EXIT_AFTER: "100ms"}),
                        namespace=namespace)

    async def succeeded():
        pod = await get_pod(client, namespace, "job")
        return pod if pod["status"].get("phase") == "Succeeded" else None

    pod = await eventually(succeeded, what="pod Succeeded")
    terminated = cstatus(pod)["state"]["terminated"]
    assert terminated["exitCode"] == 0 and terminated["reason"] == "Completed"
    assert terminated["startedAt"] and terminated["finishedAt"]
    conds = conditions(pod)
    assert conds["Ready"]["status"] == "False" and conds["Ready"]["reason"] == "PodCompleted"
    out = await asyncio.to_thread(kubectl, api.kubeconfig, "get", "pods", "-n", namespace, "--no-headers")
    assert out.stdout.split()[:3] == ["job", "0/1", "Completed"], out.stdout


async def test_crashing_container_backs_off(client, config, node_name, namespace, run_agent, eventually):
    runtime = HollowRuntime()
    await run_agent(config, runtime)
    pod = await client.create(PODS, make_pod("crash", node_name, annotations={EXIT_AFTER: "20ms", EXIT_CODE: "1"}),
                              namespace=namespace)
    uid = pod["metadata"]["uid"]
    seen: dict[str, dict] = {}

    async def backing_off():
        pod = await get_pod(client, namespace, "crash")
        status = cstatus(pod)
        waiting = (status or {}).get("state", {}).get("waiting") or {}
        if waiting.get("reason") == "CrashLoopBackOff" and status["restartCount"] >= 2:
            seen["pod"] = pod
            return status
        return None

    status = await eventually(backing_off, what="CrashLoopBackOff after restarts")
    assert status["state"]["waiting"]["message"].endswith(
        f"restarting failed container=c pod=crash_{namespace}({uid})")
    assert status["state"]["waiting"]["message"].startswith("back-off ")
    assert status["lastState"]["terminated"]["exitCode"] == 1
    assert status["lastState"]["terminated"]["reason"] == "Error"
    assert seen["pod"]["status"]["phase"] == "Running"
    attempts = sorted(s.spec.attempt for s in await specs_of(runtime, pod))
    assert attempts == list(range(len(attempts))) and len(attempts) >= 3


async def test_init_containers_run_in_order(client, config, node_name, namespace, run_agent, eventually):
    runtime = HollowRuntime()
    await run_agent(config, runtime)
    init = [{"name": "one", "image": "busybox"}, {"name": "two", "image": "busybox"}]
    # Every container of the pod exits after 50 ms: the init containers complete, then the app one does too.
    pod = await client.create(PODS, make_pod("inits", node_name, init=init, restart="Never",
                                             annotations={EXIT_AFTER: "50ms"}), namespace=namespace)

    async def succeeded():
        p = await get_pod(client, namespace, "inits")
        return p if p["status"].get("phase") == "Succeeded" else None

    done = await eventually(succeeded, what="pod with init containers Succeeded")
    runs = sorted(await specs_of(runtime, pod), key=lambda s: s.started_at)
    assert [s.spec.name for s in runs] == ["one", "two", "c"]
    # Each starts only after the one before it exited.
    assert runs[0].finished_at <= runs[1].started_at and runs[1].finished_at <= runs[2].started_at
    for name in ("one", "two"):
        assert cstatus(done, name, init=True)["state"]["terminated"]["reason"] == "Completed"
    assert conditions(done)["Initialized"]["status"] == "True"


async def test_failing_init_container_with_never_fails_the_pod(client, config, node_name, namespace, run_agent,
                                                               eventually):
    runtime = HollowRuntime()
    await run_agent(config, runtime)
    pod = await client.create(PODS, make_pod("badinit", node_name, init=[{"name": "setup", "image": "busybox"}],
                                             restart="Never", annotations={EXIT_AFTER: "20ms", EXIT_CODE: "3"}),
                              namespace=namespace)

    async def failed():
        p = await get_pod(client, namespace, "badinit")
        return p if p["status"].get("phase") == "Failed" else None

    done = await eventually(failed, what="pod Failed")
    assert cstatus(done, "setup", init=True)["state"]["terminated"]["exitCode"] == 3
    assert cstatus(done)["state"]["waiting"]["reason"] == "PodInitializing"
    assert [s.spec.name for s in await specs_of(runtime, pod)] == ["setup"]  # the app container never ran


async def test_env_from_configmap_secret_and_field_refs(client, config, node_name, namespace, run_agent, eventually):
    runtime = HollowRuntime()
    await run_agent(config, runtime)
    await client.create(CONFIGMAPS, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"},
                                     "data": {"COLOR": "blue", "size": "L"}}, namespace=namespace)
    await client.create(SECRETS, {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "sec"},
                                  "data": {"token": base64.b64encode(b"s3cret").decode()}}, namespace=namespace)
    container = {
        "name": "c", "image": "busybox", "workingDir": "/work",
        "command": ["echo", "$(GREETING)", "$$(GREETING)", "$(UNKNOWN)"],
        "args": ["--pod=$(POD_NAME)"],
        "envFrom": [{"configMapRef": {"name": "cfg"}, "prefix": "CM_"}],
        "env": [
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {"name": "HOST_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
            {"name": "COLOR", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "COLOR"}}},
            {"name": "MISSING", "valueFrom": {"configMapKeyRef": {"name": "nope", "key": "k", "optional": True}}},
            {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "token"}}},
            {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
            {"name": "GREETING", "value": "hi $(POD_NAME) in $(CM_COLOR)"},
        ],
        "resources": {"limits": {"memory": "64Mi"}},
    }
    body = make_pod("envy", node_name, containers=[container])
    body["metadata"]["labels"] = {"app": "shop"}
    pod = await client.create(PODS, body, namespace=namespace)

    async def started():
        return await specs_of(runtime, pod)

    spec = (await eventually(started, what="container started"))[0].spec
    assert spec.env["POD_NAME"] == "envy" and spec.env["NODE"] == node_name and spec.env["APP"] == "shop"
    assert spec.env["HOST_IP"] == "127.0.0.1" and spec.env["COLOR"] == "blue" and spec.env["CM_size"] == "L"
    assert spec.env["TOKEN"] == "s3cret" and spec.env["MEM"] == "64" and "MISSING" not in spec.env
    assert spec.env["GREETING"] == "hi envy in blue"
    assert spec.command == ("echo", "hi envy in blue", "$(GREETING)", "$(UNKNOWN)")
    assert spec.args == ("--pod=envy",) and spec.working_dir == "/work"
    assert list(spec.env)[:2] == ["CM_COLOR", "CM_size"]  # envFrom first, then env in order


async def test_missing_configmap_is_a_config_error_until_it_exists(client, config, node_name, namespace, run_agent,
                                                                   eventually):
    runtime = HollowRuntime()
    await run_agent(config, runtime)
    container = {"name": "c", "image": "busybox",
                 "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "later", "key": "k"}}}]}
    await client.create(PODS, make_pod("cfgerr", node_name, containers=[container]), namespace=namespace)

    async def waiting_reason():
        waiting = (cstatus(await get_pod(client, namespace, "cfgerr")) or {}).get("state", {}).get("waiting") or {}
        return waiting if waiting.get("reason") == "CreateContainerConfigError" else None

    waiting = await eventually(waiting_reason, what="CreateContainerConfigError")
    assert waiting["message"] == 'configmap "later" not found'
    await client.create(CONFIGMAPS, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "later"},
                                     "data": {"other": "1"}}, namespace=namespace)

    async def key_missing():
        waiting = (cstatus(await get_pod(client, namespace, "cfgerr")) or {}).get("state", {}).get("waiting") or {}
        return waiting.get("message") == f"couldn't find key k in ConfigMap {namespace}/later"

    await eventually(key_missing, what="missing key message")
    await client.patch(CONFIGMAPS, "later", {"data": {"k": "v"}}, namespace=namespace)

    async def running():
        pod = await get_pod(client, namespace, "cfgerr")
        return pod["status"].get("phase") == "Running"

    await eventually(running, what="pod Running once the key exists")


async def test_runtime_start_error_is_shown_as_waiting(client, config, node_name, namespace, run_agent, eventually):
    await run_agent(config, HollowRuntime())
    await client.create(PODS, make_pod("nostart", node_name, annotations={START_ERROR: "image not found"}),
                        namespace=namespace)

    async def waiting():
        w = (cstatus(await get_pod(client, namespace, "nostart")) or {}).get("state", {}).get("waiting") or {}
        return w if w.get("reason") == "CreateContainerError" else None

    assert (await eventually(waiting, what="CreateContainerError"))["message"] == "image not found"
    assert (await get_pod(client, namespace, "nostart"))["status"]["phase"] == "Pending"


async def test_active_deadline_fails_the_pod(client, config, node_name, namespace, run_agent, eventually):
    runtime = HollowRuntime()
    await run_agent(config, runtime)
    pod = await client.create(PODS, make_pod("deadline", node_name, activeDeadlineSeconds=1), namespace=namespace)

    async def failed():
        p = await get_pod(client, namespace, "deadline")
        return p if p["status"].get("phase") == "Failed" else None

    done = await eventually(failed, what="DeadlineExceeded")
    assert done["status"]["reason"] == "DeadlineExceeded"
    assert done["status"]["message"] == "Pod was active on the node longer than the specified deadline"
    assert all(s.state is State.TERMINATED for s in await specs_of(runtime, pod))


async def test_kubectl_delete_stops_containers_and_removes_the_pod(api, client, config, node_name, namespace,
                                                                  run_agent, eventually):
    runtime = RemovalsSeen()
    await run_agent(config, runtime)
    pod = await client.create(PODS, make_pod("doomed", node_name, annotations={IGNORE_SIGTERM: "true"},
                                             terminationGracePeriodSeconds=3), namespace=namespace)

    async def running():
        return (await get_pod(client, namespace, "doomed"))["status"].get("phase") == "Running"

    await eventually(running, what="pod Running")
    # kubectl waits for the pod to be gone, so returning at all means the agent completed the delete.
    await asyncio.to_thread(kubectl, api.kubeconfig, "delete", "pod", "doomed", "-n", namespace, "--timeout=30s")
    assert await get_pod(client, namespace, "doomed") is None
    # Then the runtime forgets the pod, whose containers were stopped by then.
    states = await eventually(lambda: runtime.removed.get(pod["metadata"]["uid"]), what="the pod removed")
    assert all(s.state is State.TERMINATED for s in states)
    assert {s.exit_code for s in states} == {137}  # ignored SIGTERM, killed when the grace period ended
    assert await specs_of(runtime, pod) == []


async def test_force_deleted_pod_has_its_containers_stopped(client, config, node_name, namespace, run_agent,
                                                            eventually):
    runtime = RemovalsSeen()
    await run_agent(config, runtime)
    pod = await client.create(PODS, make_pod("forced", node_name), namespace=namespace)

    async def started():
        states = await specs_of(runtime, pod)
        return states and states[0].state is State.RUNNING

    await eventually(started, what="container running")
    await client.delete(PODS, "forced", namespace=namespace, grace_period_seconds=0)
    states = await eventually(lambda: runtime.removed.get(pod["metadata"]["uid"]),
                              what="containers stopped and the pod removed")
    assert all(s.state is State.TERMINATED for s in states)
    assert await specs_of(runtime, pod) == []


async def test_agent_restart_adopts_running_containers(client, config, node_name, namespace, run_agent,
                                                       stop_agent, eventually):
    runtime = RemovalsSeen()
    agent = await run_agent(config, runtime)
    crashing = {EXIT_AFTER: "30ms", EXIT_CODE: "1"}
    steady = await client.create(PODS, make_pod("steady", node_name), namespace=namespace)
    flaky = await client.create(PODS, make_pod("flaky", node_name, annotations=crashing), namespace=namespace)

    async def settled():
        s = cstatus(await get_pod(client, namespace, "steady"))
        f = cstatus(await get_pod(client, namespace, "flaky"))
        return s and s["ready"] and f and f["restartCount"] >= 1

    await eventually(settled, what="steady running, flaky restarted")
    await stop_agent(agent)
    before = await specs_of(runtime, steady)
    flaky_before = cstatus(await get_pod(client, namespace, "flaky"))["restartCount"]
    # A pod whose containers the runtime still has, but which was deleted while the agent was down.
    orphan = await client.create(PODS, make_pod("orphan", node_name), namespace=namespace)
    await runtime.start(ContainerSpec(
        pod_uid=orphan["metadata"]["uid"], pod_namespace=namespace, pod_name="orphan", name="c", image="busybox"))
    await client.delete(PODS, "orphan", namespace=namespace, grace_period_seconds=0)

    await run_agent(config, runtime)
    after_pod = await get_pod(client, namespace, "steady")
    assert cstatus(after_pod)["restartCount"] == 0

    async def flaky_restarted_again():
        return cstatus(await get_pod(client, namespace, "flaky"))["restartCount"] > flaky_before

    await eventually(flaky_restarted_again, what="flaky keeps counting restarts after the agent restart")
    after = await specs_of(runtime, steady)
    assert [s.id for s in after] == [s.id for s in before] and after[0].state is State.RUNNING
    assert cstatus(await get_pod(client, namespace, "steady"))["restartCount"] == 0
    flaky_attempts = sorted(s.spec.attempt for s in await specs_of(runtime, flaky))
    assert flaky_attempts == list(range(len(flaky_attempts)))  # counting went on, no attempt was run twice
    # The orphan's containers were stopped, then the runtime forgot them, as the new agent recovered.
    orphans = runtime.removed.get(orphan["metadata"]["uid"])
    assert orphans and all(s.state is State.TERMINATED for s in orphans)
    assert await specs_of(runtime, orphan) == []
