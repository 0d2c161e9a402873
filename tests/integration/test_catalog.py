"""The catalog against a real nats-server: versions published once and for good, runs started from them
pinning the exact text, readers resolving pins, and runs recorded before pins still running and replaying."""
from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from datetime import datetime, timezone

import msgspec
import nats
import pytest

from events import subjects
from events.catalog import PlaybookPin, decode_catalog_event
from events.codec import decode_event
from events.commands import PublishPlaybook, StartRun
from events.run import RunCompleted, RunStarted
from services.errors import UnknownPlaybook
from services.read import Catalog, EventStore, PlaybookStore, digest_of
from tests.helpers import noop, person, playbook_yaml, refusals, wait_for_end
from tests.unit.test_pinned_runs import RECORDED
from ui.catalog_client import CatalogClient, Published
from ui.client import EngineClient

pytestmark = pytest.mark.integration

V1 = playbook_yaml([noop("build"), noop("ship")], name="release", version="1.0", description="Build and ship.")
V2 = playbook_yaml([noop("build"), noop("test"), noop("ship")], name="release", version="2.0",
                   description="Build, test and ship.")
V1_CHANGED = V1.replace("ship", "deliver")


async def published(catalog: CatalogClient, text: str, **fields) -> Published:
    answer = await catalog.publish(text, **fields)
    assert isinstance(answer, Published), answer
    return answer


async def started(engine: EngineClient, **fields) -> RunStarted:
    reply = await engine.send(StartRun(**fields))
    assert reply.accepted, reply.error
    assert isinstance((await wait_for_end(engine, reply.run_id))[-1], RunCompleted)
    (_, first), *_ = await engine.events(reply.run_id)
    assert isinstance(first, RunStarted)
    return first


async def test_two_versions_run_each_pinning_its_own_text_and_a_changed_text_cannot_reuse_a_version(engine, library):
    catalog = CatalogClient(await person(engine, "pat", "admin"))
    quinn = CatalogClient(await person(engine, "quinn", "admin"))
    one, two = await published(catalog, V1), await published(quinn, V2)
    assert (one.new, one.version.version, one.version.actor, one.version.steps) == (True, "1.0", "pat", 2)
    assert (two.version.version, two.version.actor, two.version.description) == ("2.0", "quinn",
                                                                                  "Build, test and ship.")

    first, second, latest = (await started(engine, playbook_id="release@1.0"),
                             await started(engine, playbook_id="release@2.0"),
                             await started(engine, playbook_id="release"))
    assert (first.pin.version, first.pin.digest, first.pin.published) == ("1.0", digest_of(V1.encode()), True)
    assert (second.pin.version, second.pin.digest, second.pin.steps) == ("2.0", digest_of(V2.encode()), 3)
    assert latest.pin == second.pin and first.pin.parsed != second.pin.parsed
    assert first.playbook is None and first.source == "release@1.0"          # stored by reference only
    assert [s for s in (await engine.run(first.run_id)).steps] == ["build", "ship"]

    refused = await catalog.publish(V1_CHANGED)
    assert not isinstance(refused, Published) and refused.error.code == "version_exists"
    assert "release@1.0 is already published with other content" in refused.error.message
    again = await published(quinn, V1)
    assert (again.new, again.version.actor) == (False, "pat")                 # the same text: nothing new
    assert [v.version for v in await catalog.versions("release")] == ["1.0", "2.0"]
    assert await catalog.text("release@1.0") == V1
    diff = await catalog.diff("release", "1.0", "2.0")
    assert "--- release@1.0\n+++ release@2.0\n" in diff and "+  action: noop\n" in diff and "+- id: test\n" in diff


async def test_publishing_is_an_event_with_its_actor_and_validation_and_the_stream_keeps_it_for_good(engine, library):
    risky = playbook_yaml([{"id": "wipe", "action": "shell", "args": {"command": "rm -rf /tmp/x/*"}}], name="wipe")
    pat = await person(engine, "pat", "admin")
    reply = await pat.send(PublishPlaybook(text=risky, version="7", source="wipe.yaml"))
    (event,) = reply.events
    assert (event["type"], event["actor"], event["version"], event["source"]) == ("PlaybookPublished", "pat", "7",
                                                                                 "wipe.yaml")
    assert event["validation"]["warnings"] >= 1 and "PB502" in event["validation"]["codes"]
    js = engine.nc.jetstream()
    stored = await js.get_last_msg(subjects.CATALOG_STREAM, f"{subjects.catalog_entry('wipe')}.PlaybookPublished")
    assert decode_catalog_event(stored.data).actor == "pat"
    with pytest.raises(nats.js.errors.APIError):
        await js.purge_stream(subjects.CATALOG_STREAM)                       # a version stays what it was
    with pytest.raises(nats.js.errors.APIError):
        await js.delete_msg(subjects.CATALOG_STREAM, stored.seq)


async def test_an_invalid_playbook_and_an_unnamed_reference_are_refused_saying_why(engine, library):
    catalog = CatalogClient(engine)
    invalid = await catalog.publish(playbook_yaml([{"id": "a", "action": "nope"}], name="bad"))
    assert invalid.error.code == "invalid_playbook" and "PB206" in {d["code"] for d in invalid.error.details}
    dotted = await catalog.publish(playbook_yaml([noop("a")], name="deploy.web"))
    assert dotted.error.code == "bad_request" and "cannot be published" in dotted.error.message
    await published(catalog, V1)
    for reference, words in (("release@9.9", "release has versions 1.0"), ("nothing", "`playbook playbooks` lists"),
                             ("pb.>", "write NAME or NAME@VERSION"), ("sha256:" + "0" * 64, "no playbook text")):
        reply = await engine.send(StartRun(playbook_id=reference))
        assert (reply.accepted, reply.error.code) == (False, "unknown_playbook"), reference
        assert words in reply.error.message
    assert await engine.list_runs() == []


async def test_two_replicas_publishing_one_version_at_once_record_it_once(engine, library, settings):
    others = [await nats.connect(settings.engine_url()) for _ in range(2)]
    try:
        first, second = (Catalog(nc, PlaybookStore(nc)) for nc in others)
        now = datetime.now(timezone.utc)
        results = await asyncio.gather(first.publish(V1, actor="a", at=now), second.publish(V1, actor="b", at=now))
        assert sorted(new for _, new in results) == [False, True]
        assert results[0][0] == results[1][0]      # the loser is answered with the winner's version
        assert [v.version for v in await CatalogClient(engine).versions("release")] == ["1.0"]
    finally:
        for nc in others:
            await nc.close()


async def test_a_run_started_by_digest_or_by_upload_pins_the_same_text(engine, library):
    text = playbook_yaml([noop("a")], name="adhoc")
    by_text = await started(engine, playbook=text)
    assert (by_text.pin.published, by_text.pin.version) == (False, "1")
    by_digest = await started(engine, playbook_id=by_text.pin.digest)
    upload = await engine.playbooks.upload(text)
    by_upload = await started(engine, upload=upload)
    assert by_text.pin == by_digest.pin == by_upload.pin
    again = await engine.send(StartRun(upload=upload))          # an upload is read once
    assert (again.accepted, again.error.code) == (False, "unknown_playbook") and "send the playbook again" in (
        again.error.message)


async def test_a_reader_of_its_own_resolves_a_pinned_run_once_and_folds_what_the_engine_folded(engine, library,
                                                                                                settings):
    first = await started(engine, playbook=V2)
    nc = await nats.connect(settings.engine_url())
    try:
        reader = EngineClient(nc)                                                 # a CLI or web server elsewhere
        run = await reader.run(first.run_id)
        assert run.status == "completed" and list(run.steps) == ["build", "test", "ship"]
        assert run.playbook is (await reader.run(first.run_id)).playbook        # the second time, from the cache
        assert [type(e).__name__ for _, e in await reader.events(first.run_id, resolved=True)][:2] == [
            "RunStarted", "StepScheduled"]
    finally:
        await nc.close()


async def test_a_pin_whose_playbook_is_gone_is_a_clear_error_not_a_crash(nc):
    store = EventStore(nc)
    await store.ensure_stream()
    await Catalog(nc, PlaybookStore(nc)).ensure()
    gone = PlaybookPin(name="nightly-backup", version="3", digest="sha256:" + "d" * 64, parsed="sha256:" + "e" * 64,
                       steps=2)
    orphan = msgspec.structs.replace(decode_event(RECORDED), run_id="orphan", playbook=None, plan=None, pin=gone)
    await store.append("orphan", [orphan], 0)
    with pytest.raises(UnknownPlaybook, match=r"run orphan cannot be read: no parsed playbook sha256:e{64} in "
                                              "PB_PLAYBOOKS"):
        await EngineClient(nc).run("orphan")


async def test_a_run_recorded_before_pins_is_carried_on_by_todays_engine_and_replays(engine):
    """The run service's advancer picks the recorded RunStarted up as it would have then."""
    await engine.store.append("recorded-2026-03-01", [decode_event(RECORDED)], 0)
    events = await wait_for_end(engine, "recorded-2026-03-01")
    assert [type(e).__name__ for e in events] == ["RunStarted", "StepScheduled", "StepStarted", "StepSucceeded",
                                                  "StepScheduled", "StepStarted", "StepSucceeded", "RunCompleted"]
    run = await engine.run("recorded-2026-03-01")
    assert (run.status, run.playbook.name, run.steps["dump"].attempt.outputs) == (
        "completed", "nightly-backup", {"file": "/backups/db1.sql"})



async def test_publishing_needs_admin_on_everything_and_a_refusal_is_recorded_with_nothing_published(engine, library):
    """Only an admin of every playbook and environment publishes; operators run what is published."""
    admin = CatalogClient(await person(engine, "ada", "admin"))
    assert (await published(admin, V1)).version.actor == "ada"
    otto = await person(engine, "otto", "operator")
    scoped = await person(engine, "sam", "admin:release")
    for client, holds in ((otto, "otto holds operator everywhere"), (scoped, "sam holds admin on release in *")):
        refused = await CatalogClient(client).publish(V2)
        assert not isinstance(refused, Published) and refused.error.code == "forbidden"
        assert "may not publish playbooks" in refused.error.message and holds in refused.error.message
    assert [v.version for v in await CatalogClient(otto).versions("release")] == ["1.0"]   # reading is for everyone
    assert (await started(otto, playbook_id="release")).pin.version == "1.0"               # and operators run it
    recorded = [(r.principal, r.action) for r in await refusals(engine.nc)]
    assert ("otto", "publish_playbook") in recorded and ("sam", "publish_playbook") in recorded


async def test_the_library_reads_regular_files_only_and_says_which_error_stopped_a_file(nc, tmp_path, caplog):
    """A FIFO (or a link to /dev/zero) named *.yaml would block the run service's start, or read for ever: only
    regular files are read, no further than a playbook may be. An invalid file's log names its error, not the first
    info found before it."""
    folder = tmp_path / "library"
    folder.mkdir()
    (folder / "release.yaml").write_text(V1)
    (folder / "broken.yaml").write_text(playbook_yaml([{"id": "x", "action": "nosuch"}], name="broken"))
    fifo = folder / "pipe.yaml"
    os.mkfifo(fifo)
    (folder / "folder.yaml").mkdir()
    late = playbook_yaml([noop("late")], name="late")

    def writer() -> None:      # unblocks a reader stuck on the FIFO, long after the library should be done
        try:
            end = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:        # no reader: none was stuck
            return
        with os.fdopen(end, "w") as text:
            text.write(late)
    watchdog = threading.Timer(5.0, writer)
    watchdog.start()
    catalog = Catalog(nc, PlaybookStore(nc))
    await catalog.ensure()
    try:
        started_at = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="services.catalog"):
            published = await catalog.publish_library([folder], datetime.now(timezone.utc))
        elapsed = time.monotonic() - started_at
    finally:
        watchdog.cancel()
        watchdog.join()
    assert [p.name for p in published] == ["release"] and elapsed < 5.0
    assert "pipe.yaml is not a regular file" in caplog.text and "folder.yaml is not a regular file" in caplog.text
    assert "broken.yaml not published" in caplog.text and "error PB" in caplog.text


async def test_a_version_taken_is_credited_to_its_author_and_names_the_admin_who_published_it(engine, library):
    """`version_exists` says whose version holds the name: the person an admin published for, as the catalog
    credits it, and the admin."""
    ada = await person(engine, "ada", "admin")
    await published(CatalogClient(EngineClient(ada.nc, ada.caller.credential, on_behalf_of="zed")), V1)
    refused = await CatalogClient(engine).publish(V1_CHANGED)
    assert not isinstance(refused, Published) and refused.error is not None
    assert refused.error.code == "version_exists"
    assert "by zed (published by ada) at " in refused.error.message


async def test_the_same_text_again_names_the_version_it_is_among_several_holding_that_text(engine, library):
    """One text may be published as several versions (--version); publishing it again without one is its own
    `version:`, and the answer names that version, not the latest holding the text."""
    text = playbook_yaml([noop("build")], name="same-text")
    catalog = CatalogClient(engine)
    for version in ("", "5", "6"):
        assert (await published(catalog, text, version=version)).new
    again = await published(catalog, text)
    assert (again.new, again.version.version) == (False, "1")
    assert (await published(catalog, text, version="5")).version.version == "5"
    reply = await engine.send(PublishPlaybook(text=text, version="6"))     # the engine's own answer names it
    assert (reply.events, reply.found[0]["version"]) == ([], "6")
