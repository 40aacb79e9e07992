"""Service environment variables: the docker-link style variables kubelet gives every container.

`service_env_map` is kubelet's `getServiceEnvVarMap`: the Services of the
pod's namespace that have a cluster IP (not headless, not ExternalName)
when `enableServiceLinks` is on, and always the master service
(`kubernetes` in `default`), even with links off; a Service of the pod's
own namespace named `kubernetes` wins over the master one.
`service_env_vars` is `envvars.FromServices`: for a Service `my-svc` with
cluster IP 10.0.0.11 and ports `http` 80/TCP and `dns` 53/UDP,

    MY_SVC_SERVICE_HOST=10.0.0.11       MY_SVC_PORT=tcp://10.0.0.11:80
    MY_SVC_SERVICE_PORT=80              MY_SVC_PORT_80_TCP=tcp://10.0.0.11:80
    MY_SVC_SERVICE_PORT_HTTP=80         MY_SVC_PORT_80_TCP_PROTO=tcp
    MY_SVC_SERVICE_PORT_DNS=53          MY_SVC_PORT_80_TCP_PORT=80
                                        MY_SVC_PORT_80_TCP_ADDR=10.0.0.11
                                        MY_SVC_PORT_53_UDP=udp://10.0.0.11:53 (and _PROTO, _PORT, _ADDR)

`pod_service_env` reads the agent's Service informer at the container's
start, as kubelet reads its Service lister: Services made later reach only
containers started later. Until that informer has listed once the
container cannot be configured (kubelet's "services have not yet been read
at least once"), so that no container misses `KUBERNETES_SERVICE_HOST`
because the agent had just started.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from timoner.client import Informer

from ._env import ContainerConfigError

__all__ = ["pod_service_env", "service_env_map", "service_env_vars"]

Obj = dict[str, Any]

MASTER_SERVICES = frozenset({"kubernetes"})  # upstream's masterServices, always in `default`


def _has_cluster_ip(service: Obj) -> bool:
    """Upstream's `IsServiceIPSet`: a cluster IP that is neither empty (ExternalName) nor `None` (headless)."""
    ip = (service.get("spec") or {}).get("clusterIP") or ""
    return ip not in ("", "None")


def _env_name(name: str) -> str:
    return name.replace("-", "_").upper()


def _join_host_port(host: str, port: int) -> str:
    """Go's `net.JoinHostPort`: an IPv6 address in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def service_env_vars(services: Iterable[Obj]) -> dict[str, str]:
    """Upstream's `envvars.FromServices`, in its order; Services without a cluster IP or ports give nothing."""
    env: dict[str, str] = {}
    for service in services:
        spec = service.get("spec") or {}
        ports = list(spec.get("ports") or ())
        if not _has_cluster_ip(service) or not ports:  # validation gives every ClusterIP Service a port
            continue
        ip = spec["clusterIP"]
        prefix = _env_name((service.get("metadata") or {}).get("name", ""))
        env[f"{prefix}_SERVICE_HOST"] = ip
        env[f"{prefix}_SERVICE_PORT"] = str(ports[0].get("port", 0))
        for port in ports:  # named ports (only the first may be unnamed)
            if port.get("name"):
                env[f"{prefix}_SERVICE_PORT_{_env_name(port['name'])}"] = str(port.get("port", 0))
        # The Docker link variables; Docker special-cases the first port.
        for index, port in enumerate(ports):
            protocol = port.get("protocol") or "TCP"
            number = int(port.get("port", 0))
            url = f"{protocol.lower()}://{_join_host_port(ip, number)}"
            if index == 0:
                env[f"{prefix}_PORT"] = url
            port_prefix = f"{prefix}_PORT_{number}_{protocol.upper()}"
            env[port_prefix] = url
            env[f"{port_prefix}_PROTO"] = protocol.lower()
            env[f"{port_prefix}_PORT"] = str(number)
            env[f"{port_prefix}_ADDR"] = ip
    return env


def service_env_map(services: Iterable[Obj], *, namespace: str, enable_service_links: bool) -> dict[str, str]:
    """Upstream's `getServiceEnvVarMap`: the variables of the Services a pod in `namespace` sees."""
    chosen: dict[str, Obj] = {}
    for service in services:
        if not _has_cluster_ip(service):
            continue
        meta = service.get("metadata") or {}
        name = meta.get("name", "")
        if meta.get("namespace") == "default" and name in MASTER_SERVICES:
            chosen.setdefault(name, service)
        elif meta.get("namespace") == namespace and enable_service_links:
            chosen[name] = service
    return service_env_vars(chosen[name] for name in sorted(chosen))


def pod_service_env(pod: Obj, services: Informer | None) -> dict[str, str]:
    """The service variables for a container of `pod` starting now; {} without a Service informer.

    Raises `ContainerConfigError` until the informer has listed once.
    """
    if services is None:
        return {}
    if not services.has_synced.is_set():
        raise ContainerConfigError("services have not yet been read at least once, cannot construct envvars")
    spec = pod.get("spec") or {}
    links = spec.get("enableServiceLinks")
    return service_env_map(services.lister.list(), namespace=(pod.get("metadata") or {}).get("namespace", ""),
                           enable_service_links=True if links is None else bool(links))
