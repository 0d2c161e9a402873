"""User text in a log line stays on that line, and reads as what it holds."""
from __future__ import annotations

import io
import logging

from services.log_text import EscapedLines, escaped


def test_line_breaks_and_controls_are_shown_escaped_and_ordinary_text_is_untouched() -> None:
    assert escaped("deploy web-1 to prod (übung, 東京)") == "deploy web-1 to prod (übung, 東京)"
    assert escaped("a\nb\r\tc") == "a\\nb\\r\\tc"
    assert escaped("bell\x07 esc\x1b[31m del\x7f") == "bell\\x07 esc\\x1b[31m del\\x7f"
    assert escaped("line\u2028sep\u2029par") == "line\\u2028sep\\u2029par"
    assert escaped("admin\u202egnp.exe") == "admin\\u202egnp.exe"          # a right-to-left override


def test_a_logger_with_the_filter_writes_one_line_per_record_whatever_the_arguments_hold() -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(EscapedLines())
    logger = logging.getLogger("test.log_text")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("%s cancelled run %s: %s", "eve\nINFO root approved", "r1", "because\r\nreasons")
        logger.warning("plain %d%%", 100)
    finally:
        logger.removeHandler(handler)
    assert out.getvalue().splitlines() == ["eve\\nINFO root approved cancelled run r1: because\\r\\nreasons",
                                           "plain 100%"]
