"""The knowledge store: a batch and its stream position are recorded together, once; profiles load from snapshots."""
from __future__ import annotations

from pathlib import Path

import msgspec
import pytest
from eventsourcing.persistence import IntegrityError

from services.learning.config import LearningConfig
from services.learning.facts import AttemptPassed, RunBegan
from services.learning import knowledge as knowledge_module
from services.learning.knowledge import SNAPSHOT_EVERY, Batch, Cursor, Knowledge, PositionConflict, StepProfile
from services.learning.storage import Storage
from tests.helpers import at
from tests.learning import learning_config  # noqa: F401 - fixture
from tests.postgres import postgres_cluster, postgres_url  # noqa: F401 - fixtures


def open_knowledge(directory: Path) -> Knowledge:
    storage = Storage(LearningConfig(directory=directory))
    name = storage.generation_name("g1")
    return Knowledge(name, storage.settings(name))


def batch(after: int, last: int) -> Batch:
    facts = [RunBegan(at=at(after), playbook="deploy", steps=["s"]),
             AttemptPassed(at=at(after), playbook="deploy", step="s", attempt=1, duration_ms=after)]
    return Batch(after=after, last=last, stream="created-1", messages=last - after, facts=facts)


def passes(knowledge: Knowledge) -> int:
    return knowledge.read(StepProfile, "deploy", "", "s").passed


def test_a_position_recorded_already_is_refused_and_counts_nothing(tmp_path: Path) -> None:
    knowledge = open_knowledge(tmp_path)
    knowledge.learn(batch(0, 10))
    with pytest.raises(IntegrityError):
        knowledge.learn(batch(10, 10))              # the last message again, as a redelivery would bring it
    knowledge.close()
    knowledge = open_knowledge(tmp_path)            # whatever the failed write left in memory is gone
    assert (knowledge.position(), passes(knowledge)) == (10, 1)
    with pytest.raises(PositionConflict):
        knowledge.learn(batch(0, 20))               # a writer that did not see the first batch
    knowledge.close()
    knowledge = open_knowledge(tmp_path)
    assert (knowledge.position(), passes(knowledge), knowledge.cursor().messages) == (10, 1, 10)
    knowledge.close()


def test_profiles_are_snapshotted_and_load_from_the_snapshot_as_they_were(tmp_path: Path) -> None:
    knowledge = open_knowledge(tmp_path)
    for n in range(SNAPSHOT_EVERY * 2 + 3):
        knowledge.learn(batch(n * 10, n * 10 + 10))
    learned = msgspec.json.encode(knowledge.read(StepProfile, "deploy", "", "s"))
    profile_id = StepProfile.create_id("deploy", "", "s")
    snapshots = list(knowledge.snapshots.get(profile_id, desc=True, limit=1))
    knowledge.close()
    assert snapshots and snapshots[0].originator_version >= SNAPSHOT_EVERY * 2
    again = open_knowledge(tmp_path)
    assert msgspec.json.encode(again.read(StepProfile, "deploy", "", "s")) == learned
    again.close()


def test_the_room_made_depends_on_the_facts_not_on_how_they_were_batched(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(knowledge_module, "MAX_TEXTS_PER_STARTER", 2)
    names = ["a", "b", "c", "a", "d", "b", "e", "a"]          # "a" is evicted, listed again, evicted...
    facts = [RunBegan(at=at(n), playbook=name, steps=["s"], starter="mallory", text=True)
             for n, name in enumerate(names)]
    listed = []
    for split in (len(facts), 1, 3):
        knowledge = open_knowledge(tmp_path / f"split-{split}")
        for first in range(0, len(facts), split):
            part = facts[first:first + split]
            knowledge.learn(Batch(after=first, last=first + len(part), stream="s", messages=len(part), facts=part))
        catalog = knowledge.catalog()
        listed.append((list(catalog.playbooks), catalog.sent(), catalog.evictions()))
        knowledge.close()
    assert listed[0] == listed[1] == listed[2] == (["e", "a"], {"e": "mallory", "a": "mallory"}, {"texts": 6})



def test_what_a_snapshot_holds_is_not_kept_besides_so_the_store_does_not_grow_with_every_batch(
        learning_config: LearningConfig) -> None:
    """A week of runs is a million batches: their events stayed in the store for good beside the snapshots that
    hold them, so it grew with every run learned (1.7 KB a run) though it knows a bounded number of profiles."""
    storage = Storage(learning_config)
    name = storage.generation_name("g1")
    knowledge = Knowledge(name, storage.settings(name))
    for n in range(SNAPSHOT_EVERY * 6):
        knowledge.learn(batch(n * 10, n * 10 + 10))
    learned = msgspec.json.encode(knowledge.read(StepProfile, "deploy", "", "s"))
    for aggregate in (Cursor.create_id(), StepProfile.create_id("deploy", "", "s")):     # 300 versions each
        assert len(knowledge.recorder.select_events(aggregate)) <= SNAPSHOT_EVERY      # were all 300
        assert len(knowledge.snapshots.recorder.select_events(aggregate)) == 1         # the latest: were 6
    knowledge.close()
    again = Knowledge(name, storage.settings(name))
    assert msgspec.json.encode(again.read(StepProfile, "deploy", "", "s")) == learned
    assert (again.position(), passes(again)) == (SNAPSHOT_EVERY * 60, SNAPSHOT_EVERY * 6)
    again.learn(batch(SNAPSHOT_EVERY * 60, SNAPSHOT_EVERY * 60 + 10))   # and it learns on from there
    assert passes(again) == SNAPSHOT_EVERY * 6 + 1
    again.close()
    storage.close()
