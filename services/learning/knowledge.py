"""The knowledge: eventsourcing aggregates holding the stats, each batch recorded with its stream position.

One batch of JetStream messages is one `process_event`: every profile it touches records
one `Observed` event with the batch's facts for it, the cursor advances, and the
library's tracking record takes the batch's last stream sequence, all in one transaction.
A batch whose position is already recorded is refused (IntegrityError) and a cursor that
does not continue where the batch starts means another writer got there first: either
way nothing is counted twice. Synchronous, like the library: one worker thread calls it.
"""
from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import msgspec
from eventsourcing.application import AggregateNotFoundError
from eventsourcing.domain import Aggregate, event
from eventsourcing.persistence import JSONTranscoder, Tracking, Transcoding
from eventsourcing.projection import EventSourcedProjection

from events.subjects import RUNS_STREAM
from services.errors import PlaybookError
from services.learning.facts import (
    ApprovalDecided, AttemptFailed, AttemptPassed, BreakerOpened, Fact, RemediationEnded, RunBegan, RunEnded,
    RunReopened, StepConfigured, decode_facts, encode_facts,
)
from services.learning.stats import (
    CorrelationStats, PlaybookStats, StepStats, TargetStats, fold_correlations, fold_playbook, fold_step, fold_target,
)
from services.learning.storage import NAMESPACE, ExplicitEnv
from services.domain.breaker import TARGET_FAILURES

log = logging.getLogger(__name__)

SNAPSHOT_EVERY = 50          # profile versions between snapshots: loading replays at most this many events
MAX_PROFILES = 10_000        # playbooks, and targets, the knowledge keeps; more are not learned (and logged)
MAX_ENVIRONMENTS = 100       # environments of one playbook the knowledge keeps apart; more are not learned


class PositionConflict(PlaybookError):
    """The store moved on since this writer loaded it: another learning service writes to it too."""


@dataclass(slots=True)
class Batch:
    """Messages after stream sequence `after` up to `last`, and what they taught."""

    after: int
    last: int
    stream: str                              # the stream's identity (its creation time) and the interpretation
    messages: int = 0
    facts: list[Fact] = field(default_factory=list)


class Profile(Aggregate):
    """What the engine knows about one thing; `stats` is folded from facts, one batch per event."""

    fold: ClassVar[Callable[[Any, Fact], None]]

    @event("Observed")
    def observe(self, facts: str) -> None:
        for fact in decode_facts(facts):
            type(self).fold(self.stats, fact)


class StepProfile(Profile):
    fold = staticmethod(fold_step)

    @staticmethod
    @functools.lru_cache(maxsize=4 * MAX_PROFILES)   # asked again by the library for each new profile
    def create_id(playbook: str, environment: str, step: str) -> uuid.UUID:
        return uuid.uuid5(NAMESPACE, f"step\x1f{playbook}\x1f{step}{_in(environment)}")

    def __init__(self, playbook: str, environment: str, step: str) -> None:
        self.stats = StepStats(playbook=playbook, environment=environment, step=step)


class PlaybookProfile(Profile):
    fold = staticmethod(fold_playbook)

    @staticmethod
    def create_id(playbook: str, environment: str) -> uuid.UUID:
        return uuid.uuid5(NAMESPACE, f"playbook\x1f{playbook}{_in(environment)}")

    def __init__(self, playbook: str, environment: str) -> None:
        self.stats = PlaybookStats(playbook=playbook, environment=environment)


class TargetProfile(Profile):
    fold = staticmethod(fold_target)

    @staticmethod
    def create_id(target: str) -> uuid.UUID:
        return uuid.uuid5(NAMESPACE, f"target\x1f{target}")

    def __init__(self, target: str) -> None:
        self.stats = TargetStats(target=target)


class Correlations(Profile):
    """Failures across every target and playbook: which steps fail together."""

    fold = staticmethod(fold_correlations)

    @staticmethod
    def create_id() -> uuid.UUID:
        return uuid.uuid5(NAMESPACE, "correlations")

    def __init__(self) -> None:
        self.stats = CorrelationStats()


class Catalog(Aggregate):
    """Every playbook and target profiled, so the knowledge can be listed."""

    @staticmethod
    def create_id() -> uuid.UUID:
        return uuid.uuid5(NAMESPACE, "catalog")

    def __init__(self) -> None:
        self.playbooks: dict[str, int] = {}
        self.targets: dict[str, int] = {}
        self.environments: dict[str, list[str]] = {}     # playbook -> the environments it ran in ("": none)

    @event("Listed")
    def add(self, playbooks: list[str], targets: list[str]) -> None:
        self.playbooks.update(dict.fromkeys(playbooks, 1))
        self.targets.update(dict.fromkeys(targets, 1))

    @event("Placed")
    def place(self, playbook: str, environment: str) -> None:
        self.places(playbook).append(environment)

    def places(self, playbook: str) -> list[str]:
        """The environments a playbook ran in (a catalog from before environments were learned has none)."""
        return self.__dict__.setdefault("environments", {}).setdefault(playbook, [])


class Cursor(Aggregate):
    """How far into the stream the knowledge is, and which stream: writers check it before each batch."""

    @staticmethod
    def create_id() -> uuid.UUID:
        return uuid.uuid5(NAMESPACE, "cursor")

    def __init__(self) -> None:
        self.position = 0
        self.stream = ""
        self.messages = 0

    @event("Advanced")
    def advance(self, to: int, messages: int, stream: str) -> None:
        self.position, self.stream = to, stream
        self.messages += messages


# The catalog list that must name a profile's first key before it is created.
LISTED_IN: dict[type[Profile], str] = {StepProfile: "playbooks", PlaybookProfile: "playbooks", TargetProfile: "targets"}


class StructAsJSON(Transcoding):
    """Stats Structs in snapshots, exactly as msgspec encodes them (int keys stay ints)."""

    def __init__(self, kind: type[msgspec.Struct]) -> None:
        self.type, self.name = kind, kind.__name__
        self.decoder = msgspec.json.Decoder(kind)

    def encode(self, obj: msgspec.Struct) -> str:
        return msgspec.json.encode(obj).decode()

    def decode(self, data: str) -> msgspec.Struct:
        return self.decoder.decode(data)


class Knowledge(ExplicitEnv, EventSourcedProjection):
    is_snapshotting_enabled = True     # snapshots are taken below, from the profiles in hand
    defaults = {"AGGREGATE_CACHE_MAXSIZE": str(4 * MAX_PROFILES), "AGGREGATE_CACHE_FASTFORWARD": "n",
                "DEEPCOPY_FROM_AGGREGATE_CACHE": "n"}

    def __init__(self, name: str, env: dict[str, str]) -> None:
        super().__init__(name, env)
        self._batch: dict[uuid.UUID, tuple[Aggregate, int]] = {}   # touched in this batch -> version before
        self._fresh: set[tuple[str, str]] = set()   # (listing, name) first listed, or placed, in this batch
        self._dropped = 0

    def register_transcodings(self, transcoder: JSONTranscoder) -> None:
        super().register_transcodings(transcoder)
        for kind in (StepStats, PlaybookStats, TargetStats, CorrelationStats):
            transcoder.register(StructAsJSON(kind))

    # -- writing -----------------------------------------------------------------------

    def position(self) -> int:
        return self.recorder.max_tracking_id(RUNS_STREAM) or 0

    def cursor(self) -> Cursor:
        try:
            return self.repository.get(Cursor.create_id())
        except AggregateNotFoundError:
            return Cursor()

    def learn(self, batch: Batch) -> None:
        """Record what a batch taught and its position, atomically; then snapshot what is due."""
        self._batch, self._fresh = {}, set()
        try:
            self.process_event(batch, Tracking(application_name=RUNS_STREAM, notification_id=batch.last))
            due = [aggregate for aggregate, before in self._batch.values()
                   if aggregate.version // SNAPSHOT_EVERY > before // SNAPSHOT_EVERY]
            if due and self.snapshots is not None:
                self.snapshots.put([type(aggregate).Snapshot.take(aggregate) for aggregate in due])
        finally:
            self._batch, self._fresh = {}, set()

    def policy(self, batch: Batch, processing_event: Any) -> None:   # type: ignore[override]
        cursor = self._get(Cursor)
        if cursor.position != batch.after:
            raise PositionConflict(f"the knowledge is at stream position {cursor.position}, "
                                   f"this batch continues from {batch.after}")
        observed: dict[tuple[type[Profile], tuple[str, ...]], list[Fact]] = {}
        for fact in batch.facts:
            for key in _profiles_of(fact):
                observed.setdefault(key, []).append(fact)
        for (kind, key), facts in observed.items():
            profile = self._profile(kind, key)
            if profile is not None:
                profile.observe(encode_facts(facts).decode())
        cursor.advance(batch.last, batch.messages, batch.stream)
        # What `processing_event.collect_events(*aggregates)` does, without its two runtime-protocol
        # `isinstance` checks per aggregate (on Python 3.11, a fifth of the time a batch of new profiles took).
        for aggregate, _ in self._batch.values():
            processing_event.events.extend(aggregate.collect_events())
            processing_event.aggregates[aggregate.id] = aggregate

    def _profile(self, kind: type[Profile], key: tuple[str, ...]) -> Profile | None:
        """The profile, created (and listed) the first time; None when the catalog is full."""
        listing = LISTED_IN.get(kind)
        if listing is not None and not self._listed(listing, key[0]):
            return None
        if listing == "playbooks" and not self._placed(key[0], key[1]):
            return None
        # A playbook (or target) first listed in this batch has no profiles stored yet: none to look up (a new
        # playbook of 10,000 steps would otherwise cost 10,000 lookups that find nothing).
        if listing is None:
            return self._get(kind, *key)
        fresh = ("places", f"{key[0]}\x1f{key[1]}") if listing == "playbooks" else (listing, key[0])
        return self._get(kind, *key, new=fresh in self._fresh)

    def _listed(self, kind: str, name: str) -> bool:
        catalog = self._get(Catalog)
        listed = getattr(catalog, kind)
        if name in listed:
            return True
        if len(listed) >= MAX_PROFILES:
            self._dropped += 1
            if self._dropped in (1, 1000):
                log.warning("learning: %d %s known already; not learning about %r", MAX_PROFILES, kind, name)
            return False
        catalog.add(playbooks=[name] if kind == "playbooks" else [], targets=[name] if kind == "targets" else [])
        self._fresh.add((kind, name))
        return True

    def _placed(self, playbook: str, environment: str) -> bool:
        catalog = self._get(Catalog)
        places = catalog.places(playbook)
        if environment in places:
            return True
        if len(places) >= MAX_ENVIRONMENTS:
            self._dropped += 1
            if self._dropped in (1, 1000):
                log.warning("learning: %s ran in %d environments already; not learning about %r",
                            playbook, MAX_ENVIRONMENTS, environment)
            return False
        catalog.place(playbook=playbook, environment=environment)
        self._fresh.add(("places", f"{playbook}\x1f{environment}"))
        return True

    def _get(self, kind: type, *key: str, new: bool = False) -> Any:
        """The aggregate from this batch, the cache or the store, or a new one (at once if it is known to be `new`)."""
        aggregate_id = _id(kind, key)
        if aggregate_id in self._batch:
            return self._batch[aggregate_id][0]
        aggregate = None if new else self._stored(aggregate_id)
        if aggregate is None:
            aggregate = kind(*key)
            self._batch[aggregate_id] = (aggregate, 0)
        else:
            self._batch[aggregate_id] = (aggregate, aggregate.version)
        return aggregate

    def _stored(self, aggregate_id: uuid.UUID) -> Any:
        try:
            return self.repository.get(aggregate_id)
        except AggregateNotFoundError:
            return None

    # -- reading -------------------------------------------------------------------------

    def read(self, kind: type, *key: str) -> Any:
        """The stats of one profile, or None if there is none; read between batches only."""
        try:
            return self.repository.get(_id(kind, key)).stats
        except AggregateNotFoundError:
            return None

    def catalog(self) -> Catalog:
        try:
            return self.repository.get(Catalog.create_id())
        except AggregateNotFoundError:
            return Catalog()


def _profiles_of(fact: Fact) -> list[tuple[type[Profile], tuple[str, ...]]]:
    """The profiles a fact teaches, by kind and key."""
    match fact:
        case RunBegan() | RunEnded():
            return [(PlaybookProfile, (fact.playbook, fact.environment))]
        case RunReopened():
            return [(PlaybookProfile, (fact.playbook, fact.environment)),
                    *((StepProfile, (fact.playbook, fact.environment, step)) for step in fact.steps)]
        case StepConfigured() | AttemptPassed() | AttemptFailed():
            target = fact.shape.target if isinstance(fact, StepConfigured) else fact.target
            found: list[tuple[type[Profile], tuple[str, ...]]] = [
                (StepProfile, (fact.playbook, fact.environment, fact.step))]
            if target:
                found.append((TargetProfile, (target,)))
            if isinstance(fact, AttemptFailed) and fact.category in TARGET_FAILURES:
                found.append((Correlations, ()))
            return found
        case RemediationEnded() | ApprovalDecided():
            return [(StepProfile, (fact.playbook, fact.environment, fact.step))]
        case BreakerOpened():
            return [(TargetProfile, (fact.target,))]
    return []


def _in(environment: str) -> str:
    """The part of a profile's key naming its environment: none for runs without one."""
    return f"\x1f@{environment}" if environment else ""


@functools.lru_cache(maxsize=4 * MAX_PROFILES)
def _id(kind: type, key: tuple[str, ...]) -> uuid.UUID:
    return kind.create_id(*key)
