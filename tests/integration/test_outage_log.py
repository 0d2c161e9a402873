"""An engine connection's log while its NATS server is away: one warning, then quiet, then one line when it is back."""
from __future__ import annotations

import logging

import pytest

from tests.helpers import until

pytestmark = pytest.mark.integration

FAILED_RECONNECTS = 6     # about three seconds of an outage: nats-py tries again every half second


async def test_an_outage_is_one_warning_and_its_end_one_line(nats_server, settings, caplog) -> None:
    nc = await settings.connect("playbook-test")
    try:
        with caplog.at_level(logging.DEBUG, logger="playbook"):
            nats_server.stop()
            await until(lambda: len([r for r in caplog.records if "NATS" in r.getMessage()]) >= FAILED_RECONNECTS,
                        timeout=20, what=f"{FAILED_RECONNECTS} failed reconnects")
            warnings = [r for r in caplog.records if r.levelno >= logging.WARNING and "NATS" in r.getMessage()]
            assert len(warnings) == 1, [r.getMessage() for r in warnings]
            await nats_server.start()
            await until(lambda: any("connected again" in r.getMessage() for r in caplog.records), timeout=20,
                        what="the reconnect said")
        assert nc.is_connected
    finally:
        await nc.close()
