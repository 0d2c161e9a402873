"""Circuit breaker events, on `pb.circuit.<token>.<Type>`: one breaker per target, shared
by every run and every replica."""
from __future__ import annotations

from collections.abc import Callable

from datetime import datetime

import msgspec

from events.json_limits import stored_decoder


class CircuitEvent(msgspec.Struct, frozen=True, kw_only=True, tag=True, omit_defaults=True):
    key: str
    at: datetime


class CircuitCallFailed(CircuitEvent, frozen=True):
    run_id: str
    step_id: str
    error: str


class CircuitCallSucceeded(CircuitEvent, frozen=True):
    run_id: str
    step_id: str


class CircuitOpened(CircuitEvent, frozen=True):
    reason: str
    until: datetime


class CircuitHalfOpened(CircuitEvent, frozen=True):
    """The open time passed, or a trial call ended with no outcome (its step was cancelled, or its
    executor died and the step calls again): a limited number of trial calls may go through."""

    trial_lost: str = ""       # the run/step whose trial ended with no outcome; empty: the open time passed


class CircuitTrialStarted(CircuitEvent, frozen=True):
    run_id: str
    step_id: str


class CircuitClosed(CircuitEvent, frozen=True):
    reason: str


class CircuitReset(CircuitEvent, frozen=True):
    actor: str
    on_behalf_of: str | None = None


AnyCircuitEvent = (CircuitCallFailed | CircuitCallSucceeded | CircuitOpened | CircuitHalfOpened | CircuitTrialStarted
                   | CircuitClosed | CircuitReset)
CIRCUIT_EVENT_TYPES: tuple[type[CircuitEvent], ...] = AnyCircuitEvent.__args__
decode_circuit_event: Callable[[bytes], CircuitEvent] = stored_decoder(AnyCircuitEvent)
