"""The generic REST handler: one implementation of the Kubernetes verbs for every kind.

`ResourceHandler` serves get, list, watch, create, update, patch, delete and
deletecollection for any `ResourceInfo`, built-in or (later) custom, using
the `Store` for writes and the watch cache for reads. Per-kind differences
live in strategies, defaults and validation, not here.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import copy
import datetime as dt
import random
from collections.abc import Callable
from typing import Any

import orjson

from timoner.api import errors
from timoner.api.patch import apply_config, apply_json_patch, apply_merge_patch, apply_strategic_merge_patch
from timoner.api.registry import ResourceInfo
from timoner.api.selectors import check_supported, parse_field_selector, parse_label_selector
from timoner.api.tables import to_table
from timoner.storage import Compacted, FutureRevision

from ._http import JSON, Request, Response, decode_body, json_response
from .convert import from_storage, needs_conversion
from .fieldmanager import (
    apply_type,
    field_manager,
    force_flag,
    ignored_paths,
    live_managed_fields,
    resets_managed_fields,
    update_tracker,
)
from .objects import decode_object
from .store import Store, now_rfc3339
from .strategy import strategy_for
from .watchcache import CachedObject

__all__ = ["ResourceHandler", "dry_run"]

PATCH_TYPES = (
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
)
APPLY_PATCH = "application/apply-patch+yaml"
_TABLE_CT = b"application/json;as=Table;v=v1;g=meta.k8s.io"
_CONTINUE_EXPIRED = (
    "The provided continue parameter is too old to display a consistent list result. You can start a new "
    "list without the continue parameter, or use the continue token in this response to retrieve the "
    "remainder of the results. Continuing with the provided token results in an inconsistent list - objects "
    "that were created, modified, or deleted between the time the first chunk was returned and now may show "
    "up in the list."
)


def dry_run(req: Request) -> bool:
    values = req.args("dryRun")
    for v in values:
        if v != "All":
            raise errors.BadRequest(f'Invalid dry run value: "{v}"; supported value: "All"')
    return bool(values)


def _encode_continue(revision: int, start: str) -> str:
    raw = orjson.dumps({"v": "meta.k8s.io/v1", "rv": revision, "start": start})
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_continue(token: str) -> tuple[int, str]:
    try:
        padded = token + "=" * (-len(token) % 4)
        data = orjson.loads(base64.urlsafe_b64decode(padded))
        return int(data["rv"]), str(data["start"])
    except (ValueError, KeyError, TypeError, binascii.Error, orjson.JSONDecodeError):
        raise errors.BadRequest(f"continue key is not valid: {token}") from None


class ListOptions:
    """A list or watch request's selectors and versions, checked once."""

    __slots__ = ("label", "field", "limit", "continue_token", "resource_version", "rv_match")

    def __init__(self, req: Request, info: ResourceInfo) -> None:
        label = req.arg("labelSelector") or ""
        field = req.arg("fieldSelector") or ""
        self.label = parse_label_selector(label) if label else None
        self.field = parse_field_selector(field) if field else None
        if self.field is not None:
            fields = strategy_for(info).selectable_fields
            check_supported(self.field, fields, resource=info.kind, registered=len(fields) > 2)
        self.limit = req.int_arg("limit", 0) or 0
        self.continue_token = req.arg("continue") or ""
        self.resource_version = req.arg("resourceVersion")
        self.rv_match = req.arg("resourceVersionMatch") or ""
        if self.rv_match and self.rv_match not in ("Exact", "NotOlderThan"):
            raise errors.BadRequest(f"invalid resourceVersionMatch: {self.rv_match}")
        if self.rv_match and not self.resource_version and req.arg("sendInitialEvents") is None:
            raise errors.BadRequest("resourceVersionMatch is forbidden unless resourceVersion is provided")
        if self.continue_token and self.resource_version not in (None, ""):
            if self.resource_version != "0":
                raise errors.BadRequest("specifying resource version is not allowed when using continue")

    def predicate(self, info: ResourceInfo) -> Callable[[dict], bool] | None:
        label, field = self.label, self.field
        if label is None and field is None:
            return None
        strategy = strategy_for(info)

        def matches(obj: dict) -> bool:
            if label is not None and not label.matches((obj.get("metadata") or {}).get("labels")):
                return False
            if field is not None and not field.matches(strategy.field_values(obj)):
                return False
            return True

        return matches


def _parse_rv(value: str) -> int:
    try:
        rv = int(value)
    except ValueError:
        raise errors.BadRequest(f'invalid resource version "{value}"') from None
    if rv < 0:
        raise errors.BadRequest(f'invalid resource version "{value}"')
    return rv


class ResourceHandler:
    """The Kubernetes verbs over one `Store`, for any resource."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.cache = store.cache

    # -- shaping responses ----------------------------------------------------------------

    def _object_response(self, req: Request, info: ResourceInfo, obj: dict, status: int = 200) -> Response:
        if req.wants_table:
            table = to_table(info, [obj], now=dt.datetime.now(dt.UTC),
                             include_object=req.arg("includeObject") or "Metadata",
                             resource_version=obj.get("metadata", {}).get("resourceVersion", ""))
            return Response(status, orjson.dumps(table), _TABLE_CT)
        return json_response(obj, status)

    # -- get ---------------------------------------------------------------------------

    async def get(self, req: Request, info: ResourceInfo, namespace: str | None, name: str) -> Response:
        rv = req.arg("resourceVersion")
        if rv not in (None, "", "0"):
            await self.cache.wait_for(_parse_rv(rv))
        cached = await self.store.get_cached(info, namespace, name)
        if req.wants_table:
            return self._object_response(req, info, self.store.served(info, cached.obj))
        if needs_conversion(info):
            return json_response(from_storage(info, orjson.loads(cached.json)))
        return Response(200, cached.json)

    # -- list ---------------------------------------------------------------------------

    def _prefix(self, info: ResourceInfo, namespace: str | None) -> str:
        if info.namespaced and namespace:
            return f"{info.storage_prefix}{namespace}/"
        return info.storage_prefix

    async def list(self, req: Request, info: ResourceInfo, namespace: str | None) -> Response:
        opts = ListOptions(req, info)
        prefix = self._prefix(info, namespace)
        predicate = opts.predicate(info)
        limit = opts.limit
        start_after: str | None = None
        revision: int
        from_storage_at: int | None = None
        if opts.continue_token:
            revision, start_after = _decode_continue(opts.continue_token)
            if revision != self.cache.revision:
                from_storage_at = revision
        elif opts.resource_version in (None, ""):
            await self.store.sync()
            revision = self.cache.revision
        elif opts.resource_version == "0":
            revision = self.cache.revision
        else:
            wanted = _parse_rv(opts.resource_version)
            if opts.rv_match == "Exact" and wanted != self.cache.revision:
                from_storage_at = wanted
                revision = wanted
            else:
                await self.cache.wait_for(wanted)
                revision = self.cache.revision
        if from_storage_at is not None:
            items, more, last_key = await self._list_from_storage(prefix, from_storage_at, start_after, limit,
                                                                  predicate)
            remaining = None
        else:
            items, more, last_key, remaining = self._list_from_cache(prefix, start_after, limit, predicate)
        continue_token = _encode_continue(revision, last_key) if more and last_key else ""
        meta: dict[str, Any] = {"resourceVersion": str(revision)}
        if continue_token:
            meta["continue"] = continue_token
            if remaining is not None and predicate is None:
                meta["remainingItemCount"] = remaining
        if req.wants_table:
            objs = [self.store.served(info, c.obj) for c in items]
            table = to_table(info, objs, now=dt.datetime.now(dt.UTC),
                             include_object=req.arg("includeObject") or "Metadata",
                             resource_version=str(revision), continue_token=continue_token,
                             remaining=meta.get("remainingItemCount"))
            return Response(200, orjson.dumps(table), _TABLE_CT)
        head = orjson.dumps({"kind": info.list_kind, "apiVersion": info.group_version, "metadata": meta})
        if needs_conversion(info):
            body_items = b",".join(orjson.dumps(from_storage(info, orjson.loads(c.json))) for c in items)
        else:
            body_items = b",".join(c.json for c in items)
        return Response(200, head[:-1] + b',"items":[' + body_items + b"]}", JSON)

    def _list_from_cache(self, prefix: str, start_after: str | None, limit: int,
                         predicate: Callable[[dict], bool] | None):
        candidates = self.cache.list(prefix, after=start_after)
        out: list[CachedObject] = []
        more = False
        scanned = 0
        for cached in candidates:
            scanned += 1
            if predicate is not None and not predicate(cached.obj):
                continue
            if limit and len(out) >= limit:
                more = True
                break
            out.append(cached)
        last_key = out[-1].key if out else None
        remaining = len(candidates) - scanned + 1 if more else 0
        return out, more, last_key, remaining

    async def _list_from_storage(self, prefix: str, revision: int, start_after: str | None, limit: int,
                                 predicate: Callable[[dict], bool] | None):
        out: list[CachedObject] = []
        cursor = start_after
        try:
            while True:
                page = await self.store.backend.list(prefix, limit=max(limit, 500), continue_from=cursor,
                                                     revision=revision)
                for kv in page.items:
                    obj = orjson.loads(kv.value)
                    obj.setdefault("metadata", {})["resourceVersion"] = str(kv.mod_revision)
                    if predicate is not None and not predicate(obj):
                        continue
                    if limit and len(out) >= limit:
                        return out, True, out[-1].key
                    out.append(CachedObject(kv.key, obj, kv.mod_revision))
                if not page.more or not page.items:
                    return out, False, (out[-1].key if out else None)
                cursor = page.items[-1].key
        except Compacted:
            raise errors.Expired(_CONTINUE_EXPIRED) from None
        except FutureRevision:
            raise errors.Timeout(f"Too large resource version: {revision}, current: {self.cache.revision}") from None

    # -- watch ---------------------------------------------------------------------------

    async def watch(self, req: Request, info: ResourceInfo, namespace: str | None,
                    name: str | None = None) -> None:
        opts = ListOptions(req, info)
        prefix = self._prefix(info, namespace)
        predicate = opts.predicate(info)
        if name is not None:
            # Watching one object (the legacy /watch/.../name form): its name, not a key prefix,
            # which would also match longer names.
            selected = predicate

            def predicate(obj: dict) -> bool:
                return obj["metadata"].get("name") == name and (selected is None or selected(obj))

        rv = opts.resource_version
        send_initial = req.arg("sendInitialEvents") == "true"
        timeout = req.int_arg("timeoutSeconds")
        if timeout is None:
            timeout = int(1800 * (1 + random.random()))
        bookmarks = req.flag("allowWatchBookmarks")
        error: errors.APIError | None = None
        watcher = None
        if rv in (None, "", "0") or send_initial:
            if rv in (None, ""):
                await self.store.sync()
            watcher = self.cache.watch(prefix, from_revision=None, predicate=predicate)
        else:
            from_rev = _parse_rv(rv)
            if from_rev > self.cache.revision:
                await self.cache.wait_for(from_rev)
            try:
                watcher = self.cache.watch(prefix, from_revision=from_rev, predicate=predicate)
            except errors.APIError as exc:
                error = exc
        headers = [(b"content-type", _TABLE_CT if req.wants_table else JSON),
                   (b"cache-control", b"no-cache, private"), (b"transfer-encoding", b"chunked")]
        await req.send({"type": "http.response.start", "status": 200, "headers": headers})
        if error is not None:
            await req.send({"type": "http.response.body", "body": _event_line("ERROR", error.status()),
                            "more_body": False})
            return
        assert watcher is not None
        disconnected = asyncio.Event()

        async def wait_disconnect() -> None:
            while True:
                message = await req.receive()
                if message["type"] == "http.disconnect":
                    disconnected.set()
                    watcher.offer(None)
                    return

        disconnect_task = asyncio.create_task(wait_disconnect())
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        initial_pending = send_initial and bookmarks
        initial_count = watcher.queue.qsize() if initial_pending else 0
        table_info = info if req.wants_table else None
        try:
            while not disconnected.is_set():
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                if initial_pending and initial_count == 0:
                    await req.send({"type": "http.response.body", "more_body": True, "body": _event_line(
                        "BOOKMARK", _bookmark(info, self.cache.revision, initial_end=True))})
                    initial_pending = False
                try:
                    # Only an empty queue needs a timed wait (wait_for costs a task per call).
                    if watcher.queue.empty():
                        item = await asyncio.wait_for(watcher.queue.get(), min(remaining, 60.0))
                    else:
                        item = watcher.queue.get_nowait()
                except TimeoutError:
                    if bookmarks:
                        await req.send({"type": "http.response.body", "more_body": True,
                                        "body": _event_line("BOOKMARK", _bookmark(info, self.cache.revision))})
                    continue
                if item is None:
                    break
                if initial_pending:
                    initial_count -= 1
                chunks = [self._render(info, table_info, *item)]
                # Drain what is already queued into one write.
                ended = False
                while not watcher.queue.empty() and len(chunks) < 256:
                    nxt = watcher.queue.get_nowait()
                    if nxt is None:
                        # The end marker of a watcher the cache cut off (it offers nothing more, so
                        # putting the marker back through `offer` would lose it): end after this write.
                        ended = True
                        break
                    if initial_pending:
                        initial_count -= 1
                    chunks.append(self._render(info, table_info, *nxt))
                await req.send({"type": "http.response.body", "body": b"".join(chunks), "more_body": True})
                if ended:
                    break
        finally:
            self.cache.unwatch(watcher)
            disconnect_task.cancel()
        if not disconnected.is_set():
            await req.send({"type": "http.response.body", "body": b"", "more_body": False})

    def _render(self, info: ResourceInfo, table_info: ResourceInfo | None, event_type: str,
                cached: CachedObject) -> bytes:
        if table_info is not None:
            obj = self.store.served(info, cached.obj)
            table = to_table(info, [obj], now=dt.datetime.now(dt.UTC), include_object="Metadata",
                             resource_version=str(cached.revision))
            return _event_line(event_type, table)
        if needs_conversion(info):
            return _event_line(event_type, from_storage(info, orjson.loads(cached.json)))
        return b'{"type":"' + event_type.encode() + b'","object":' + cached.json + b"}\n"

    # -- create ---------------------------------------------------------------------------

    async def create(self, req: Request, info: ResourceInfo, namespace: str | None) -> Response:
        body = await req.json_body()
        track = update_tracker(info, manager=field_manager(req, apply=False, options_kind="CreateOptions"),
                               reset=resets_managed_fields(body))
        obj = decode_object(req, info, body, namespace=namespace, raw=await req.body())
        created = await self.store.create(info, namespace, obj, dry_run=dry_run(req), track=track)
        return self._object_response(req, info, created, 201)

    # -- update ---------------------------------------------------------------------------

    async def update(self, req: Request, info: ResourceInfo, namespace: str | None, name: str,
                     subresource: str = "") -> Response:
        body = await req.json_body()
        track = update_tracker(info, manager=field_manager(req, apply=False, options_kind="UpdateOptions"),
                               subresource=subresource, reset=resets_managed_fields(body))
        obj = decode_object(req, info, body, namespace=namespace, raw=await req.body())
        meta = obj["metadata"]
        if meta.get("name") and meta["name"] != name:
            raise errors.BadRequest(
                f"the name of the object ({meta['name']}) does not match the name on the URL ({name})")
        meta["name"] = name

        def replace(current: dict) -> dict:
            # A fresh copy per attempt: a failed compare-and-swap is retried with the body as sent.
            return copy.deepcopy(obj)

        updated = await self.store.update(info, namespace, name, replace, subresource=subresource,
                                          dry_run=dry_run(req), track=track)
        return self._object_response(req, info, updated)

    # -- patch ---------------------------------------------------------------------------

    async def patch(self, req: Request, info: ResourceInfo, namespace: str | None, name: str,
                    subresource: str = "") -> Response:
        content_type, patch = await read_patch(req)
        if content_type == APPLY_PATCH:
            return await self._apply(req, info, namespace, name, patch, subresource)
        force_flag(req, apply=False)
        manager = field_manager(req, apply=False)
        if content_type == "application/strategic-merge-patch+json" and not info.definition:
            raise errors.UnsupportedMediaType(
                f"the body of the request was in an unknown format - accepted media types include: "
                f"{', '.join(t for t in PATCH_TYPES if 'strategic' not in t)}")
        patch_sets_rv = _patch_sets_resource_version(content_type, patch)

        reset = [False]

        def apply(current: dict) -> dict:
            result = apply_patch(content_type, current, patch, definition=info.definition)
            reset[0] = resets_managed_fields(result)
            result = decode_object(req, info, result, namespace=namespace)
            if not patch_sets_rv:
                result["metadata"].pop("resourceVersion", None)
            return result

        def track(current: dict | None, new: dict) -> None:
            update_tracker(info, manager=manager, subresource=subresource, reset=reset[0])(current, new)

        updated = await self.store.update(info, namespace, name, apply, subresource=subresource,
                                          dry_run=dry_run(req), track=track)
        return self._object_response(req, info, updated)

    async def _apply(self, req: Request, info: ResourceInfo, namespace: str | None, name: str, config: Any,
                     subresource: str) -> Response:
        """Server-side apply: merge `config` as its field manager; create the object when it is missing."""
        manager = field_manager(req, apply=True)
        force = force_flag(req, apply=True)
        if not isinstance(config, dict):
            raise errors.BadRequest("the body of an apply patch must be an object")
        meta = config.get("metadata")
        if isinstance(meta, dict) and meta.get("managedFields") is not None:
            raise errors.BadRequest("metadata.managedFields must be nil")
        if not config.get("kind"):
            raise errors.BadRequest("Object 'Kind' is missing in apply patch")
        config = decode_object(req, info, config, namespace=namespace, default=False)
        meta = config["metadata"]
        if meta.get("name") and meta["name"] != name:
            raise errors.BadRequest(
                f"the name of the object ({meta['name']}) does not match the name on the URL ({name})")
        sets_rv = bool(meta.get("resourceVersion"))

        def merged(current: dict | None) -> dict:
            result = apply_config(current, config, managed_fields=live_managed_fields(current), manager=manager,
                                  api_version=info.group_version, definition=apply_type(info),
                                  force=force, now=now_rfc3339(), subresource=subresource,
                                  ignored=ignored_paths(info, subresource))
            obj = decode_object(req, info, result.object, namespace=namespace)
            obj["metadata"]["name"] = name
            obj["metadata"].pop("managedFields", None)
            if result.managed_fields:
                obj["metadata"]["managedFields"] = result.managed_fields
            if not sets_rv:
                obj["metadata"].pop("resourceVersion", None)
            return obj

        for _attempt in range(3):
            try:
                updated = await self.store.update(info, namespace, name, merged, subresource=subresource,
                                                  dry_run=dry_run(req))
                return self._object_response(req, info, updated)
            except errors.NotFound:
                if subresource:
                    raise
            # Apply to a missing object creates it, as upstream's patcher does.
            obj = merged(None)
            try:
                created = await self.store.create(info, namespace, obj, dry_run=dry_run(req))
            except errors.AlreadyExists:
                continue  # created meanwhile: apply onto it
            return self._object_response(req, info, created, 201)
        raise errors.Conflict(info.plural, name, "too many concurrent writes; try again", group=info.group)

    # -- delete ---------------------------------------------------------------------------

    async def delete_options(self, req: Request) -> dict:
        options: dict[str, Any] = {}
        raw = await req.body()
        if raw.strip():
            body = decode_body(raw, req.content_type or "application/json")
            if not isinstance(body, dict):
                raise errors.BadRequest("DeleteOptions must be a JSON object")
            options.update(body)
        grace = req.int_arg("gracePeriodSeconds")
        if grace is not None:
            options["gracePeriodSeconds"] = grace
        policy = req.arg("propagationPolicy")
        if policy:
            options["propagationPolicy"] = policy
        orphan = req.arg("orphanDependents")
        if orphan is not None:
            options["orphanDependents"] = orphan == "true"
        if options.get("propagationPolicy") not in (None, "Orphan", "Background", "Foreground"):
            raise errors.Invalid("DeleteOptions", "", [errors.Cause(
                "FieldValueNotSupported",
                f'Unsupported value: "{options["propagationPolicy"]}": supported values: '
                '"Foreground", "Background", "Orphan"', "propagationPolicy")], group="meta.k8s.io")
        if options.get("gracePeriodSeconds") is not None and options["gracePeriodSeconds"] < 0:
            options["gracePeriodSeconds"] = 1
        body_dry_run = options.get("dryRun") or []
        if not isinstance(body_dry_run, list) or any(v != "All" for v in body_dry_run):
            raise errors.BadRequest(f'Invalid dry run value: {body_dry_run!r}; supported value: "All"')
        return options

    async def delete(self, req: Request, info: ResourceInfo, namespace: str | None, name: str) -> Response:
        options = await self.delete_options(req)
        # kubectl's `delete --dry-run=server` says so in the DeleteOptions body, not in the query.
        result = await self.store.delete(info, namespace, name, options=options,
                                         dry_run=dry_run(req) or bool(options.get("dryRun")))
        if result.returns_object or not result.deleted:
            # As upstream's handler: 202 only when the object stays and the client asked for cascading
            # deletion with orphanDependents=false (kept for old clients); otherwise 200, finalizers or not.
            accepted = not result.deleted and options.get("orphanDependents") is False
            return self._object_response(req, info, result.object, 202 if accepted else 200)
        meta = result.object.get("metadata", {})
        return json_response({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
            "details": {"name": name, "group": info.group, "kind": info.plural, "uid": meta.get("uid", "")},
        })

    async def delete_collection(self, req: Request, info: ResourceInfo, namespace: str | None) -> Response:
        opts = ListOptions(req, info)
        options = await self.delete_options(req)
        await self.store.sync()
        predicate = opts.predicate(info)
        items = [c for c in self.cache.list(self._prefix(info, namespace))
                 if predicate is None or predicate(c.obj)]
        deleted = []
        for cached in items:
            meta = cached.obj["metadata"]
            try:
                result = await self.store.delete(info, meta.get("namespace"), meta["name"], options=options,
                                                 dry_run=dry_run(req) or bool(options.get("dryRun")))
            except errors.NotFound:
                continue
            deleted.append(self.store.served(info, result.object))
        return json_response({"kind": info.list_kind, "apiVersion": info.group_version,
                              "metadata": {"resourceVersion": str(self.cache.revision)}, "items": deleted})


async def read_patch(req: Request) -> tuple[str, Any]:
    """The request's patch type and decoded patch document; 415 or 400 when it is neither."""
    content_type = req.content_type
    if content_type not in PATCH_TYPES:
        raise errors.UnsupportedMediaType(
            f"the body of the request was in an unknown format - accepted media types include: "
            f"{', '.join(PATCH_TYPES)}")
    if content_type == APPLY_PATCH:
        # An apply configuration is YAML, of which JSON is a subset.
        return content_type, decode_body(await req.body(), "application/yaml")
    try:
        return content_type, orjson.loads(await req.body())
    except orjson.JSONDecodeError as exc:
        raise errors.BadRequest(f"error decoding patch: {exc}") from None


def apply_patch(content_type: str, current: dict, patch: Any, *, definition: str) -> dict:
    """`current` with a JSON, merge or strategic merge patch applied; 400 unless the result is an object."""
    if content_type == APPLY_PATCH:
        # Only whole objects are applied (`ResourceHandler._apply`), not subresource views such as Scale.
        raise errors.UnsupportedMediaType(
            f"the body of the request was in an unknown format - accepted media types include: "
            f"{', '.join(t for t in PATCH_TYPES if t != APPLY_PATCH)}")
    if content_type == "application/json-patch+json":
        result = apply_json_patch(current, patch)
    elif content_type == "application/merge-patch+json":
        result = apply_merge_patch(current, patch)
    else:
        if not isinstance(patch, dict):
            raise errors.BadRequest("strategic merge patch must be a JSON object")
        result = apply_strategic_merge_patch(current, patch, definition=definition)
    if not isinstance(result, dict):
        raise errors.BadRequest("the patched object is not a JSON object")
    return result


def _patch_sets_resource_version(content_type: str, patch: Any) -> bool:
    if content_type == "application/json-patch+json":
        return any(isinstance(op, dict) and op.get("path") == "/metadata/resourceVersion"
                   and op.get("op") in ("add", "replace") for op in patch or [])
    if isinstance(patch, dict):
        meta = patch.get("metadata")
        return isinstance(meta, dict) and meta.get("resourceVersion") is not None
    return False


def _event_line(event_type: str, obj: dict) -> bytes:
    return orjson.dumps({"type": event_type, "object": obj}) + b"\n"


def _bookmark(info: ResourceInfo, revision: int, *, initial_end: bool = False) -> dict:
    meta: dict[str, Any] = {"resourceVersion": str(revision)}
    if initial_end:
        meta["annotations"] = {"k8s.io/initial-events-end": "true"}
    return {"kind": info.kind, "apiVersion": info.group_version, "metadata": meta}
