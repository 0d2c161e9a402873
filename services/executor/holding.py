"""What an executor holds: the leases on its attempts, renewed before they lapse, and let go when done.

A lease lasts `seconds`. It is renewed every quarter of that. Its holder counts from the
moment it sent its last renewal that the store confirmed, and stops the attempt seven
eighths of a lease after it, if no later renewal was confirmed: the lease was taken, or the
store cannot be reached, or this process was too busy to renew. A taker waits a whole lease
after the last renewal it saw, which left the holder no earlier, so the attempt is stopped
an eighth of a lease before anyone may take it over. The guardian kills the attempt's
processes at that deadline, to the millisecond, even if this process's event loop cannot.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from services.executor.guardian import Guardian
from services.leases import AttemptId, Lease, LeaseStore

log = logging.getLogger(__name__)

RENEWALS = 4              # per lease
KEPT = 7 / 8              # of a lease after its last confirmed renewal, before the holder stops


@dataclass(eq=False)
class Holding:
    """A lease this executor holds, and the work done under it."""

    attempt: AttemptId
    lease: Lease
    deadline: float                               # time.monotonic: stop by then unless renewed
    on_lost: Callable[[Holding, str], None]
    lost: str = ""                                # why it was lost; "" while held
    timer: asyncio.TimerHandle | None = field(default=None, repr=False)


class Keeper:
    def __init__(self, leases: LeaseStore, seconds: float, guardian: Guardian) -> None:
        self.leases, self.seconds, self.guardian = leases, seconds, guardian
        self.held: dict[str, Holding] = {}        # by lease subject
        self.finishing: set[str] = set()          # lease subjects of ended attempts whose outcome is being recorded
        self._ticker: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._ticker = asyncio.create_task(self._renew_all())

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()

    def holds(self, subject: str) -> bool:
        """Held, or its attempt ended here and its outcome waits to be recorded: not ours to take over."""
        return subject in self.held or subject in self.finishing

    def hold(self, attempt: AttemptId, lease: Lease, sent: float,
             on_lost: Callable[[Holding, str], None] = lambda holding, why: None) -> Holding:
        """Keep `lease`, claimed or taken by a write sent at `sent` (time.monotonic)."""
        holding = Holding(attempt, lease, 0.0, on_lost)
        self.held[lease.subject] = holding
        self._extend(holding, sent)
        return holding

    async def release(self, holding: Holding) -> None:
        """The attempt is over: let the lease go (unless it was lost)."""
        self._forget(holding)
        if not holding.lost:
            try:
                await self.leases.release(holding.lease)
            except Exception as err:  # noqa: BLE001 - unreleased, it lapses and is found done
                log.warning("could not release the lease on %s: %s", holding.attempt.key, err)

    def _extend(self, holding: Holding, sent: float) -> None:
        holding.deadline = sent + self.seconds * KEPT
        self.guardian.deadline(holding.attempt.key, holding.deadline)
        if holding.timer is not None:
            holding.timer.cancel()
        delay = holding.deadline - time.monotonic()
        holding.timer = asyncio.get_running_loop().call_later(max(delay, 0.0), self._lose, holding,
                                                              f"not renewed within {self.seconds * KEPT:g} s")

    def _lose(self, holding: Holding, why: str) -> None:
        if holding.lost or self.held.get(holding.lease.subject) is not holding:
            return
        holding.lost = why
        self._forget(holding)
        log.warning("lost the lease on %s (%s): stopping it", holding.attempt.key, why)
        holding.on_lost(holding, why)

    def let_lapse(self, holding: Holding) -> None:
        """Stop renewing it, and keep it: a taker takes it over once it lapsed (what was to be recorded under it
        could not be)."""
        self._forget(holding)

    def _forget(self, holding: Holding) -> None:
        if self.held.get(holding.lease.subject) is holding:
            del self.held[holding.lease.subject]
        if holding.timer is not None:
            holding.timer.cancel()
        self.guardian.over(holding.attempt.key)

    async def _renew_all(self) -> None:
        while True:
            await asyncio.sleep(self.seconds / RENEWALS)
            due = [h for h in self.held.values() if h.deadline - time.monotonic() < self.seconds * KEPT * 0.9]
            await asyncio.gather(*(self._renew(h) for h in due))

    async def _renew(self, holding: Holding) -> None:
        sent = time.monotonic()
        try:
            renewed = await self.leases.renew(holding.lease)
        except Exception as err:  # noqa: BLE001 - unconfirmed: the deadline stands; the next tick tries again
            log.warning("could not renew the lease on %s: %s", holding.attempt.key, err)
            return
        if holding.lost or self.held.get(holding.lease.subject) is not holding:
            return
        if renewed is None:
            self._lose(holding, "another executor took it over")
            return
        was = holding.deadline
        holding.lease = renewed
        self._extend(holding, sent)
        # Learnt too late (a busy loop): the guardian may have killed the attempt at the old deadline, before it
        # read the new one. Its end would look like the step's own failure; as lost, it is run again.
        if time.monotonic() >= was:
            self._lose(holding, f"renewed, but the renewal was learnt after the deadline of {self.seconds * KEPT:g} s")
