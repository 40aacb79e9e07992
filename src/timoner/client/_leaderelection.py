"""Leader election on a coordination.k8s.io/v1 Lease, with client-go's semantics.

Candidates share one Lease. Its `spec` records the holder
(`holderIdentity`), how long a claim lasts (`leaseDurationSeconds`), when
the holder took it (`acquireTime`) and last renewed it (`renewTime`, a
MicroTime such as `2026-11-26T10:00:00.000000Z`), and how often it changed
hands (`leaseTransitions`). Every write is an update conditional on the
resourceVersion that was read, so two candidates racing for a free Lease
cannot both win: one gets 409 Conflict and tries again later.

As in client-go, expiry is judged with the *local* monotonic clock: a
candidate notes when it last saw the Lease record change, and only takes
over once `leaseDurationSeconds` have passed since then without a change.
Clock skew between machines therefore does not matter; only rates do.

The leader renews every `retry_period`; if no renewal succeeds for
`renew_deadline` seconds it stops leading (cancels `on_started_leading`,
calls `on_stopped_leading`) and `run` returns, so the process can exit or
start over as a candidate. `renew_deadline < lease_duration` leaves the
others a margin in which the old leader already knows it lost.

When `run` is cancelled while leading, the leader stops its work first and
then releases the Lease (empty holder, 1 s duration), letting a successor
take over at once instead of waiting out the lease.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import inspect
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

from timoner.api.errors import APIError, NotFound

from ._resource import Resource
from ._rest import Client

__all__ = ["LEASES", "LeaderElector", "micro_time"]

log = logging.getLogger("timoner.client.leaderelection")

LEASES = Resource("coordination.k8s.io", "v1", "leases", True)
_JITTER = 1.2  # client-go's JitterFactor for the retry period


def micro_time(when: dt.datetime | None = None) -> str:
    """A metav1.MicroTime: RFC 3339 in UTC with exactly six fractional digits."""
    when = when or dt.datetime.now(dt.UTC)
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    """Campaign for one Lease as `identity`; see the module docstring."""

    def __init__(self, client: Client, *, namespace: str, name: str, identity: str,
                 lease_duration: float = 15.0, renew_deadline: float = 10.0, retry_period: float = 2.0,
                 release_on_cancel: bool = True) -> None:
        if not lease_duration > renew_deadline > retry_period * _JITTER:
            raise ValueError("need lease_duration > renew_deadline > 1.2 * retry_period")
        if not identity:
            raise ValueError("identity must not be empty")
        self.client = client
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self.release_on_cancel = release_on_cancel
        self._observed_spec: dict[str, Any] | None = None
        self._observed_at = 0.0
        self._lease: dict[str, Any] | None = None
        self._leading = False

    @property
    def is_leader(self) -> bool:
        return self._leading

    @property
    def leader(self) -> str:
        """The holder as last observed ("" when unknown or released)."""
        return str((self._observed_spec or {}).get("holderIdentity") or "")

    async def run(self, on_started_leading: Callable[[], Awaitable[Any]],
                  on_stopped_leading: Callable[[], Any] | None = None) -> None:
        """Acquire, lead while renewing, and return once leadership is lost."""
        await self._acquire()
        self._leading = True
        log.info("%s: %s became leader", self._lease_name, self.identity)
        work = asyncio.ensure_future(on_started_leading())
        try:
            await self._renew_until_lost(work)
        finally:
            self._leading = False
            work.cancel()
            await asyncio.gather(work, return_exceptions=True)
            if on_stopped_leading is not None:
                result = on_stopped_leading()
                if inspect.isawaitable(result):
                    await result
            if self.release_on_cancel:
                await asyncio.shield(self._release())

    @property
    def _lease_name(self) -> str:
        return f"lease {self.namespace}/{self.name}"

    async def _acquire(self) -> None:
        while True:
            if await self._try_acquire_or_renew():
                return
            await asyncio.sleep(self.retry_period * (1 + random.random() * (_JITTER - 1)))

    async def _renew_until_lost(self, work: asyncio.Future[Any]) -> None:
        last_renew = time.monotonic()
        while not work.done():
            await asyncio.wait({work}, timeout=self.retry_period)
            if work.done():
                return
            remaining = last_renew + self.renew_deadline - time.monotonic()
            renewed = False
            if remaining > 0:
                try:
                    async with asyncio.timeout(remaining):
                        renewed = await self._try_acquire_or_renew()
                except TimeoutError:
                    renewed = False
            if renewed:
                last_renew = time.monotonic()
            elif time.monotonic() - last_renew >= self.renew_deadline:
                log.warning("%s: %s failed to renew within %ss; stepping down",
                            self._lease_name, self.identity, self.renew_deadline)
                return

    async def _try_acquire_or_renew(self) -> bool:
        """One attempt to take or keep the Lease; False when someone else validly holds it."""
        now_wall = micro_time()
        try:
            lease = await self.client.get(LEASES, self.name, namespace=self.namespace)
        except NotFound:
            lease = None
        except APIError as exc:
            log.warning("%s: cannot read: %s", self._lease_name, exc)
            return False
        except Exception as exc:  # network trouble is one failed attempt
            log.warning("%s: cannot read: %s: %s", self._lease_name, type(exc).__name__, exc)
            return False
        if lease is None:
            spec = self._spec(acquire_time=now_wall, renew_time=now_wall, transitions=0)
            body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": self.name, "namespace": self.namespace}, "spec": spec}
            return await self._write("create", body)
        old = lease.get("spec") or {}
        if old != self._observed_spec:
            self._observed_spec = old
            self._observed_at = time.monotonic()
        holder = old.get("holderIdentity") or ""
        duration = float(old.get("leaseDurationSeconds") or 0)
        if holder and holder != self.identity and self._observed_at + duration > time.monotonic():
            return False
        transitions = int(old.get("leaseTransitions") or 0)
        if holder == self.identity:
            spec = self._spec(acquire_time=old.get("acquireTime") or now_wall, renew_time=now_wall,
                              transitions=transitions)
        else:
            spec = self._spec(acquire_time=now_wall, renew_time=now_wall, transitions=transitions + 1)
        # Keep resourceVersion: the update only succeeds if nobody wrote the Lease since our read.
        body = {**lease, "spec": spec}
        return await self._write("update", body)

    def _spec(self, *, acquire_time: str, renew_time: str, transitions: int) -> dict[str, Any]:
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": max(1, round(self.lease_duration)),
            "acquireTime": acquire_time,
            "renewTime": renew_time,
            "leaseTransitions": transitions,
        }

    async def _write(self, verb: str, body: dict[str, Any]) -> bool:
        try:
            if verb == "create":
                lease = await self.client.create(LEASES, body, namespace=self.namespace)
            else:
                lease = await self.client.update(LEASES, body, namespace=self.namespace)
        except APIError as exc:
            # 409 (lost a race) is the common case: someone else wrote first.
            log.debug("%s: %s by %s failed: %s", self._lease_name, verb, self.identity, exc)
            return False
        except Exception as exc:  # network trouble is one failed attempt
            log.warning("%s: %s failed: %s: %s", self._lease_name, verb, type(exc).__name__, exc)
            return False
        self._lease = lease
        self._observed_spec = lease.get("spec") or {}
        self._observed_at = time.monotonic()
        return True

    async def _release(self) -> None:
        """Give the Lease up if we still hold it, so a successor need not wait it out."""
        lease = self._lease
        if lease is None or (lease.get("spec") or {}).get("holderIdentity") != self.identity:
            return
        now_wall = micro_time()
        spec = {**lease["spec"], "holderIdentity": "", "leaseDurationSeconds": 1,
                "acquireTime": now_wall, "renewTime": now_wall}
        try:
            await self.client.update(LEASES, {**lease, "spec": spec}, namespace=self.namespace)
        except Exception as exc:  # best effort: the lease expires anyway
            log.info("%s: release by %s failed: %s", self._lease_name, self.identity, exc)
        self._lease = None
