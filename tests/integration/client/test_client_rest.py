"""The REST client against a real in-process server: verbs, errors, paging and watch."""

from __future__ import annotations

import contextlib

import pytest

from timoner.api import errors
from timoner.api.registry import BUILTIN
from timoner.client import Resource, WatchEvent, resource_for

CONFIGMAPS = resource_for("v1", "ConfigMap")
DEPLOYMENTS = resource_for("apps/v1", "Deployment")


def _deployment(name, **spec):
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "c", "image": "nginx"}]}}, **spec}}


def test_resource_paths_and_registry():
    assert DEPLOYMENTS == Resource("apps", "v1", "deployments", True)
    assert DEPLOYMENTS.path(namespace="a", name="w", subresource="scale") == \
        "/apis/apps/v1/namespaces/a/deployments/w/scale"
    assert DEPLOYMENTS.path() == "/apis/apps/v1/deployments"
    nodes = resource_for("v1", "Node")
    assert nodes.path(namespace="ignored", name="n1") == "/api/v1/nodes/n1"
    assert resource_for("events.k8s.io/v1", "Event").group == "events.k8s.io"
    lease = next(i for i in BUILTIN if i.kind == "Lease")
    assert Resource.of(lease) == Resource("coordination.k8s.io", "v1", "leases", True)
    with pytest.raises(KeyError):
        resource_for("example.com/v1", "Widget")


async def test_crud_round_trip(client, ns):
    created = await client.create(DEPLOYMENTS, _deployment("web"), namespace=ns)
    assert created["metadata"]["namespace"] == ns and created["spec"]["replicas"] == 1
    got = await client.get(DEPLOYMENTS, "web", namespace=ns)
    assert got["metadata"]["uid"] == created["metadata"]["uid"]

    got["spec"]["replicas"] = 3
    updated = await client.update(DEPLOYMENTS, got)
    assert updated["spec"]["replicas"] == 3  # namespace taken from the object

    merged = await client.patch(DEPLOYMENTS, "web", {"metadata": {"labels": {"tier": "front"}}}, namespace=ns)
    assert merged["metadata"]["labels"] == {"tier": "front"}
    strategic = await client.patch(DEPLOYMENTS, "web", {"spec": {"template": {"spec": {"containers": [
        {"name": "sidecar", "image": "envoy"}]}}}}, namespace=ns, patch_type="strategic")
    # Strategic merge adds to the containers list by name; a merge patch would have replaced it.
    assert sorted(c["name"] for c in strategic["spec"]["template"]["spec"]["containers"]) == ["c", "sidecar"]
    jsonp = await client.patch(DEPLOYMENTS, "web", [{"op": "replace", "path": "/spec/replicas", "value": 5}],
                               namespace=ns, patch_type="json")
    assert jsonp["spec"]["replicas"] == 5
    status = await client.patch(DEPLOYMENTS, "web", {"status": {"observedGeneration": 9}}, namespace=ns,
                                subresource="status")
    assert status["status"]["observedGeneration"] == 9
    scale = await client.get(DEPLOYMENTS, "web", namespace=ns, subresource="scale")
    assert scale["kind"] == "Scale" and scale["spec"]["replicas"] == 5

    await client.delete(DEPLOYMENTS, "web", namespace=ns, propagation_policy="Background")
    with pytest.raises(errors.NotFound) as info:
        await client.get(DEPLOYMENTS, "web", namespace=ns)
    assert info.value.code == 404 and info.value.name == "web"
    assert str(info.value) == 'deployments.apps "web" not found'


async def test_default_namespace_comes_from_the_context(client):
    name = f"dflt-{id(client)}"
    created = await client.create(CONFIGMAPS, {"metadata": {"name": name}})
    try:
        assert created["metadata"]["namespace"] == client.config.namespace == "default"
    finally:
        await client.delete(CONFIGMAPS, name)


async def test_dry_run_persists_nothing(client, ns):
    out = await client.create(CONFIGMAPS, {"metadata": {"name": "dry"}}, namespace=ns, dry_run=True)
    assert out["metadata"]["name"] == "dry"
    with pytest.raises(errors.NotFound):
        await client.get(CONFIGMAPS, "dry", namespace=ns)


async def test_errors_map_to_api_exceptions(client, ns):
    await client.create(CONFIGMAPS, {"metadata": {"name": "a"}, "data": {"k": "1"}}, namespace=ns)
    with pytest.raises(errors.AlreadyExists) as exists:
        await client.create(CONFIGMAPS, {"metadata": {"name": "a"}}, namespace=ns)
    assert exists.value.code == 409 and exists.value.reason == "AlreadyExists"

    stale = await client.get(CONFIGMAPS, "a", namespace=ns)
    await client.patch(CONFIGMAPS, "a", {"data": {"k": "2"}}, namespace=ns)
    with pytest.raises(errors.Conflict) as conflict:
        await client.update(CONFIGMAPS, stale)
    assert conflict.value.reason == "Conflict"

    with pytest.raises(errors.Conflict):
        await client.delete(CONFIGMAPS, "a", namespace=ns, preconditions={"uid": "not-the-uid"})

    with pytest.raises(errors.Invalid) as invalid:
        await client.create(DEPLOYMENTS, {"metadata": {"name": "bad"}, "spec": {}}, namespace=ns)
    assert invalid.value.code == 422 and invalid.value.causes
    assert any(c.field.startswith("spec.") for c in invalid.value.causes)

    with pytest.raises(errors.BadRequest):
        await client.list(CONFIGMAPS, namespace=ns, label_selector="a in (")
    with pytest.raises(errors.NotFound):
        await client.create(CONFIGMAPS, {"metadata": {"name": "x"}}, namespace="no-such-namespace")


async def test_list_paging_and_selectors(client, ns):
    for i in range(7):
        await client.create(CONFIGMAPS, {"metadata": {"name": f"p{i}", "labels": {"odd": str(i % 2)}}},
                            namespace=ns)
    names, token, rvs = [], None, set()
    while True:
        page = await client.list(CONFIGMAPS, namespace=ns, limit=3, continue_=token)
        assert len(page["items"]) <= 3
        names += [i["metadata"]["name"] for i in page["items"]]
        rvs.add(page["metadata"]["resourceVersion"])
        token = page["metadata"].get("continue")
        if not token:
            break
    # The namespace's kube-root-ca.crt comes first by name.
    assert names == ["kube-root-ca.crt"] + [f"p{i}" for i in range(7)] and len(rvs) == 1
    odd = await client.list(CONFIGMAPS, namespace=ns, label_selector="odd=1")
    assert [i["metadata"]["name"] for i in odd["items"]] == ["p1", "p3", "p5"]
    one = await client.list(CONFIGMAPS, namespace=ns, field_selector="metadata.name=p4")
    assert [i["metadata"]["name"] for i in one["items"]] == ["p4"]
    everywhere = await client.list(CONFIGMAPS, label_selector="odd=1")
    assert {i["metadata"]["namespace"] for i in everywhere["items"]} >= {ns}


async def _collect(stream, count: int) -> list[WatchEvent]:
    out: list[WatchEvent] = []
    async with contextlib.aclosing(stream) as events:
        async for event in events:
            out.append(event)
            if len(out) >= count:
                break
    return out


async def test_watch_and_resume_after_a_normal_end(client, ns):
    start = (await client.list(CONFIGMAPS, namespace=ns))["metadata"]["resourceVersion"]
    await client.create(CONFIGMAPS, {"metadata": {"name": "w1"}}, namespace=ns)
    await client.patch(CONFIGMAPS, "w1", {"data": {"a": "b"}}, namespace=ns)
    await client.delete(CONFIGMAPS, "w1", namespace=ns)
    events = await _collect(client.watch(CONFIGMAPS, namespace=ns, resource_version=start), 3)
    assert [(e.type, e.object["metadata"]["name"]) for e in events] == \
        [("ADDED", "w1"), ("MODIFIED", "w1"), ("DELETED", "w1")]
    assert all(e.object["kind"] == "ConfigMap" for e in events)

    # The server ends a quiet stream after timeoutSeconds, with a bookmark since we allow them;
    # what was written meanwhile comes with a watch resumed from the last resourceVersion seen.
    last = events[-1].resource_version
    quiet = [e async for e in client.watch(CONFIGMAPS, namespace=ns, resource_version=last, timeout_seconds=1,
                                           allow_bookmarks=False)]
    assert quiet == []
    ended = [e async for e in client.watch(CONFIGMAPS, namespace=ns, resource_version=last, timeout_seconds=1)]
    assert [e.type for e in ended] == ["BOOKMARK"]
    assert ended[0].object["kind"] == "ConfigMap" and int(ended[0].resource_version) >= int(last)
    last = ended[0].resource_version
    await client.create(CONFIGMAPS, {"metadata": {"name": "w2"}}, namespace=ns)
    resumed = await _collect(client.watch(CONFIGMAPS, namespace=ns, resource_version=last), 1)
    assert [(e.type, e.object["metadata"]["name"]) for e in resumed] == [("ADDED", "w2")]


async def test_watch_initial_state_and_selectors(client, ns):
    await client.create(CONFIGMAPS, {"metadata": {"name": "s1", "labels": {"app": "x"}}}, namespace=ns)
    await client.create(CONFIGMAPS, {"metadata": {"name": "s2", "labels": {"app": "y"}}}, namespace=ns)
    initial = await _collect(client.watch(CONFIGMAPS, namespace=ns, resource_version="0",
                                          label_selector="app=y"), 1)
    assert [(e.type, e.object["metadata"]["name"]) for e in initial] == [("ADDED", "s2")]


async def test_watch_expired_history_raises_expired(server):
    from timoner.client import Client, load_kubeconfig

    async with Client(load_kubeconfig(server.kubeconfig)) as client:
        server.call(_shrink(server.server.cache))
        first = await client.create(CONFIGMAPS, {"metadata": {"name": "e0"}}, namespace="default")
        for i in range(1, 5):
            await client.create(CONFIGMAPS, {"metadata": {"name": f"e{i}"}}, namespace="default")
        with pytest.raises(errors.Expired) as info:
            await _collect(client.watch(CONFIGMAPS, namespace="default",
                                        resource_version=first["metadata"]["resourceVersion"]), 1)
        assert info.value.code == 410 and "too old resource version" in str(info.value)


async def _shrink(cache):
    """Keep only the last few events in the server's watch history, so older versions expire."""
    import collections

    cache._events = collections.deque(cache._events, maxlen=3)
    while len(cache._events) > 2:
        cache._oldest = cache._events.popleft().revision
