"""The ResourceQuota admission plugin: refuse what a namespace's quotas do not allow, and charge what they do.

Upstream's plugin/pkg/admission/resourcequota (its quota evaluator), with
the arithmetic of `timoner.api.quota`:

1. A create (or, for services and claims, an update) of a namespaced
   object, not a subresource and not an event, is looked at when the
   namespace has ResourceQuotas. A quota covers it when its `status.hard`
   names a resource the object's kind counts toward and all its scopes
   match the object.
2. For each covering quota: a pod lacking a request or limit the quota
   constrains is refused (`failed quota: q: must specify limits.cpu for:
   app`); a quota whose `status.used` lacks a covered name (the controller
   has not counted yet) refuses everything (`status unknown for quota: q,
   resources: pods`). A quota with no `status.hard` at all covers nothing.
3. The object's usage (on an update, what it adds to the old object's)
   plus `status.used` must stay within `status.hard`; else 403 `exceeded
   quota: q, requested: pods=1, used: pods=2, limited: pods=2`.
4. Then, before the object is stored, every covering quota's
   `status.used` is raised by a compare-and-swap through the store
   (`resourcequotas/status`); the quotas that lost a race are read again
   and checked again, three times at most, as upstream. Dry runs check
   and charge nothing.

Requests of one namespace are checked one at a time (a lock per
namespace), so two creates cannot both take the last unit. If the object
then fails to be written, it stays charged until the resource quota
controller recounts, as upstream.
"""

from __future__ import annotations

import asyncio
import copy
import time
from typing import Any

from timoner.api import errors
from timoner.api.quota import (
    UPDATE,
    Evaluator,
    add,
    equals,
    evaluator_for,
    is_negative,
    less_than_or_equal,
    mask,
    matches,
    parse_list,
    pretty_print,
    pretty_print_names,
    remove_zeros,
    subtract_non_negative,
    to_json,
)
from timoner.api.registry import builtin_index

from ..store import Store
from ._attributes import Attributes
from ._limitranger import forbidden

__all__ = ["RESOURCE_QUOTAS_PREFIX", "ResourceQuota", "check_request"]

Obj = dict[str, Any]

RESOURCE_QUOTAS_PREFIX = "/registry/core/resourcequotas/"
_IGNORED = {("", "events")}  # upstream's default ignored resources
_RETRIES = 3


def check_request(quotas: list[Obj], attrs: Attributes, evaluator: Evaluator, *, now: float) -> list[Obj]:
    """The quotas with `status.used` as they would be with the request's object admitted; Forbidden if not.

    Quotas that do not cover the object come back unchanged (the same dicts).
    """
    obj = attrs.obj or {}
    interesting: list[int] = []
    for i, quota in enumerate(quotas):
        if not matches(evaluator, quota, obj):
            continue
        name = quota["metadata"]["name"]
        status = quota.get("status") or {}
        restricted = evaluator.matching_resources(status.get("hard") or {})
        why = evaluator.constraints(restricted, obj)
        if why is not None:
            raise forbidden(attrs, f"failed quota: {name}: {why}")
        used = status.get("used") or {}
        if any(resource not in used for resource in restricted):
            raise forbidden(attrs, f"status unknown for quota: {name}, resources: {pretty_print_names(restricted)}")
        interesting.append(i)
    if not interesting:
        return quotas
    delta = evaluator.usage(obj, now=now)
    if negative := is_negative(delta):
        raise forbidden(attrs, f"quota usage is negative for resource(s): {pretty_print_names(negative)}")
    if attrs.operation == UPDATE:
        if attrs.old is None:
            raise forbidden(attrs, "unable to get previous usage since prior version of object was not found")
        if (attrs.old.get("metadata") or {}).get("resourceVersion"):
            delta = subtract_non_negative(delta, evaluator.usage(attrs.old, now=now))
    delta = remove_zeros(delta)
    if not delta:
        return quotas
    out = list(quotas)
    for i in interesting:
        quota = copy.deepcopy(quotas[i])
        status = quota.setdefault("status", {})
        hard = parse_list(status.get("hard"))
        used = parse_list(status.get("used"))
        requested = mask(delta, hard)
        new_usage = add(used, requested)
        allowed, exceeded = less_than_or_equal(mask(new_usage, requested), hard)
        if not allowed:
            raise forbidden(attrs, f"exceeded quota: {quota['metadata']['name']}, "
                                   f"requested: {pretty_print(mask(requested, exceeded))}, "
                                   f"used: {pretty_print(mask(used, exceeded))}, "
                                   f"limited: {pretty_print(mask(hard, exceeded))}")
        status["used"] = to_json(new_usage)
        out[i] = quota
    return out


class ResourceQuota:
    """The ResourceQuota admission plugin (validating only); see the module docstring."""

    name = "ResourceQuota"

    def __init__(self, store: Store) -> None:
        self.store = store
        self._info = builtin_index()[("", "v1", "resourcequotas")]
        self._locks: dict[str, asyncio.Lock] = {}

    def handles(self, attrs: Attributes) -> bool:
        if attrs.subresource or not attrs.namespace or attrs.obj is None:
            return False
        if (attrs.info.group, attrs.info.plural) in _IGNORED:
            return False
        return evaluator_for(attrs.info.group, attrs.info.plural).handles(attrs.operation)

    async def admit(self, attrs: Attributes) -> None:
        return None

    def _quotas(self, namespace: str) -> list[Obj]:
        return [cached.obj for cached in self.store.cache.list(f"{RESOURCE_QUOTAS_PREFIX}{namespace}/")]

    async def validate(self, attrs: Attributes) -> None:
        namespace = attrs.namespace
        assert namespace
        if not self._quotas(namespace):
            return  # the common case, answered without waiting for the cache (as upstream's informer lags too)
        evaluator = evaluator_for(attrs.info.group, attrs.info.plural)
        lock = self._locks.setdefault(namespace, asyncio.Lock())
        async with lock:
            await self._check(attrs, evaluator, namespace)

    async def _check(self, attrs: Attributes, evaluator: Evaluator, namespace: str) -> None:
        only: set[str] | None = None  # on a retry, the quotas whose update lost a race
        conflict: errors.APIError | None = None
        for _attempt in range(_RETRIES + 1):
            await self.store.sync()
            quotas = [q for q in self._quotas(namespace) if only is None or q["metadata"]["name"] in only]
            if not quotas:
                return
            checked = check_request(quotas, attrs, evaluator, now=time.time())
            changed = [new for old, new in zip(quotas, checked, strict=True) if not equals(
                parse_list((old.get("status") or {}).get("used")), parse_list((new.get("status") or {}).get("used")))]
            if not changed or attrs.dry_run:
                return
            failed: set[str] = set()
            for quota in changed:
                try:
                    await self._write_used(namespace, quota)
                except errors.Conflict as exc:
                    failed.add(quota["metadata"]["name"])
                    conflict = exc
                except errors.NotFound:
                    continue  # deleted meanwhile: nothing to charge
            if not failed:
                return
            only = failed
        assert conflict is not None
        raise conflict

    async def _write_used(self, namespace: str, quota: Obj) -> None:
        meta = quota["metadata"]
        used = quota["status"]["used"]

        def charge(current: Obj) -> Obj:
            # Conditional on the version that was checked: a quota that changed since is checked again.
            current["metadata"]["resourceVersion"] = meta["resourceVersion"]
            current.setdefault("status", {})["used"] = used
            return current

        await self.store.update(self._info, namespace, meta["name"], charge, subresource="status")
