"""Runs pin their playbook by digest; runs recorded before that carry it embedded, and both fold alike."""
from __future__ import annotations

import msgspec
import pytest

from events.catalog import PlaybookPin
from events.codec import decode_event, encode
from events.run import RunStarted, StepScheduled, StepStarted, StepSucceeded
from projections import run_list
from projections.sentences import sentence
from services.domain.run.state import fold
from services.errors import UnknownPlaybook
from services.fold import decode_parsed, digest_of
from tests.helpers import at, noop, started

# A RunStarted exactly as the engine wrote it before playbooks were stored by reference.
RECORDED = (b'{"type":"RunStarted","actor":"cron","playbook":{"name":"nightly-backup","steps":[{"id":"dump",'
            b'"action":"noop","args":{"outputs":{"file":"/backups/${target}.sql"}}},{"id":"verify","action":"noop",'
            b'"depends_on":["dump"],"when":{"type":"equals","left":"${target}","right":"db1"}}],"version":"3",'
            b'"parameters":[{"name":"target","default":"db1"}]},"plan":{"needs":{"dump":[],"verify":["dump"]}},'
            b'"parameters":{"target":"db1"},"source":"nightly.yaml","run_id":"recorded-2026-03-01",'
            b'"at":"2026-03-01T02:00:00Z"}')
PIN = PlaybookPin(name="test", version="1", digest="sha256:" + "a" * 64, parsed="sha256:" + "b" * 64, steps=2)


def test_a_run_recorded_with_its_playbook_embedded_still_folds_as_it_did() -> None:
    recorded = decode_event(RECORDED)
    assert isinstance(recorded, RunStarted) and recorded.pin is None and recorded.resolved
    run_id = "recorded-2026-03-01"
    ran = [StepScheduled(run_id=run_id, at=at(1), step_id="dump", attempt=1),
           StepStarted(run_id=run_id, at=at(1), step_id="dump", attempt=1, executor="ex1"),
           StepSucceeded(run_id=run_id, at=at(1), step_id="dump", attempt=1)]
    run = fold(run_id, [(1, recorded), *enumerate(ran, start=2)])
    assert (run.playbook.name, list(run.steps), run.plan.needs["verify"]) == ("nightly-backup", ["dump", "verify"],
                                                                                ["dump"])
    assert run.steps["dump"].status == "succeeded" and run.started.parameters == {"target": "db1"}
    assert recorded.as_stored() is recorded                     # stored again as it was: nothing to strip
    assert encode(recorded) == RECORDED


def test_a_pinned_run_is_stored_without_its_playbook_and_read_whole_once_resolved() -> None:
    resolved = msgspec.structs.replace(started("run1", [noop("a"), noop("b")]), pin=PIN)
    stored = resolved.as_stored()
    assert (stored.playbook, stored.plan, stored.pin) == (None, None, PIN)
    assert len(encode(stored)) < len(encode(resolved))
    assert decode_event(encode(stored)) == stored
    assert list(fold("run1", [(1, resolved)]).steps) == ["a", "b"]


def test_folding_a_pinned_run_nobody_resolved_says_so_and_names_the_digest() -> None:
    stored = msgspec.structs.replace(started("run1", [noop("a")]), pin=PIN).as_stored()
    with pytest.raises(UnknownPlaybook, match=f"run run1: its playbook \\(pinned {PIN.digest}\\) was not resolved"):
        fold("run1", [(1, stored)])


def test_lists_and_sentences_read_a_pinned_run_without_resolving_it() -> None:
    stored = msgspec.structs.replace(started("run1", [noop("a"), noop("b")]), pin=PIN).as_stored()
    runs: dict[str, run_list.RunSummary] = {}
    run_list.apply(runs, stored)
    assert (runs["run1"].playbook, runs["run1"].steps) == ("test", 2)
    assert sentence(stored) == "started playbook test"


def test_a_pinned_playbook_that_no_longer_decodes_is_an_unknown_playbook_not_a_crash() -> None:
    # What a retry delay of .inf was stored as before validation refused it: JSON keeps infinity as null.
    stored = (b'{"playbook":{"name":"p","steps":[{"id":"a","action":"noop","retry":{"base_delay":null}}]},'
              b'"plan":{"needs":{"a":[]}}}')
    digest = digest_of(stored)
    with pytest.raises(UnknownPlaybook, match=f"the parsed playbook stored as {digest} cannot be read: .*base_delay"):
        decode_parsed(digest, stored, "PB_PLAYBOOKS")
