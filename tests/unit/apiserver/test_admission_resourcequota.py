"""The ResourceQuota admission plugin, driven with hand-made Attributes over a real Store (memory backend)."""

from __future__ import annotations

import asyncio

import pytest

from timoner.api import errors
from timoner.api.registry import builtin_index
from timoner.apiserver.admission import CREATE, UPDATE, Attributes
from timoner.apiserver.admission._resourcequota import ResourceQuota
from timoner.apiserver.store import Store

INDEX = builtin_index()
PODS = INDEX[("", "v1", "pods")]
SERVICES = INDEX[("", "v1", "services")]
CLAIMS = INDEX[("", "v1", "persistentvolumeclaims")]
CONFIGMAPS = INDEX[("", "v1", "configmaps")]
QUOTAS = INDEX[("", "v1", "resourcequotas")]


async def add_quota(store: Store, name: str, hard: dict, *, used: dict | None = None, status: bool = True,
                    scopes: list[str] | None = None) -> None:
    spec: dict = {"hard": hard}
    if scopes:
        spec["scopes"] = scopes
    obj: dict = {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": name}, "spec": spec}
    if status:
        obj["status"] = {"hard": hard, "used": used if used is not None else dict.fromkeys(hard, "0")}
    await store.create(QUOTAS, "ns", obj, skip_namespace_check=True)
    await store.sync()  # in the watch cache, where the plugin looks


async def used(store: Store, name: str) -> dict:
    await store.sync()
    return (await store.get(QUOTAS, "ns", name))["status"]["used"]


def pod(name: str = "p", *, req: dict | None = None, lim: dict | None = None, **spec) -> dict:
    resources: dict = {}
    if req:
        resources["requests"] = req
    if lim:
        resources["limits"] = lim
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "ns"},
            "spec": {"containers": [{"name": "app", "image": "busybox", "resources": resources}], **spec}}


def attrs(obj: dict, *, info=PODS, operation: str = CREATE, old: dict | None = None, dry_run: bool = False,
          subresource: str = "") -> Attributes:
    return Attributes(operation, info, "ns", obj["metadata"]["name"], obj, old, subresource=subresource,
                      dry_run=dry_run)


async def refused(plugin: ResourceQuota, a: Attributes) -> errors.APIError:
    with pytest.raises(errors.APIError) as caught:
        await plugin.validate(a)
    assert caught.value.code == 403 and caught.value.reason == "Forbidden"
    return caught.value


async def test_pods_are_charged_until_the_quota_is_full(store: Store):
    await add_quota(store, "q", {"pods": "2"})
    plugin = ResourceQuota(store)
    await plugin.validate(attrs(pod("a")))
    assert await used(store, "q") == {"pods": "1"}
    await plugin.validate(attrs(pod("b")))
    assert await used(store, "q") == {"pods": "2"}
    error = await refused(plugin, attrs(pod("c")))
    assert error.message == 'pods "c" is forbidden: exceeded quota: q, requested: pods=1, used: pods=2, limited: pods=2'
    assert await used(store, "q") == {"pods": "2"}


async def test_compute_resources_are_summed_and_formatted_as_upstream(store: Store):
    await add_quota(store, "compute", {"requests.cpu": "1", "requests.memory": "1Gi", "limits.cpu": "2"})
    plugin = ResourceQuota(store)
    await plugin.validate(attrs(pod("a", req={"cpu": "500m", "memory": "512Mi"}, lim={"cpu": "1"})))
    assert await used(store, "compute") == {"limits.cpu": "1", "requests.cpu": "500m", "requests.memory": "512Mi"}
    error = await refused(plugin, attrs(pod("b", req={"cpu": "600m", "memory": "768Mi"}, lim={"cpu": "600m"})))
    assert error.message == ('pods "b" is forbidden: exceeded quota: compute, requested: '
                             'requests.cpu=600m,requests.memory=768Mi, used: requests.cpu=500m,requests.memory=512Mi, '
                             'limited: requests.cpu=1,requests.memory=1Gi')


async def test_pods_must_state_what_a_quota_constrains(store: Store):
    await add_quota(store, "compute", {"limits.cpu": "2", "requests.memory": "1Gi"})
    error = await refused(ResourceQuota(store), attrs(pod("a", req={"cpu": "100m"})))
    assert error.message == ('pods "a" is forbidden: failed quota: compute: '
                             'must specify limits.cpu for: app; requests.memory for: app')


async def test_a_quota_not_counted_yet_refuses(store: Store):
    await add_quota(store, "q", {"pods": "2", "count/configmaps": "2"}, used={"pods": "0"})
    plugin = ResourceQuota(store)
    await plugin.validate(attrs(pod("a")))
    error = await refused(plugin, attrs({"metadata": {"name": "cm"}}, info=CONFIGMAPS))
    assert error.message == 'configmaps "cm" is forbidden: status unknown for quota: q, resources: count/configmaps'


async def test_a_quota_without_status_covers_nothing(store: Store):
    await add_quota(store, "q", {"pods": "0"}, status=False)
    await ResourceQuota(store).validate(attrs(pod("a")))


async def test_object_counts_under_both_names(store: Store):
    await add_quota(store, "q", {"configmaps": "1", "count/configmaps": "5"})
    plugin = ResourceQuota(store)
    await plugin.validate(attrs({"metadata": {"name": "one"}}, info=CONFIGMAPS))
    assert await used(store, "q") == {"configmaps": "1", "count/configmaps": "1"}
    error = await refused(plugin, attrs({"metadata": {"name": "two"}}, info=CONFIGMAPS))
    assert error.message.endswith("exceeded quota: q, requested: configmaps=1, used: configmaps=1, limited: configmaps=1")


async def test_every_matching_quota_is_charged_and_scopes_select(store: Store):
    await add_quota(store, "all", {"pods": "10"})
    await add_quota(store, "best-effort", {"pods": "1"}, scopes=["BestEffort"])
    plugin = ResourceQuota(store)
    await plugin.validate(attrs(pod("a")))
    assert await used(store, "all") == {"pods": "1"}
    assert await used(store, "best-effort") == {"pods": "1"}
    await plugin.validate(attrs(pod("b", req={"cpu": "1"})))  # not best effort: only "all"
    assert await used(store, "all") == {"pods": "2"}
    error = await refused(plugin, attrs(pod("c")))
    assert "exceeded quota: best-effort" in error.message
    assert await used(store, "all") == {"pods": "2"}  # a refusal charges nothing anywhere


async def test_dry_run_checks_but_charges_nothing(store: Store):
    await add_quota(store, "q", {"pods": "1"})
    plugin = ResourceQuota(store)
    await plugin.validate(attrs(pod("a"), dry_run=True))
    assert await used(store, "q") == {"pods": "0"}


async def test_updates_charge_only_the_increase(store: Store):
    await add_quota(store, "q", {"requests.storage": "10Gi", "persistentvolumeclaims": "5"},
                    used={"requests.storage": "4Gi", "persistentvolumeclaims": "1"})
    plugin = ResourceQuota(store)
    old = {"metadata": {"name": "c", "resourceVersion": "7"}, "spec": {"resources": {"requests": {"storage": "4Gi"}}}}
    new = {"metadata": {"name": "c", "resourceVersion": "7"}, "spec": {"resources": {"requests": {"storage": "6Gi"}}}}
    a = attrs(new, info=CLAIMS, operation=UPDATE, old=old)
    assert plugin.handles(a)
    await plugin.validate(a)
    assert await used(store, "q") == {"persistentvolumeclaims": "1", "requests.storage": "6Gi"}
    bigger = {**new, "spec": {"resources": {"requests": {"storage": "20Gi"}}}}
    error = await refused(plugin, attrs(bigger, info=CLAIMS, operation=UPDATE, old=new))
    assert error.message == ('persistentvolumeclaims "c" is forbidden: exceeded quota: q, requested: '
                             'requests.storage=14Gi, used: requests.storage=6Gi, limited: requests.storage=10Gi')


async def test_service_type_changes_are_charged(store: Store):
    await add_quota(store, "q", {"services.nodeports": "1", "services": "5"}, used={"services.nodeports": "0",
                                                                                    "services": "1"})
    plugin = ResourceQuota(store)
    old = {"metadata": {"name": "s", "resourceVersion": "3"}, "spec": {"type": "ClusterIP", "ports": [{"port": 1}]}}
    new = {"metadata": {"name": "s", "resourceVersion": "3"},
           "spec": {"type": "NodePort", "ports": [{"port": 1}, {"port": 2}]}}
    error = await refused(plugin, attrs(new, info=SERVICES, operation=UPDATE, old=old))
    assert error.message.endswith("requested: services.nodeports=2, used: services.nodeports=0, "
                                  "limited: services.nodeports=1")


async def test_what_the_plugin_leaves_alone(store: Store):
    plugin = ResourceQuota(store)
    p = pod("a")
    assert not plugin.handles(attrs(p, operation=UPDATE, old=p))  # pod resources are immutable
    assert not plugin.handles(attrs(p, subresource="status"))
    assert not plugin.handles(attrs({"metadata": {"name": "e"}}, info=INDEX[("", "v1", "events")]))
    assert not plugin.handles(attrs({"metadata": {"name": "cm"}}, info=CONFIGMAPS, operation=UPDATE, old={}))
    assert plugin.handles(attrs({"metadata": {"name": "d"}}, info=INDEX[("apps", "v1", "deployments")]))


async def test_concurrent_creates_cannot_both_take_the_last_unit(store: Store):
    await add_quota(store, "q", {"pods": "3"})
    plugin = ResourceQuota(store)
    results = await asyncio.gather(*(plugin.validate(attrs(pod(f"p{i}"))) for i in range(6)),
                                   return_exceptions=True)
    assert sum(r is None for r in results) == 3
    assert all(isinstance(r, errors.APIError) and r.code == 403 for r in results if r is not None)
    assert await used(store, "q") == {"pods": "3"}


async def test_a_concurrent_status_write_is_retried(store: Store, monkeypatch):
    await add_quota(store, "q", {"pods": "5"})
    plugin = ResourceQuota(store)
    real_update = store.update
    calls = 0

    async def racing_update(info, namespace, name, mutate, **kw):
        nonlocal calls
        calls += 1
        if calls == 1:  # someone else (the controller) writes first
            await real_update(info, namespace, name,
                              lambda q: {**q, "status": {**q["status"], "used": {"pods": "2"}}}, subresource="status")
        return await real_update(info, namespace, name, mutate, **kw)

    monkeypatch.setattr(store, "update", racing_update)
    await plugin.validate(attrs(pod("a")))
    assert calls == 2
    assert await used(store, "q") == {"pods": "3"}
