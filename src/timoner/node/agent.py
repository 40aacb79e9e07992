"""The node agent (`timoner agent`): register the Node, keep its Lease and status fresh, watch its pods.

`Agent.run` is one `Runnable`:

1. read the machine (`machine.read_machine`) and register the Node
   (`registration.register_node`), retrying until the API server answers;
2. then, concurrently and until cancelled:
   - `NodeLease.run`: the heartbeat, every `lease_interval`;
   - `NodeStatusReporter.run`: the status, written only on change or every
     `status_report_interval`;
   - an `Informer` on pods with `fieldSelector=spec.nodeName=<node>`: the
     pods bound here;
   - with pod workers, an `Informer` on Services (all namespaces): the
     containers' service environment variables (`KUBERNETES_SERVICE_HOST`,
     ...), as kubelet's Service lister;
   - `PodWorkers.run` (`timoner.node.pods`): one worker per pod, driving it
     to its spec through the `Runtime`, when the agent has one (given, or
     `hollow` built from the config), with the pods' volumes made under
     `root_dir/pods/<uid>/volumes` by a `VolumeManager` (tmpfs only for a
     runtime that runs real processes, as root) and, for such a runtime,
     each pod's `/etc/hosts` and `/etc/resolv.conf` (`PodEtcFiles`, from
     `PodWorkerConfig.cluster_dns` and friends) bound into its containers;
   - `LocalPathProvisioner` (unless `local_path_provisioner` is off): the
     `rancher.io/local-path` volumes of the claims scheduled here, in
     `root_dir/local-path`.

If any of them fails for good the others are cancelled and `run` raises.
Cancelling `run` stops everything and writes nothing on the way out: a
node that goes away is marked NotReady by the node lifecycle controller
when its Lease expires, as upstream.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from timoner.api.errors import NotFound
from timoner.client import Client, EventRecorder, Informer, load_kubeconfig, object_key, resource_for

from .config import AgentConfig, default_node_name
from .lease import NodeLease
from .machine import DEFAULT_MAX_PODS, Machine, primary_ipv4, read_machine
from .pods import (
    PodEtcFiles,
    PodNetwork,
    PodNetworkPlugin,
    PodWorkerConfig,
    PodWorkers,
    VolumeManager,
    pods_with_volumes,
    remove_pod_volumes,
)
from .provisioner import LocalPathProvisioner
from .registration import register_node
from .runtime import Runtime, State
from .runtimes.hollow import HollowRuntime
from .runtimes.process import ProcessRuntime, remove_spare_staging
from .server import NodeServer
from .status import NodeStatusReporter

__all__ = ["PODS", "Agent", "AgentConfig", "main"]

log = logging.getLogger("timoner.node.agent")

PODS = resource_for("v1", "Pod")
NODES = resource_for("v1", "Node")
SERVICES = resource_for("v1", "Service")

Obj = dict[str, Any]


class Agent:
    """One node's agent; see the module docstring. Its parts are attributes once `run` has registered."""

    def __init__(self, client: Client, config: AgentConfig, *, runtime: Runtime | None = None,
                 pod_config: PodWorkerConfig | None = None, pod_network: PodNetworkPlugin | None = None) -> None:
        self.client = client
        self.config = config
        if runtime is None and config.runtime == "hollow":
            runtime = HollowRuntime(clock=config.clock)
        self.runtime = runtime
        self.pod_config = pod_config or PodWorkerConfig()
        self.pod_network = pod_network
        self.network_ready = asyncio.Event()  # the pod network has the node's pod CIDR (set at once without one)
        self.pod_workers: PodWorkers | None = None
        self.machine: Machine | None = None
        self.node: Obj | None = None
        self.lease: NodeLease | None = None
        self.status: NodeStatusReporter | None = None
        self.pods = Informer(client, PODS, field_selector=f"spec.nodeName={config.node_name}")
        self.pods.add_handler(self._on_pod_add, self._on_pod_update, self._on_pod_delete)
        self.services = Informer(client, SERVICES)  # run only with pod workers, whose containers need it
        self.registered = asyncio.Event()
        self.server: NodeServer | None = None
        self.provisioner: LocalPathProvisioner | None = None

    async def run(self) -> None:
        """Register, then heartbeat, report status and watch pods until cancelled."""
        config = self.config
        await asyncio.to_thread(config.root_dir.mkdir, parents=True, exist_ok=True)
        self.machine = await asyncio.to_thread(read_machine, config.root_dir)
        node_ip = config.node_ip or await asyncio.to_thread(primary_ipv4)
        if self.runtime is not None:
            # The server comes first: the Node advertises the port it really listens on.
            self.server = NodeServer(self.runtime, self.pods.lister.get, host=node_ip, port=config.kubelet_port,
                                     cert_dir=config.root_dir / "pki",
                                     client_ca=await asyncio.to_thread(_cluster_ca, self.client))
            config = self.config = replace(config, kubelet_port=await self.server.start())
        self.node = await register_node(self.client, config, machine=self.machine, node_ip=node_ip)
        self.lease = NodeLease(self.client, config, node_uid=self.node["metadata"]["uid"])
        self.status = NodeStatusReporter(self.client, config, machine=self.machine, node_ip=node_ip)
        if config.local_path_provisioner:
            hostname = (self.node["metadata"].get("labels") or {}).get("kubernetes.io/hostname") or config.node_name
            self.provisioner = LocalPathProvisioner(self.client, node_name=config.node_name, hostname=hostname,
                                                    root_dir=config.root_dir)
        if self.runtime is not None:
            allocatable = (self.node.get("status") or {}).get("allocatable") or {}
            network = PodNetwork(node_ip, node_ip, allocatable)
            # A simulated runtime gets its volumes' files, but never a tmpfs on the host.
            volumes = VolumeManager(self.client, config.root_dir, network=network,
                                    recorder=EventRecorder(self.client, component="kubelet", host=config.node_name),
                                    mount_tmpfs=os.geteuid() == 0 and self.runtime.name != "hollow")
            etc_files = None
            if os.geteuid() == 0 and self.runtime.name != "hollow":  # containers with a mount namespace each
                pods = self.pod_config
                etc_files = PodEtcFiles(config.root_dir, cluster_dns=pods.cluster_dns,
                                        cluster_domain=pods.cluster_domain, resolv_conf=pods.resolv_conf,
                                        recorder=EventRecorder(self.client, component="kubelet",
                                                               host=config.node_name),
                                        node_name=config.node_name)
            self.pod_workers = PodWorkers(self.client, self.runtime, informer=self.pods, clock=config.clock,
                                          network=network, config=self.pod_config, volumes=volumes,
                                          pod_network=self.pod_network, services=self.services,
                                          etc_files=etc_files)
            self.pods.add_handler(self.pod_workers.on_add, self.pod_workers.on_update, self.pod_workers.on_delete)
        self.registered.set()
        try:
            await self._run_parts(config)
        finally:
            if self.server is not None:
                await self.server.close()

    async def _run_parts(self, config: AgentConfig) -> None:
        async with asyncio.TaskGroup() as group:
            group.create_task(self.lease.run(), name=f"node-lease-{config.node_name}")
            group.create_task(self.status.run(), name=f"node-status-{config.node_name}")
            group.create_task(self.pods.run(), name=f"pod-informer-{config.node_name}")
            if self.pod_workers is not None:
                group.create_task(self._run_pods(), name=f"pod-workers-{config.node_name}")
                group.create_task(self.services.run(), name=f"service-informer-{config.node_name}")
            if self.provisioner is not None:
                group.create_task(self.provisioner.run(), name=f"local-path-{config.node_name}")

    async def _run_pods(self) -> None:
        """The pod workers, once the pod network (if any) is ready for the node's pod CIDR."""
        assert self.pod_workers is not None
        if self.pod_network is not None:
            cidr = await self._pod_cidr()
            await self.pod_network.init(cidr)
            log.info("node %s: pod network ready on %s", self.config.node_name, cidr)
        self.network_ready.set()
        await self.pod_workers.run()

    async def _pod_cidr(self) -> str:
        """The Node's `spec.podCIDR`, waiting for the controller manager's node IPAM to give it one."""
        delay, waited = 0.2, 0.0
        while True:
            node = await self.client.get(NODES, self.config.node_name)
            cidr = (node.get("spec") or {}).get("podCIDR")
            if cidr:
                return cidr
            if waited >= 10 and waited - delay < 10:
                log.warning("node %s: still no spec.podCIDR; pods wait for it (is the controller manager running?)",
                            self.config.node_name)
            await asyncio.sleep(delay)
            waited += delay
            delay = min(delay * 2, 2.0)

    # Logging only: the pod workers register their own handlers in `run`.

    def _on_pod_add(self, pod: Obj) -> None:
        log.info("node %s: pod %s bound here", self.config.node_name, object_key(pod))

    def _on_pod_update(self, old: Obj, new: Obj) -> None:
        log.debug("node %s: pod %s changed", self.config.node_name, object_key(new))

    def _on_pod_delete(self, pod: Obj) -> None:
        log.info("node %s: pod %s gone", self.config.node_name, object_key(pod))


def _cluster_ca(client: Client) -> bytes | None:
    """The CA the agent trusts for the API server (its kubeconfig's), which is also what signs the API
    server's client certificate: the node server lets in what it signed. None (no CA named: the
    system's roots, or `insecure-skip-tls-verify`) leaves the node server open."""
    config = client.config
    if config.ca_data is not None:
        return config.ca_data
    if config.ca_file is not None:
        return Path(config.ca_file).read_bytes()
    log.warning("the kubeconfig names no cluster CA: the node server will not authenticate its clients")
    return None


async def main(kubeconfig: Path, *, node_name: str | None = None, runtime: str = "process",
               root_dir: Path | None = None, port: int = 10250, stop_containers_on_exit: bool = False,
               shutdown_grace: float = 10.0,
               max_pods: int = DEFAULT_MAX_PODS, pod_network: PodNetworkPlugin | None = None,
               pod_config: PodWorkerConfig | None = None) -> None:
    """`timoner agent`: run this machine's node agent against the cluster in `kubeconfig` until cancelled.

    Containers normally outlive the agent (a restarted agent re-adopts them, as kubelet does);
    `stop_containers_on_exit` stops them instead (SIGKILL after `shutdown_grace` seconds), for `timoner up`,
    whose cluster ends with it.
    `pod_network` gives pods their own network (none: the host's).
    """
    config = AgentConfig(node_name=node_name or default_node_name(), runtime=runtime, kubelet_port=port,
                         max_pods=max_pods)
    if root_dir is not None:
        config = replace(config, root_dir=root_dir)
    runtime_impl: Runtime | None = None
    if runtime == "process":
        runtime_impl = ProcessRuntime(config.root_dir / "process")
    async with Client(load_kubeconfig(kubeconfig), user_agent=f"timoner-agent/{config.node_name}") as client:
        try:
            if pod_network is not None and not (pod_config or PodWorkerConfig()).cluster_dns:
                dns = await cluster_dns_ip(client)
                pod_config = replace(pod_config or PodWorkerConfig(), cluster_dns=(dns,) if dns else ())
            await Agent(client, config, runtime=runtime_impl, pod_config=pod_config, pod_network=pod_network).run()
        finally:
            if runtime_impl is not None:
                await runtime_impl.close()
                if stop_containers_on_exit:
                    await _stop_all(config.root_dir / "process", grace=shutdown_grace)
                    await asyncio.to_thread(_remove_all_volumes, config.root_dir)


async def cluster_dns_ip(client: Client, *, attempts: int = 20) -> str | None:
    """The ClusterIP of `kube-system/kube-dns` (what kubelet's `--cluster-dns` names), or None without one."""
    for attempt in range(attempts):
        try:
            service = await client.get(SERVICES, "kube-dns", namespace="kube-system")
        except NotFound:
            log.warning("no kube-system/kube-dns Service: pods get the node's resolv.conf")
            return None
        except Exception as exc:  # the API server is not up yet
            if attempt == attempts - 1:
                raise
            log.info("cannot read the kube-dns Service yet: %s", exc)
            await asyncio.sleep(0.5)
            continue
        ip = (service.get("spec") or {}).get("clusterIP")
        return ip if ip and ip != "None" else None
    return None


def _remove_all_volumes(root_dir: Path) -> None:
    """Unmount and remove every pod's volumes once its containers are stopped: no tmpfs outlives `timoner up`."""
    for uid in pods_with_volumes(root_dir):
        remove_pod_volumes(root_dir / "pods" / uid)


async def _stop_all(root: Path, *, grace: float = 10.0) -> None:
    """Stop every container a process runtime on `root` left running, as a fresh agent would find them."""
    runtime = ProcessRuntime(root)
    try:
        known = await runtime.recover()
        running = [c for c in known if c.state is State.RUNNING]
        await asyncio.gather(*(runtime.stop(c.id, grace) for c in running), return_exceptions=True)
        for uid in {c.spec.pod_uid for c in known}:
            await asyncio.to_thread(remove_spare_staging, uid)
    finally:
        await runtime.close()
