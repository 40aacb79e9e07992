"""The object store: Kubernetes object semantics on top of a storage `Backend`.

Everything the API server writes goes through here: system fields (uid,
creationTimestamp, resourceVersion, generation, generateName), namespace
checks, the spec/status split, optimistic concurrency (compare-and-swap on the
revision, retried for unconditional writes), finalizers and graceful
deletion, and the allocation of Service IPs and ports. Reads come from the
watch cache after it has caught up with our own last write.

Objects are stored as the JSON of the storage version without
`metadata.resourceVersion`; the storage revision *is* the resourceVersion.
A failing write leaves storage untouched: validation happens before the one
compare-and-swap that commits, and allocations made for it are released.
"""

from __future__ import annotations

import copy
import datetime as dt
import logging
import secrets
import string
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import orjson

from timoner.api import errors
from timoner.api.errors import Cause
from timoner.api.registry import ResourceInfo
from timoner.storage import Backend, KeyExists, KeyNotFound, RevisionConflict

from ._http import current_request
from .admission._attributes import CREATE, DELETE, UPDATE, Attributes
from .allocators import ClusterIPAllocator, NodePortAllocator
from .convert import from_storage, needs_conversion, to_storage
from .strategy import strategy_for
from .watchcache import CachedObject, WatchCache

if TYPE_CHECKING:
    from .admission import AdmissionChain

__all__ = ["DeleteResult", "Store", "now_rfc3339", "object_key"]

log = logging.getLogger("timoner.apiserver.store")

_ALNUM = string.ascii_lowercase + string.digits
_GENERATE_CHARS = "bcdfghjklmnpqrstvwxz2456789"  # upstream's: no vowels, no confusable digits
_GENERATE_ATTEMPTS = 8  # upstream's RetryGenerateName: the first try and 7 more


def _generated(prefix: str) -> str:
    return prefix + "".join(secrets.choice(_GENERATE_CHARS) for _ in range(5))
_RETURNS_DELETED_OBJECT = {("", "pods"), ("", "services"), ("", "namespaces")}
_IMMUTABLE_META = ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds")


_last_stamp: tuple[int, str] = (0, "")
# Records managedFields on the final new object of a write (see `fieldmanager.update_tracker`).
Tracker = Callable[[dict | None, dict], None]


def now_rfc3339() -> str:
    """The current time as Kubernetes writes it (RFC 3339, seconds); formatted once per second."""
    global _last_stamp
    second = int(time.time())
    if _last_stamp[0] != second:
        _last_stamp = (second, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(second)))
    return _last_stamp[1]


def _core(info: ResourceInfo, plural: str) -> bool:
    """Whether `info` is the core/v1 resource `plural` (the kinds the store treats specially)."""
    return not info.group and info.plural == plural


def object_key(info: ResourceInfo, namespace: str | None, name: str) -> str:
    if info.namespaced:
        return f"{info.storage_prefix}{namespace}/{name}"
    return f"{info.storage_prefix}{name}"


def _encode(obj: dict) -> bytes:
    meta = obj.get("metadata") or {}
    if "resourceVersion" in meta:
        obj = {**obj, "metadata": {k: v for k, v in meta.items() if k != "resourceVersion"}}
    return orjson.dumps(obj)


def _decode(value: bytes, revision: int) -> dict:
    obj = orjson.loads(value)
    obj.setdefault("metadata", {})["resourceVersion"] = str(revision)
    return obj


@dataclass(frozen=True, slots=True)
class DeleteResult:
    """What a DELETE did: the object's last state, and whether it is gone already."""

    object: dict
    deleted: bool
    returns_object: bool


Validator = Callable[[ResourceInfo, dict, dict | None], list[Cause]]


class Store:
    """Kubernetes object semantics over a `Backend`; see the module docstring."""

    def __init__(
        self,
        backend: Backend,
        cache: WatchCache,
        *,
        validate: Validator,
        service_cidr: str = "100.65.0.0/16",
        node_ports: tuple[int, int] = (30000, 32767),
    ) -> None:
        self.backend = backend
        self.cache = cache
        self._validate = validate
        self.last_written = 0
        self.cluster_ips = ClusterIPAllocator(service_cidr)
        self.node_ports = NodePortAllocator(*node_ports)
        # The admission chain every write passes (None: no admission, as in unit tests of the store).
        self.admission: AdmissionChain | None = None

    # -- start ------------------------------------------------------------------------

    def rebuild_allocations(self) -> None:
        """Mark every Service IP and node port already in use (after the cache loaded)."""
        for cached in self.cache.list("/registry/core/services/"):
            self._mark_service(cached.obj)

    def _mark_service(self, svc: dict) -> None:
        spec = svc.get("spec") or {}
        for ip in spec.get("clusterIPs") or [spec.get("clusterIP")]:
            if ip and ip != "None":
                self.cluster_ips.mark(ip)
        for port in spec.get("ports") or []:
            if port.get("nodePort"):
                self.node_ports.mark(port["nodePort"])

    # -- reads ------------------------------------------------------------------------

    async def sync(self) -> None:
        """Wait until the cache reflects every write this server acknowledged."""
        if self.cache.revision < self.last_written:
            await self.cache.wait_for(self.last_written)

    def _note_write(self, revision: int) -> None:
        if revision > self.last_written:
            self.last_written = revision

    async def get_cached(self, info: ResourceInfo, namespace: str | None, name: str) -> CachedObject:
        await self.sync()
        cached = self.cache.get(object_key(info, namespace, name))
        if cached is None:
            raise errors.NotFound(info.plural, name, group=info.group)
        return cached

    async def get(self, info: ResourceInfo, namespace: str | None, name: str) -> dict:
        cached = await self.get_cached(info, namespace, name)
        return self.served(info, cached.obj)

    def served(self, info: ResourceInfo, obj: dict) -> dict:
        """The stored object in the version `info` serves (a copy when it converts)."""
        if needs_conversion(info):
            return from_storage(info, copy.deepcopy(obj))
        return obj

    # -- namespace checks -----------------------------------------------------------------

    async def check_namespace(self, info: ResourceInfo, namespace: str | None) -> None:
        if not info.namespaced:
            return
        key = f"/registry/core/namespaces/{namespace}"
        ns = self.cache.get(key)
        if ns is None:
            # Only a miss needs the cache to catch up (the namespace may have been created just now).
            await self.sync()
            ns = self.cache.get(key)
        if ns is None:
            raise errors.NotFound("namespaces", namespace or "")
        if ns.obj.get("metadata", {}).get("deletionTimestamp") or ns.obj.get("status", {}).get(
            "phase"
        ) == "Terminating":
            raise errors.APIError(
                f"{info.plural} is forbidden: unable to create new content in namespace {namespace} "
                "because it is being terminated",
                403, "Forbidden", name="", group=info.group, kind=info.plural,
                causes=[Cause("NamespaceTerminating",
                              f"namespace {namespace} is being terminated", "metadata.namespace")],
            )

    # -- create ------------------------------------------------------------------------

    async def create(self, info: ResourceInfo, namespace: str | None, obj: dict, *, dry_run: bool = False,
                     skip_namespace_check: bool = False, track: Tracker | None = None) -> dict:
        """Create `obj` (already decoded and defaulted); returns it as stored, with its resourceVersion.

        `track(None, obj)` records the object's managedFields once the strategy has prepared it.
        """
        meta = obj.setdefault("metadata", {})
        if info.namespaced:
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        attrs = None
        if self.admission is not None:
            if not skip_namespace_check:
                # Upstream's NamespaceLifecycle comes first in the chain: no webhook hears of such a create.
                await self.check_namespace(info, namespace)
            # Mutating admission sees the object as decoded, before the strategy and name generation.
            attrs = _attributes(CREATE, info, namespace, meta.get("name") or "", obj, None, dry_run=dry_run)
            await self.admission.admit(attrs)
            obj = attrs.obj
            assert obj is not None
            meta = obj.setdefault("metadata", {})
            if info.namespaced:
                meta["namespace"] = namespace
            else:
                meta.pop("namespace", None)
        generate_name = not meta.get("name") and bool(meta.get("generateName"))
        if not meta.get("name"):
            if generate_name:
                meta["name"] = _generated(meta["generateName"])
            else:
                raise errors.Invalid(info.kind, "", [Cause(
                    "FieldValueRequired", "Required value: name or generateName is required", "metadata.name")],
                    group=info.group)
        for f in ("resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink"):
            meta.pop(f, None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now_rfc3339()
        strategy_for(info).prepare_for_create(obj)
        if meta.get("finalizers") == []:
            del meta["finalizers"]
        if track is not None:
            track(None, obj)
        allocated = self._allocate_service(info, obj, None) if _core(info, "services") else None
        try:
            causes = self._validate(info, obj, None)
            if causes:
                raise errors.Invalid(info.kind, meta["name"], causes, group=info.group)
            if not skip_namespace_check and attrs is None:  # with admission, checked before it ran
                await self.check_namespace(info, namespace)
            if attrs is not None and self.admission is not None:
                attrs.obj, attrs.name = obj, meta["name"]
                await self.admission.validate(attrs)
            stored = to_storage(info, obj) if needs_conversion(info) else obj
            if dry_run:
                self._release(allocated)
                return obj
            for attempt in range(_GENERATE_ATTEMPTS if generate_name else 1):
                if attempt:
                    # A generated name that is taken is generated again (upstream's RetryGenerateName, on in 1.32).
                    meta["name"] = _generated(meta["generateName"])
                    if stored is not obj:
                        stored["metadata"]["name"] = meta["name"]
                key = object_key(info, namespace, meta["name"])
                try:
                    kv = await self.backend.create(key, _encode(stored))
                    break
                except KeyExists:
                    if not generate_name or attempt == _GENERATE_ATTEMPTS - 1:
                        raise errors.AlreadyExists(info.plural, meta["name"], group=info.group) from None
        except BaseException:
            self._release(allocated)
            raise
        self._note_write(kv.mod_revision)
        meta["resourceVersion"] = str(kv.mod_revision)
        return obj

    # -- update ------------------------------------------------------------------------

    async def update(
        self,
        info: ResourceInfo,
        namespace: str | None,
        name: str,
        mutate: Callable[[dict], dict],
        *,
        subresource: str = "",
        dry_run: bool = False,
        expected_rv: str | None = None,
        track: Tracker | None = None,
    ) -> dict:
        """Replace an object with `mutate(current)`, as one compare-and-swap.

        `mutate` gets a private copy of the current object (in the served version) and returns the new
        one. When the new object carries a resourceVersion that is not the current one, the update
        fails with 409; without one it is unconditional and retried on a concurrent write.
        `track(current, new)` records managedFields once the strategy has prepared `new`.
        """
        key = object_key(info, namespace, name)
        cached = await self.get_cached(info, namespace, name)
        for _attempt in range(20):
            current = self.served(info, copy.deepcopy(cached.obj))
            new = mutate(copy.deepcopy(current))
            attrs = None
            if self.admission is not None and subresource not in _NO_ADMISSION:
                attrs = _attributes(UPDATE, info, namespace, name, new, current, subresource=subresource,
                                    dry_run=dry_run)
                await self.admission.admit(attrs)
                new = attrs.obj
                assert new is not None
            new_meta = new.setdefault("metadata", {})
            rv = new_meta.pop("resourceVersion", None) or expected_rv
            if rv and rv != current["metadata"]["resourceVersion"]:
                raise errors.Conflict(info.plural, name, group=info.group)
            result = await self._commit_update(info, key, cached, current, new, subresource=subresource,
                                               dry_run=dry_run, track=track, attrs=attrs)
            if isinstance(result, dict):
                return result
            if rv:
                raise errors.Conflict(info.plural, name, group=info.group)
            cached = self._fresh(info, name, key, result)
        raise errors.Conflict(info.plural, name, "too many concurrent writes; try again", group=info.group)

    async def _commit_update(self, info: ResourceInfo, key: str, cached: CachedObject, current: dict,
                             new: dict, *, subresource: str, dry_run: bool,
                             track: Tracker | None = None,
                             attrs: Attributes | None = None) -> dict | RevisionConflict:
        """Validate and write one update; the storage's conflict when the compare-and-swap lost a race."""
        name = current["metadata"]["name"]
        old_meta = current["metadata"]
        meta = new["metadata"]
        if meta.get("name", name) != name:
            raise errors.BadRequest(
                f"the name of the object ({meta.get('name')}) does not match the name on the URL ({name})")
        if meta.get("uid") and meta["uid"] != old_meta.get("uid"):
            raise errors.Conflict(info.plural, name,
                                  f"Precondition failed: UID in precondition: {meta['uid']}, "
                                  f"UID in object meta: {old_meta.get('uid')}", group=info.group)
        meta["name"] = name
        if info.namespaced:
            meta["namespace"] = old_meta.get("namespace")
        else:
            meta.pop("namespace", None)
        for f in _IMMUTABLE_META:
            if f in old_meta:
                meta[f] = old_meta[f]
            else:
                meta.pop(f, None)
        meta.pop("selfLink", None)
        if old_meta.get("deletionTimestamp"):
            added = set(meta.get("finalizers") or []) - set(old_meta.get("finalizers") or [])
            if added:
                raise errors.Invalid(info.kind, name, [Cause(
                    "FieldValueForbidden",
                    "Forbidden: no new finalizers can be added if the object is being deleted, found new "
                    f"finalizers {sorted(added)}", "metadata.finalizers")], group=info.group)
        strategy_for(info).prepare_for_update(new, current, subresource=subresource)
        meta = new["metadata"]  # the status split may have replaced it
        if meta.get("finalizers") == []:
            del meta["finalizers"]
        if track is not None:
            track(current, new)
        allocated = None
        if _core(info, "services") and subresource == "":
            allocated = self._allocate_service(info, new, current)
        try:
            # A binding is the one sanctioned write of an otherwise immutable pod spec field.
            causes = self._validate(info, new, None if subresource == "binding" else current)
            if causes:
                raise errors.Invalid(info.kind, name, causes, group=info.group)
            if attrs is not None and self.admission is not None:
                attrs.obj = new  # validating admission sees the object as it will be written
                await self.admission.validate(attrs)
        except BaseException:
            self._release(allocated)
            raise
        meta["resourceVersion"] = old_meta["resourceVersion"]
        if new == current:
            self._release(allocated)
            return current  # a no-op update writes nothing, as upstream
        if dry_run:
            self._release(allocated)
            return new
        stored = to_storage(info, new) if needs_conversion(info) else new
        try:
            if meta.get("deletionTimestamp") and not meta.get("finalizers") and _may_go_now(info, new):
                # The last finalizer went away: the object is deleted now.
                kv = await self.backend.delete(key, expected_revision=cached.revision)
                self._after_delete(info, new)
            else:
                kv = await self.backend.update(key, _encode(stored), expected_revision=cached.revision)
        except RevisionConflict as conflict:
            self._release(allocated)
            return conflict
        except KeyNotFound:
            self._release(allocated)
            raise errors.NotFound(info.plural, name, group=info.group) from None
        if allocated is not None:
            self._release_replaced(current, new)
        self._note_write(kv.mod_revision)
        meta["resourceVersion"] = str(kv.mod_revision)
        return new

    def _fresh(self, info: ResourceInfo, name: str, key: str, conflict: RevisionConflict) -> CachedObject:
        """The object as storage has it now, from a lost compare-and-swap (the cache may lag behind)."""
        kv = conflict.current
        if kv is None:
            raise errors.NotFound(info.plural, name, group=info.group)
        return CachedObject(key, _decode(kv.value, kv.mod_revision), kv.mod_revision)

    # -- delete ------------------------------------------------------------------------

    async def delete(
        self,
        info: ResourceInfo,
        namespace: str | None,
        name: str,
        *,
        options: dict | None = None,
        dry_run: bool = False,
    ) -> DeleteResult:
        """Delete with DeleteOptions semantics: preconditions, grace, finalizers and propagation."""
        options = options or {}
        key = object_key(info, namespace, name)
        returns_object = (info.group, info.plural) in _RETURNS_DELETED_OBJECT
        cached = await self.get_cached(info, namespace, name)
        admitted = self.admission is None
        for _attempt in range(20):
            current = copy.deepcopy(cached.obj)
            meta = current["metadata"]
            pre = options.get("preconditions") or {}
            if pre.get("uid") and pre["uid"] != meta.get("uid"):
                raise errors.Conflict(info.plural, name, f"Precondition failed: UID in precondition: "
                                      f"{pre['uid']}, UID in object meta: {meta.get('uid')}", group=info.group)
            if pre.get("resourceVersion") and pre["resourceVersion"] != meta.get("resourceVersion"):
                raise errors.Conflict(info.plural, name, "Precondition failed: ResourceVersion in precondition: "
                                      f"{pre['resourceVersion']}, ResourceVersion in object meta: "
                                      f"{meta.get('resourceVersion')}", group=info.group)
            if not admitted and self.admission is not None:
                admitted = True
                await self.admission.validate(_attributes(
                    DELETE, info, namespace, name, None, self.served(info, copy.deepcopy(current)),
                    dry_run=dry_run, options=options))
            new = self._deletion_state(info, current, options)
            if dry_run:
                return DeleteResult(self.served(info, new or current), new is None, returns_object)
            try:
                if new is None:
                    kv = await self.backend.delete(key, expected_revision=cached.revision)
                    self._after_delete(info, current)
                    self._note_write(kv.mod_revision)
                    meta["resourceVersion"] = str(kv.mod_revision)
                    return DeleteResult(self.served(info, current), True, returns_object)
                if new == current:
                    return DeleteResult(self.served(info, current), False, True)
                kv = await self.backend.update(key, _encode(new), expected_revision=cached.revision)
            except RevisionConflict as conflict:
                cached = self._fresh(info, name, key, conflict)
                continue
            except KeyNotFound:
                raise errors.NotFound(info.plural, name, group=info.group) from None
            self._note_write(kv.mod_revision)
            new["metadata"]["resourceVersion"] = str(kv.mod_revision)
            return DeleteResult(self.served(info, new), False, True)
        raise errors.Conflict(info.plural, name, "too many concurrent writes; try again", group=info.group)

    def _deletion_state(self, info: ResourceInfo, current: dict, options: dict) -> dict | None:
        """The object's state after a delete request, or None if it should go now."""
        meta = current["metadata"]
        policy = options.get("propagationPolicy")
        if options.get("orphanDependents") is True and not policy:
            policy = "Orphan"
        elif options.get("orphanDependents") is False and not policy:
            policy = "Background"
        new = copy.deepcopy(current)
        nmeta = new["metadata"]
        finalizers = list(nmeta.get("finalizers") or [])
        if policy == "Orphan" and "orphan" not in finalizers and not meta.get("deletionTimestamp"):
            finalizers.append("orphan")
        elif policy == "Foreground" and "foregroundDeletion" not in finalizers:
            finalizers.append("foregroundDeletion")
        if policy in ("Background", "Foreground"):
            finalizers = [f for f in finalizers if f != "orphan" or policy != "Foreground"]
        is_pod = _core(info, "pods")
        grace = options.get("gracePeriodSeconds")
        if is_pod:
            spec = current.get("spec") or {}
            if grace is None:
                grace = meta.get("deletionGracePeriodSeconds", spec.get("terminationGracePeriodSeconds", 30))
            phase = (current.get("status") or {}).get("phase")
            # As upstream: unscheduled or finished pods need no kubelet to stop them.
            if not spec.get("nodeName") or phase in ("Succeeded", "Failed"):
                grace = 0
        if is_pod and grace and grace > 0:
            nmeta["finalizers"] = finalizers
            if not finalizers:
                del nmeta["finalizers"]
            previous = meta.get("deletionGracePeriodSeconds")
            if previous is None or grace < previous:
                nmeta["deletionGracePeriodSeconds"] = grace
                deadline = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=grace)
                nmeta["deletionTimestamp"] = deadline.strftime("%Y-%m-%dT%H:%M:%SZ")
            return new
        if _core(info, "namespaces"):
            spec_finalizers = (current.get("spec") or {}).get("finalizers") or []
            if spec_finalizers or finalizers:
                nmeta.setdefault("deletionTimestamp", now_rfc3339())
                nmeta.setdefault("deletionGracePeriodSeconds", 0)
                nmeta["finalizers"] = finalizers
                if not finalizers:
                    del nmeta["finalizers"]
                new.setdefault("status", {})["phase"] = "Terminating"
                return new
            return None
        if finalizers:
            nmeta["finalizers"] = finalizers
            nmeta.setdefault("deletionTimestamp", now_rfc3339())
            nmeta.setdefault("deletionGracePeriodSeconds", 0)
            return new
        return None

    # -- Services ------------------------------------------------------------------------

    def _allocate_service(self, info: ResourceInfo, svc: dict, old: dict | None) -> list[tuple[str, object]]:
        """Allocate (or carry over) cluster IPs and node ports; returns what this call newly took."""
        spec = svc.setdefault("spec", {})
        old_spec = (old or {}).get("spec") or {}
        name = svc.get("metadata", {}).get("name", "")
        taken: list[tuple[str, object]] = []
        try:
            svc_type = spec.get("type", "ClusterIP")
            if svc_type == "ExternalName":
                spec.pop("clusterIP", None)
                spec.pop("clusterIPs", None)
            else:
                ip = spec.get("clusterIP") or ((spec.get("clusterIPs") or [None])[0])
                if not ip and old_spec.get("clusterIP"):
                    ip = old_spec["clusterIP"]  # as upstream: an update without clusterIP keeps it
                elif ip and ip != "None" and ip != old_spec.get("clusterIP"):
                    self.cluster_ips.reserve(ip, field="spec.clusterIPs", name=name)
                    taken.append(("ip", ip))
                elif not ip:
                    ip = self.cluster_ips.allocate()
                    taken.append(("ip", ip))
                spec["clusterIP"] = ip
                spec["clusterIPs"] = [ip]
            old_ports = {(p.get("port"), p.get("protocol", "TCP")): p.get("nodePort")
                         for p in old_spec.get("ports") or [] if p.get("nodePort")}
            wants_node_port = svc_type in ("NodePort", "LoadBalancer")
            for i, port in enumerate(spec.get("ports") or []):
                if not wants_node_port:
                    port.pop("nodePort", None)
                    continue
                requested = port.get("nodePort")
                previous = old_ports.get((port.get("port"), port.get("protocol", "TCP")))
                if requested and requested in old_ports.values():
                    continue
                if requested:
                    self.node_ports.reserve(requested, field=f"spec.ports[{i}].nodePort", name=name)
                    taken.append(("port", requested))
                elif previous:
                    port["nodePort"] = previous
                else:
                    port["nodePort"] = self.node_ports.allocate()
                    taken.append(("port", port["nodePort"]))
        except BaseException:
            self._release(taken)
            raise
        return taken

    def _release(self, taken: list[tuple[str, object]] | None) -> None:
        for what, value in taken or ():
            if what == "ip":
                self.cluster_ips.release(value)  # type: ignore[arg-type]
            else:
                self.node_ports.release(value)  # type: ignore[arg-type]

    def _release_replaced(self, old: dict, new: dict) -> None:
        """After a Service update, free what the old version held and the new one does not."""
        old_spec, new_spec = old.get("spec") or {}, new.get("spec") or {}
        old_ips = set(old_spec.get("clusterIPs") or [])
        new_ips = set(new_spec.get("clusterIPs") or [])
        for ip in old_ips - new_ips:
            self.cluster_ips.release(ip)
        old_ports = {p.get("nodePort") for p in old_spec.get("ports") or [] if p.get("nodePort")}
        new_ports = {p.get("nodePort") for p in new_spec.get("ports") or [] if p.get("nodePort")}
        for port in old_ports - new_ports:
            self.node_ports.release(port)

    def _after_delete(self, info: ResourceInfo, obj: dict) -> None:
        if _core(info, "services"):
            spec = obj.get("spec") or {}
            for ip in spec.get("clusterIPs") or []:
                self.cluster_ips.release(ip)
            for port in spec.get("ports") or []:
                if port.get("nodePort"):
                    self.node_ports.release(port["nodePort"])


# Writes that upstream admits as another operation on another kind (pods/binding is a CREATE of a Binding).
_NO_ADMISSION = frozenset({"binding"})


def _attributes(operation: str, info: ResourceInfo, namespace: str | None, name: str, obj: dict | None,
                old: dict | None, *, subresource: str = "", dry_run: bool = False,
                options: dict | None = None) -> Attributes:
    """Admission attributes of a write, with the user of the request being served (None: the server's own)."""
    req = current_request.get()
    opts = dict(options or {})
    if dry_run:
        opts["dryRun"] = ["All"]
    if req is not None and req.arg("fieldManager") and operation != DELETE:
        opts["fieldManager"] = req.arg("fieldManager")
    return Attributes(operation, info, namespace, name, obj, old, subresource=subresource, dry_run=dry_run,
                      user=req.user if req is not None else None, options=opts)


def _may_go_now(info: ResourceInfo, obj: dict) -> bool:
    """Whether a terminating object with no finalizers left is removed now (pods wait for their node)."""
    if info.group:
        return True
    if info.plural == "pods":
        return not obj["metadata"].get("deletionGracePeriodSeconds")
    if info.plural == "namespaces":
        return not (obj.get("spec") or {}).get("finalizers")
    return True
