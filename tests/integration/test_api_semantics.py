"""Object, list and watch semantics over HTTP against an in-process server."""

from __future__ import annotations

import json
import threading
import time
import uuid

import pytest

from timoner.testing import http_client


def wait_until(check, timeout=10.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return False


def test_a_generated_name_that_is_taken_is_generated_again(c, ns, monkeypatch):
    from timoner.apiserver import store

    names = iter(["taken", "taken", "fresh"])
    monkeypatch.setattr(store, "_generated", lambda prefix: prefix + next(names))
    path = f"/api/v1/namespaces/{ns}/configmaps"
    assert c.post(path, json={"metadata": {"generateName": "cm-"}}).json()["metadata"]["name"] == "cm-taken"
    # The next generated name collides: the server picks another instead of answering 409 (RetryGenerateName).
    r = c.post(path, json={"metadata": {"generateName": "cm-"}})
    assert r.status_code == 201, r.text
    assert r.json()["metadata"]["name"] == "cm-fresh"
    # An explicit name that is taken is still a conflict.
    r = c.post(path, json={"metadata": {"name": "cm-fresh"}})
    assert r.status_code == 409 and r.json()["reason"] == "AlreadyExists"


def test_system_fields_generation_and_generate_name(c, ns):
    r = c.post(f"/apis/apps/v1/namespaces/{ns}/deployments", json={
        "metadata": {"generateName": "web-"},
        "spec": {"selector": {"matchLabels": {"a": "b"}},
                 "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}})
    assert r.status_code == 201, r.text
    obj = r.json()
    meta = obj["metadata"]
    assert meta["name"].startswith("web-") and len(meta["name"]) == len("web-") + 5
    assert meta["uid"] and meta["creationTimestamp"].endswith("Z")
    assert meta["generation"] == 1 and int(meta["resourceVersion"]) > 0
    assert obj["apiVersion"] == "apps/v1" and obj["kind"] == "Deployment"
    path = f"/apis/apps/v1/namespaces/{ns}/deployments/{meta['name']}"
    # A label change does not bump generation; a spec change does.
    r2 = c.patch(path, json={"metadata": {"labels": {"x": "y"}}},
                 headers={"content-type": "application/merge-patch+json"})
    assert r2.json()["metadata"]["generation"] == 1
    r3 = c.patch(path, json={"spec": {"replicas": 3}}, headers={"content-type": "application/merge-patch+json"})
    assert r3.json()["metadata"]["generation"] == 2
    # Status writes through the main resource are ignored; /status changes only status.
    body = r3.json()
    body["status"] = {"replicas": 7}
    body["spec"]["replicas"] = 4
    r4 = c.put(path, json=body)
    assert "status" not in r4.json() or r4.json()["status"].get("replicas") != 7
    body = r4.json()
    body["status"] = {"replicas": 7, "observedGeneration": 3}
    body["spec"]["replicas"] = 9
    r5 = c.put(path + "/status", json=body)
    assert r5.status_code == 200, r5.text
    assert r5.json()["status"]["replicas"] == 7
    assert int(r5.json()["metadata"]["resourceVersion"]) > int(body["metadata"]["resourceVersion"])
    assert r5.json()["metadata"] == c.get(path).json()["metadata"]
    assert r5.json()["spec"]["replicas"] == 4
    # An unconditional PUT (no resourceVersion) succeeds.
    body = r5.json()
    del body["metadata"]["resourceVersion"]
    body["spec"]["replicas"] = 5
    assert c.put(path, json=body).status_code == 200
    # A no-op update does not write.
    current = c.get(path).json()
    again = c.put(path, json=current).json()
    assert again["metadata"]["resourceVersion"] == current["metadata"]["resourceVersion"]


def test_dry_run_writes_nothing(c, ns):
    r = c.post(f"/api/v1/namespaces/{ns}/configmaps?dryRun=All", json={"metadata": {"name": "dry"}})
    assert r.status_code == 201
    assert c.get(f"/api/v1/namespaces/{ns}/configmaps/dry").status_code == 404
    c.post(f"/api/v1/namespaces/{ns}/configmaps", json={"metadata": {"name": "wet"}, "data": {"a": "1"}})
    before = c.get(f"/api/v1/namespaces/{ns}/configmaps/wet").json()
    r = c.patch(f"/api/v1/namespaces/{ns}/configmaps/wet?dryRun=All", json={"data": {"a": "2"}},
                headers={"content-type": "application/merge-patch+json"})
    assert r.json()["data"]["a"] == "2"
    assert c.request("DELETE", f"/api/v1/namespaces/{ns}/configmaps/wet?dryRun=All").status_code == 200
    assert c.get(f"/api/v1/namespaces/{ns}/configmaps/wet").json() == before
    # `kubectl delete --dry-run=server` puts it in the DeleteOptions body instead of the query.
    r = c.request("DELETE", f"/api/v1/namespaces/{ns}/configmaps/wet", json={"dryRun": ["All"]})
    assert r.status_code == 200
    assert c.get(f"/api/v1/namespaces/{ns}/configmaps/wet").json() == before
    r = c.request("DELETE", f"/api/v1/namespaces/{ns}/configmaps/wet", json={"dryRun": ["Some"]})
    assert r.status_code == 400


def test_list_paging_and_resource_versions(c, ns):
    for i in range(12):
        c.post(f"/api/v1/namespaces/{ns}/configmaps", json={"metadata": {"name": f"p{i:02d}"}}).raise_for_status()
    # Every namespace holds the root CA ConfigMap too (kube-root-ca.crt, first by name).
    expected = ["kube-root-ca.crt"] + [f"p{i:02d}" for i in range(12)]
    first = c.get(f"/api/v1/namespaces/{ns}/configmaps?limit=5").json()
    assert [i["metadata"]["name"] for i in first["items"]] == expected[:5]
    assert first["metadata"]["remainingItemCount"] == 8
    rv = first["metadata"]["resourceVersion"]
    # Writes between pages do not show up in later pages of the same list.
    c.post(f"/api/v1/namespaces/{ns}/configmaps", json={"metadata": {"name": "p05a"}}).raise_for_status()
    c.delete(f"/api/v1/namespaces/{ns}/configmaps/p09")
    names = [i["metadata"]["name"] for i in first["items"]]
    token = first["metadata"]["continue"]
    while token:
        page = c.get(f"/api/v1/namespaces/{ns}/configmaps", params={"limit": 5, "continue": token}).json()
        assert page["metadata"]["resourceVersion"] == rv
        names += [i["metadata"]["name"] for i in page["items"]]
        token = page["metadata"].get("continue")
    assert names == expected
    now = c.get(f"/api/v1/namespaces/{ns}/configmaps").json()
    assert "p05a" in [i["metadata"]["name"] for i in now["items"]]
    exact = c.get(f"/api/v1/namespaces/{ns}/configmaps",
                  params={"resourceVersion": rv, "resourceVersionMatch": "Exact"}).json()
    assert len(exact["items"]) == 13 and exact["metadata"]["resourceVersion"] == rv


def _watch_lines(c, path, params, count, out, timeout=10):
    with c.stream("GET", path, params={**params, "watch": "true", "timeoutSeconds": str(timeout)}) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if line:
                out.append(json.loads(line))
                if len(out) >= count:
                    return


def test_watch_selector_transitions_and_resume(c, ns):
    base = f"/api/v1/namespaces/{ns}/configmaps"
    start = c.get(base).json()["metadata"]["resourceVersion"]
    events: list[dict] = []
    t = threading.Thread(target=_watch_lines, args=(c, base, {"labelSelector": "app=x", "resourceVersion": start},
                                                     4, events))
    t.start()
    c.post(base, json={"metadata": {"name": "a", "labels": {"app": "y"}}})
    c.patch(f"{base}/a", json={"metadata": {"labels": {"app": "x"}}}, headers={"content-type": "application/merge-patch+json"})
    c.patch(f"{base}/a", json={"data": {"k": "v"}}, headers={"content-type": "application/merge-patch+json"})
    c.patch(f"{base}/a", json={"metadata": {"labels": {"app": "z"}}}, headers={"content-type": "application/merge-patch+json"})
    c.post(base, json={"metadata": {"name": "b", "labels": {"app": "x"}}})
    t.join(15)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "a"), ("MODIFIED", "a"), ("DELETED", "a"), ("ADDED", "b")]
    rvs = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
    assert rvs == sorted(rvs)
    # Resume from the middle: only what came after.
    later: list[dict] = []
    _watch_lines(c, base, {"resourceVersion": events[1]["object"]["metadata"]["resourceVersion"]}, 2, later)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in later] == [("MODIFIED", "a"), ("ADDED", "b")]


def test_watch_too_old_resource_version_is_in_stream_410(server):
    # Its own server: the event window is shrunk to make history expire.
    server.call(_shrink(server.server.cache))
    c = http_client(server)
    base = "/api/v1/namespaces/default/configmaps"
    for i in range(5):
        c.post(base, json={"metadata": {"name": f"o{i}"}})
    events: list[dict] = []
    _watch_lines(c, base, {"resourceVersion": "1"}, 1, events)
    c.close()
    assert events[0]["type"] == "ERROR"
    status = events[0]["object"]
    assert status["code"] == 410 and status["reason"] == "Expired"
    assert "too old resource version" in status["message"]


async def _shrink(cache):
    import collections

    cache._events = collections.deque(cache._events, maxlen=3)
    while len(cache._events) > 2:
        cache._oldest = cache._events.popleft().revision


def test_watch_bookmarks_only_when_asked(c, ns):
    base = f"/api/v1/namespaces/{ns}/configmaps"
    events: list[dict] = []
    # The initial events: the namespace's one object (its kube-root-ca.crt), then the bookmark that ends them.
    _watch_lines(c, base, {"sendInitialEvents": "true", "allowWatchBookmarks": "true",
                           "resourceVersionMatch": "NotOlderThan", "resourceVersion": ""}, 2, events)
    assert [(e["type"], e["object"]["metadata"].get("name")) for e in events[:1]] == [("ADDED", "kube-root-ca.crt")]
    assert events[1]["type"] == "BOOKMARK"
    assert events[1]["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}
    plain: list[dict] = []
    c.post(base, json={"metadata": {"name": "bm"}})
    _watch_lines(c, base, {}, 1, plain, timeout=2)
    assert all(e["type"] != "BOOKMARK" for e in plain)


def _owned(owner, block=False):
    ref = {"apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": owner["metadata"]["name"],
           "uid": owner["metadata"]["uid"]}
    if block:
        ref["blockOwnerDeletion"] = True
    return [ref]


@pytest.mark.parametrize("policy", ["Background", "Foreground", "Orphan"])
def test_garbage_collection(c, ns, policy):
    base = f"/api/v1/namespaces/{ns}/configmaps"
    owner = c.post(base, json={"metadata": {"name": "owner"}}).json()
    for i in range(3):
        c.post(base, json={"metadata": {"name": f"dep{i}", "ownerReferences": _owned(owner, block=True)}})
    r = c.request("DELETE", f"{base}/owner", json={"propagationPolicy": policy})
    assert r.status_code in (200, 202)
    assert wait_until(lambda: c.get(f"{base}/owner").status_code == 404)
    if policy == "Orphan":
        assert wait_until(lambda: all(
            "ownerReferences" not in c.get(f"{base}/dep{i}").json()["metadata"] for i in range(3)))
    else:
        assert wait_until(lambda: all(c.get(f"{base}/dep{i}").status_code == 404 for i in range(3)))


def test_finalizers_hold_deletion(c, ns):
    base = f"/api/v1/namespaces/{ns}/configmaps"
    c.post(base, json={"metadata": {"name": "held", "finalizers": ["example.com/hold"]}})
    r = c.delete(f"{base}/held")
    assert r.status_code == 200  # as upstream: 202 only for orphanDependents=false
    assert r.json()["metadata"]["deletionTimestamp"]
    cascading = c.request("DELETE", f"{base}/held", json={"orphanDependents": False})
    assert cascading.status_code == 202
    held = c.get(f"{base}/held").json()
    assert held["metadata"]["deletionTimestamp"]
    add = c.patch(f"{base}/held", json={"metadata": {"finalizers": ["example.com/hold", "x.io/more"]}},
                  headers={"content-type": "application/merge-patch+json"})
    assert add.status_code == 422
    done = c.patch(f"{base}/held", json={"metadata": {"finalizers": None}},
                   headers={"content-type": "application/merge-patch+json"})
    assert done.status_code == 200
    assert c.get(f"{base}/held").status_code == 404


def test_terminating_namespace_refuses_new_content(c):
    name = f"term-{uuid.uuid4().hex[:6]}"
    c.post("/api/v1/namespaces", json={"metadata": {"name": name}})
    c.post(f"/api/v1/namespaces/{name}/configmaps",
           json={"metadata": {"name": "stuck", "finalizers": ["example.com/hold"]}})
    c.delete(f"/api/v1/namespaces/{name}")
    assert c.get(f"/api/v1/namespaces/{name}").json()["status"]["phase"] == "Terminating"
    r = c.post(f"/api/v1/namespaces/{name}/configmaps", json={"metadata": {"name": "new"}})
    assert r.status_code == 403 and r.json()["reason"] == "Forbidden"
    c.patch(f"/api/v1/namespaces/{name}/configmaps/stuck", json={"metadata": {"finalizers": None}},
            headers={"content-type": "application/merge-patch+json"})
    assert wait_until(lambda: c.get(f"/api/v1/namespaces/{name}").status_code == 404)


def test_service_cluster_ip_allocation(c, ns):
    base = f"/api/v1/namespaces/{ns}/services"
    a = c.post(base, json={"metadata": {"name": "a"}, "spec": {"ports": [{"port": 80}]}}).json()
    b = c.post(base, json={"metadata": {"name": "b"}, "spec": {"type": "NodePort", "ports": [{"port": 80}]}}).json()
    assert a["spec"]["clusterIP"] != b["spec"]["clusterIP"]
    assert a["spec"]["clusterIPs"] == [a["spec"]["clusterIP"]]
    assert 30000 <= b["spec"]["ports"][0]["nodePort"] <= 32767
    assert a["spec"]["ports"][0]["targetPort"] == 80
    clash = c.post(base, json={"metadata": {"name": "c"}, "spec": {"clusterIP": a["spec"]["clusterIP"],
                                                                   "ports": [{"port": 80}]}})
    assert clash.status_code == 422
    headless = c.post(base, json={"metadata": {"name": "h"}, "spec": {"clusterIP": "None", "ports": [{"port": 80}]}})
    assert headless.json()["spec"]["clusterIP"] == "None"
    c.delete(f"{base}/a")
    again = c.post(base, json={"metadata": {"name": "a2"}, "spec": {"clusterIP": a["spec"]["clusterIP"],
                                                                    "ports": [{"port": 80}]}})
    assert again.status_code == 201, again.text


def test_discovery_and_openapi(c):
    agg = c.get("/apis", headers={"Accept": "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"})
    assert agg.headers["content-type"].startswith("application/json;g=apidiscovery.k8s.io;v=v2")
    groups = {g["metadata"]["name"] for g in agg.json()["items"]}
    assert {"apps", "batch", "rbac.authorization.k8s.io", "autoscaling"} <= groups
    legacy = c.get("/api/v1").json()
    pods = next(r for r in legacy["resources"] if r["name"] == "pods")
    assert pods["singularName"] == "pod" and pods["namespaced"] is True
    assert any(r["name"] == "deployments/scale" for r in c.get("/apis/apps/v1").json()["resources"])
    root = c.get("/openapi/v3").json()
    url = root["paths"]["apis/apps/v1"]["serverRelativeURL"]
    assert "hash=" in url
    doc = c.get(url).json()
    assert any("patch" in ops for ops in doc["paths"].values())
    assert c.get("/version").json()["gitVersion"].startswith("v1.")


def test_delete_collection_with_selector(c, ns):
    base = f"/api/v1/namespaces/{ns}/configmaps"
    for i in range(4):
        c.post(base, json={"metadata": {"name": f"dc{i}", "labels": {"drop": "yes" if i % 2 else "no"}}})
    r = c.request("DELETE", base, params={"labelSelector": "drop=yes"})
    assert r.status_code == 200
    assert sorted(i["metadata"]["name"] for i in r.json()["items"]) == ["dc1", "dc3"]
    left = sorted(i["metadata"]["name"] for i in c.get(base).json()["items"])
    assert left == ["dc0", "dc2", "kube-root-ca.crt"]


def test_expired_continue_token_is_410(server):
    # Its own server: storage history is compacted.
    with http_client(server) as c:
        base = "/api/v1/namespaces/default/configmaps"
        for i in range(6):
            c.post(base, json={"metadata": {"name": f"e{i}"}})
        first = c.get(base, params={"limit": 2}).json()
        c.post(base, json={"metadata": {"name": "later"}})
        backend = server.server.backend
        server.call(backend.compact(server.call(backend.current_revision())))
        r = c.get(base, params={"limit": 2, "continue": first["metadata"]["continue"]})
        assert r.status_code == 410
        assert r.json()["reason"] == "Expired"


def test_versions_over_one_storage(c, ns):
    hpa2 = c.post(f"/apis/autoscaling/v2/namespaces/{ns}/horizontalpodautoscalers", json={
        "metadata": {"name": "h"},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                 "minReplicas": 1, "maxReplicas": 5,
                 "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {
                     "type": "Utilization", "averageUtilization": 60}}}]}})
    assert hpa2.status_code == 201, hpa2.text
    v1 = c.get(f"/apis/autoscaling/v1/namespaces/{ns}/horizontalpodautoscalers/h").json()
    assert v1["apiVersion"] == "autoscaling/v1"
    assert v1["spec"]["targetCPUUtilizationPercentage"] == 60
    ev = c.post(f"/api/v1/namespaces/{ns}/events", json={
        "metadata": {"name": "e1"}, "involvedObject": {"kind": "Pod", "name": "p", "namespace": ns},
        "reason": "Tested", "message": "hello", "type": "Normal"})
    assert ev.status_code == 201, ev.text
    new = c.get(f"/apis/events.k8s.io/v1/namespaces/{ns}/events/e1").json()
    assert new["apiVersion"] == "events.k8s.io/v1"
    assert new["note"] == "hello" and new["regarding"]["name"] == "p"
    by_object = c.get(f"/api/v1/namespaces/{ns}/events",
                      params={"fieldSelector": "involvedObject.name=p,involvedObject.kind=Pod"}).json()
    assert [e["metadata"]["name"] for e in by_object["items"]] == ["e1"]


def test_job_gets_generated_selector(c, ns):
    r = c.post(f"/apis/batch/v1/namespaces/{ns}/jobs", json={
        "metadata": {"name": "j"},
        "spec": {"template": {"spec": {"restartPolicy": "Never",
                                       "containers": [{"name": "c", "image": "busybox"}]}}}})
    assert r.status_code == 201, r.text
    job = r.json()
    uid = job["metadata"]["uid"]
    assert job["spec"]["selector"]["matchLabels"] == {"batch.kubernetes.io/controller-uid": uid}
    assert job["spec"]["template"]["metadata"]["labels"]["batch.kubernetes.io/job-name"] == "j"
    assert job["spec"]["backoffLimit"] == 6


def test_many_watchers_share_one_storage_watch(server):
    """A thousand watchers cost one storage read per change: the cache holds the only storage watch."""
    backend = server.server.backend
    calls = []
    original = backend.watch

    def counting_watch(prefix, *, from_revision):
        calls.append(prefix)
        return original(prefix, from_revision=from_revision)

    backend.watch = counting_watch
    with http_client(server) as c:
        base = "/api/v1/namespaces/default/configmaps"
        rv = c.get(base).json()["metadata"]["resourceVersion"]
        outs = [[] for _ in range(20)]
        threads = [threading.Thread(target=_watch_lines, args=(c, base, {"resourceVersion": rv}, 5, out))
                   for out in outs]
        for t in threads:
            t.start()
        for i in range(5):
            c.post(base, json={"metadata": {"name": f"fan{i}"}})
        for t in threads:
            t.join(15)
    assert all(len(out) == 5 for out in outs)
    assert calls == []  # no watcher opened a storage watch of its own


def test_concurrent_unconditional_updates_all_succeed(c, ns):
    """PUTs without a resourceVersion never fail with 409: a lost race is retried with the body as sent."""
    path = f"/api/v1/namespaces/{ns}/configmaps/contended"
    c.post(f"/api/v1/namespaces/{ns}/configmaps", json={"metadata": {"name": "contended"}})
    statuses: list[int] = []

    def writer(n: int) -> None:
        for i in range(10):
            r = c.put(path, json={"metadata": {"name": "contended"}, "data": {"w": f"{n}-{i}"}})
            statuses.append(r.status_code)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert statuses == [200] * 80


def test_watch_one_object_by_legacy_path(c, ns):
    base = f"/api/v1/namespaces/{ns}/configmaps"
    rv = c.post(base, json={"metadata": {"name": "one"}}).json()["metadata"]["resourceVersion"]
    c.post(base, json={"metadata": {"name": "one-more"}})
    c.patch(f"{base}/one", json={"data": {"x": "1"}}, headers={"content-type": "application/merge-patch+json"})
    events: list[dict] = []
    _watch_lines(c, f"/api/v1/watch/namespaces/{ns}/configmaps/one", {"resourceVersion": rv}, 1, events)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("MODIFIED", "one")]


def test_watch_timeout_seconds_and_initial_events_at_rv0(c, ns):
    base = f"/api/v1/namespaces/{ns}/configmaps"
    c.post(base, json={"metadata": {"name": "init"}})
    events: list[dict] = []
    started = time.monotonic()
    with c.stream("GET", base, params={"watch": "1", "resourceVersion": "0", "timeoutSeconds": "1"}) as r:
        for line in r.iter_lines():
            if line:
                events.append(json.loads(line))
    elapsed = time.monotonic() - started
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "init"), ("ADDED", "kube-root-ca.crt")]
    assert elapsed < 10  # the server ended the stream itself, after about one second
    assert elapsed >= 0.9


def test_a_watcher_cut_off_behind_queued_events_still_ends_its_stream(srv, c, ns):
    """The cache ends a watcher that cannot keep up (or that it reloaded under) by queueing an end marker;
    when the handler finds the marker while draining events already queued, the stream still ends."""
    base = f"/api/v1/namespaces/{ns}/configmaps"
    rv = c.get(base).json()["metadata"]["resourceVersion"]
    lines: list[dict] = []
    outcome: list[object] = []
    # No timeoutSeconds: only the server's cut-off ends this stream (the client's read timeout would fail it).
    watch_request = c.build_request("GET", base, params={"watch": "true", "resourceVersion": rv})

    def watch():
        try:
            response = c.send(watch_request, stream=True)
            for line in response.iter_lines():
                if line:
                    lines.append(json.loads(line))
            outcome.append("ended")
        except Exception as exc:
            outcome.append(exc)

    thread = threading.Thread(target=watch)
    thread.start()
    c.post(base, json={"metadata": {"name": "a"}})
    assert wait_until(lambda: lines)  # the handler waits on an empty queue now
    cache = srv.server.cache
    prefix = f"/registry/core/configmaps/{ns}/"

    async def overflow():
        (watcher,) = [w for group in cache._watchers.values() for w in group if w.prefix == prefix]
        watcher.max_pending = 2
        cached = cache.get(f"{prefix}a")
        for _ in range(3):  # two queued, and the third finds the queue full: the end marker
            watcher.offer(("MODIFIED", cached))

    srv.call(overflow())
    thread.join(30)
    assert outcome == ["ended"]
    assert [e["type"] for e in lines] == ["ADDED", "MODIFIED", "MODIFIED"]
