"""What a NATS connection's troubles write to the log: bounded, however long the server stays away.

nats-py reports every failed reconnect (two a second here): an hour's outage would be thousands of
warnings per connection, burying what else happened. The first error of an outage is a warning,
then one warning every `EVERY` seconds says it goes on and how many attempts failed meanwhile; the
rest go to the debug log. Being connected again is said once, with how long it took.
"""
from __future__ import annotations

import logging
import time

log = logging.getLogger("playbook")

EVERY = 30.0     # seconds between warnings while the same outage goes on


class ConnectionTrouble:
    """The error and reconnect callbacks of one connection (`nats.connect(error_cb=..., reconnected_cb=...)`)."""

    def __init__(self, name: str, every: float = EVERY) -> None:
        self.name, self.every = name, every
        self.since: float | None = None       # when this outage's first error came
        self.warned_at = 0.0
        self.unsaid = 0                       # errors since the last warning

    async def on_error(self, err: Exception) -> None:
        now = time.monotonic()
        if self.since is None:
            self.since, self.warned_at, self.unsaid = now, now, 0
            log.warning("NATS (%s): %s", self.name, err)
        elif now - self.warned_at >= self.every:
            log.warning("NATS (%s): still failing after %.0f s (%d more errors): %s", self.name, now - self.since,
                        self.unsaid + 1, err)
            self.warned_at, self.unsaid = now, 0
        else:
            self.unsaid += 1
            log.debug("NATS (%s): %s", self.name, err)

    async def on_reconnected(self) -> None:
        if self.since is not None:
            log.warning("NATS (%s): connected again after %.1f s", self.name, time.monotonic() - self.since)
        self.since = None
