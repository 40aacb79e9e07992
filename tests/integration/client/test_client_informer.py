"""Informers against a real server: initial sync, live events, lister queries, resume and relist."""

from __future__ import annotations

import asyncio
import contextlib

import httpx
import pytest

from timoner.api.errors import NotFound
from timoner.api.selectors import parse_label_selector
from timoner.client import Client, Informer, load_kubeconfig, resource_for

CONFIGMAPS = resource_for("v1", "ConfigMap")


class Recorder:
    """Handler callbacks that note (event, name[, data]) in order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def add(self, obj):
        self.events.append(("add", obj["metadata"]["name"]))

    def update(self, old, new):
        assert old["metadata"]["name"] == new["metadata"]["name"]
        self.events.append(("update", new["metadata"]["name"]))

    def delete(self, obj):
        self.events.append(("delete", obj["metadata"]["name"]))


@contextlib.asynccontextmanager
async def running(informer: Informer):
    task = asyncio.create_task(informer.run())
    try:
        await asyncio.wait_for(informer.has_synced.wait(), 10)
        yield informer
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_sync_handlers_and_lister(client, ns, eventually):
    for i in range(5):
        await client.create(CONFIGMAPS, {"metadata": {"name": f"c{i}", "labels": {"tier": "a" if i < 3 else "b"}}},
                            namespace=ns)
    informer = Informer(client, CONFIGMAPS, namespace=ns, page_size=2)
    first, second = Recorder(), Recorder()
    order: list[str] = []
    informer.add_handler(first.add, first.update, first.delete)
    informer.add_handler(lambda o: order.append("h1"))
    informer.add_handler(lambda o: order.append("h2"))
    assert not informer.has_synced.is_set()
    async with running(informer):
        # The first list (three pages of two) delivered everything as adds, before has_synced: the five and
        # the namespace's own kube-root-ca.crt.
        assert sorted(first.events) == [("add", f"c{i}") for i in range(5)] + [("add", "kube-root-ca.crt")]
        assert order == ["h1", "h2"] * 6
        # A late handler is replayed the current state.
        informer.add_handler(second.add, second.update, second.delete)
        assert sorted(second.events) == sorted(first.events)

        lister = informer.lister
        assert lister.get(ns, "c1")["metadata"]["name"] == "c1"
        assert lister.get(ns, "missing") is None and lister.get("other", "c1") is None
        assert [o["metadata"]["name"] for o in lister.list(ns, parse_label_selector("tier=b"))] == ["c3", "c4"]
        assert len(lister.list()) == 6 and lister.list("other") == []
        assert [o["metadata"]["name"] for o in lister.list(selector=parse_label_selector("tier notin (b)"))] == \
            ["c0", "c1", "c2", "kube-root-ca.crt"]

        first.events.clear()
        await client.patch(CONFIGMAPS, "c0", {"data": {"x": "1"}}, namespace=ns)
        await client.delete(CONFIGMAPS, "c1", namespace=ns)
        await client.create(CONFIGMAPS, {"metadata": {"name": "c9"}}, namespace=ns)
        await eventually(lambda: len(first.events) >= 3, what="three live events")
        assert first.events == [("update", "c0"), ("delete", "c1"), ("add", "c9")]
        assert informer.lister.get(ns, "c0")["data"] == {"x": "1"}
        assert informer.lister.get(ns, "c1") is None
        assert informer.relists == 0


async def test_label_selected_informer_sees_objects_enter_and_leave(client, ns, eventually):
    informer = Informer(client, CONFIGMAPS, namespace=ns, label_selector="app=web")
    rec = Recorder()
    informer.add_handler(rec.add, rec.update, rec.delete)
    async with running(informer):
        await client.create(CONFIGMAPS, {"metadata": {"name": "m", "labels": {"app": "db"}}}, namespace=ns)
        await client.patch(CONFIGMAPS, "m", {"metadata": {"labels": {"app": "web"}}}, namespace=ns)
        await client.patch(CONFIGMAPS, "m", {"metadata": {"labels": {"app": "db"}}}, namespace=ns)
        await eventually(lambda: len(rec.events) >= 2, what="enter and leave")
        assert rec.events == [("add", "m"), ("delete", "m")]
        assert len(informer.lister) == 0


class CountingClient(Client):
    """A real client that counts watch requests and can cut the next stream after one event."""

    watches = 0
    cut_next = False

    async def watch(self, resource, **kwargs):
        self.watches += 1
        async for event in super().watch(resource, **kwargs):
            yield event
            if self.cut_next and event.type != "BOOKMARK":
                self.cut_next = False
                raise httpx.RemoteProtocolError("peer closed connection (injected)")


async def test_resumes_after_stream_timeout_without_relisting(api, ns, eventually):
    async with CountingClient(load_kubeconfig(api.kubeconfig)) as client:
        informer = Informer(client, CONFIGMAPS, namespace=ns, watch_timeout=1)
        rec = Recorder()
        informer.add_handler(rec.add, rec.update, rec.delete)
        async with running(informer):
            assert rec.events == [("add", "kube-root-ca.crt")]  # what the namespace held from the start
            rec.events.clear()
            await eventually(lambda: client.watches >= 3, timeout=15, what="two stream timeouts")
            await client.create(CONFIGMAPS, {"metadata": {"name": "late"}}, namespace=ns)
            await eventually(lambda: rec.events == [("add", "late")], what="event after resume")
            assert informer.relists == 0


async def test_dropped_stream_relists(api, ns, eventually):
    async with CountingClient(load_kubeconfig(api.kubeconfig)) as client:
        informer = Informer(client, CONFIGMAPS, namespace=ns)
        rec = Recorder()
        informer.add_handler(rec.add, rec.update, rec.delete)
        async with running(informer):
            assert rec.events == [("add", "kube-root-ca.crt")]  # what the namespace held from the start
            rec.events.clear()
            client.cut_next = True
            await client.create(CONFIGMAPS, {"metadata": {"name": "a"}}, namespace=ns)
            await eventually(lambda: client.watches >= 2, what="watch restarted")
            await eventually(lambda: informer.relists >= 1, what="relist")
            await client.create(CONFIGMAPS, {"metadata": {"name": "b"}}, namespace=ns)
            await eventually(lambda: ("add", "b") in rec.events, what="event after relist")
            # "a" arrived once: the relist found it unchanged and said nothing more.
            assert rec.events == [("add", "a"), ("add", "b")]


async def test_relist_after_expired_history_delivers_the_differences(server, eventually):
    """Changes the watch missed, after the server forgot them, come back as deletes, updates and adds."""
    async with Client(load_kubeconfig(server.kubeconfig)) as client:
        ns = "default"
        # The namespace's kube-root-ca.crt is published just after the server starts: let it be there first.
        await eventually(lambda: _exists(client, ns, "kube-root-ca.crt"), what="kube-root-ca.crt in default")
        for name in ("gone", "changed", "same"):
            await client.create(CONFIGMAPS, {"metadata": {"name": name}}, namespace=ns)
        informer = Informer(client, CONFIGMAPS, namespace=ns)
        rec = Recorder()
        informer.add_handler(rec.add, rec.update, rec.delete)
        async with running(informer):
            rec.events.clear()
            # Freeze the server side of the informer's stream: it stays open but gets nothing,
            # and the event history is cut to a few entries.
            frozen = server.call(_freeze(server.server.cache))
            assert frozen >= 1
            await client.delete(CONFIGMAPS, "gone", namespace=ns)
            await client.patch(CONFIGMAPS, "changed", {"data": {"v": "2"}}, namespace=ns)
            await client.create(CONFIGMAPS, {"metadata": {"name": "new"}}, namespace=ns)
            for i in range(4):
                await client.create(CONFIGMAPS, {"metadata": {"name": f"filler{i}"}}, namespace="kube-public")
            assert rec.events == []
            # End the frozen stream normally: the informer resumes from its last version,
            # which the server no longer has (410), so it relists.
            server.call(_end_frozen(server.server.cache))
            await eventually(lambda: informer.relists == 1 and len(rec.events) >= 3, what="relist")
            assert sorted(rec.events) == [("add", "new"), ("delete", "gone"), ("update", "changed")]
            assert sorted(o["metadata"]["name"] for o in informer.lister.list(ns)) == [
                "changed", "kube-root-ca.crt", "new", "same"]
            assert informer.lister.get(ns, "changed")["data"] == {"v": "2"}
            # Watching goes on from the relist.
            await client.delete(CONFIGMAPS, "same", namespace=ns)
            await eventually(lambda: rec.events[-1] == ("delete", "same"), what="event after relist")


async def _exists(client, namespace: str, name: str) -> bool:
    try:
        await client.get(CONFIGMAPS, name, namespace=namespace)
    except NotFound:
        return False
    return True


async def _freeze(cache):
    import collections

    cache._events = collections.deque(cache._events, maxlen=3)
    while len(cache._events) > 2:
        cache._oldest = cache._events.popleft().revision
    count = 0
    for watchers in cache._watchers.values():
        for watcher in watchers:
            if watcher.prefix.startswith("/registry/core/configmaps/"):
                watcher.closed = True  # offer() now drops everything for it
                count += 1
    return count


async def _end_frozen(cache):
    for watchers in cache._watchers.values():
        for watcher in watchers:
            if watcher.closed:
                watcher.queue.put_nowait(None)


@pytest.mark.parametrize("page_size", [1, 500])
async def test_cluster_scoped_informer(client, page_size):
    informer = Informer(client, resource_for("v1", "Namespace"), page_size=page_size)
    async with running(informer):
        assert informer.lister.get(None, "default")["metadata"]["name"] == "default"
        assert informer.lister.get("", "kube-system") is not None
