"""`APIServer`: storage, watch cache, store, lifecycle and HTTPS serving, started and stopped as one.

The HTTP server is uvicorn (httptools parser, uvloop when available) behind
a small protocol subclass that reads the verified client certificate of each
TLS connection once, so that authentication per request is a dict lookup.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import gc
import logging
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from timoner.api import errors
from timoner.api.registry import BUILTIN, ResourceInfo
from timoner.storage import Backend, KeyExists, KeyNotFound, open_backend

from . import nodeproxy
from ._http import User
from .admission import (
    DEFAULT_STORAGE_CLASS,
    STORAGE_CLASSES_PREFIX,
    AdmissionChain,
    DefaultStorageClass,
    MutatingAdmissionWebhook,
    ValidatingAdmissionWebhook,
    WebhookClient,
)
from .admission._limitranger import LimitRanger
from .admission._resourcequota import ResourceQuota
from .admission._serviceaccount import ServiceAccountAdmission
from .app import ADMIN, APIApp
from .certs import ClusterPKI, ensure_pki, write_kubeconfig
from .crds import CustomResources
from .lifecycle import PROTECTED_NAMESPACES, Lifecycle
from .objects import validate_object
from .serviceaccounts import ServiceAccountTokens, load_signing_key
from .store import Store, _decode
from .watchcache import WatchCache

__all__ = ["APIServer", "ServerConfig"]

log = logging.getLogger("timoner.apiserver")


def _tune_gc() -> None:
    """Keep the cyclic collector off the hot path.

    The watch cache holds every object as dicts; a full collection walks all
    of them and stalls the event loop (and the SQLite writer, which needs the
    GIL) for 100+ ms once tens of thousands of objects are cached. Objects are
    freed by reference counting anyway; the collector only finds cycles. So
    young collections run less often, and what is alive at start-up is frozen
    out of collection.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


class _TLSIdentityProtocol(HttpToolsProtocol):
    """uvicorn's HTTP protocol, plus the client-certificate user in `scope["timoner.user"]`."""

    _user: User | None = None

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        ssl_object = transport.get_extra_info("ssl_object")
        self._user = None
        if ssl_object is not None:
            cert = ssl_object.getpeercert()
            if cert:
                self._user = _user_from_cert(cert)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._user is not None:
            self.scope["timoner.user"] = self._user  # type: ignore[typeddict-unknown-key]

    # Upgrades of a pod's exec/attach/portforward (WebSocket or SPDY) are relayed to the pod's node
    # agent as a byte tunnel; uvicorn itself would only take WebSocket upgrades, and into the app.
    timoner_app: APIApp | None = None

    def _should_upgrade(self) -> bool:
        return self._get_upgrade() is not None and nodeproxy.STREAM_TARGET.match(self.url) is not None

    def handle_websocket_upgrade(self) -> None:
        assert self.timoner_app is not None
        self.connections.discard(self)
        relay = nodeproxy.RelayProtocol()
        transport = self.transport
        transport.set_protocol(relay)
        relay.connection_made(transport)
        task = self.loop.create_task(self.timoner_app.relay_upgrade(
            self.scope["method"], bytes(self.url), list(self.headers), self._user, transport, relay))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)


def _user_from_cert(cert: dict) -> User:
    name = ""
    groups: list[str] = []
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                name = value
            elif key == "organizationName":
                groups.append(value)
    groups.append("system:authenticated")
    return User(name, tuple(groups))


@dataclass
class ServerConfig:
    """How to run one API server."""

    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 6443
    storage: str = "sqlite"  # sqlite | memory | a backend URL
    service_cidr: str = "100.65.0.0/16"
    service_node_port_range: tuple[int, int] = (30000, 32767)
    tls: bool = True


class APIServer:
    """One API server process's worth of parts; `start()` returns once it serves."""

    def __init__(self, config: ServerConfig, *, resources: list[ResourceInfo] | None = None) -> None:
        self.config = config
        self.resources = list(resources or BUILTIN)
        self.backend: Backend | None = None
        self.cache: WatchCache | None = None
        self.store: Store | None = None
        self.admission: AdmissionChain | None = None
        self.app: APIApp | None = None
        self.lifecycle: Lifecycle | None = None
        self.crds: CustomResources | None = None
        self.pki: ClusterPKI | None = None
        self._server: uvicorn.Server | None = None
        self._serve_task: asyncio.Task | None = None
        self._socket: socket.socket | None = None
        self._compactor: asyncio.Task | None = None
        self.port = config.port

    @property
    def url(self) -> str:
        scheme = "https" if self.config.tls else "http"
        return f"{scheme}://{self.config.host}:{self.port}"

    @property
    def kubeconfig(self) -> Path:
        return self.config.data_dir / "kubeconfig"

    def _storage_url(self) -> str:
        kind = self.config.storage
        if kind == "sqlite":
            return str((self.config.data_dir / 'state.db').resolve())
        if kind == "memory":
            return "memory://"
        return kind

    async def start(self) -> None:
        data_dir = self.config.data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        self.pki = ensure_pki(data_dir, extra_sans=(self.config.host,))
        self.backend = await open_backend(self._storage_url())
        self.cache = WatchCache(self.backend, decode=_decode)
        await self.cache.start()
        self.store = Store(self.backend, self.cache, validate=validate_object,
                           service_cidr=self.config.service_cidr, node_ports=self.config.service_node_port_range)
        self.store.last_written = self.cache.revision
        self.store.rebuild_allocations()
        # The admission chain; `AdmissionChain.register` puts each plugin at its place in upstream's order.
        self.admission = AdmissionChain()
        webhooks = WebhookClient()

        def served() -> list[ResourceInfo]:  # what the webhooks' matchPolicy Equivalent may match (CRDs too)
            return self.app.resources if self.app is not None else self.resources

        self.admission.register(DefaultStorageClass(self.store))
        self.admission.register(ServiceAccountAdmission.for_store(self.store))
        self.admission.register(MutatingAdmissionWebhook(self.store, webhooks, resources=served))
        self.admission.register(ValidatingAdmissionWebhook(self.store, webhooks, resources=served))
        self.admission.register(LimitRanger(self.store))
        self.admission.register(ResourceQuota(self.store))
        self.store.admission = self.admission
        tokens = {self.pki.token(): ADMIN}
        self.app = APIApp(self.store, self.resources, tokens=tokens)
        self.app.node_client_context = nodeproxy.node_client_context(self.pki.kubelet_client_cert,
                                                                     self.pki.kubelet_client_key)
        self.app.service_accounts = ServiceAccountTokens(load_signing_key(self.pki.sa_key), self._cached_object)
        self.lifecycle = Lifecycle(self.store, self.app.resources_by_prefix, root_ca=self.pki.ca_cert.read_text())
        self.crds = CustomResources(self.store, self.resources, self.app.set_resources)
        self.app.crds = self.crds
        await self._bootstrap()
        self.lifecycle.start()
        self.crds.start()
        _tune_gc()
        self._compactor = asyncio.create_task(self._compact_periodically(), name="compactor")

        sock = socket.socket(socket.AF_INET6 if ":" in self.config.host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.config.host, self.config.port))
        sock.listen(2048)
        sock.setblocking(False)
        self._socket = sock
        self.port = sock.getsockname()[1]
        self.app.server_address = f"{self.config.host}:{self.port}"
        kwargs = {}
        if self.config.tls:
            kwargs = dict(ssl_certfile=str(self.pki.server_cert), ssl_keyfile=str(self.pki.server_key),
                          ssl_ca_certs=str(self.pki.ca_cert), ssl_cert_reqs=ssl.CERT_OPTIONAL)
        protocol = type("TimonerHTTPProtocol", (_TLSIdentityProtocol,), {"timoner_app": self.app})
        uv_config = uvicorn.Config(
            self.app, http=protocol, ws="none", lifespan="off", log_level="warning",
            proxy_headers=False,
            access_log=False, timeout_keep_alive=120, server_header=False, date_header=False,
            backlog=2048, timeout_graceful_shutdown=2, **kwargs,
        )
        self._server = uvicorn.Server(uv_config)
        uv_config.load()
        self._server.lifespan = uv_config.lifespan_class(uv_config)
        await self._server.startup(sockets=[sock])
        self._serve_task = asyncio.create_task(self._server.main_loop(), name="uvicorn")
        write_kubeconfig(self.kubeconfig, self.pki, self.url)

    def _cached_object(self, key: str) -> dict | None:
        cached = self.cache.get(key) if self.cache is not None else None
        return cached.obj if cached is not None else None

    async def _bootstrap(self) -> None:
        """Create the namespaces every cluster has, and the `kubernetes` Service."""
        assert self.store is not None and self.app is not None
        ns_info = self.app.resource("", "v1", "namespaces")
        for name in PROTECTED_NAMESPACES:
            if self.cache.get(f"/registry/core/namespaces/{name}") is None:
                try:
                    await self.store.create(ns_info, None, {
                        "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name},
                        "spec": {"finalizers": ["kubernetes"]}})
                except errors.AlreadyExists:
                    pass
        svc_info = self.app.resource("", "v1", "services")
        if self.cache.get("/registry/core/services/default/kubernetes") is None:
            try:
                await self.store.create(svc_info, "default", {
                    "apiVersion": "v1", "kind": "Service",
                    "metadata": {"name": "kubernetes", "labels": {
                        "component": "apiserver", "provider": "kubernetes"}},
                    "spec": {"type": "ClusterIP", "clusterIP": self.store.cluster_ips.kubernetes_ip,
                             "clusterIPs": [self.store.cluster_ips.kubernetes_ip], "sessionAffinity": "None",
                             "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack",
                             "internalTrafficPolicy": "Cluster",
                             "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}]},
                }, skip_namespace_check=True)
            except errors.AlreadyExists:
                pass
        await self._bootstrap_dns_service(svc_info)
        await self._bootstrap_storage_class()

    async def _bootstrap_dns_service(self, svc_info) -> None:
        """`kube-system/kube-dns` at the service CIDR's tenth address, as kubeadm makes it for CoreDNS.

        Selectorless, with `internalTrafficPolicy: Local`: every node agent with a pod network serves
        cluster DNS itself and publishes its own EndpointSlice for it, so each node's pods ask their own
        node (`docs/ARCHITECTURE.md`, "Cluster DNS").
        """
        assert self.store is not None
        if self.cache.get("/registry/core/services/kube-system/kube-dns") is not None:
            return
        ip = self.store.cluster_ips.dns_ip
        try:
            await self.store.create(svc_info, "kube-system", {
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "kube-dns", "labels": {
                    "k8s-app": "kube-dns", "kubernetes.io/cluster-service": "true",
                    "kubernetes.io/name": "Timoner-DNS"}},
                "spec": {"type": "ClusterIP", "clusterIP": ip, "clusterIPs": [ip], "internalTrafficPolicy": "Local",
                         "sessionAffinity": "None", "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack",
                         "ports": [{"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                                   {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53}]},
            }, skip_namespace_check=True)
        except errors.AlreadyExists:
            pass
        except errors.Invalid as exc:  # its address is taken by a Service of the user's
            log.warning("cannot make the kube-dns Service at %s: %s", ip, exc)

    async def _bootstrap_storage_class(self) -> None:
        """The default StorageClass `local-path`, made once: a cluster whose admin deleted it, or marked
        another class default, keeps it that way (a marker key remembers that it was made)."""
        assert self.store is not None and self.app is not None and self.backend is not None
        marker = "/timoner/bootstrap/storageclass-local-path"
        with contextlib.suppress(KeyNotFound):
            await self.backend.get(marker)
            return
        name = DEFAULT_STORAGE_CLASS["metadata"]["name"]
        if self.cache.get(f"{STORAGE_CLASSES_PREFIX}{name}") is None:
            try:
                await self.store.create(self.app.resource("storage.k8s.io", "v1", "storageclasses"), None,
                                        copy.deepcopy(DEFAULT_STORAGE_CLASS))
            except errors.AlreadyExists:
                pass
        with contextlib.suppress(KeyExists):
            await self.backend.create(marker, b"{}")

    async def _compact_periodically(self, *, every: float = 300.0, keep: int = 10_000) -> None:
        """Forget storage history older than the last `keep` revisions, as kine does every 5 minutes."""
        assert self.backend is not None
        while True:
            await asyncio.sleep(every)
            try:
                target = await self.backend.current_revision() - keep
                if target > await self.backend.compact_revision():
                    await self.backend.compact(target)
            except Exception:
                log.exception("compaction failed")

    async def stop(self) -> None:
        if self._compactor is not None:
            self._compactor.cancel()
        if self.app is not None:
            self.app.ready = False
        if self._server is not None:
            self._server.should_exit = True
            if self._serve_task is not None:
                try:
                    await asyncio.wait_for(self._serve_task, 5)
                except (TimeoutError, asyncio.CancelledError):
                    self._serve_task.cancel()
            self._server.force_exit = True
            try:
                await asyncio.wait_for(self._server.shutdown(sockets=[self._socket] if self._socket else None), 5)
            except (TimeoutError, Exception):
                pass
        if self.crds is not None:
            await self.crds.stop()
        if self.lifecycle is not None:
            await self.lifecycle.stop()
        if self.admission is not None:
            await self.admission.close()
        if self.cache is not None:
            await self.cache.stop()
        if self.backend is not None:
            await self.backend.close()
