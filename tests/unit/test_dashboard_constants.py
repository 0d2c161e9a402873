"""The dashboard's constants are generated from the Python contract, never copied by hand."""
from __future__ import annotations

import re

from ui.web.dashboard_constants import TARGET, constants, javascript

STATIC = TARGET.parent


def test_the_served_constants_module_is_what_the_contract_generates() -> None:
    assert TARGET.read_text() == javascript(), "run `python -m ui.web.dashboard_constants`, commit the file"


def test_every_status_tone_and_id_the_dashboard_knows_comes_from_the_contract() -> None:
    values = constants()
    assert set(values["FINISHED_STATUSES"]) < set(values["RUN_STATUSES"])
    toned = {kind for kinds in values["EVENT_TONES"].values() for kind in kinds}
    assert toned <= set(values["EVENT_KINDS"])
    assert re.fullmatch(values["RUN_ID_PATTERN"], "deploy-42_b") and not re.fullmatch(values["RUN_ID_PATTERN"], "a.b")


def test_no_view_spells_a_run_status_list_or_the_run_id_pattern_itself() -> None:
    for script in STATIC.glob("*.js"):
        if script == TARGET:
            continue
        text = script.read_text()
        assert "A-Za-z0-9_-" not in text, script.name
        assert '"rollback_failed"' not in text, f"{script.name} lists run statuses; import them from constants.js"
