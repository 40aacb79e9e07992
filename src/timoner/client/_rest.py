"""The async REST client: the Kubernetes verbs over one pooled HTTPS connection set.

`Client` speaks JSON and plain dicts; it knows URLs (through `Resource`),
query parameters and the error mapping, and nothing about particular kinds.
Every non-2xx answer raises the `timoner.api.errors` exception named by the
returned `Status` (see `error_from_status`).

Namespaces: a namespaced write or read of one object uses, in order, the
`namespace` argument, the object's `metadata.namespace` (create/update) and
the kubeconfig context's namespace. `list` and `watch` with `namespace=None`
span all namespaces, as `kubectl get -A` does.

`watch` yields `WatchEvent`s parsed from the newline-delimited JSON stream.
An in-stream `ERROR` event raises its error; a 410 there always raises
`Expired` (upstream sends reason `Expired` or `Gone` for the same thing:
the history asked for is no longer kept), which tells informers to relist.
A stream the server ends cleanly (its `timeoutSeconds`) simply ends the
iteration; a connection lost mid-stream raises `httpx.TransportError`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import httpx
import orjson

from timoner.api.errors import APIError, Expired

from ._config import ClientConfig
from ._errors import error_from_status
from ._resource import Resource

__all__ = ["Client", "PatchType", "WatchEvent"]

PatchType = Literal["merge", "strategic", "json", "apply"]

_PATCH_CONTENT_TYPES: dict[str, str] = {
    "merge": "application/merge-patch+json",
    "strategic": "application/strategic-merge-patch+json",
    "json": "application/json-patch+json",
    "apply": "application/apply-patch+yaml",
}
_JSON = "application/json"


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """One watch event: `ADDED`, `MODIFIED`, `DELETED` or `BOOKMARK`, with its object."""

    type: str
    object: dict[str, Any]

    @property
    def resource_version(self) -> str:
        return str(self.object.get("metadata", {}).get("resourceVersion", ""))


def _params(**values: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in values.items():
        if value is None or value is False:
            continue
        out[key] = "true" if value is True else str(value)
    return out


class Client:
    """An async API client: `async with Client(config) as c: await c.get(PODS, "web", namespace="x")`.

    `user_agent` becomes the default field manager on the server, so each
    component should pass its own name.
    """

    def __init__(self, config: ClientConfig, *, user_agent: str = "timoner-client",
                 timeout: float = 30.0, max_connections: int = 100) -> None:
        self.config = config
        headers = {"Accept": _JSON, "User-Agent": user_agent}
        if config.token:
            headers["Authorization"] = f"Bearer {config.token}"
        self._timeout = timeout
        context = config.ssl_context()
        self._http = httpx.AsyncClient(
            base_url=config.server,
            headers=headers,
            verify=context if context is not None else True,
            timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
        )
        self._extensions = {"sni_hostname": config.tls_server_name} if config.tls_server_name else {}

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- plumbing ------------------------------------------------------------------------

    def _namespace(self, resource: Resource, namespace: str | None, obj: Mapping[str, Any] | None = None) -> str | None:
        if not resource.namespaced:
            return None
        if namespace:
            return namespace
        if obj is not None and obj.get("metadata", {}).get("namespace"):
            return str(obj["metadata"]["namespace"])
        return self.config.namespace

    async def request(self, method: str, path: str, *, params: Mapping[str, str] | None = None,
                      body: Any = None, content_type: str = _JSON) -> Any:
        """Send one request and decode its JSON answer; raise the mapped `APIError` on failure."""
        content = None
        headers = {}
        if body is not None:
            content = orjson.dumps(body)
            headers["Content-Type"] = content_type
        response = await self._http.request(method, path, params=params, content=content, headers=headers,
                                            extensions=self._extensions)
        if response.status_code >= 400:
            raise _error(response.status_code, response.headers, response.content)
        if not response.content:
            return None
        return orjson.loads(response.content)

    # -- verbs ---------------------------------------------------------------------------

    async def get(self, resource: Resource, name: str, *, namespace: str | None = None,
                  subresource: str | None = None) -> dict[str, Any]:
        path = resource.path(namespace=self._namespace(resource, namespace), name=name, subresource=subresource)
        return await self.request("GET", path)

    async def list(self, resource: Resource, *, namespace: str | None = None, label_selector: str | None = None,
                   field_selector: str | None = None, limit: int | None = None, continue_: str | None = None,
                   resource_version: str | None = None) -> dict[str, Any]:
        """One page of a list (`metadata.continue` names the next); `namespace=None` lists all namespaces."""
        params = _params(labelSelector=label_selector or None, fieldSelector=field_selector or None,
                         limit=limit, resourceVersion=resource_version)
        if continue_:
            params["continue"] = continue_
        return await self.request("GET", resource.path(namespace=namespace), params=params)

    async def create(self, resource: Resource, obj: Mapping[str, Any], *, namespace: str | None = None,
                     dry_run: bool = False, field_manager: str | None = None) -> dict[str, Any]:
        path = resource.path(namespace=self._namespace(resource, namespace, obj))
        params = _params(dryRun="All" if dry_run else None, fieldManager=field_manager)
        return await self.request("POST", path, params=params, body=obj)

    async def update(self, resource: Resource, obj: Mapping[str, Any], *, namespace: str | None = None,
                     subresource: str | None = None, dry_run: bool = False,
                     field_manager: str | None = None) -> dict[str, Any]:
        """PUT the whole object; its `metadata.resourceVersion`, if any, makes the write conditional."""
        name = obj.get("metadata", {}).get("name")
        if not name:
            raise ValueError("update needs metadata.name")
        path = resource.path(namespace=self._namespace(resource, namespace, obj), name=name,
                             subresource=subresource)
        params = _params(dryRun="All" if dry_run else None, fieldManager=field_manager)
        return await self.request("PUT", path, params=params, body=obj)

    async def patch(self, resource: Resource, name: str, patch: Any, *, namespace: str | None = None,
                    patch_type: PatchType = "merge", subresource: str | None = None, dry_run: bool = False,
                    field_manager: str | None = None, force: bool = False) -> dict[str, Any]:
        """Patch with a merge (default), strategic, JSON (a list of operations) or apply patch."""
        if patch_type not in _PATCH_CONTENT_TYPES:
            raise ValueError(f"unknown patch type {patch_type!r}")
        path = resource.path(namespace=self._namespace(resource, namespace), name=name, subresource=subresource)
        params = _params(dryRun="All" if dry_run else None, fieldManager=field_manager, force=force)
        return await self.request("PATCH", path, params=params, body=patch,
                                  content_type=_PATCH_CONTENT_TYPES[patch_type])

    async def delete(self, resource: Resource, name: str, *, namespace: str | None = None,
                     propagation_policy: str | None = None, grace_period_seconds: int | None = None,
                     preconditions: Mapping[str, str] | None = None, dry_run: bool = False) -> dict[str, Any]:
        """Delete; answers the object (still terminating, with finalizers) or a Success `Status`."""
        options: dict[str, Any] = {"kind": "DeleteOptions", "apiVersion": "v1"}
        if propagation_policy is not None:
            options["propagationPolicy"] = propagation_policy
        if grace_period_seconds is not None:
            options["gracePeriodSeconds"] = grace_period_seconds
        if preconditions:
            options["preconditions"] = dict(preconditions)
        if dry_run:
            options["dryRun"] = ["All"]
        path = resource.path(namespace=self._namespace(resource, namespace), name=name)
        return await self.request("DELETE", path, body=options)

    async def watch(self, resource: Resource, *, namespace: str | None = None, resource_version: str,
                    label_selector: str | None = None, field_selector: str | None = None,
                    timeout_seconds: int | None = None,
                    allow_bookmarks: bool = True) -> AsyncIterator[WatchEvent]:
        """Events after `resource_version` (`""`/`"0"`: every current object as ADDED first).

        Close the iterator (`contextlib.aclosing`) when stopping early, so the
        connection goes back to the pool at once.
        """
        params = _params(watch=True, resourceVersion=resource_version, labelSelector=label_selector or None,
                         fieldSelector=field_selector or None, timeoutSeconds=timeout_seconds,
                         allowWatchBookmarks=allow_bookmarks)
        # The server ends the stream itself after timeoutSeconds; a read timeout would cut it early.
        timeout = httpx.Timeout(self._timeout, read=None)
        path = resource.path(namespace=namespace)
        async with self._http.stream("GET", path, params=params, timeout=timeout,
                                     extensions=self._extensions) as response:
            if response.status_code >= 400:
                raise _error(response.status_code, response.headers, await response.aread())
            async for line in response.aiter_lines():
                if not line.strip():
                    continue
                event = orjson.loads(line)
                kind, obj = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    raise _watch_error(obj)
                yield WatchEvent(kind, obj)


def _error(code: int, headers: httpx.Headers, content: bytes) -> APIError:
    try:
        body: Any = orjson.loads(content)
    except orjson.JSONDecodeError:
        body = content.decode(errors="replace")
    retry = headers.get("retry-after")
    return error_from_status(body, code=code, retry_after=int(retry) if retry and retry.isdigit() else None)


def _watch_error(status: dict[str, Any]) -> APIError:
    exc = error_from_status(status, code=500)
    if exc.code == 410 and not isinstance(exc, Expired):
        return Expired(exc.message)
    return exc
