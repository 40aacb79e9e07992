"""Turning a pod's container into a `ContainerSpec`: environment, `$(VAR)` expansion, command and args.

Follows the kubelet's `makeEnvironmentVariables` order: `envFrom` sources
first (each ConfigMap/Secret key, with the source's prefix), then `env`
entries in order, each `value` expanded against the variables defined so
far (and the Service variables); `valueFrom` results are never expanded.
The Service variables (`service_env`, from `_services`) come last, each
unless the container defines that name itself. Command and args are
expanded against the final environment. Expansion is upstream's: `$(NAME)` is
replaced when NAME is defined, left literal when not, and `$$` is an
escaped `$`.

Labels and annotations read as upstream's `fieldpath.FormatMap` does
(`format_map`: sorted `key="value"` lines, values quoted as Go's `%q`),
which downwardAPI volumes (`_volumes`) share.

ConfigMaps and Secrets are read through the client at start time (the
kubelet's cache-free "Get" strategy). A missing non-optional source raises
`ContainerConfigError` with the kubelet's message, which the pod worker
shows as `waiting.reason: CreateContainerConfigError`.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from timoner.api.errors import NotFound
from timoner.api.quantity import parse_quantity
from timoner.client import Client, resource_for

from ..runtime import ContainerSpec

__all__ = ["ContainerConfigError", "PodNetwork", "build_container_spec", "expand", "format_map", "go_quote"]

CONFIGMAPS = resource_for("v1", "ConfigMap")
SECRETS = resource_for("v1", "Secret")

Obj = dict[str, Any]


class ContainerConfigError(Exception):
    """The container cannot be configured yet (missing ConfigMap, Secret or key); retried later."""

    reason = "CreateContainerConfigError"


@dataclass(frozen=True, slots=True)
class PodNetwork:
    """What the downward API needs from the node: the IPs and, for unset limits, allocatable; and the
    pod's network namespace (`netns`, a file; "" for the host's network)."""

    host_ip: str
    pod_ip: str
    allocatable: Mapping[str, str] = field(default_factory=dict)
    netns: str = ""


def expand(text: str, lookup: Callable[[str], str | None]) -> str:
    """Upstream's `expansion.Expand`: `$(NAME)` → value (or kept literal when unknown), `$$` → `$`."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch != "$" or i + 1 >= n:
            out.append(ch)
            i += 1
            continue
        nxt = text[i + 1]
        if nxt == "$":
            out.append("$")
            i += 2
        elif nxt == "(":
            close = text.find(")", i + 2)
            if close < 0:
                # An unterminated reference is copied as is, like upstream.
                out.append("$(")
                i += 2
                continue
            name = text[i + 2:close]
            value = lookup(name)
            out.append(f"$({name})" if value is None else value)
            i = close + 1
        else:
            out.append("$" + nxt)
            i += 2
    return "".join(out)


_GO_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t",
               "\v": "\\v", "\\": "\\\\", '"': '\\"'}


def go_quote(text: str) -> str:
    """Go's `strconv.Quote` (`%q`): double-quoted, with Go's escapes for what is not printable."""
    out = ['"']
    for ch in text:
        code = ord(ch)
        if ch in _GO_ESCAPES:
            out.append(_GO_ESCAPES[ch])
        elif ch.isprintable():  # the same set as Go's unicode.IsPrint: L, M, N, P, S and the ASCII space
            out.append(ch)
        elif code < 0x80:
            out.append(f"\\x{code:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


def format_map(values: Mapping[str, str]) -> str:
    """Upstream's `fieldpath.FormatMap`: `key="value"` lines sorted by key, how labels and annotations read."""
    return "\n".join(f"{key}={go_quote(str(values[key]))}" for key in sorted(values))


def _valid_env_name(name: str) -> bool:
    # RelaxedEnvironmentVariableValidation (beta, on in 1.32): printable ASCII except '='.
    return bool(name) and all(32 <= ord(c) <= 126 and c != "=" for c in name)


def _field_value(pod: Obj, path: str, network: PodNetwork) -> str:
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    simple = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "status.hostIP": network.host_ip,
        "status.hostIPs": network.host_ip,
        "status.podIP": network.pod_ip,
        "status.podIPs": network.pod_ip,
    }
    if path in simple:
        return simple[path]
    for prefix, source in (("metadata.labels", "labels"), ("metadata.annotations", "annotations")):
        values = meta.get(source) or {}
        if path == prefix:
            return format_map(values)
        if path.startswith(prefix + "['") and path.endswith("']"):
            return str(values.get(path[len(prefix) + 2:-2], ""))
    raise ContainerConfigError(f"unsupported fieldPath: {path}")


def _resource_value(ref: Obj, container: Obj, network: PodNetwork) -> str:
    resource = ref.get("resource", "")
    kind, _, name = resource.partition(".")
    resources = container.get("resources") or {}
    raw = (resources.get(kind) or {}).get(name)
    if raw is None and kind == "limits":
        raw = network.allocatable.get(name)  # as upstream: an unset limit reads as node allocatable
    value = parse_quantity(raw if raw is not None else "0")
    divisor = parse_quantity(ref.get("divisor") or "1")
    if divisor == 0:
        raise ContainerConfigError(f"invalid divisor for {resource}")
    if name == "cpu":
        return str(math.ceil(math.ceil(value * 1000) / math.ceil(divisor * 1000)))
    return str(math.ceil(value / divisor))


class _Sources:
    """ConfigMaps and Secrets read once per container start, with the kubelet's not-found wording."""

    def __init__(self, client: Client, namespace: str) -> None:
        self._client = client
        self._namespace = namespace
        self._cache: dict[tuple[str, str], Obj | None] = {}

    async def get(self, kind: str, name: str) -> Obj | None:
        key = (kind, name)
        if key not in self._cache:
            resource = CONFIGMAPS if kind == "ConfigMap" else SECRETS
            try:
                self._cache[key] = await self._client.get(resource, name, namespace=self._namespace)
            except NotFound:
                self._cache[key] = None
        return self._cache[key]

    async def data(self, kind: str, name: str, *, optional: bool) -> dict[str, str] | None:
        obj = await self.get(kind, name)
        if obj is None:
            if optional:
                return None
            raise ContainerConfigError(f'{kind.lower()} "{name}" not found')
        if kind == "Secret":
            return {k: base64.b64decode(v).decode("utf-8", "replace") for k, v in (obj.get("data") or {}).items()}
        return dict(obj.get("data") or {})


async def _environment(client: Client, pod: Obj, container: Obj, network: PodNetwork,
                       service_env: Mapping[str, str]) -> dict[str, str]:
    namespace = (pod.get("metadata") or {}).get("namespace", "")
    sources = _Sources(client, namespace)
    env: dict[str, str] = {}

    def lookup(name: str) -> str | None:  # upstream's MappingFuncFor(tmpEnv, serviceEnv)
        value = env.get(name)
        return service_env.get(name) if value is None else value

    for source in container.get("envFrom") or ():
        prefix = source.get("prefix") or ""
        for kind, ref in (("ConfigMap", source.get("configMapRef")), ("Secret", source.get("secretRef"))):
            if not ref:
                continue
            data = await sources.data(kind, ref.get("name", ""), optional=bool(ref.get("optional")))
            for key, value in (data or {}).items():
                if _valid_env_name(prefix + key):  # upstream skips invalid names with an event
                    env[prefix + key] = value
    for var in container.get("env") or ():
        name = var.get("name", "")
        if var.get("value"):
            env[name] = expand(var["value"], lookup)
            continue
        source = var.get("valueFrom")
        if not source:
            env[name] = ""
        elif "fieldRef" in source:
            env[name] = _field_value(pod, source["fieldRef"].get("fieldPath", ""), network)
        elif "resourceFieldRef" in source:
            env[name] = _resource_value(source["resourceFieldRef"], container, network)
        else:
            kind, ref = ("ConfigMap", source.get("configMapKeyRef")) if "configMapKeyRef" in source \
                else ("Secret", source.get("secretKeyRef") or {})
            optional = bool(ref.get("optional"))
            data = await sources.data(kind, ref.get("name", ""), optional=optional)
            if data is None:
                continue
            key = ref.get("key", "")
            if key not in data:
                if optional:
                    continue
                raise ContainerConfigError(f"couldn't find key {key} in {kind} {namespace}/{ref.get('name', '')}")
            env[name] = data[key]
    for name, value in service_env.items():
        env.setdefault(name, value)
    return env


async def build_container_spec(client: Client, pod: Obj, container: Obj, *, network: PodNetwork,
                               attempt: int, service_env: Mapping[str, str] | None = None) -> ContainerSpec:
    """The `ContainerSpec` for one run of `container`; raises `ContainerConfigError` when it cannot be built.

    `service_env` holds the Service variables the container sees (`_services.pod_service_env`).
    """
    env = await _environment(client, pod, container, network, service_env or {})
    meta = pod.get("metadata") or {}
    return ContainerSpec(
        pod_uid=meta.get("uid", ""),
        pod_namespace=meta.get("namespace", ""),
        pod_name=meta.get("name", ""),
        name=container.get("name", ""),
        image=container.get("image", ""),
        command=tuple(expand(part, env.get) for part in container.get("command") or ()),
        args=tuple(expand(part, env.get) for part in container.get("args") or ()),
        env=env,
        working_dir=container.get("workingDir") or "",
        attempt=attempt,
        annotations=dict(meta.get("annotations") or {}),
        stdin=bool(container.get("stdin")),
        stdin_once=bool(container.get("stdinOnce")),
        tty=bool(container.get("tty")),
        netns=network.netns,
        hostname=(pod.get("spec") or {}).get("hostname") or meta.get("name", ""),
    )
