"""The resource quota controller with the ResourceQuota admission plugin, against a real API server.

Only the resource quota controller runs (no scheduler, no node): pods stay
unscheduled, so deleting one removes it at once, and the tests write pod
status themselves where a kubelet would.
"""

from __future__ import annotations

import asyncio

import pytest

from timoner.api import errors
from timoner.client import resource_for
from timoner.controllers import Manager
from timoner.controllers.resourcequota import new_resourcequota_controller

PODS = resource_for("v1", "Pod")
QUOTAS = resource_for("v1", "ResourceQuota")
CONFIGMAPS = resource_for("v1", "ConfigMap")


def _start(bare, client, **options) -> Manager:
    manager = Manager(client, leader_election=False)
    manager.add(new_resourcequota_controller(client, manager.informers, **options))
    bare.tasks["resourcequota"] = asyncio.create_task(manager.run())
    return manager


def _pod(name: str, *, cpu: str | None = None) -> dict:
    resources = {"requests": {"cpu": cpu}, "limits": {"cpu": cpu}} if cpu else {}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": [{"name": "app", "image": "busybox", "resources": resources}]}}


async def _quota(client, namespace: str, hard: dict, name: str = "q") -> dict:
    return await client.create(QUOTAS, {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": name},
                                        "spec": {"hard": hard}}, namespace=namespace)


async def _status(client, namespace: str, name: str = "q") -> dict:
    return (await client.get(QUOTAS, name, namespace=namespace)).get("status") or {}


async def _used_is(client, namespace: str, expected: dict, name: str = "q") -> bool:
    return (await _status(client, namespace, name)).get("used") == expected


async def test_third_pod_refused_then_admitted_once_one_is_deleted(bare, client, namespace, eventually):
    _start(bare, client)
    await _quota(client, namespace, {"pods": "2"})
    await eventually(lambda: _used_is(client, namespace, {"pods": "0"}), 10, "the quota counted")
    assert (await _status(client, namespace))["hard"] == {"pods": "2"}
    await client.create(PODS, _pod("a"), namespace=namespace)
    await client.create(PODS, _pod("b"), namespace=namespace)
    assert await _used_is(client, namespace, {"pods": "2"})  # charged by admission, before the write
    with pytest.raises(errors.Forbidden) as refused:
        await client.create(PODS, _pod("c"), namespace=namespace)
    assert refused.value.message == ('pods "c" is forbidden: exceeded quota: q, requested: pods=1, '
                                     'used: pods=2, limited: pods=2')
    await client.delete(PODS, "a", namespace=namespace)
    await eventually(lambda: _used_is(client, namespace, {"pods": "1"}), 10, "the deleted pod released")
    await client.create(PODS, _pod("c"), namespace=namespace)
    assert await _used_is(client, namespace, {"pods": "2"})


async def test_pods_existing_before_the_quota_are_counted_and_finished_pods_freed(bare, client, namespace,
                                                                                  eventually):
    manager = _start(bare, client)
    await client.create(PODS, _pod("a", cpu="500m"), namespace=namespace)
    b = await client.create(PODS, _pod("b", cpu="250m"), namespace=namespace)
    # creations are not recounted (admission charges them), so the pods must be in the cache before the quota
    await eventually(lambda: len(manager.informers.get(PODS).lister.list(namespace)) == 2, 10, "pods cached")
    await _quota(client, namespace, {"requests.cpu": "1", "pods": "5", "count/pods": "5"})
    await eventually(lambda: _used_is(client, namespace, {"count/pods": "2", "pods": "2", "requests.cpu": "750m"}),
                     10, "existing pods counted")
    with pytest.raises(errors.Forbidden) as refused:
        await client.create(PODS, _pod("c", cpu="300m"), namespace=namespace)
    assert refused.value.message.endswith(
        "exceeded quota: q, requested: requests.cpu=300m, used: requests.cpu=750m, limited: requests.cpu=1")
    b["status"] = {**(b.get("status") or {}), "phase": "Succeeded"}
    await client.update(PODS, b, namespace=namespace, subresource="status")
    # a finished pod keeps its object count but no longer its compute resources
    await eventually(lambda: _used_is(client, namespace, {"count/pods": "2", "pods": "1", "requests.cpu": "500m"}),
                     10, "the finished pod freed")
    await client.create(PODS, _pod("c", cpu="300m"), namespace=namespace)


async def test_a_pod_without_the_constrained_request_is_refused(bare, client, namespace, eventually):
    _start(bare, client)
    await _quota(client, namespace, {"limits.cpu": "2"})
    await eventually(lambda: _used_is(client, namespace, {"limits.cpu": "0"}), 10, "the quota counted")
    with pytest.raises(errors.Forbidden) as refused:
        await client.create(PODS, _pod("a"), namespace=namespace)
    assert refused.value.message == 'pods "a" is forbidden: failed quota: q: must specify limits.cpu for: app'


async def _config_maps(client, namespace: str) -> int:
    return len((await client.list(CONFIGMAPS, namespace=namespace))["items"])


def _config_map(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}}


async def test_config_map_counts_and_a_changed_hard_limit(bare, client, namespace, eventually):
    _start(bare, client)
    # every namespace gets its kube-root-ca.crt ConfigMap, and quota counts it like any other
    await eventually(lambda: _config_maps(client, namespace), 10, "kube-root-ca.crt")
    await _quota(client, namespace, {"count/configmaps": "2"})
    await eventually(lambda: _used_is(client, namespace, {"count/configmaps": "1"}), 10, "the quota counted")
    await client.create(CONFIGMAPS, _config_map("one"), namespace=namespace)
    with pytest.raises(errors.Forbidden, match="exceeded quota: q, requested: count/configmaps=1, "
                                               "used: count/configmaps=2, limited: count/configmaps=2"):
        await client.create(CONFIGMAPS, _config_map("two"), namespace=namespace)
    quota = await client.get(QUOTAS, "q", namespace=namespace)
    quota["spec"]["hard"] = {"count/configmaps": "3", "secrets": "3"}
    await client.update(QUOTAS, quota, namespace=namespace)

    async def raised() -> bool:
        status = await _status(client, namespace)
        return status.get("hard") == {"count/configmaps": "3", "secrets": "3"} and \
            status.get("used") == {"count/configmaps": "2", "secrets": "0"}

    await eventually(raised, 10, "the new hard limits in the status")
    await client.create(CONFIGMAPS, _config_map("two"), namespace=namespace)
    await client.delete(CONFIGMAPS, "one", namespace=namespace)
    await eventually(lambda: _used_is(client, namespace, {"count/configmaps": "2", "secrets": "0"}), 10,
                     "the deleted config map released")


async def test_the_full_resync_corrects_a_drifted_status(bare, client, namespace, eventually):
    _start(bare, client, resync_period=0.5)
    await eventually(lambda: _config_maps(client, namespace), 10, "kube-root-ca.crt")
    await _quota(client, namespace, {"count/configmaps": "5"})
    await eventually(lambda: _used_is(client, namespace, {"count/configmaps": "1"}), 10, "the quota counted")
    quota = await client.get(QUOTAS, "q", namespace=namespace)
    quota["status"]["used"] = {"count/configmaps": "4"}  # as if a charged create had failed afterwards
    await client.update(QUOTAS, quota, namespace=namespace, subresource="status")
    await eventually(lambda: _used_is(client, namespace, {"count/configmaps": "1"}), 10, "the resync's recount")
