"""`EventRecorder`: posts core/v1 Events about objects, as client-go's event recorder does for every component.

One recorder per reporting component (`kubelet` on a node, a scheduler by
its name). Like client-go's legacy recorder and its `EventCorrelator`, an
event identical to one posted before (same object and `fieldPath`, type,
reason and message) is not posted again: the first one's `count` and
`lastTimestamp` are patched, which is what `kubectl describe` prints as
`(x3 over 20s)`. The recorder remembers the last 4096 such events.

With an `action`, events are new-style (`eventTime`, `action`,
`reportingController` validated by the API server), as the scheduler posts
them through events.k8s.io; without, legacy (`eventTime` null), as the
kubelet does. Recording never raises: a lost event is logged.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from timoner.api.errors import NotFound

from ._leaderelection import micro_time
from ._resource import resource_for
from ._rest import Client

__all__ = ["EVENTS", "EventRecorder"]

log = logging.getLogger("timoner.client.events")

EVENTS = resource_for("v1", "Event")
_CACHE_SIZE = 4096  # client-go's maxLruCacheEntries
_MESSAGE_LIMIT = 1024  # the API server rejects longer messages of new-style events

Obj = dict[str, Any]


def _rfc3339(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


@dataclass(slots=True)
class _Seen:
    name: str
    namespace: str
    count: int
    first_timestamp: str


@dataclass(slots=True)
class _KeyLock:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0


class EventRecorder:
    """Records Events for one reporting component; see the module docstring."""

    def __init__(self, client: Client, *, component: str, host: str = "", instance: str = "",
                 action: str = "") -> None:
        self.client = client
        self.component = component
        self.host = host
        self.instance = instance or host
        self.action = action
        self._seen: OrderedDict[tuple[str, ...], _Seen] = OrderedDict()
        self._locks: dict[tuple[str, ...], _KeyLock] = {}
        self._last_name_ns = 0

    def _name(self, obj_name: str) -> str:
        # client-go's `<name>.<unix nanoseconds in hex>`, kept unique within this recorder.
        self._last_name_ns = max(time.time_ns(), self._last_name_ns + 1)
        return f"{obj_name}.{self._last_name_ns:x}"

    async def event(self, obj: Mapping[str, Any], event_type: str, reason: str, message: str, *,
                    field_path: str = "", kind: str = "", api_version: str = "") -> None:
        """Record a `Normal` or `Warning` event about `obj` (a part of it when `field_path` is given).

        `kind` and `api_version` stand in for an object without them (list items, as informers keep them).
        """
        meta = obj.get("metadata") or {}
        namespace = meta.get("namespace") or "default"
        message = message[:_MESSAGE_LIMIT]
        involved: Obj = {"kind": obj.get("kind") or kind, "namespace": meta.get("namespace"),
                         "name": meta.get("name"), "uid": meta.get("uid"),
                         "apiVersion": obj.get("apiVersion") or api_version}
        if meta.get("resourceVersion"):
            involved["resourceVersion"] = meta["resourceVersion"]
        if field_path:
            involved["fieldPath"] = field_path
        key = (self.component, self.host, str(involved["kind"]), namespace, str(involved["name"]),
               str(involved["uid"]), field_path, event_type, reason, message)
        # Only repeats of one event wait for each other (a repeat must find the first one created).
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = _KeyLock()
        lock.users += 1
        try:
            async with lock.lock:
                await self._record(key, involved, namespace, event_type, reason, message)
        except Exception as exc:  # refused, or the server unreachable: events are best effort
            log.warning("%s: could not record %s event for %s/%s: %s", self.component, reason, namespace,
                        meta.get("name"), exc)
        finally:
            lock.users -= 1
            if not lock.users:
                del self._locks[key]

    async def _record(self, key: tuple[str, ...], involved: Obj, namespace: str, event_type: str, reason: str,
                      message: str) -> None:
        now_seconds = time.time()
        now = _rfc3339(now_seconds)
        seen = self._seen.get(key)
        if seen is not None:
            self._seen.move_to_end(key)
            seen.count += 1
            patch = {"count": seen.count, "lastTimestamp": now, "message": message}
            try:
                await self.client.patch(EVENTS, seen.name, patch, namespace=seen.namespace, patch_type="strategic")
                return
            except NotFound:
                pass  # expired or deleted: post it again, with the count carried on, as client-go does
        event: Obj = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": self._name(str(involved["name"])), "namespace": namespace},
            "involvedObject": involved,
            "type": event_type, "reason": reason, "message": message,
            "source": {"component": self.component, **({"host": self.host} if self.host else {})},
            "firstTimestamp": seen.first_timestamp if seen is not None else now, "lastTimestamp": now,
            "count": seen.count if seen is not None else 1,
            "reportingComponent": self.component, "reportingInstance": self.instance,
        }
        if self.action:
            event["action"] = self.action
            event["eventTime"] = micro_time()
        created = await self.client.create(EVENTS, event, namespace=namespace)
        self._seen[key] = _Seen(created["metadata"]["name"], namespace, int(event["count"]), event["firstTimestamp"])
        self._seen.move_to_end(key)
        while len(self._seen) > _CACHE_SIZE:
            self._seen.popitem(last=False)
