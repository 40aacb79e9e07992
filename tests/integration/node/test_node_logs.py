"""`pods/log` end to end: the API server relays to a real node agent on the process runtime.

Containers are real processes driven by marker files under tmp_path, so
each test decides when a line is written. Back-off is fast so a container
restarts within the test.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import ssl

import httpx
import pytest
from node_helpers import start_pod_agent, stop_runtime_agent

from timoner.client import resource_for
from timoner.node.runtimes.process import ProcessRuntime

PODS = resource_for("v1", "Pod")
STAMP = re.compile(rb"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z ")


@pytest.fixture
async def runtime(tmp_path, config, client):
    """A process runtime under an agent with fast back-off; its containers are stopped at the end."""
    rt = ProcessRuntime(tmp_path / "rt")
    _, task = await start_pod_agent(client, config, rt)
    yield rt
    await stop_runtime_agent(task, rt)


@pytest.fixture
async def http(api):
    pki = api.server.pki
    context = ssl.create_default_context(cafile=str(pki.ca_cert))
    async with httpx.AsyncClient(base_url=api.url, verify=context, timeout=30,
                                 headers={"Authorization": f"Bearer {pki.token()}"}) as c:
        yield c


def pod(name: str, node: str, script: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox",
                                                         "command": ["sh", "-c", script]}]}}


def status_of(obj: dict) -> dict:
    return ((obj.get("status") or {}).get("containerStatuses") or [{}])[0]


async def test_previous_and_options_after_restarts(api, client, http, runtime, node_name, namespace, tmp_path,
                                                   eventually):
    # Runs 0 and 1 fail; run 2 stays, and writes one more line when told to.
    d = tmp_path / "m"
    d.mkdir()
    script = (f"n=$(cat {d}/n 2>/dev/null || echo 0); echo $((n+1)) > {d}/n; echo run $n; echo err $n >&2; "
              f"[ $n -lt 2 ] && exit 1; while [ ! -e {d}/go ]; do sleep 0.02; done; echo after; sleep 1000")
    created = await client.create(PODS, pod("r", node_name, script), namespace=namespace)
    base = f"/api/v1/namespaces/{namespace}/pods/r/log"

    async def on_third_run():
        status = status_of(await client.get(PODS, "r", namespace=namespace))
        return status.get("restartCount") == 2 and "running" in (status.get("state") or {}) and status

    status = await eventually(on_third_run, timeout=30, what="the third run")

    async def log(**params) -> bytes:
        r = await http.get(base, params=params)
        assert r.status_code == 200, r.text
        return r.content

    await eventually(lambda: log(), what="run 2's output")  # the shim writes asynchronously
    await eventually(lambda: _equals(log(), b"run 2\nerr 2\n"), what="run 2's whole output")
    assert await log(previous="true") == b"run 1\nerr 1\n"
    assert await log(tailLines="1") == b"err 2\n"
    assert await log(tailLines="0") == b""
    assert await log(limitBytes="3") == b"run"
    assert await log(limitBytes="3", previous="true") == b"run"
    stamped = (await log(timestamps="true")).splitlines()
    assert [STAMP.sub(b"", line) for line in stamped] == [b"run 2", b"err 2"]
    assert all(STAMP.match(line) for line in stamped)
    future = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert await log(sinceTime=future) == b""
    assert await log(sinceTime="2000-01-01T00:00:00Z") == b"run 2\nerr 2\n"
    assert await log(sinceSeconds="3600") == b"run 2\nerr 2\n"

    # Only the current run and the one before it are kept, as kubelet's container GC keeps them.
    logs_dir = runtime.root_dir / "pods" / created["metadata"]["uid"] / "c"
    assert sorted(p.name for p in logs_dir.glob("*.log")) == ["1.log", "2.log"]
    runs = sorted((s for s in await runtime.recover() if s.spec.pod_uid == created["metadata"]["uid"]),
                  key=lambda s: s.spec.attempt)
    assert [s.spec.attempt for s in runs] == [1, 2]
    assert [str(s.id) for s in runs] == [status["lastState"]["terminated"]["containerID"], status["containerID"]]

    # Following: what is there first, then the new line as it is written.
    async with http.stream("GET", base, params={"follow": "true", "tailLines": "1"}) as r:
        assert r.status_code == 200
        chunks = r.aiter_bytes()
        assert await asyncio.wait_for(anext(chunks), 20) == b"err 2\n"
        (d / "go").touch()
        assert await asyncio.wait_for(anext(chunks), 20) == b"after\n"


async def _equals(value, expected) -> bool:
    return await value == expected


async def test_previous_without_a_restart_and_errors(api, client, http, runtime, node_name, namespace, tmp_path,
                                                     eventually):
    await client.create(PODS, pod("once", node_name, "echo hi; sleep 1000"), namespace=namespace)
    base = f"/api/v1/namespaces/{namespace}/pods/once/log"

    async def running():
        return "running" in (status_of(await client.get(PODS, "once", namespace=namespace)).get("state") or {})

    await eventually(running, timeout=30, what="the pod running")
    r = await http.get(base, params={"previous": "true"})
    assert r.status_code == 400
    assert r.json()["message"] == 'previous terminated container "c" in pod "once" not found'

    r = await http.get(base, params={"tailLines": "-1", "limitBytes": "0"})
    assert r.status_code == 422
    body = r.json()
    assert body["reason"] == "Invalid" and body["details"]["kind"] == "PodLogOptions"
    assert [(c["field"], c["message"]) for c in body["details"]["causes"]] == [
        ("tailLines", "Invalid value: -1: must be greater than or equal to 0"),
        ("limitBytes", "Invalid value: 0: must be greater than 0")]
    r = await http.get(base, params={"sinceSeconds": "10", "sinceTime": "2024-01-01T00:00:00Z"})
    assert r.status_code == 422
    assert r.json()["details"]["causes"][0]["message"] == (
        "Forbidden: at most one of `sinceTime` or `sinceSeconds` may be specified")
    r = await http.get(base, params={"tailLines": "many"})
    assert r.status_code == 400 and r.json()["message"] == 'strconv.ParseInt: parsing "many": invalid syntax'
    # Invalid options are refused before the pod is looked up, as upstream.
    r = await http.get(f"/api/v1/namespaces/{namespace}/pods/nothere/log", params={"limitBytes": "-1"})
    assert r.status_code == 422
    r = await http.get(f"/api/v1/namespaces/{namespace}/pods/nothere/log")
    assert r.status_code == 404
