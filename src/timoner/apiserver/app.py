"""The ASGI application: authentication, routing, and the non-resource endpoints.

Paths are routed by hand (no framework) in the order upstream's mux uses:
`/version`, health, discovery, OpenAPI, then resource paths
`/api/v1/...` and `/apis/<group>/<version>/...`, each split into namespace,
resource, name and subresource. Every failure leaves as a `Status` object;
an unexpected exception is logged and answered 500, and the server keeps
serving.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from urllib.parse import parse_qs

import httpx
import orjson

from timoner import __version__
from timoner.api import errors
from timoner.api.openapi import build_group_version_document, build_root, document_hash
from timoner.api.openapi_v2 import OPENAPI_V2_CONTENT_TYPE, OPENAPI_V2_PROTOBUF, build_v2_protobuf
from timoner.api.podlogs import pod_log_options
from timoner.api.registry import ResourceInfo
from timoner.api.schema import KUBERNETES_VERSION

from . import discovery, nodeproxy
from ._http import (
    JSON,
    Request,
    Response,
    User,
    current_request,
    error_response,
    json_response,
    send_response,
)
from .crds import CustomResources
from .lifecycle import PROTECTED_NAMESPACES
from .rest import ResourceHandler
from .serviceaccounts import JWKS_PATH, OPENID_CONFIGURATION_PATH, ServiceAccountTokens
from .store import Store
from .subresources import Subresources

__all__ = ["APIApp", "ADMIN"]

log = logging.getLogger("timoner.apiserver")

ADMIN = User("admin", ("system:masters", "system:authenticated"))
_HEALTH = {"/healthz", "/livez", "/readyz", "/healthz/ping", "/livez/ping", "/readyz/ping"}


class APIApp:
    """The ASGI callable serving the Kubernetes API over a `Store`."""

    def __init__(self, store: Store, resources: list[ResourceInfo], *, tokens: dict[str, User],
                 server_address: str = "127.0.0.1:6443") -> None:
        self.store = store
        self.rest = ResourceHandler(store)
        self.subresources = Subresources(store, self.resource)
        self.tokens = tokens
        self.server_address = server_address
        self.ready = True
        # Service-account tokens (TokenRequest, bearer JWTs); the server gives it the cluster's signing key.
        self.service_accounts: ServiceAccountTokens | None = None
        # TLS towards node agents; the server gives it the kubelet client certificate to present.
        self.node_client_context = nodeproxy.node_client_context()
        self.crds: CustomResources | None = None  # set by APIServer
        self.set_resources(resources)

    # -- resources and the documents derived from them ----------------------------------------

    def set_resources(self, resources: list[ResourceInfo]) -> None:
        self.resources = list(resources)
        self._by_gvr = {(r.group, r.version, r.plural): r for r in self.resources}
        self._by_prefix: dict[str, ResourceInfo] = {}
        for r in self.resources:
            # The first (preferred) version of a storage prefix speaks for it internally.
            self._by_prefix.setdefault(r.storage_prefix, r)
        self._discovery_cache: dict[str, bytes] = {}
        # OpenAPI documents are rebuilt only for the group-versions whose resources changed (a new CRD
        # must not cost a rebuild of every built-in group's document).
        previous = getattr(self, "_openapi_built", {})
        by_path: dict[str, tuple[str, str, tuple[ResourceInfo, ...]]] = {}
        for group, versions in discovery.group_versions(self.resources).items():
            for version in versions:
                path = f"apis/{group}/{version}" if group else f"api/{version}"
                by_path[path] = (group, version,
                                 tuple(r for r in self.resources if r.group == group and r.version == version))
        self._openapi_sources = by_path
        self._openapi_built: dict[str, tuple[tuple[str, str, tuple[ResourceInfo, ...]], bytes, str]] = {
            path: built for path, built in previous.items() if by_path.get(path) == built[0]}

    def resource(self, group: str, version: str, plural: str) -> ResourceInfo | None:
        return self._by_gvr.get((group, version, plural))

    async def _lookup(self, group: str, version: str, plural: str) -> ResourceInfo | None:
        """The resource; on a miss, again once the cache holds this server's writes (a CRD just created)."""
        info = self._by_gvr.get((group, version, plural))
        if info is None and self.store.cache.revision < self.store.last_written:
            await self.store.sync()
            info = self._by_gvr.get((group, version, plural))
        return info

    def resources_by_prefix(self) -> dict[str, ResourceInfo]:
        return self._by_prefix

    def _discovery(self, key: str, build: Callable[[], dict | None]) -> bytes | None:
        if key not in self._discovery_cache:
            doc = build()
            self._discovery_cache[key] = orjson.dumps(doc) if doc is not None else b""
        return self._discovery_cache[key] or None

    def _openapi_doc(self, path: str) -> bytes | None:
        built = self._openapi_built.get(path)
        if built is None:
            source = self._openapi_sources.get(path)
            if source is None:
                return None
            group, version, chosen = source
            doc = orjson.dumps(build_group_version_document(group, version, list(chosen)))
            built = self._openapi_built[path] = (source, doc, document_hash(doc))
        return built[1]

    def _openapi_hashes(self) -> dict[str, str]:
        for path in self._openapi_sources:
            self._openapi_doc(path)
        return {path: self._openapi_built[path][2] for path in self._openapi_sources}

    # -- ASGI ---------------------------------------------------------------------------

    async def __call__(self, scope: dict, receive, send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        req = Request.from_scope(scope, receive, send)
        started = time.perf_counter()
        try:
            response = await self._dispatch(req)
        except errors.APIError as exc:
            response = error_response(exc)
        except Exception as exc:  # a bug: answer 500 and keep serving
            log.exception("%s %s failed", req.method, req.path)
            response = error_response(errors.InternalError(repr(exc)))
        if response is not None:
            try:
                await send_response(send, response, req.warnings)
            except OSError:
                pass
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s %s?%s %s %.1fms", req.method, req.path, scope.get("query_string", b"").decode(),
                      response.status if response else "stream", (time.perf_counter() - started) * 1000)

    async def _authenticate(self, req: Request) -> User:
        user = req.scope.get("timoner.user")
        if user is not None:
            return user
        return await self._bearer_user(req.headers.get("authorization", ""))

    async def _bearer_user(self, auth: str) -> User:
        """The user of an `Authorization: Bearer` header: the static tokens, then service-account JWTs."""
        if auth[:7].lower() == "bearer ":
            token = auth[7:].strip()
            found = self.tokens.get(token)
            if found is not None:
                return found
            if self.service_accounts is not None:
                await self.store.sync()  # a ServiceAccount or pod this server just wrote counts
                found = self.service_accounts.authenticate(token)
                if found is not None:
                    return found
        raise errors.Unauthorized()

    async def _dispatch(self, req: Request) -> Response | None:
        path = req.path
        if path in _HEALTH or path.startswith(("/healthz/", "/livez/", "/readyz/")):
            if path.startswith("/readyz") and not self.ready:
                return Response(500, b"[-]ready failed: shutting down", b"text/plain; charset=utf-8")
            return Response(200, b"ok", b"text/plain; charset=utf-8")
        req.user = await self._authenticate(req)
        current_request.set(req)  # admission's user and warnings (each request runs in its own task)
        accept = req.headers.get("accept")
        if path in (OPENID_CONFIGURATION_PATH, JWKS_PATH) and self.service_accounts is not None:
            if path == JWKS_PATH:
                return json_response(self.service_accounts.jwks(), content_type=b"application/jwk-set+json")
            return json_response(self.service_accounts.openid_configuration(self.server_address))
        if path == "/openapi/v2":
            return self._openapi(req)
        if accept and not any(t in accept for t in ("json", "*/*", "application/*", "yaml")):
            raise errors.NotAcceptable(
                f'only the following media types are accepted: application/json; got "{accept}"')
        if path == "/version":
            return json_response(version_info())
        if path.startswith("/openapi/") or _is_discovery(path):
            # A CRD this server just wrote is served once the cache has it (see crds.CustomResources);
            # resource requests wait only when their resource is unknown (`_lookup`).
            await self.store.sync()
        if path in ("/api", "/api/"):
            return self._discovery_root(req, core=True)
        if path in ("/apis", "/apis/"):
            return self._discovery_root(req, core=False)
        if path.startswith("/openapi/"):
            return self._openapi(req)
        parts = [p for p in path.split("/") if p]
        if parts and parts[0] == "api" and len(parts) >= 2:
            group, version, rest = "", parts[1], parts[2:]
        elif parts and parts[0] == "apis" and len(parts) >= 2:
            if len(parts) == 2:
                doc = discovery.api_group(self.resources, parts[1])
                if doc is None:
                    raise errors.NotFound("", "", message="the server could not find the requested resource")
                return json_response(doc)
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise errors.NotFound("", "", message="the server could not find the requested resource")
        if not rest:
            key = f"{group}/{version}"
            doc = self._discovery(key, lambda: discovery.api_resource_list(self.resources, group, version))
            if doc is None:
                raise errors.NotFound("", "", message="the server could not find the requested resource")
            return Response(200, doc)
        return await self._resource_request(req, group, version, rest)

    def _discovery_root(self, req: Request, *, core: bool) -> Response:
        accept = req.headers.get("accept", "")
        if "as=APIGroupDiscoveryList" in accept and "g=apidiscovery.k8s.io" in accept and "v=v2" in accept:
            body = self._discovery(f"aggregated:{core}", lambda: discovery.aggregated(self.resources, core=core))
            response = Response(200, body or b"{}", discovery.AGGREGATED_CONTENT_TYPE)
        elif core:
            response = json_response(discovery.api_versions(self.server_address))
        else:
            response = Response(200, self._discovery("groups", lambda: discovery.api_group_list(self.resources))
                                or b"{}")
        response.headers.append((b"vary", b"Accept"))
        return response

    def _openapi(self, req: Request) -> Response:
        path = req.path
        if path.rstrip("/") == "/openapi/v3":
            return json_response(build_root(self._openapi_hashes()))
        if path.startswith("/openapi/v3/"):
            doc = self._openapi_doc(path[len("/openapi/v3/"):].rstrip("/"))
            if doc is not None:
                response = Response(200, doc, JSON)
                response.headers.append((b"vary", b"Accept"))
                return response
        if path == "/openapi/v2":
            # Clients ask for protobuf only here; never answer that with JSON (WIRE.md §1).
            if OPENAPI_V2_PROTOBUF not in req.headers.get("accept", ""):
                raise errors.NotAcceptable(f"OpenAPI v2 is served as {OPENAPI_V2_PROTOBUF} only; or use /openapi/v3")
            response = Response(200, build_v2_protobuf(), OPENAPI_V2_CONTENT_TYPE.encode())
            response.headers.append((b"vary", b"Accept"))
            return response
        raise errors.NotFound("", "", message="the server could not find the requested resource")

    async def _resource_request(self, req: Request, group: str, version: str, rest: list[str]) -> Response | None:
        watch_path = False
        if rest[0] == "watch":
            watch_path = True
            rest = rest[1:]
        namespace: str | None = None
        if len(rest) >= 3 and rest[0] == "namespaces":
            candidate = await self._lookup(group, version, rest[2])
            if candidate is not None and candidate.namespaced:
                namespace, rest = rest[1], rest[2:]
        if not rest:
            raise errors.NotFound("", "", message="the server could not find the requested resource")
        plural = rest[0]
        info = await self._lookup(group, version, plural)
        if info is None or len(rest) > 3:
            raise errors.NotFound("", "", message="the server could not find the requested resource")
        if info.namespaced and namespace is None and len(rest) > 1:
            raise errors.NotFound("", "", message="the server could not find the requested resource")
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else ""
        method = req.method
        if info.custom is not None and info.custom.deprecated:
            req.warnings.append(info.custom.deprecation_warning
                                or f"{info.group_version} {info.kind} is deprecated")
        if sub:
            return await self._subresource(req, info, namespace, name, sub)
        if name is None:
            if method == "GET":
                if "list" not in info.verbs:
                    raise errors.MethodNotAllowed()
                if watch_path or req.flag("watch"):
                    await self.rest.watch(req, info, namespace)
                    return None
                return await self.rest.list(req, info, namespace)
            if method == "POST":
                if info.custom is not None and info.custom.terminating:
                    raise errors.MethodNotAllowed(
                        "create not allowed while custom resource definition is terminating")
                if info.group in ("authorization.k8s.io", "authentication.k8s.io"):
                    return await self.subresources.review(req, info, req.user)
                if info.plural == "bindings":
                    return await self.subresources.binding(req, info, namespace, None)
                return await self.rest.create(req, info, namespace)
            if method == "DELETE" and "deletecollection" in info.verbs:
                return await self.rest.delete_collection(req, info, namespace)
            raise errors.MethodNotAllowed()
        if method == "GET":
            if watch_path or req.flag("watch"):
                await self.rest.watch(req, info, namespace, name)
                return None
            return await self.rest.get(req, info, namespace, name)
        if method == "PUT" and "update" in info.verbs:
            return await self.rest.update(req, info, namespace, name)
        if method == "PATCH" and "patch" in info.verbs:
            return await self.rest.patch(req, info, namespace, name)
        if method == "DELETE" and "delete" in info.verbs:
            if info.plural == "customresourcedefinitions" and info.group == "apiextensions.k8s.io" and self.crds:
                await self.crds.mark_for_deletion(name, dry_run=bool(req.args("dryRun")))
            if info.plural == "namespaces" and not info.group:
                if name in PROTECTED_NAMESPACES:
                    raise errors.Forbidden(f'namespaces "{name}" is forbidden: this namespace may not be deleted',
                                           resource="namespaces", name=name)
            return await self.rest.delete(req, info, namespace, name)
        raise errors.MethodNotAllowed()

    async def _subresource(self, req: Request, info: ResourceInfo, namespace: str | None, name: str | None,
                           sub: str) -> Response | None:
        method = req.method
        if name is None or info.subresource(sub) is None:
            raise errors.NotFound("", "", message="the server could not find the requested resource")
        if sub == "status":
            if method == "GET":
                return await self.rest.get(req, info, namespace, name)
            if method == "PUT":
                return await self.rest.update(req, info, namespace, name, subresource="status")
            if method == "PATCH":
                return await self.rest.patch(req, info, namespace, name, subresource="status")
            raise errors.MethodNotAllowed()
        if sub == "scale":
            return await self.subresources.scale(req, info, namespace, name)
        if sub == "binding" and method == "POST":
            return await self.subresources.binding(req, info, namespace, name)
        if sub == "eviction" and method == "POST":
            return await self.subresources.eviction(req, info, namespace, name)
        if sub == "token" and method == "POST" and info.plural == "serviceaccounts" and not info.group:
            return await self.subresources.token(req, namespace, name, self.service_accounts)
        if sub == "finalize" and method == "PUT":
            return await self.subresources.finalize(req, info, name)
        if sub == "log" and method == "GET" and info.plural == "pods":
            await self._proxy_log(req, info, namespace, name)
            return None
        if sub in nodeproxy.UPGRADE_SUBRESOURCES:
            # Upgrades never get here: the protocol relays them (relay_upgrade) before the ASGI app runs.
            raise errors.BadRequest("Upgrade request required")
        raise errors.MethodNotAllowed()

    async def _node_target(self, pod: dict) -> nodeproxy.NodeTarget:
        node_name = (pod.get("spec") or {}).get("nodeName") or ""
        node = self.store.cache.get(f"/registry/core/nodes/{node_name}") if node_name else None
        return nodeproxy.locate(pod, node.obj if node is not None else None)

    async def _proxy_log(self, req: Request, info: ResourceInfo, namespace: str | None, name: str) -> None:
        """Stream a container's log from its node agent (kubelet's /containerLogs).

        The options are validated here first, as upstream's `LogREST.Get` does, and re-encoded for the node.
        """
        options = pod_log_options(name, req.query)
        pod = await self.store.get(info, namespace, name)
        target = await self._node_target(pod)
        container = nodeproxy.default_container(pod, options.container, subresource="log")
        query = options.node_query()
        url = f"https://{target.host}:{target.port}{nodeproxy.node_path('log', namespace, name, container)}"
        async with httpx.AsyncClient(verify=self.node_client_context, timeout=httpx.Timeout(10, read=None)) as client:
            try:
                async with client.stream("GET", f"{url}?{query}" if query else url) as upstream:
                    if upstream.status_code != 200:
                        body = await upstream.aread()
                        await send_response(req.send, Response(
                            upstream.status_code, body,
                            upstream.headers.get("content-type", "application/json").encode()))
                        return
                    await req.send({"type": "http.response.start", "status": 200, "headers": [
                        (b"content-type", b"text/plain"), (b"cache-control", b"no-cache, private")]})
                    async for chunk in upstream.aiter_raw():
                        await req.send({"type": "http.response.body", "body": chunk, "more_body": True})
                    await req.send({"type": "http.response.body", "body": b"", "more_body": False})
            except httpx.TransportError as exc:
                raise errors.ServiceUnavailable(
                    f"error dialing backend: node {target.node} at {target.host}:{target.port}: {exc}") from None

    async def relay_upgrade(self, method: str, target: bytes, headers: list[tuple[bytes, bytes]],
                            user: User | None, transport, relay: nodeproxy.RelayProtocol) -> None:
        """Relay an exec/attach/portforward upgrade to the pod's node agent (see nodeproxy)."""
        try:
            if user is None:
                await self._bearer_user(next((v.decode("latin-1") for k, v in headers if k == b"authorization"), ""))
            match = nodeproxy.STREAM_TARGET.match(target)
            if match is None:
                raise errors.NotFound("", "", message="the server could not find the requested resource")
            namespace, name, sub = (g.decode() for g in match.group(1, 2, 3))
            query = (match.group(4) or b"?")[1:].decode("latin-1")
            pods = self.resource("", "v1", "pods")
            pod = await self.store.get(pods, namespace, name)
            node = await self._node_target(pod)
            container = None
            if sub != "portforward":
                requested = parse_qs(query).get("container", [None])[0]
                container = nodeproxy.default_container(pod, requested, subresource=sub)
            path = nodeproxy.node_path(sub, namespace, name, container)
            lines = [f"{method} {path}{'?' + query if query else ''} HTTP/1.1", f"Host: {node.host}:{node.port}"]
            lines += [f"{k.decode('latin-1')}: {v.decode('latin-1')}" for k, v in headers
                      if k not in (b"host", b"authorization")]
            head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
            await nodeproxy.tunnel(node, head, transport, relay.take_buffered, relay.attach,
                                   context=self.node_client_context)
        except errors.APIError as exc:
            nodeproxy.write_error(transport, exc)
        except Exception as exc:
            log.exception("relaying %s %s failed", method, target[:200])
            nodeproxy.write_error(transport, errors.InternalError(repr(exc)))


def _is_discovery(path: str) -> bool:
    """`/api`, `/api/v1`, `/apis`, `/apis/<group>`, `/apis/<group>/<version>`."""
    parts = path.strip("/").split("/")
    return (parts[0] == "api" and len(parts) <= 2) or (parts[0] == "apis" and len(parts) <= 3)


def version_info() -> dict:
    major, minor = KUBERNETES_VERSION.lstrip("v").split(".")[:2]
    return {
        "major": major,
        "minor": minor,
        "gitVersion": KUBERNETES_VERSION,
        "gitCommit": f"timoner-{__version__}",
        "gitTreeState": "clean",
        "buildDate": "2026-11-26T00:00:00Z",
        "goVersion": "go1.23.4",
        "compiler": "gc",
        "platform": "linux/amd64",
    }
