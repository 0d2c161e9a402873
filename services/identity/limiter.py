"""Failed sign-ins per source, limited: a token bucket per source, the clock passed in.

Each failure takes one unit from the source's bucket (`burst` units, refilled at `rate`
per second); an empty bucket means "wait". Successes cost nothing, so a caller with one
good token cannot use it to earn guesses. The table is bounded: past `max_sources`, the
least recently failing source is forgotten (a spread-out attack needs a limit in front).
"""
from __future__ import annotations

from collections import OrderedDict


class FailureLimiter:
    def __init__(self, *, burst: int = 10, rate: float = 10 / 60, max_sources: int = 10_000) -> None:
        self.burst, self.rate, self.max_sources = float(burst), rate, max_sources
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()   # source -> (units, at)

    def _units(self, source: str, now: float) -> float:
        units, at = self._buckets.get(source, (self.burst, now))
        return min(self.burst, units + (now - at) * self.rate)

    def wait(self, source: str, now: float) -> float:
        """Seconds this source must wait before its next try; 0 when it may try now."""
        units = self._units(source, now)
        return 0.0 if units >= 1 else (1 - units) / self.rate

    def failed(self, source: str, now: float) -> bool:
        """Count a failure; True when this one used the last unit (the source must now wait)."""
        units = max(0.0, self._units(source, now) - 1)
        self._buckets[source] = (units, now)
        self._buckets.move_to_end(source)
        while len(self._buckets) > self.max_sources:
            self._buckets.popitem(last=False)
        return units < 1
