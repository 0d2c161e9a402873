"""The streams with a size limit reserve it of the server's JetStream storage: starting again on a server
with less room left than that works, the sizes are settings, a process without them keeps the sizes the
streams have, sizes not set fit a server whose storage is known (`playbook up`'s), and a server that cannot
hold them says which."""
from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest

from events import subjects
from services.catalog import Catalog
from services.errors import PlaybookError
from services.identity.store import IdentityStore
from services.logs import ensure_logs_stream
from services.playbook_store import PlaybookStore
from services.settings import ACCESS_MAX_BYTES, LOGS_MAX_BYTES, UPLOADS_MAX_BYTES, Settings
from services.store import EventStore
from services.stream_sizes import decide_sizes
from tests.conftest import NatsServer

pytestmark = pytest.mark.integration

RESERVED = LOGS_MAX_BYTES + ACCESS_MAX_BYTES + UPLOADS_MAX_BYTES


async def server(tmp_path: Path, max_file_store: int) -> NatsServer:
    started = NatsServer(tmp_path / "jetstream", max_file_store=max_file_store)
    await started.start()
    return started


@pytest.fixture
async def roomy(tmp_path: Path) -> AsyncIterator[NatsServer]:
    """Room for the reservations and a few megabytes: not for reserving any of them twice."""
    started = await server(tmp_path, RESERVED + 8 * 2**20)
    try:
        yield started
    finally:
        started.stop()


DEFAULTS = Settings()


async def ensure_all(url: str, settings: Settings = DEFAULTS) -> dict[str, int]:
    """What a starting engine process ensures (app/root.py `serve`); each capped stream's max_bytes."""
    nc = await nats.connect(url)
    try:
        settings = await decide_sizes(nc, settings)
        await EventStore(nc).ensure_stream()
        await ensure_logs_stream(nc, max_bytes=settings.logs_max_bytes)
        await Catalog(nc, PlaybookStore(nc)).ensure(uploads_max_bytes=settings.uploads_max_bytes)
        await IdentityStore(nc).ensure_streams(refusals_max_bytes=settings.access_max_bytes)
        js = nc.jetstream()
        names = (subjects.LOGS_STREAM, subjects.ACCESS_STREAM, subjects.object_stream(subjects.UPLOADS_BUCKET))
        return {name: (await js.stream_info(name)).config.max_bytes or 0 for name in names}
    finally:
        await nc.close()


async def test_starting_again_does_not_reserve_the_streams_twice(roomy: NatsServer) -> None:
    first = await ensure_all(roomy.url)
    assert sum(first.values()) == RESERVED
    assert await ensure_all(roomy.url) == first        # a restart, or a second process of the engine
    roomy.stop()
    await roomy.start()                                # the server itself restarted on its data
    assert await ensure_all(roomy.url) == first


async def test_the_reservations_are_settings_and_a_change_applies_at_the_next_start(roomy: NatsServer) -> None:
    await ensure_all(roomy.url)
    smaller = Settings.from_environ({"PLAYBOOK_LOGS_MAX_BYTES": "64MiB", "PLAYBOOK_ACCESS_MAX_BYTES": "16MiB",
                                     "PLAYBOOK_UPLOADS_MAX_BYTES": "40MB"})
    assert sorted((await ensure_all(roomy.url, smaller)).values()) == [16 * 2**20, 40 * 10**6, 64 * 2**20]


async def test_a_server_without_room_for_them_is_refused_with_the_setting_to_change(tmp_path: Path) -> None:
    small = await server(tmp_path, 512 * 2**20)
    try:
        with pytest.raises(PlaybookError, match="PB_LOGS.*1,073,741,824 bytes.*PLAYBOOK_LOGS_MAX_BYTES"):
            await ensure_all(small.url)
        fitting = Settings.from_environ({"PLAYBOOK_LOGS_MAX_BYTES": "128MiB", "PLAYBOOK_ACCESS_MAX_BYTES": "64MiB",
                                         "PLAYBOOK_UPLOADS_MAX_BYTES": "64MiB"})
        assert sum((await ensure_all(small.url, fitting)).values()) == 256 * 2**20
    finally:
        small.stop()


async def test_a_process_without_the_settings_keeps_the_sizes_the_streams_have(roomy: NatsServer) -> None:
    chosen = Settings.from_environ({"PLAYBOOK_LOGS_MAX_BYTES": "64MiB", "PLAYBOOK_ACCESS_MAX_BYTES": "16MiB",
                                    "PLAYBOOK_UPLOADS_MAX_BYTES": "40MB"})
    sizes = await ensure_all(roomy.url, chosen)
    assert await ensure_all(roomy.url) == sizes      # say, an executor started apart, without the variables
    assert (await ensure_all(roomy.url, Settings.from_environ({"PLAYBOOK_LOGS_MAX_BYTES": "32MiB"})))[
        subjects.LOGS_STREAM] == 32 * 2**20          # set, a size is applied


async def sized_for(url: str, storage: int, settings: Settings = DEFAULTS) -> Settings:
    nc = await nats.connect(url)
    try:
        return await decide_sizes(nc, settings, storage)
    finally:
        await nc.close()


async def test_sizes_not_set_fit_the_storage_of_the_server_up_started(tmp_path: Path,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    storage = 512 * 2**20
    small = await server(tmp_path, storage)
    try:
        fitted = await sized_for(small.url, storage)
        assert (fitted.logs_max_bytes, fitted.access_max_bytes, fitted.uploads_max_bytes) == (
            128 * 2**20, 32 * 2**20, 32 * 2**20)
        assert "PB_LOGS keeps at most 128 MiB (its default is 1024 MiB)" in caplog.text
        assert fitted.environ["PLAYBOOK_LOGS_MAX_BYTES"] == str(128 * 2**20)   # what `up` hands its children
        sizes = await ensure_all(small.url, fitted)
        assert sum(sizes.values()) == 192 * 2**20
        assert await ensure_all(small.url, await sized_for(small.url, storage)) == sizes   # `up` again
        assert await ensure_all(small.url) == sizes    # its learning process, or any process without the settings
        chosen = await sized_for(small.url, storage, Settings.from_environ({"PLAYBOOK_ACCESS_MAX_BYTES": "8MiB"}))
        assert chosen.access_max_bytes == 8 * 2**20    # a size set is the operator's, fitting or not
    finally:
        small.stop()


async def test_a_roomy_server_gets_the_defaults_and_uploads_at_least_the_largest_playbook(roomy: NatsServer) -> None:
    def sizes(settings: Settings) -> tuple[int, int, int]:
        return settings.logs_max_bytes, settings.access_max_bytes, settings.uploads_max_bytes
    assert sizes(await sized_for(roomy.url, 100 * 2**30)) == (LOGS_MAX_BYTES, ACCESS_MAX_BYTES, UPLOADS_MAX_BYTES)
    assert sizes(await sized_for(roomy.url, 64 * 2**20)) == (16 * 2**20, 4 * 2**20, 32 * 2**20)


@pytest.mark.parametrize(("value", "complaint"), [("lots", "a size"), ("1TB!", "a size"),
                                                  ("100KiB", "at least 1 MiB"), ("-5", "a size")])
def test_a_size_that_is_none_is_refused(value: str, complaint: str) -> None:
    with pytest.raises(PlaybookError, match=f"PLAYBOOK_LOGS_MAX_BYTES.*{complaint}"):
        Settings.from_environ({"PLAYBOOK_LOGS_MAX_BYTES": value})


def test_uploads_hold_at_least_one_playbook_of_the_largest_size() -> None:
    with pytest.raises(PlaybookError, match="PLAYBOOK_UPLOADS_MAX_BYTES.*at least 32 MiB"):
        Settings.from_environ({"PLAYBOOK_UPLOADS_MAX_BYTES": "16MiB"})
