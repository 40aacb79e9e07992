"""The ingress routing table: which Ingresses a controller serves, and which backend answers a request.

Pure functions of the objects (plain dicts), so every rule is testable
without sockets. They follow networking.k8s.io/v1 as ingress-nginx
implements it (its `createServers` and `getBackendServers`):

- **Class** (`is_served`): `spec.ingressClassName` naming our IngressClass
  (which must exist with our `spec.controller`); else the legacy
  `kubernetes.io/ingress.class` annotation equal to our class name; else,
  with no class at all, only when our IngressClass is the default one
  (`ingressclass.kubernetes.io/is-default-class: "true"`).
- **Order**: Ingresses oldest first (creationTimestamp), ties by
  `namespace/name` descending, as ingress-nginx sorts them; where two
  claim the same thing the first wins.
- **Servers**: one per rule host (a rule without host goes to the
  catch-all server `_`). A server starts with a root location `/` (Prefix)
  pointing at the `spec.defaultBackend` of the first Ingress naming the
  host, or at the controller's default backend (404). An Ingress with a
  defaultBackend and no rules takes the catch-all server's root location.
- **Locations**: each path of each rule, keyed by path and pathType: the
  first Ingress defining one keeps it, except that a `/` Prefix path
  replaces a server's default root location. Paths without a Service
  backend are skipped.
- **Matching** (`IngressRoutes.route`): the server by host, exact name
  first, then a `*.` wildcard covering exactly one more label; unknown
  hosts go to the catch-all server. Within it the longest matching path
  wins, Exact before Prefix at equal length, then the first defined.
  Prefix (and ImplementationSpecific, treated as Prefix) matches element
  by element on `/`, ignoring a trailing slash: `/foo` matches `/foo`,
  `/foo/` and `/foo/bar`, not `/foobar`. Exact matches the path as is.
- **TLS**: a host of an Ingress with a `spec.tls` section gets a
  certificate: the Secret whose `hosts` list it (or, failing that, one of
  the section's Secrets whose certificate covers it), provided that Secret
  holds a certificate valid for the host; otherwise the controller's fake
  certificate. Either way the host is "TLS configured", which makes plain
  HTTP requests to it redirect to HTTPS (`ssl-redirect`).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = [
    "CATCH_ALL",
    "CONTROLLER",
    "DEFAULT_CLASS_ANNOTATION",
    "FAKE_CERTIFICATE",
    "LEGACY_CLASS_ANNOTATION",
    "Backend",
    "HostnameVerifier",
    "IngressRoutes",
    "Location",
    "Server",
    "backend_endpoints",
    "build_ingress_routes",
    "class_is_default",
    "is_served",
    "normalize_host",
    "path_matches",
]

CONTROLLER = "timoner.dev/ingress-controller"
DEFAULT_CLASS_ANNOTATION = "ingressclass.kubernetes.io/is-default-class"
LEGACY_CLASS_ANNOTATION = "kubernetes.io/ingress.class"
SSL_REDIRECT_ANNOTATION = "nginx.ingress.kubernetes.io/ssl-redirect"
FORCE_SSL_REDIRECT_ANNOTATION = "nginx.ingress.kubernetes.io/force-ssl-redirect"
CATCH_ALL = "_"  # ingress-nginx's name for the server of requests no host rule claims
FAKE_CERTIFICATE = ""  # `Server.tls` for "TLS configured, with the controller's own certificate"

Obj = dict[str, Any]


class HostnameVerifier(Protocol):
    """A parsed certificate: does it cover `host` (SAN DNS names and IPs, or the CN)?"""

    def verify_hostname(self, host: str) -> bool: ...


# -- class selection --------------------------------------------------------------------------


def class_is_default(ingress_class: Obj | None) -> bool:
    annotations = ((ingress_class or {}).get("metadata") or {}).get("annotations") or {}
    return annotations.get(DEFAULT_CLASS_ANNOTATION) == "true"


def is_served(ingress: Obj, *, class_name: str, ingress_class: Obj | None, controller: str = CONTROLLER) -> bool:
    """Whether the controller of `class_name` serves `ingress`; `ingress_class` is that IngressClass, if it exists."""
    ours = ingress_class is not None and (ingress_class.get("spec") or {}).get("controller") == controller
    wanted = (ingress.get("spec") or {}).get("ingressClassName")
    if wanted:
        return ours and wanted == class_name
    annotations = (ingress.get("metadata") or {}).get("annotations") or {}
    if LEGACY_CLASS_ANNOTATION in annotations:
        return annotations[LEGACY_CLASS_ANNOTATION] == class_name
    return ours and class_is_default(ingress_class)


# -- the table --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Backend:
    """A Service backend: its port is a number or a port name."""

    namespace: str
    service: str
    port: int | str


@dataclass(frozen=True, slots=True)
class Location:
    """One path of a server; `backend` None is the controller's default backend (404)."""

    path: str
    path_type: str
    backend: Backend | None
    ingress: str = ""  # namespace/name of the Ingress that defined it
    ssl_redirect: bool = True
    force_ssl_redirect: bool = False
    is_default: bool = False  # a server's root location, not (yet) claimed by a path

    def matches(self, request_path: str) -> bool:
        return path_matches(self.path_type, self.path, request_path)


@dataclass(frozen=True, slots=True)
class Server:
    """A host's locations, most precise first; `tls` is the certificate Secret (`ns/name`), `""` for the fake one."""

    hostname: str
    locations: tuple[Location, ...]
    tls: str | None = None

    def match(self, request_path: str) -> Location | None:
        for location in self.locations:
            if location.matches(request_path):
                return location
        return None


@dataclass(frozen=True, slots=True)
class IngressRoutes:
    """The servers built from the served Ingresses (`ingresses`, in ingress-nginx's order)."""

    servers: Mapping[str, Server]
    ingresses: tuple[str, ...] = ()

    def server_for(self, host: str) -> Server | None:
        """The server named `host` (already normalized), else the one-label wildcard covering it; no catch-all."""
        server = self.servers.get(host)
        if server is None and host:
            label, dot, rest = host.partition(".")
            if dot and label and rest and label != "*":
                server = self.servers.get(f"*.{rest}")
        return server if server is not None and server.hostname != CATCH_ALL else None

    def route(self, host: str, path: str) -> tuple[Server, Location | None]:
        """The server for a request's host (catch-all if none) and the location for its path."""
        server = self.server_for(host) or self.servers[CATCH_ALL]
        return server, server.match(path)

    def certificate_for(self, server_name: str | None) -> str | None:
        """The certificate to present for an SNI name: Secret key, `""` (fake), or None (no server: fake)."""
        if not server_name:
            return None
        host = normalize_host(server_name)
        exact = self.servers.get(host)
        if exact is not None and exact.tls is not None and exact.hostname != CATCH_ALL:
            return exact.tls
        label, dot, rest = host.partition(".")
        wildcard = self.servers.get(f"*.{rest}") if dot and label and rest else None
        return wildcard.tls if wildcard is not None else None

    def tls_configured(self, host: str) -> bool:
        """Whether a certificate is configured for `host` (what the HTTPS redirect depends on)."""
        return self.certificate_for(host) is not None


def normalize_host(value: str) -> str:
    """A Host header (or SNI name) as servers are named: lowercase, no port, no trailing dot."""
    host = value.strip().lower()
    if host.startswith("["):  # IPv6 literal
        end = host.find("]")
        return host[: end + 1] if end >= 0 else host
    host = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    return host.rstrip(".")


def path_matches(path_type: str, path: str, request_path: str) -> bool:
    """Exact: equal. Prefix (and ImplementationSpecific): element-wise prefix, trailing slash ignored."""
    if path_type == "Exact":
        return request_path == path
    prefix = path.rstrip("/")
    if not prefix:
        return True
    return request_path == prefix or request_path.startswith(prefix + "/")


def _precedence(indexed: tuple[int, Location]) -> tuple[int, bool, int, int]:
    """Longest path first; a defined path before a server's default root; Exact before Prefix; first defined."""
    index, location = indexed
    length = len(location.path) if location.path_type == "Exact" else len(location.path.rstrip("/") or "/")
    return (-length, location.is_default, 0 if location.path_type == "Exact" else 1, index)


@dataclass(slots=True)
class _ServerBuilder:
    hostname: str
    locations: list[Location] = field(default_factory=list)
    tls: str | None = None
    tls_decided: bool = False


def _sort_key_time(ingress: Obj) -> str:
    return (ingress.get("metadata") or {}).get("creationTimestamp") or ""


def _key(ingress: Obj) -> str:
    meta = ingress.get("metadata") or {}
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


def _compare(a: Obj, b: Obj) -> int:
    ta, tb = _sort_key_time(a), _sort_key_time(b)
    if ta != tb:
        return -1 if ta < tb else 1
    ka, kb = _key(a), _key(b)
    return 0 if ka == kb else (-1 if ka > kb else 1)  # ingress-nginx: `in > jn` on equal timestamps


def _backend(namespace: str, spec: Obj | None) -> Backend | None:
    service = (spec or {}).get("service")
    if not service or not service.get("name"):
        return None  # a resource backend, which ingress-nginx does not serve either
    port = service.get("port") or {}
    number = port.get("number")
    return Backend(namespace, service["name"], int(number) if number else str(port.get("name") or ""))


def _flags(ingress: Obj) -> tuple[bool, bool]:
    annotations = (ingress.get("metadata") or {}).get("annotations") or {}
    redirect = annotations.get(SSL_REDIRECT_ANNOTATION, "true").strip().lower() != "false"
    forced = annotations.get(FORCE_SSL_REDIRECT_ANNOTATION, "false").strip().lower() == "true"
    return redirect, forced


def build_ingress_routes(ingresses: Iterable[Obj], *,
                         certificates: Mapping[str, HostnameVerifier] | None = None) -> IngressRoutes:
    """The servers and locations of the Ingresses a controller serves (already filtered by class).

    `certificates` maps `namespace/secret` to the parsed certificate of each
    usable TLS Secret (missing or unusable ones are absent).
    """
    certificates = certificates or {}
    ordered = sorted(ingresses, key=functools.cmp_to_key(_compare))
    catch_all = _ServerBuilder(CATCH_ALL, [Location("/", "Prefix", None, is_default=True)], tls_decided=True)
    servers: dict[str, _ServerBuilder] = {CATCH_ALL: catch_all}

    # 1. Servers and their root locations.
    for ing in ordered:
        namespace, key, spec = (ing.get("metadata") or {}).get("namespace", ""), _key(ing), ing.get("spec") or {}
        redirect, forced = _flags(ing)
        default = _backend(namespace, spec.get("defaultBackend"))
        rules = spec.get("rules") or []
        if default is not None and not rules and catch_all.locations[0].is_default:
            catch_all.locations[0] = Location("/", "Prefix", default, key, redirect, forced)
        for rule in rules:
            host = (rule or {}).get("host") or CATCH_ALL
            if host not in servers:
                servers[host] = _ServerBuilder(host, [Location("/", "Prefix", default, key, redirect, forced,
                                                               is_default=True)])

    # 2. Certificates: the first Ingress with a TLS section that names a host decides.
    for ing in ordered:
        spec = ing.get("spec") or {}
        if not spec.get("tls"):
            continue
        for rule in spec.get("rules") or []:
            server = servers[(rule or {}).get("host") or CATCH_ALL]
            if server.tls_decided:
                continue
            server.tls_decided = True
            server.tls = _certificate(server.hostname, ing, certificates)

    # 3. Locations.
    for ing in ordered:
        namespace, key, spec = (ing.get("metadata") or {}).get("namespace", ""), _key(ing), ing.get("spec") or {}
        redirect, forced = _flags(ing)
        for rule in spec.get("rules") or []:
            server = servers[(rule or {}).get("host") or CATCH_ALL]
            for http_path in ((rule or {}).get("http") or {}).get("paths") or []:
                backend = _backend(namespace, http_path.get("backend"))
                if backend is None:
                    continue
                path = http_path.get("path") or "/"
                path_type = http_path.get("pathType") or "Prefix"
                location = Location(path, path_type, backend, key, redirect, forced)
                _add_location(server, location)

    built = {}
    for name, builder in servers.items():
        ranked = sorted(enumerate(builder.locations), key=_precedence)
        built[name] = Server(name, tuple(loc for _, loc in ranked), builder.tls)
    return IngressRoutes(built, tuple(_key(ing) for ing in ordered))


def _add_location(server: _ServerBuilder, location: Location) -> None:
    for i, existing in enumerate(server.locations):
        if existing.path != location.path:
            continue
        if existing.path_type != location.path_type:
            break  # same path, another type: both are kept
        if existing.is_default:
            server.locations[i] = location
        return  # already defined: the first Ingress keeps it
    server.locations.append(location)


def _certificate(host: str, ing: Obj, certificates: Mapping[str, HostnameVerifier]) -> str:
    """The Secret key serving `host` for this Ingress, or `FAKE_CERTIFICATE` (ingress-nginx's extractTLSSecretName)."""
    namespace = (ing.get("metadata") or {}).get("namespace", "")
    tls = (ing.get("spec") or {}).get("tls") or []
    secret: str | None = None
    for entry in tls:
        if any(str(h).lower() == host.lower() for h in (entry or {}).get("hosts") or ()):
            secret = (entry or {}).get("secretName") or ""
            break
    else:
        for entry in tls:
            name = (entry or {}).get("secretName")
            cert = certificates.get(f"{namespace}/{name}") if name else None
            if cert is not None and cert.verify_hostname(host):
                secret = name
                break
    if not secret:
        return FAKE_CERTIFICATE
    key = f"{namespace}/{secret}"
    cert = certificates.get(key)
    if cert is None or not cert.verify_hostname(host):
        return FAKE_CERTIFICATE
    return key


# -- endpoints --------------------------------------------------------------------------------


def backend_endpoints(service: Obj | None, slices: Iterable[Obj], port: int | str) -> list[tuple[str, int]]:
    """The ready `(address, port)`s of a Service backend, as ingress-nginx's `serviceEndpoints` finds them.

    The Service port is the first whose port number, targetPort or name
    equals the backend's port; the EndpointSlice port is the one of its name
    (any TCP one when the Service port has no name), else a numeric
    targetPort. An ExternalName Service is its external name and target port.
    """
    if service is None:
        return []
    spec = service.get("spec") or {}
    wanted = str(port)
    if spec.get("type") == "ExternalName":
        return _external_name(spec, wanted)
    service_port = next((sp for sp in spec.get("ports") or ()
                         if wanted in (str(sp.get("port")), str(sp.get("targetPort", sp.get("port"))),
                                       sp.get("name") or "")), None)
    if service_port is None:
        return []
    name = service_port.get("name") or ""
    target = service_port.get("targetPort", service_port.get("port"))
    numeric_target = target if isinstance(target, int) else None
    out: list[tuple[str, int]] = []
    seen: set[tuple[str, int]] = set()
    for eps in slices:
        if eps.get("addressType", "IPv4") not in ("IPv4", "IPv6"):
            continue
        ports: list[int] = []
        slice_ports = eps.get("ports") or []
        if not slice_ports and numeric_target:
            ports.append(numeric_target)
        for ep_port in slice_ports:
            if (ep_port.get("protocol") or "TCP") != "TCP":
                continue
            number = 0
            if not name or (ep_port.get("name") or "") == name:
                number = ep_port.get("port") or 0
            if not number and numeric_target:
                number = numeric_target
            if number:
                ports.append(int(number))
        for endpoint in eps.get("endpoints") or ():
            if (endpoint.get("conditions") or {}).get("ready") is False:
                continue
            for number in ports:
                for address in endpoint.get("addresses") or ():
                    if (address, number) not in seen:
                        seen.add((address, number))
                        out.append((address, number))
    return out


def _external_name(spec: Obj, wanted: str) -> list[tuple[str, int]]:
    name = str(spec.get("externalName") or "").rstrip(".")
    if not name or name == "localhost" or name.startswith("127.") or name == "::1":
        return []  # ingress-nginx refuses loopback external names
    number = 0
    for sp in spec.get("ports") or ():
        if wanted in (str(sp.get("port")), sp.get("name") or ""):
            target = sp.get("targetPort", sp.get("port"))
            number = target if isinstance(target, int) and target else int(sp.get("port") or 0)
            break
    if not number and wanted.isdigit():
        number = int(wanted)
    return [(name, number)] if number else []
