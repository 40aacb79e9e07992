"""CrashLoopBackOff: client-go's `flowcontrol.Backoff` as the kubelet uses it for restarting containers.

Per container: the first restart after a failure is immediate and arms a
delay of `base`; each further failure within the delay waits it out, then
doubles it (capped at `cap`). An entry not touched for `2 * cap` (a
container that ran ten minutes, with upstream's numbers) starts over at
`base`. Times come from a `Clock`, so tests can use a short base.
"""

from __future__ import annotations

from dataclasses import dataclass

from timoner.client import Clock

__all__ = ["Backoff", "go_duration"]


def go_duration(seconds: float) -> str:
    """Go's `time.Duration.String()` for the messages upstream prints: `10s`, `1m20s`, `5m0s`, `100ms`."""
    if seconds == 0:
        return "0s"
    if seconds < 1:
        ms = seconds * 1000
        return f"{ms:g}ms" if ms >= 1 else f"{seconds * 1e6:g}µs"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{secs:.9f}".rstrip("0").rstrip(".") + "s"
    if hours:
        return f"{int(hours)}h{int(minutes)}m{text}"
    if minutes:
        return f"{int(minutes)}m{text}"
    return text


@dataclass(slots=True)
class _Entry:
    delay: float
    last_update: float


class Backoff:
    """Per-key exponential back-off; see the module docstring."""

    def __init__(self, clock: Clock, *, base: float = 10.0, cap: float = 300.0) -> None:
        self._clock = clock
        self.base = base
        self.cap = cap
        self._entries: dict[str, _Entry] = {}

    def _expired(self, entry: _Entry, when: float) -> bool:
        return when - entry.last_update > 2 * self.cap

    def remaining(self, key: str, since: float) -> float:
        """Seconds still to wait before restarting after a failure at `since` (0: restart now)."""
        entry = self._entries.get(key)
        if entry is None or self._expired(entry, since):
            return 0.0
        return max(0.0, since + entry.delay - self._clock.now())

    def delay(self, key: str) -> float:
        entry = self._entries.get(key)
        return entry.delay if entry is not None else self.base

    def next(self, key: str, since: float) -> None:
        """Record a restart after a failure at `since`: arm `base`, or double the delay."""
        entry = self._entries.get(key)
        if entry is None or self._expired(entry, since):
            self._entries[key] = _Entry(self.base, since)
        else:
            entry.delay = min(entry.delay * 2, self.cap)
            entry.last_update = since
