"""The streams with a size limit reserve it of the server's JetStream storage: starting again on a server
with less room left than that works, the sizes are settings, and a server that cannot hold them says which."""
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


@pytest.mark.parametrize(("value", "complaint"), [("lots", "a size"), ("1TB!", "a size"),
                                                  ("100KiB", "at least 1 MiB"), ("-5", "a size")])
def test_a_size_that_is_none_is_refused(value: str, complaint: str) -> None:
    with pytest.raises(PlaybookError, match=f"PLAYBOOK_LOGS_MAX_BYTES.*{complaint}"):
        Settings.from_environ({"PLAYBOOK_LOGS_MAX_BYTES": value})


def test_uploads_hold_at_least_one_playbook_of_the_largest_size() -> None:
    with pytest.raises(PlaybookError, match="PLAYBOOK_UPLOADS_MAX_BYTES.*at least 32 MiB"):
        Settings.from_environ({"PLAYBOOK_UPLOADS_MAX_BYTES": "16MiB"})
