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
from services.learning.storage import NAMESPACE, ExplicitEnv, forget
from services.domain.breaker import TARGET_FAILURES

log = logging.getLogger(__name__)

SNAPSHOT_EVERY = 50          # profile versions between snapshots: loading replays at most this many events
# What the catalog lists (and insights show). Past a bound the oldest listed makes room (evicted: its knowledge
# stays stored and is listed again, whole, when it runs again); a text someone sent makes room among texts only,
# first among their own: one person's flood of names pushes out their own, never a catalog playbook or others'.
MAX_PROFILES = 10_000        # playbooks, and targets
MAX_TEXTS = 5_000            # playbooks listed from texts sent, not catalog versions
MAX_TEXTS_PER_STARTER = 100  # ... started by one person
MAX_ENVIRONMENTS = 100       # environments of one playbook the knowledge keeps apart


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
    """The playbooks and targets listed (insights show these), bounded: past a bound the oldest make room."""

    @staticmethod
    def create_id() -> uuid.UUID:
        return uuid.uuid5(NAMESPACE, "catalog")

    def __init__(self) -> None:
        self.playbooks: dict[str, int] = {}                 # in the order they were listed
        self.targets: dict[str, int] = {}
        self.environments: dict[str, list[str]] = {}     # playbook -> the environments it ran in ("": none)
        self.texts: dict[str, str] = {}                  # playbook listed from a text -> who sent it
        self.evicted: dict[str, int] = {}                # how many made room, by kind (texts, environments, targets)

    @event("Listed")
    def add(self, playbooks: list[str], targets: list[str]) -> None:
        self.playbooks.update(dict.fromkeys(playbooks, 1))
        self.targets.update(dict.fromkeys(targets, 1))

    @event("Placed")
    def place(self, playbook: str, environment: str) -> None:
        self.places(playbook).append(environment)

    @event("Owned")
    def own(self, playbook: str, starter: str) -> None:
        """A text of `starter`'s; or, with no starter, a catalog playbook (no one's to make room among)."""
        texts = self.sent()
        texts.pop(playbook, None)
        if starter:
            texts[playbook] = starter

    @event("Evicted")
    def evict(self, kind: str, name: str, environment: str = "") -> None:
        if kind == "environments":
            self.places(name).remove(environment)
        elif kind == "targets":
            del self.targets[name]
        else:
            del self.playbooks[name]
            self.sent().pop(name, None)
            self.__dict__.setdefault("environments", {}).pop(name, None)
        evicted = self.__dict__.setdefault("evicted", {})
        evicted[kind] = evicted.get(kind, 0) + 1

    def places(self, playbook: str) -> list[str]:
        """The environments a playbook ran in (a catalog from before environments were learned has none)."""
        return self.__dict__.setdefault("environments", {}).setdefault(playbook, [])

    def sent(self) -> dict[str, str]:
        """Playbooks listed from texts, by who sent them (a catalog from before they were told apart has none)."""
        return self.__dict__.setdefault("texts", {})

    def evictions(self) -> dict[str, int]:
        return dict(self.__dict__.get("evicted", {}))


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
        self._fresh: set[tuple[str, str]] = set()   # ("places", playbook\x1fenvironment) with no profile stored yet
        self.told: dict[str, int] = {}              # "evicted texts", "left out playbooks"... since the start

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
                taken = [type(aggregate).Snapshot.take(aggregate) for aggregate in due]
                self.snapshots.put(taken)
                upto = [(snapshot.originator_id, snapshot.originator_version) for snapshot in taken]
                forget(self.recorder, upto, including=True)              # loading starts from the snapshot
                forget(self.snapshots.recorder, upto, including=False)   # and only the latest is read
        finally:
            self._batch, self._fresh = {}, set()

    def policy(self, batch: Batch, processing_event: Any) -> None:   # type: ignore[override]
        cursor = self._get(Cursor)
        if cursor.position != batch.after:
            raise PositionConflict(f"the knowledge is at stream position {cursor.position}, "
                                   f"this batch continues from {batch.after}")
        observed: dict[tuple[type[Profile], tuple[str, ...]], list[Fact]] = {}
        for fact in batch.facts:        # listed in the order facts happened, whatever the batches: a rebuild agrees
            if isinstance(fact, RunBegan):
                self._list(fact)
            for key in _profiles_of(fact):
                if key[0] is TargetProfile:
                    self._list_target(key[1][0])
                observed.setdefault(key, []).append(fact)
        for (kind, key), facts in observed.items():
            self._profile(kind, key).observe(encode_facts(facts).decode())
        cursor.advance(batch.last, batch.messages, batch.stream)
        # What `processing_event.collect_events(*aggregates)` does, without its two runtime-protocol
        # `isinstance` checks per aggregate (on Python 3.11, a fifth of the time a batch of new profiles took).
        for aggregate, _ in self._batch.values():
            processing_event.events.extend(aggregate.collect_events())
            processing_event.aggregates[aggregate.id] = aggregate

    def _profile(self, kind: type[Profile], key: tuple[str, ...]) -> Profile:
        """The profile, stored or new. Every fact is learned, listed or not: a playbook evicted from the catalog
        comes back whole when it runs again."""
        if kind is StepProfile:     # a playbook new to an environment in this batch has no step profiles stored
            return self._get(kind, *key, new=("places", f"{key[0]}\x1f{key[1]}") in self._fresh)
        return self._get(kind, *key)

    def _list(self, began: RunBegan) -> None:
        """List the playbook and its environment, making room if the catalog is full."""
        catalog, name, where = self._get(Catalog), began.playbook, began.environment
        texts = catalog.sent()
        if name in catalog.playbooks:
            if not began.text and name in texts:
                catalog.own(playbook=name, starter="")          # a catalog version of it ran: no one's text now
        elif self._room_for(catalog, began):
            catalog.add(playbooks=[name], targets=[])
            if began.text:
                catalog.own(playbook=name, starter=began.starter)
        else:
            self._tell("left out", "playbooks", f"{MAX_PROFILES} catalog playbooks are known already; "
                                                f"not listing {name!r}")
            return
        places = catalog.places(name)
        if where in places:
            return
        if len(places) >= MAX_ENVIRONMENTS:
            oldest = places[0]
            catalog.evict(kind="environments", name=name, environment=oldest)
            self._tell("evicted", "environments", f"{name} ran in {MAX_ENVIRONMENTS} environments; "
                                                  f"{oldest!r}, the first listed, makes room for {where!r}")
        catalog.place(playbook=name, environment=where)
        if self._new(PlaybookProfile, name, where):
            self._fresh.add(("places", f"{name}\x1f{where}"))

    def _room_for(self, catalog: Catalog, began: RunBegan) -> bool:
        """Room for one more playbook: a text makes it among texts (its sender's own first, else the oldest of
        whoever sent most), a catalog version among texts too; never among catalog playbooks."""
        texts = catalog.sent()
        mine = [name for name, starter in texts.items() if starter == began.starter] if began.text else []
        if len(mine) >= MAX_TEXTS_PER_STARTER:
            evicted, why = mine[0], f"{began.starter} sent {MAX_TEXTS_PER_STARTER} playbook texts already"
        elif texts and ((began.text and len(texts) >= MAX_TEXTS) or len(catalog.playbooks) >= MAX_PROFILES):
            counts: dict[str, int] = {}
            for starter in texts.values():
                counts[starter] = counts.get(starter, 0) + 1
            most = max(counts.values())
            evicted = next(name for name, starter in texts.items() if counts[starter] == most)
            why = f"{len(texts)} playbook texts are known already, {most} of them {texts[evicted]}'s"
        elif began.text and len(texts) >= MAX_TEXTS or len(catalog.playbooks) >= MAX_PROFILES:
            return False
        else:
            return True
        catalog.evict(kind="texts", name=evicted)
        self._tell("evicted", "texts", f"{why}; {evicted!r}, the first listed, makes room for {began.playbook!r}")
        return True

    def _list_target(self, target: str) -> None:
        catalog = self._get(Catalog)
        if target in catalog.targets:
            return
        if len(catalog.targets) >= MAX_PROFILES:
            oldest = next(iter(catalog.targets))
            catalog.evict(kind="targets", name=oldest)
            self._tell("evicted", "targets", f"{MAX_PROFILES} targets are known already; {oldest!r}, the first "
                                             f"listed, makes room for {target!r}")
        catalog.add(playbooks=[], targets=[target])

    def _new(self, kind: type[Profile], *key: str) -> bool:
        """Is this profile new in this batch (nothing stored: a playbook's step profiles none either)?"""
        self._get(kind, *key)
        return self._batch[_id(kind, key)][1] == 0

    def _tell(self, what: str, kind: str, sentence: str) -> None:
        """Log the first of each kind, then one in a thousand: a flood of names must not flood the log too."""
        key = f"{what} {kind}"
        told = self.told[key] = self.told.get(key, 0) + 1
        if told % 1000 == 1:
            log.warning("learning: %s (%s %s since the service started: %d)", sentence, what, kind, told)

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
