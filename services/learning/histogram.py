"""A bounded log histogram: percentiles of durations within 10%, whatever the number of samples.

Bucket i holds values in [RATIO^i, RATIO^(i+1)) milliseconds, eight buckets per doubling,
so at most MAX_BUCKET + 1 counters, kept sparse. The exact maximum is kept beside them:
a percentile is the upper edge of its bucket, never more than the largest value seen.
"""
from __future__ import annotations

import math

import msgspec

RATIO = 2 ** (1 / 8)
MAX_BUCKET = 8 * 42          # 2^42 ms: 139 years; anything longer shares the last bucket


def bucket(value_ms: float) -> int:
    if value_ms < RATIO:
        return 0
    return min(MAX_BUCKET, int(math.log(value_ms, RATIO)))


def lower_edge(index: int) -> float:
    return 0.0 if index == 0 else RATIO ** index


def upper_edge(index: int) -> float:
    return RATIO ** (index + 1)


class Histogram(msgspec.Struct, kw_only=True):
    count: int = 0
    max_ms: float = 0.0
    buckets: dict[int, int] = {}

    def add(self, value_ms: float) -> None:
        value_ms = max(0.0, value_ms)
        index = bucket(value_ms)
        self.buckets[index] = self.buckets.get(index, 0) + 1
        self.count += 1
        self.max_ms = max(self.max_ms, value_ms)

    def percentile(self, q: float) -> float | None:
        """The value below which a share `q` (0..1) of the samples fall, at its bucket's upper edge."""
        if not self.count:
            return None
        rank = max(1, math.ceil(q * self.count))
        seen = 0
        for index in sorted(self.buckets):
            seen += self.buckets[index]
            if seen >= rank:
                return round(min(upper_edge(index), self.max_ms), 3)
        return round(self.max_ms, 3)
