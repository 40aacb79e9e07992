"""ServiceProxy against a real API server, its nftables rules applied in a test-made node namespace.

Services and EndpointSlices are written directly with the client (no controller runs here).
"""

from __future__ import annotations

import asyncio
import contextlib

from proxy_lab import CLIENT_IP, NODE_IP, POD_IPS, TCP_PORT, Lab

from timoner.client import resource_for
from timoner.network.nftables import NftablesDataPlane
from timoner.network.proxy import ServiceProxy

SERVICES = resource_for("v1", "Service")
ENDPOINT_SLICES = resource_for("discovery.k8s.io/v1", "EndpointSlice")
NODE = "node-1"
TABLE = "timoner-proxy-test"


@contextlib.asynccontextmanager
async def running(proxy: ServiceProxy):
    task = asyncio.create_task(proxy.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def new_proxy(client, lab: Lab, nft: tuple[str, ...] | None = None) -> ServiceProxy:
    dataplane = NftablesDataPlane(table=TABLE, nft=nft or lab.nft(), sysctl_root=None)
    return ServiceProxy(client, node_name=NODE, node_ips=[NODE_IP], dataplane=dataplane, max_backoff=0.5)


async def create_service(client, namespace: str, name: str = "web", **spec) -> dict:
    body = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"ports": [{"name": "http", "port": 80, "targetPort": TCP_PORT, "protocol": "TCP"}], **spec}}
    return await client.create(SERVICES, body, namespace=namespace)


def slice_body(service: str, *pods: str) -> dict:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": f"{service}-1", "labels": {"kubernetes.io/service-name": service}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": [POD_IPS[p]], "nodeName": NODE, "conditions": {"ready": True}}
                          for p in pods],
            "ports": [{"name": "http", "port": TCP_PORT, "protocol": "TCP"}]}


async def ruleset(lab: Lab) -> str:
    return await asyncio.to_thread(lab.ruleset, TABLE)


async def answers(lab: Lab, *args, **kwargs) -> list[str]:
    return await asyncio.to_thread(lab.answers, *args, **kwargs)


async def test_rules_follow_services_and_endpoint_changes_within_a_second(client, namespace, lab, eventually):
    await asyncio.to_thread(lab.serve, "pod-a")
    await asyncio.to_thread(lab.serve, "pod-b")
    proxy = new_proxy(client, lab)
    async with running(proxy):
        svc = await create_service(client, namespace, type="NodePort")
        ip, node_port = svc["spec"]["clusterIP"], svc["spec"]["ports"][0]["nodePort"]
        await client.create(ENDPOINT_SLICES, slice_body("web", "pod-a"), namespace=namespace)
        await asyncio.wait_for(proxy.ready.wait(), 10)

        async def rules_name(pod):
            rules = await ruleset(lab)
            return f"dnat to {POD_IPS[pod]}:{TCP_PORT}" in rules and f"{ip} . tcp . 80" in rules
        await eventually(lambda: rules_name("pod-a"), timeout=5, what="pod-a's rules")
        assert await answers(lab, "client", "tcp", ip, 80) == [f"pod-a {CLIENT_IP}"]
        assert (await answers(lab, "client", "tcp", NODE_IP, node_port))[0].startswith("pod-a ")

        current = await client.get(ENDPOINT_SLICES, "web-1", namespace=namespace)
        current["endpoints"] = slice_body("web", "pod-b")["endpoints"]
        await client.update(ENDPOINT_SLICES, current, namespace=namespace)

        async def moved():
            rules = await ruleset(lab)
            return f"dnat to {POD_IPS['pod-b']}:{TCP_PORT}" in rules and POD_IPS["pod-a"] not in rules
        await eventually(moved, timeout=1.0, what="the endpoint change in the rules")
        assert await answers(lab, "client", "tcp", ip, 80, count=3) == [f"pod-b {CLIENT_IP}"] * 3
        assert proxy.syncs >= 2 and proxy.last_sync_duration > 0

        # No endpoints left: refused at once; the Service gone: its rules gone.
        await client.delete(ENDPOINT_SLICES, "web-1", namespace=namespace)
        await eventually(lambda: _contains(lab, f"{ip} . tcp . 80 : goto reject-chain"), timeout=2,
                         what="the reject rule")
        [(result, seconds)] = await asyncio.to_thread(lab.probe, "client", "tcp", ip, 80)
        assert result == "refused" and seconds < 0.5
        await client.delete(SERVICES, "web", namespace=namespace)

        async def gone():
            return ip not in await ruleset(lab)
        await eventually(gone, timeout=2, what="the Service's rules to go")


async def _contains(lab: Lab, text: str) -> bool:
    return text in await ruleset(lab)


async def test_a_change_that_does_not_change_the_routes_is_not_applied(client, namespace, lab, eventually):
    proxy = new_proxy(client, lab)
    async with running(proxy):
        await create_service(client, namespace)
        await client.create(ENDPOINT_SLICES, slice_body("web", "pod-a"), namespace=namespace)
        route = f"{namespace}/web:http"
        await eventually(lambda: proxy.table and proxy.table.get(route) and proxy.table.get(route).endpoints,
                         timeout=5, what="the endpoint applied")
        syncs, unchanged = proxy.syncs, proxy.unchanged

        svc = await client.get(SERVICES, "web", namespace=namespace)
        svc["metadata"].setdefault("annotations", {})["note"] = "routes stay the same"
        await client.update(SERVICES, svc, namespace=namespace)
        await eventually(lambda: proxy.unchanged > unchanged, timeout=5, what="a recomputation")
        assert proxy.syncs == syncs


async def test_services_for_another_proxy_and_headless_ones_are_ignored(client, namespace, lab, eventually):
    proxy = new_proxy(client, lab)
    async with running(proxy):
        await create_service(client, namespace, "headless", clusterIP="None")
        other = {"apiVersion": "v1", "kind": "Service",
                 "metadata": {"name": "elsewhere", "labels": {"service.kubernetes.io/service-proxy-name": "x"}},
                 "spec": {"ports": [{"port": 80}]}}
        other = await client.create(SERVICES, other, namespace=namespace)
        svc = await create_service(client, namespace)
        await eventually(lambda: _contains(lab, f"{svc['spec']['clusterIP']} . tcp . 80"), timeout=5,
                         what="web's rules")
        assert other["spec"]["clusterIP"] not in await ruleset(lab)
        assert "/headless/" not in await ruleset(lab)


async def test_failed_applies_are_retried_until_they_work(client, namespace, eventually):
    lab = Lab()  # its namespaces do not exist yet: nft cannot run there
    try:
        proxy = new_proxy(client, lab)
        async with running(proxy):
            svc = await create_service(client, namespace)
            await eventually(lambda: proxy.sync_errors >= 2, timeout=5, what="failed syncs")
            assert not proxy.ready.is_set()
            await asyncio.to_thread(lab.build)
            await asyncio.wait_for(proxy.ready.wait(), 5)
            assert f"{svc['spec']['clusterIP']} . tcp . 80 : goto reject-chain" in await ruleset(lab)
    finally:
        lab.close()


async def test_cancelling_the_proxy_removes_its_table(client, namespace, lab, eventually):
    proxy = new_proxy(client, lab)
    async with running(proxy):
        await create_service(client, namespace)
        await asyncio.wait_for(proxy.ready.wait(), 10)
        assert await ruleset(lab)
    assert await ruleset(lab) == ""
