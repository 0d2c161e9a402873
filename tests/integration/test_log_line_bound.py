"""A command nobody can read is logged in one bounded line, whatever value it carried."""
from __future__ import annotations

import io
import json
import logging

import pytest

from events import subjects
from services.log_text import EscapedLines

pytestmark = pytest.mark.integration


async def test_a_megabyte_value_in_a_bad_command_is_not_a_megabyte_line(engine) -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(EscapedLines())                     # as configure_logging installs it on every handler
    logger = logging.getLogger("services.run.service")
    logger.addHandler(handler)
    try:
        body = json.dumps({"playbook_id": "x", "on_failure": "A" * 500_000}).encode()
        reply = await engine.nc.request(subjects.command("StartRun"), body, timeout=10)
    finally:
        logger.removeHandler(handler)
    assert b"bad_request" in reply.data
    (line,) = [line for line in out.getvalue().splitlines() if "bad command" in line]
    assert len(line) < 10_000 and line.endswith("more characters)"), line[-200:]
