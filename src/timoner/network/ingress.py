"""The built-in ingress controller: networking.k8s.io/v1 Ingresses served as ingress-nginx serves them.

`IngressController.run()`:

1. Makes sure its IngressClass exists (`timoner`, controller
   `timoner.dev/ingress-controller`, marked the default class), creating
   it when absent and leaving an existing one as it is.
2. Lists and watches Ingresses, IngressClasses, Services, EndpointSlices
   and `kubernetes.io/tls` Secrets, while a child process makes its fake
   certificate (`_ingress_tls.fake_certificate`).
3. Binds its HTTP and HTTPS listeners (port 0: any free port; the bound
   ones are `http_port` and `https_port` once `ready` is set) and serves
   until cancelled.

Which Ingresses it serves and how a request is routed is the pure
`_ingress_routes` (see its docstring: class selection, ingress-nginx's
merge of rules across Ingresses, host and path matching, TLS hosts). The
table is rebuilt 50 ms after an Ingress, IngressClass or Secret changes;
Services and EndpointSlices are read per request, so a new endpoint is
used as soon as its watch event arrives. A request goes straight to a
ready endpoint of the backend Service (random pick), not through the
ClusterIP, as ingress-nginx does; the proxying itself is `_ingress_http`.

Answers that are not the backend's: 404 (nginx's page) when no backend
claims the request (the controller's default backend), 503 when the
backend Service is missing or has no ready endpoint, 502 when no endpoint
can be reached, 504 when one does not answer within 60 s, and 308 to
`https://` for plain HTTP requests to a host with TLS configured
(ingress-nginx's `ssl-redirect`, with its `ssl-redirect` and
`force-ssl-redirect` annotations honoured); HTTPS answers for such hosts
carry ingress-nginx's default HSTS header.

TLS: the certificate is chosen by SNI (exact host, then a one-label
wildcard server), among the Secrets the served Ingresses name; without
SNI, or for a name no Ingress configures, the fake certificate.

After each rebuild the node IPs given are added to the served Ingresses'
`status.loadBalancer.ingress` (none given: status is left alone; entries
already there are kept, so the controllers of several nodes do not take
turns overwriting each other), and each served Ingress that changed gets
ingress-nginx's `Sync` event "Scheduled for sync".
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from timoner.api.errors import AlreadyExists, NotFound
from timoner.client import Client, EventRecorder, Informer, object_key, resource_for

from ._informers import SERVICE_NAME_LABEL, service_informers
from ._ingress_http import Dialer, Forward, HTTPProxy, Listener, Reply, RequestHead, open_connection
from ._ingress_routes import (
    CONTROLLER,
    DEFAULT_CLASS_ANNOTATION,
    Backend,
    IngressRoutes,
    backend_endpoints,
    build_ingress_routes,
    is_served,
    normalize_host,
)
from ._ingress_tls import Certificate, fake_certificate, parse_certificate, server_context

__all__ = ["CONTROLLER", "Dialer", "IngressController"]

log = logging.getLogger("timoner.network.ingress")

INGRESSES = resource_for("networking.k8s.io/v1", "Ingress")
INGRESS_CLASSES = resource_for("networking.k8s.io/v1", "IngressClass")
SECRETS = resource_for("v1", "Secret")
COMPONENT = "timoner-ingress-controller"
HSTS = ("Strict-Transport-Security", "max-age=31536000; includeSubDomains")  # ingress-nginx's hsts defaults

Obj = dict[str, Any]


@dataclass(frozen=True, slots=True)
class _LoadedCertificate:
    resource_version: str
    certificate: Certificate | None  # None: the Secret is unusable
    context: ssl.SSLContext | None


class IngressController:
    """Serves the Ingresses of `class_name` on `host`; see the module docstring.

    `node_ips` are written into the served Ingresses' status. `dial` opens
    connections to endpoints (default `asyncio.open_connection`; tests that
    cannot publish loopback endpoints, which API validation refuses, map
    addresses there). `routes` is the current table; `syncs` counts
    rebuilds (for tests and metrics).
    """

    def __init__(self, client: Client, *, class_name: str = "timoner", host: str = "0.0.0.0",
                 http_port: int = 80, https_port: int = 443, node_ips: Iterable[str] = (),
                 dial: Dialer = open_connection, shared: tuple[Informer, Informer] | None = None) -> None:
        self.client = client
        self.class_name = class_name
        self.host = host
        self.http_port = http_port
        self.https_port = https_port
        self.node_ips = tuple(node_ips)
        self.ready = asyncio.Event()
        self.routes: IngressRoutes = build_ingress_routes(())
        self.syncs = 0
        self.debounce = 0.05
        self._ingresses = Informer(client, INGRESSES)
        self._classes = Informer(client, INGRESS_CLASSES)
        # `shared`: the Service and EndpointSlice informers another part of the process runs (as for DNS).
        self._services, self._slices = shared or service_informers(client)
        self._shared = (self._services, self._slices) if shared else ()
        self._secrets = Informer(client, SECRETS, field_selector="type=kubernetes.io/tls")
        self._by_service: dict[tuple[str, str], dict[str, Obj]] = {}
        self._certificates: dict[str, _LoadedCertificate] = {}
        self._contexts: dict[str, ssl.SSLContext] = {}
        self._changed = asyncio.Event()
        self._touched: set[str] = set()
        self._proxy = HTTPProxy(self._route, dial=dial)
        self._recorder = EventRecorder(client, component=COMPONENT)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._ingresses.add_handler(on_add=self._ingress_changed, on_update=lambda _old, new: self._ingress_changed(new),
                                    on_delete=self._ingress_changed)
        for informer in (self._classes, self._secrets):
            informer.add_handler(on_add=self._wake, on_update=lambda _old, _new: self._wake(), on_delete=self._wake)
        self._class_seen = asyncio.Event()
        self._classes.add_handler(on_add=self._class_added)
        self._slices.add_handler(on_add=self._slice_added, on_update=self._slice_updated,
                                 on_delete=self._slice_deleted)

    # -- lifecycle -------------------------------------------------------------------------

    async def run(self) -> None:
        """Ensure the class, watch, bind, serve; returns only by cancellation."""
        informers = [asyncio.create_task(i.run(), name=f"ingress-{i.resource.plural}")
                     for i in (self._ingresses, self._classes, self._services, self._slices, self._secrets)
                     if i not in self._shared]
        certificate = asyncio.create_task(fake_certificate(), name="ingress-fake-certificate")
        servers: list[asyncio.Server] = []
        try:
            await self._ensure_class()
            await asyncio.gather(*(i.has_synced.wait() for i in (self._ingresses, self._classes, self._services,
                                                                  self._slices, self._secrets)))
            with contextlib.suppress(TimeoutError):  # a class we just made may list after the first sync
                async with asyncio.timeout(5):
                    await self._class_seen.wait()
            cert_pem, key_pem = await certificate
            default = server_context(cert_pem, key_pem)
            default.sni_callback = self._sni
            self._rebuild()
            servers = await self._bind(default)
            log.info("ingress controller for class %s on %s: HTTP %d, HTTPS %d", self.class_name, self.host,
                     self.http_port, self.https_port)
            self.ready.set()
            await self._loop()
        finally:
            self.ready.clear()
            certificate.cancel()
            for task in informers:
                task.cancel()
            for server in servers:
                server.close()
            self._proxy.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(certificate, *informers, *self._tasks, return_exceptions=True)
            for server in servers:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(server.wait_closed(), 1.0)

    async def _ensure_class(self) -> None:
        body = {"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
                "metadata": {"name": self.class_name, "annotations": {DEFAULT_CLASS_ANNOTATION: "true"}},
                "spec": {"controller": CONTROLLER}}
        delay = 0.1
        while True:
            try:
                try:
                    await self.client.get(INGRESS_CLASSES, self.class_name)
                    return
                except NotFound:
                    await self.client.create(INGRESS_CLASSES, body)
                    log.info("ingress controller: created IngressClass %s (default)", self.class_name)
                    return
            except AlreadyExists:
                return
            except Exception as exc:
                log.warning("ingress controller: checking IngressClass %s failed (%s: %s); retrying in %.1fs",
                            self.class_name, type(exc).__name__, exc, delay)
                await asyncio.sleep(delay)
                delay = min(10.0, delay * 2)

    async def _bind(self, default: ssl.SSLContext) -> list[asyncio.Server]:
        http = await asyncio.start_server(self._serve_http, self.host, self.http_port)
        try:
            https = await asyncio.start_server(self._serve_https, self.host, self.https_port, ssl=default,
                                               ssl_handshake_timeout=10)
        except BaseException:
            http.close()
            raise
        self.http_port = http.sockets[0].getsockname()[1]
        self.https_port = https.sockets[0].getsockname()[1]
        return [http, https]

    async def _serve_http(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self._proxy.serve(reader, writer, listener=Listener("http", self.http_port))

    async def _serve_https(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self._proxy.serve(reader, writer, listener=Listener("https", self.https_port))

    async def _loop(self) -> None:
        failures = 0
        while True:
            try:
                async with asyncio.timeout(30):
                    await self._changed.wait()
            except TimeoutError:
                self._proxy.pool.sweep()
                continue
            await asyncio.sleep(self.debounce)
            self._changed.clear()
            self._proxy.pool.sweep()
            try:
                self._rebuild()
                await self._write_status()
            except Exception as exc:
                failures += 1
                delay = min(10.0, 0.1 * 2 ** (failures - 1))
                log.warning("ingress controller: sync failed (%s: %s); retrying in %.1fs",
                            type(exc).__name__, exc, delay)
                await asyncio.sleep(delay)
                self._changed.set()
                continue
            failures = 0

    # -- informer handlers -----------------------------------------------------------------

    def _wake(self, _obj: Obj | None = None) -> None:
        self._changed.set()

    def _class_added(self, obj: Obj) -> None:
        if (obj.get("metadata") or {}).get("name") == self.class_name:
            self._class_seen.set()

    def _ingress_changed(self, obj: Obj) -> None:
        self._touched.add(object_key(obj))
        self._changed.set()

    def _slice_added(self, obj: Obj) -> None:
        meta = obj.get("metadata") or {}
        service = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL)
        if service:
            self._by_service.setdefault((meta.get("namespace", ""), service), {})[meta["name"]] = obj

    def _slice_deleted(self, obj: Obj) -> None:
        meta = obj.get("metadata") or {}
        key = (meta.get("namespace", ""), (meta.get("labels") or {}).get(SERVICE_NAME_LABEL) or "")
        slices = self._by_service.get(key)
        if slices is not None:
            slices.pop(meta.get("name"), None)
            if not slices:
                del self._by_service[key]

    def _slice_updated(self, old: Obj, new: Obj) -> None:
        self._slice_deleted(old)
        self._slice_added(new)

    # -- the table ---------------------------------------------------------------------------

    def _served(self) -> list[Obj]:
        ingress_class = self._classes.lister.get(None, self.class_name)
        return [ing for ing in self._ingresses.lister.list()
                if is_served(ing, class_name=self.class_name, ingress_class=ingress_class)]

    def _rebuild(self) -> None:
        served = self._served()
        certificates: dict[str, Certificate] = {}
        contexts: dict[str, ssl.SSLContext] = {}
        referenced: set[str] = set()
        for ing in served:
            namespace = ing["metadata"].get("namespace", "")
            for entry in (ing.get("spec") or {}).get("tls") or ():
                name = (entry or {}).get("secretName")
                key = f"{namespace}/{name}"
                if not name or key in referenced:
                    continue
                referenced.add(key)
                loaded = self._load_certificate(namespace, name)
                if loaded is not None and loaded.certificate is not None and loaded.context is not None:
                    certificates[key] = loaded.certificate
                    contexts[key] = loaded.context
        self._certificates = {k: v for k, v in self._certificates.items() if k in referenced}
        self.routes = build_ingress_routes(served, certificates=certificates)
        self._contexts = contexts
        self.syncs += 1
        touched, self._touched = self._touched, set()
        for ing in served:
            if object_key(ing) in touched:
                self._spawn(self._recorder.event(ing, "Normal", "Sync", "Scheduled for sync",
                                                 kind="Ingress", api_version="networking.k8s.io/v1"))

    def _load_certificate(self, namespace: str, name: str) -> _LoadedCertificate | None:
        key = f"{namespace}/{name}"
        secret = self._secrets.lister.get(namespace, name)
        if secret is None:
            log.warning("ingress controller: Secret %s not found, using the default certificate", key)
            return None
        rv = str((secret.get("metadata") or {}).get("resourceVersion", ""))
        cached = self._certificates.get(key)
        if cached is not None and cached.resource_version == rv:
            return cached
        data = secret.get("data") or {}
        try:
            cert_pem = base64.b64decode(data.get("tls.crt") or "")
            key_pem = base64.b64decode(data.get("tls.key") or "")
            if not cert_pem or not key_pem:
                raise ValueError("tls.crt or tls.key is missing")
            loaded = _LoadedCertificate(rv, parse_certificate(cert_pem), server_context(cert_pem, key_pem))
        except (ValueError, ssl.SSLError) as exc:
            log.warning("ingress controller: Secret %s has no usable certificate (%s), using the default one",
                        key, exc)
            loaded = _LoadedCertificate(rv, None, None)
        self._certificates[key] = loaded
        return loaded

    def _sni(self, ssl_object: ssl.SSLObject, server_name: str | None, _context: ssl.SSLContext) -> None:
        try:
            key = self.routes.certificate_for(server_name)
            context = self._contexts.get(key) if key else None
            if context is not None:
                ssl_object.context = context
        except Exception:  # a failure here would fail the handshake; the default certificate is better
            log.exception("ingress controller: choosing a certificate for %r failed", server_name)

    # -- requests ----------------------------------------------------------------------------

    def _route(self, head: RequestHead, listener: Listener) -> Reply | Forward:
        assert head.path is not None
        routes = self.routes
        host = normalize_host(head.host)
        _server, location = routes.route(host, head.path)
        https = listener.scheme == "https"
        configured = routes.tls_configured(host)
        if location is not None and not https and (location.force_ssl_redirect
                                                   or (location.ssl_redirect and configured)):
            port = "" if self.https_port == 443 else f":{self.https_port}"
            hostname = head.host.rsplit(":", 1)[0] if head.host.count(":") == 1 else head.host
            target = f"https://{hostname}{port}{head.target.decode('latin-1')}"
            return Reply(308, (("Location", target),))
        extra = (HSTS,) if https and configured else ()
        if location is None or location.backend is None:
            return Reply(404, extra)
        endpoints = self.endpoints(location.backend)
        if not endpoints:
            return Reply(503, extra)
        return Forward(endpoints, extra)

    def endpoints(self, backend: Backend) -> list[tuple[str, int]]:
        """The ready endpoints of a backend, from the caches."""
        service = self._services.lister.get(backend.namespace, backend.service)
        slices = self._by_service.get((backend.namespace, backend.service), {})
        return backend_endpoints(service, slices.values(), backend.port)

    # -- status ------------------------------------------------------------------------------

    async def _write_status(self) -> None:
        """Add the node IPs to each served Ingress's `status.loadBalancer.ingress`, keeping what is there.

        Adding rather than replacing lets the controllers of several nodes
        share the list without overwriting each other in turn.
        """
        if not self.node_ips:
            return
        for key in self.routes.ingresses:
            namespace, _, name = key.partition("/")
            ing = self._ingresses.lister.get(namespace, name)
            if ing is None:
                continue
            current = list(((ing.get("status") or {}).get("loadBalancer") or {}).get("ingress") or [])
            wanted = current + [{"ip": ip} for ip in self.node_ips if not any(e.get("ip") == ip for e in current)]
            if wanted == current:
                continue
            try:
                await self.client.patch(INGRESSES, name, {"status": {"loadBalancer": {"ingress": wanted}}},
                                        namespace=namespace, subresource="status")
                log.info("ingress controller: %s status: %s", key, ", ".join(self.node_ips))
            except NotFound:
                continue

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
