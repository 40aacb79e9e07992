"""`Expectations`: how many creates and deletes a controller is still waiting to see in its informer.

Upstream's `UIDTrackingControllerExpectations`. A ReplicaSet that just
created three pods must not count its pods again until the pod informer
has shown it those three: the cache lags the writes, and acting on it would
create three more. So before writing, the controller records what it
expects (`expect_creations(key, 3)`, `expect_deletions(key, pod_keys)`);
informer handlers lower the counts as the events arrive
(`creation_observed`, `deletion_observed`, each deleted pod counted once),
and `satisfied(key)` holds the controller back until they reach zero.

Expectations expire after five minutes (upstream's ExpectationsTimeout), so
a lost event delays a controller but never wedges it. A key with no record
is satisfied: a controller that just started has nothing to wait for.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from timoner.client import Clock, RealClock

__all__ = ["EXPECTATIONS_TIMEOUT", "Expectations"]

EXPECTATIONS_TIMEOUT = 300.0


@dataclass(slots=True)
class _Record:
    add: int
    delete: int
    timestamp: float
    deleting: set[str] = field(default_factory=set)


class Expectations:
    """Pending creates and deletes per controller key; see the module docstring."""

    def __init__(self, *, clock: Clock | None = None, timeout: float = EXPECTATIONS_TIMEOUT) -> None:
        self._clock = clock or RealClock()
        self._timeout = timeout
        self._records: dict[str, _Record] = {}

    def satisfied(self, key: str) -> bool:
        """True when nothing is pending, the record expired, or there is no record."""
        record = self._records.get(key)
        if record is None:
            return True
        if record.add <= 0 and record.delete <= 0:
            return True
        return self._clock.now() - record.timestamp > self._timeout

    def pending(self, key: str) -> tuple[int, int]:
        """(creates, deletes) still expected; for logs and tests."""
        record = self._records.get(key)
        return (record.add, record.delete) if record is not None else (0, 0)

    def expect_creations(self, key: str, count: int) -> None:
        self._records[key] = _Record(count, 0, self._clock.now())

    def expect_deletions(self, key: str, pod_keys: list[str]) -> None:
        self._records[key] = _Record(0, len(pod_keys), self._clock.now(), set(pod_keys))

    def expect(self, key: str, *, creations: int, deletions: list[str]) -> None:
        """Creates and deletes at once (upstream's SetExpectations), replacing what was pending."""
        self._records[key] = _Record(creations, len(deletions), self._clock.now(), set(deletions))

    def creation_observed(self, key: str) -> None:
        record = self._records.get(key)
        if record is not None:
            record.add -= 1

    def deletion_observed(self, key: str, pod_key: str) -> None:
        """A pod is gone (or going); counted once per pod whose deletion was expected."""
        record = self._records.get(key)
        if record is not None and pod_key in record.deleting:
            record.deleting.discard(pod_key)
            record.delete -= 1

    def delete(self, key: str) -> None:
        """Forget `key` entirely (its controller object is gone)."""
        self._records.pop(key, None)
