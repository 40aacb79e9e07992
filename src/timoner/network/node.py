"""`NodeNetwork`: what runs beside each node agent that has a pod network: cluster DNS and the service proxy.

Once the pod network is ready (the bridge has its gateway address):

- `ClusterDNS` answers on the gateway, port 53, where the node's pods reach
  it; the agent publishes that address as an EndpointSlice of its own
  (`kube-dns-<node>`, managed by `timoner-agent`) for the selectorless
  `kube-system/kube-dns` Service, whose `internalTrafficPolicy: Local`
  makes each node's pods ask their own node, as NodeLocal DNSCache does;
- `ServiceProxy` keeps the node's nftables rules for every Service (or,
  with `proxy_mode="userspace"`, the userspace data plane's listeners,
  its ClusterIPs on the interface `<bridge>-svc`);
- `IngressController` (unless its ports are None) serves the Ingresses of
  class `timoner` on the node's HTTP and HTTPS ports. A port it cannot bind
  (another server has 80) is logged and the rest goes on without it.

`run` ends only when cancelled; the EndpointSlice stays (a node that comes
back serves on the same address, and other nodes never use it).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from timoner.api.errors import NotFound
from timoner.client import Client, resource_for

from ._informers import service_informers
from .bridge import BridgeNetwork
from .dns import ClusterDNS
from .ingress import IngressController
from .nftables import NftablesDataPlane
from .proxy import ServiceProxy
from .userspace import UserspaceDataPlane

__all__ = ["DNS_SERVICE", "NodeNetwork", "dns_endpoint_slice"]

log = logging.getLogger("timoner.network.node")

ENDPOINT_SLICES = resource_for("discovery.k8s.io/v1", "EndpointSlice")
DNS_SERVICE = ("kube-system", "kube-dns")
MANAGED_BY = "timoner-agent"

Obj = dict[str, Any]


def dns_endpoint_slice(node_name: str, address: str) -> Obj:
    """The EndpointSlice saying that `node_name` serves cluster DNS at `address` (ports as kube-dns's)."""
    return {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": f"kube-dns-{node_name}", "namespace": DNS_SERVICE[0], "labels": {
            "kubernetes.io/service-name": DNS_SERVICE[1],
            "endpointslice.kubernetes.io/managed-by": MANAGED_BY}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [address], "nodeName": node_name,
                       "conditions": {"ready": True, "serving": True, "terminating": False}}],
        "ports": [{"name": "dns", "port": 53, "protocol": "UDP"},
                  {"name": "dns-tcp", "port": 53, "protocol": "TCP"}],
    }


class NodeNetwork:
    """See the module docstring. `proxy_table` names the node's nftables table for Services."""

    def __init__(self, client: Client, *, node_name: str, node_ips: list[str], bridge: BridgeNetwork,
                 proxy_table: str = "timoner-services", domain: str = "cluster.local",
                 upstreams: list[str] | None = None, dns_port: int = 53, cleanup_on_exit: bool = True,
                 ingress_ports: tuple[int, int] | None = (80, 443), proxy_mode: str = "nftables") -> None:
        self.client = client
        self.node_name = node_name
        self.node_ips = node_ips
        self.bridge = bridge
        self.domain = domain
        self.upstreams = upstreams
        self.dns_port = dns_port
        self.cleanup_on_exit = cleanup_on_exit
        self.ingress_ports = ingress_ports
        self.ingress: IngressController | None = None
        if proxy_mode == "userspace":
            self.dataplane: NftablesDataPlane | UserspaceDataPlane = UserspaceDataPlane(interface=f"{bridge.bridge}-svc")
        elif proxy_mode == "nftables":
            self.dataplane = NftablesDataPlane(table=proxy_table)
        else:
            raise ValueError(f"unknown proxy mode {proxy_mode!r}: nftables or userspace")
        self.dns: ClusterDNS | None = None
        self.proxy: ServiceProxy | None = None
        self.ready = asyncio.Event()  # DNS serves, its EndpointSlice is written and the proxy applied its rules

    async def run(self) -> None:
        await self.bridge.ready.wait()
        self._shared = service_informers(self.client)
        self.dns = ClusterDNS(self.client, domain=self.domain, host=self.bridge.gateway, port=self.dns_port,
                              upstreams=self.upstreams, shared=self._shared)
        self.proxy = ServiceProxy(self.client, node_name=self.node_name, node_ips=self.node_ips,
                                  dataplane=self.dataplane, cleanup_on_exit=self.cleanup_on_exit)
        async with asyncio.TaskGroup() as group:
            for informer in self._shared:  # one pair of watches for DNS and ingress, not two
                group.create_task(informer.run(), name=f"node-network-{informer.resource.plural}")
            group.create_task(self.dns.run(), name="cluster-dns")
            group.create_task(self.proxy.run(), name="service-proxy")
            if self.ingress_ports is not None:
                http, https = self.ingress_ports
                self.ingress = IngressController(self.client, http_port=http, https_port=https,
                                                 node_ips=tuple(self.node_ips), shared=self._shared)
                group.create_task(self._run_ingress(self.ingress), name="ingress")
            await self.dns.ready.wait()
            await self._publish(self.bridge.gateway)
            await self.proxy.ready.wait()
            self.ready.set()
            log.info("node %s: cluster DNS on %s:%d, service proxy ready", self.node_name, self.bridge.gateway,
                     self.dns.port)

    async def _run_ingress(self, ingress: IngressController) -> None:
        try:
            await ingress.run()
        except OSError as exc:  # its ports are taken: DNS and Services work on without it
            log.error("node %s: the ingress controller cannot serve on ports %d/%d: %s", self.node_name,
                      ingress.http_port, ingress.https_port, exc)

    async def _publish(self, address: str) -> None:
        """Create or bring up to date this node's kube-dns EndpointSlice."""
        desired = dns_endpoint_slice(self.node_name, address)
        name, namespace = desired["metadata"]["name"], desired["metadata"]["namespace"]
        delay = 0.2
        while True:
            try:
                try:
                    current = await self.client.get(ENDPOINT_SLICES, name, namespace=namespace)
                except NotFound:
                    await self.client.create(ENDPOINT_SLICES, desired, namespace=namespace)
                    return
                if all(current.get(k) == desired[k] for k in ("addressType", "endpoints", "ports")) and \
                        (current["metadata"].get("labels") or {}) == desired["metadata"]["labels"]:
                    return
                desired["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
                await self.client.update(ENDPOINT_SLICES, name, desired, namespace=namespace)
                return
            except Exception as exc:  # raced with another writer, or the API server is away: try again
                log.warning("node %s: cannot publish its DNS EndpointSlice yet: %s", self.node_name, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
